// backends/augment.hpp's ops::voxel: the per-voxel arithmetic the GPU augmentation kernels
// run, built here for the host and held to the CPU transforms (the CPU kernels) bit for bit
// (sample_image, sample_label, resample, GaussianNoise, gaussian_filter, channel_stats,
// brightness, contrast, normalisation, permute_reverse / rot90, the two resizes, the bias
// field; gamma to its pow's last bit), and each transform's draw() held to its apply, so the
// kernels' logic is checked on machines without a GPU. Grids with rotation, scaling, an offset and a
// displacement field, shrinking and growing, every interpolation mode; coordinates that fall
// outside, on the border and exactly on voxels.
#include "support.hpp"

#include <algorithm>
#include <cstring>
#include <numbers>
#include <optional>
#include <random>
#include <type_traits>

#include "medseg/backends/augment.hpp"

using namespace medseg;
using namespace medseg::transforms;
namespace voxel = medseg::ops::voxel;

namespace {

Tensor<float> random_image(const Shape& shape, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-3.0f, 5.0f);
  auto t = Tensor<float>::empty(shape);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = u(rng);
  return t;
}

/// Runs of ids 0..3 along W, so per-class votes meet mixed neighbourhoods.
Tensor<std::uint8_t> random_label(const Shape& shape, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> id(0, 3), run(1, 6);
  auto t = Tensor<std::uint8_t>::empty(shape);
  std::int64_t i = 0;
  while (i < t.numel()) {
    const auto v = static_cast<std::uint8_t>(id(rng));
    for (int r = run(rng); r > 0 && i < t.numel(); --r) t.data()[i++] = v;
  }
  return t;
}

/// What the GPU kernel computes, on the host: a grid point per voxel (no row walk) and the
/// whole-sample functions (linear_sample, per_class_linear_sample), as the kernel calls them.
void reference_sample(const Tensor<float>& image, const Tensor<std::uint8_t>& label, const SamplingGrid& g,
                      ImageInterpolation im, LabelInterpolation lm, Tensor<float>& image_out,
                      Tensor<std::uint8_t>& label_out) {
  const voxel::GridSpec spec = transforms::detail::grid_spec(g);
  const std::int64_t c = image.size(0), d = image.size(1), h = image.size(2), w = image.size(3);
  const std::int64_t plane = g.out_size[0] * g.out_size[1] * g.out_size[2], in_plane = d * h * w;
  image_out = Tensor<float>::empty({c, g.out_size[0], g.out_size[1], g.out_size[2]});
  label_out = Tensor<std::uint8_t>::empty({1, g.out_size[0], g.out_size[1], g.out_size[2]});
  const float* disp = g.displacement.defined() ? g.displacement.data() : nullptr;
  for (std::int64_t at = 0; at < plane; ++at) {
    const std::int64_t x = at % g.out_size[2], row = at / g.out_size[2];
    double p[3];
    voxel::grid_point(spec, row / g.out_size[1], row % g.out_size[1], x, disp, at, plane, p);
    const voxel::Corner corner = voxel::corner_of(p[0], p[1], p[2]);
    const std::int64_t near = voxel::nearest_offset(p[0], p[1], p[2], d, h, w);
    for (std::int64_t ch = 0; ch < c; ++ch)
      image_out.data()[ch * plane + at] =
          im == ImageInterpolation::nearest ? (near >= 0 ? image.data()[ch * in_plane + near] : 0.0f)
                                            : voxel::linear_sample({image.data() + ch * in_plane, d, h, w}, corner);
    label_out.data()[at] = lm == LabelInterpolation::nearest
                               ? (near >= 0 ? label.data()[near] : std::uint8_t(0))
                               : voxel::per_class_linear_sample(label.data(), d, h, w, corner);
  }
}

template <class T>
bool same_bits(const Tensor<T>& a, const Tensor<T>& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.nbytes())) == 0;
}

}  // namespace

TEST_CASE("voxel_sampling: the host build of the GPU's sampling equals the CPU sampler bit for bit") {
  const Index3 in{9, 11, 13};
  const auto image = random_image({2, in[0], in[1], in[2]}, 3);
  const auto label = random_label({1, in[0], in[1], in[2]}, 4);
  const double deg = std::numbers::pi / 180.0;
  struct Case {
    const char* name;
    Index3 out;
    Mat3 matrix;
    bool displaced;
  };
  const std::vector<Case> cases = {
      {"identity crop", {7, 9, 11}, Mat3{}, false},
      {"identity pad (reads outside)", {12, 14, 15}, Mat3{}, false},
      {"rotation about D", {9, 11, 13}, Mat3::plane_rotation(1, 2, 23 * deg), false},
      {"rotation about all axes, zoom", {8, 12, 10},
       Mat3::plane_rotation(1, 2, 17 * deg) * Mat3::plane_rotation(0, 2, -31 * deg) * Mat3::plane_rotation(0, 1, 44 * deg) *
           Mat3::diagonal(1.3, 0.8, 1.1),
       false},
      {"zoom out (reads past the border)", {9, 11, 13}, Mat3::diagonal(1.6, 1.6, 1.6), false},
      {"rotation with an elastic field", {9, 11, 13}, Mat3::plane_rotation(0, 1, 12 * deg), true},
  };
  for (const auto& c : cases) {
    SECTION(c.name) {
      SamplingGrid grid = SamplingGrid::centered(in, c.out, c.matrix);
      if (c.displaced) {
        RandomStream rng(7, 1);
        grid.displacement = elastic_displacement(c.out, 6.0, 2.0, rng);
      }
      for (auto im : {ImageInterpolation::nearest, ImageInterpolation::linear})
        for (auto lm : {LabelInterpolation::nearest, LabelInterpolation::per_class_linear}) {
          Sample s{image.clone(), label.clone()};
          resample(s, grid, im, lm);
          Tensor<float> ref_image;
          Tensor<std::uint8_t> ref_label;
          reference_sample(image, label, grid, im, lm, ref_image, ref_label);
          INFO("image " << (im == ImageInterpolation::linear ? "linear" : "nearest") << ", label "
                        << (lm == LabelInterpolation::nearest ? "nearest" : "per-class linear"));
          REQUIRE(same_bits(s.image, ref_image));
          REQUIRE(same_bits(s.label, ref_label));
          // sample_image / sample_label (the walks without the pair sampler) agree too.
          REQUIRE(same_bits(sample_image(image, grid, im), ref_image));
          REQUIRE(same_bits(sample_label(label, grid, lm), ref_label));
        }
    }
  }
}

TEST_CASE("voxel_sampling: the grid point reads the displacement at the output voxel") {
  // A pure shift of +1.5 along W everywhere: linear samples halfway between voxels.
  const Index3 in{3, 4, 5};
  SamplingGrid grid = SamplingGrid::centered(in, in);
  grid.displacement = Tensor<float>::zeros({3, 3, 4, 5});
  for (std::int64_t i = 0; i < 60; ++i) grid.displacement.data()[2 * 60 + i] = 1.5f;
  const voxel::GridSpec spec = transforms::detail::grid_spec(grid);
  double p[3];
  voxel::grid_point(spec, 1, 2, 0, grid.displacement.data(), (1 * 4 + 2) * 5 + 0, 60, p);
  CHECK(p[0] == 1.0);
  CHECK(p[1] == 2.0);
  CHECK(p[2] == 1.5);
}

TEST_CASE("voxel_sampling: noise_normals is GaussianNoise's field, bit for bit") {
  const auto image = random_image({2, 5, 6, 7}, 11);
  for (std::uint64_t seed : {1u, 2u, 3u}) {
    const GaussianNoise noise{.p = 1.0f, .sigma = {0.05f, 0.2f}};
    Sample s{image.clone(), {}};
    RandomStream rng(seed, 9), again(seed, 9);
    noise.apply(s, rng);
    const GaussianNoise::Draw d = noise.draw(again);
    REQUIRE(d.fire);
    REQUIRE(rng.position() == again.position());  // the apply draws exactly what draw() draws
    auto expect = image.clone();
    const std::int64_t n = expect.numel();
    for (std::int64_t k = 0; k < (n + 3) / 4; ++k) {
      const auto b = Philox4x32::block(d.field.seed(), d.field.stream(), static_cast<std::uint64_t>(k));
      const std::uint32_t w[4] = {b.w[0], b.w[1], b.w[2], b.w[3]};
      float z[4];
      voxel::noise_normals(w, z);
      for (std::int64_t j = 0; j < 4 && 4 * k + j < n; ++j)
        expect.data()[4 * k + j] = voxel::add(expect.data()[4 * k + j], voxel::mul(d.sd, z[j]));
    }
    REQUIRE(same_bits(s.image, expect));
  }
}

TEST_CASE("voxel_sampling: the draws of each transform are what its apply draws") {
  // The GPU versions draw through draw(); the CPU apply must consume the stream the same way.
  const auto image = random_image({2, 6, 7, 8}, 5);
  const auto label = random_label({1, 6, 7, 8}, 6);
  for (std::uint64_t seed = 0; seed < 6; ++seed) {
    Sample s{image.clone(), label.clone()};
    RandomStream a(seed, 2), b(seed, 2);
    const SpatialTransform spatial{.patch_size = {5, 6, 7}, .crop_size = {6, 7, 8}, .foreground_fraction = 0.5f,
                                   .p_rotation = 0.5f, .p_scale = 0.5f, .p_elastic = 0.5f,
                                   .elastic_alpha = {1.0f, 3.0f}, .elastic_sigma = {1.0f, 2.0f}};
    spatial.apply(s, a);
    const auto d = spatial.draw({6, 7, 8}, label, b);
    if (d.deform) (void)elastic_displacement(d.out, d.alpha, d.sigma, b);
    CHECK(a.position() == b.position());
    CHECK(a.stream() == b.stream());

    RandomStream c(seed, 3), e(seed, 3);
    Gamma{.p = 0.7f}.apply(s, c);
    (void)Gamma{.p = 0.7f}.draw(e, 2);
    CHECK(c.position() == e.position());
    RandomStream f(seed, 4), g(seed, 4);
    GaussianBlur{.p = 0.7f}.apply(s, f);
    (void)GaussianBlur{.p = 0.7f}.draw(g, 2);
    CHECK(f.position() == g.position());
  }
}

namespace {

/// What the GPU's gaussian_filter computes, on the host: gaussian_tap_sum per output value.
Tensor<float> reference_gaussian(const Tensor<float>& x, const std::array<double, 3>& sigma) {
  Tensor<float> current = x.clone();
  const std::int64_t d = x.size(1), h = x.size(2), w = x.size(3);
  const std::int64_t extent[3] = {d, h, w}, inner[3] = {h * w, w, 1};
  for (int a = 0; a < 3; ++a) {
    if (sigma[a] <= 0) continue;
    const auto taps = gaussian_kernel(sigma[a]);
    auto next = Tensor<float>::empty(x.shape());
    for (std::int64_t at = 0; at < next.numel(); ++at) {
      const std::int64_t j = at % inner[a], r = at / inner[a], i = r % extent[a], o = r / extent[a];
      next.data()[at] = voxel::gaussian_tap_sum(current.data() + o * extent[a] * inner[a] + j, inner[a], i, extent[a],
                                                taps.data(), static_cast<int>(taps.size()));
    }
    current = next;
  }
  return current;
}

/// What the GPU's channel statistics compute, on the host: the lanes, the tail, the fold.
ChannelStats reference_stats(const float* x, std::int64_t n) {
  ChannelPartials parts;
  for (std::int64_t begin = 0; begin < n; begin += channel_stats_block) {
    const std::int64_t end = std::min(n, begin + channel_stats_block);
    voxel::Partial lanes[voxel::stats_lanes];
    for (int l = 0; l < voxel::stats_lanes; ++l) lanes[l] = voxel::lane_partial(x, begin, end, l);
    voxel::Partial p = lanes[0];
    voxel::add_tail(p, x, voxel::lanes_end(begin, end), end);
    for (int l = 1; l < voxel::stats_lanes; ++l) voxel::fold(p, lanes[l]);
    parts.sums.push_back(p.sum);
    parts.squares.push_back(p.square);
    parts.mins.push_back(p.lo);
    parts.maxs.push_back(p.hi);
  }
  return finish_channel_stats(parts, n);
}

void map_all(float* x, std::int64_t n, const voxel::IntensityMap& m) {
  for (std::int64_t i = 0; i < n; ++i) x[i] = voxel::apply_intensity(m, x[i]);
}

}  // namespace

TEST_CASE("voxel_intensity: the Gaussian tap sum is gaussian_filter's, bit for bit") {
  const auto x = random_image({2, 7, 9, 12}, 21);
  for (const std::array<double, 3> sigma :
       {std::array<double, 3>{0.8, 1.7, 2.6}, {3.0, 0.0, 0.6}, {0.0, 5.0, 0.0}, {9.0, 9.0, 9.0}}) {
    INFO("sigma " << sigma[0] << " " << sigma[1] << " " << sigma[2]);
    REQUIRE(same_bits(gaussian_filter(x, sigma), reference_gaussian(x, sigma)));
  }
}

TEST_CASE("voxel_intensity: the lane partials give channel_stats exactly") {
  for (const std::int64_t n : {std::int64_t{5}, std::int64_t{8}, std::int64_t{16384}, 3 * channel_stats_block + 13}) {
    const auto x = random_image({n}, static_cast<std::uint32_t>(n));
    const ChannelStats a = channel_stats(x.data(), n), b = reference_stats(x.data(), n);
    INFO("n " << n);
    CHECK(a.mean == b.mean);
    CHECK(a.std == b.std);
    CHECK(a.min == b.min);
    CHECK(a.max == b.max);
  }
}

TEST_CASE("voxel_intensity: the maps give brightness, contrast, normalisation and gamma") {
  const auto image = random_image({2, 6, 7, 9}, 31);
  const std::int64_t plane = image.numel() / 2;
  using Kind = voxel::IntensityMap::Kind;
  for (std::uint64_t seed = 0; seed < 4; ++seed) {
    INFO("seed " << seed);
    {
      const MultiplicativeBrightness t{.p = 1.0f};
      Sample s{image.clone(), {}};
      RandomStream a(seed, 1), b(seed, 1);
      t.apply(s, a);
      const auto f = t.draw(b, 2);
      auto expect = image.clone();
      for (int c = 0; c < 2; ++c) map_all(expect.data() + c * plane, plane, {.kind = Kind::multiply, .a = f[c]});
      CHECK(same_bits(s.image, expect));
    }
    for (const bool preserve : {true, false}) {
      const Contrast t{.p = 1.0f, .preserve_range = preserve};
      Sample s{image.clone(), {}};
      RandomStream a(seed, 2), b(seed, 2);
      t.apply(s, a);
      const auto f = t.draw(b, 2);
      auto expect = image.clone();
      for (int c = 0; c < 2; ++c) {
        const ChannelStats st = reference_stats(expect.data() + c * plane, plane);
        map_all(expect.data() + c * plane, plane,
                {.kind = Kind::contrast, .a = static_cast<float>(st.mean), .b = f[c], .lo = static_cast<float>(st.min),
                 .hi = static_cast<float>(st.max), .clamp = preserve});
      }
      CHECK(same_bits(s.image, expect));
    }
    for (const auto mode : {Normalize::Mode::zscore, Normalize::Mode::divide_by_max}) {
      Sample s{image.clone(), {}};
      RandomStream a(seed, 3);
      Normalize{.mode = mode}.apply(s, a);
      auto expect = image.clone();
      for (int c = 0; c < 2; ++c) {
        float* xc = expect.data() + c * plane;
        const ChannelStats st = reference_stats(xc, plane);
        if (mode == Normalize::Mode::zscore) {
          map_all(xc, plane, {.kind = Kind::shift_scale, .a = static_cast<float>(st.mean),
                              .b = static_cast<float>(1.0 / std::max(st.std, 1e-8))});
        } else {
          const double m = std::max(std::abs(st.min), std::abs(st.max));
          map_all(xc, plane, {.kind = Kind::multiply, .a = static_cast<float>(m > 0 ? 1.0 / m : 1.0)});
        }
      }
      CHECK(same_bits(s.image, expect));
    }
    for (const bool invert : {false, true}) {
      // Gamma's power is powf on the CPU and a rounded double pow here (and on the GPU): equal
      // but for a rare last bit, which retain_stats spreads thinly over the channel.
      const Gamma t{.p = 1.0f, .invert = invert};
      Sample s{image.clone(), {}};
      RandomStream a(seed, 4), b(seed, 4);
      t.apply(s, a);
      const auto g = t.draw(b, 2);
      auto expect = image.clone();
      for (int c = 0; c < 2; ++c) {
        float* xc = expect.data() + c * plane;
        if (invert) map_all(xc, plane, {.kind = Kind::multiply, .a = -1.0f});
        const ChannelStats st = reference_stats(xc, plane);
        map_all(xc, plane, {.kind = Kind::gamma, .a = static_cast<float>(st.max - st.min), .b = g[c],
                            .lo = static_cast<float>(st.min)});
        const ChannelStats now = reference_stats(xc, plane);
        map_all(xc, plane, {.kind = Kind::restore, .a = static_cast<float>(now.mean),
                            .b = static_cast<float>(st.std / (now.std + 1e-8)), .c = static_cast<float>(st.mean)});
        if (invert) map_all(xc, plane, {.kind = Kind::multiply, .a = -1.0f});
      }
      double worst = 0;
      for (std::int64_t i = 0; i < expect.numel(); ++i)
        worst = std::max(worst, static_cast<double>(std::abs(s.image.data()[i] - expect.data()[i])));
      INFO("invert " << invert << ": max |diff| " << worst);
      CHECK(worst <= 1e-5);  // values are O(1..5)
    }
  }
}

// -- The voxel moves, the resizes and the bias field, as the GPU kernels run them --------------

TEST_CASE("voxel_sampling: permuted_source, element by element, is permute_reverse and rot90") {
  const auto image = random_image({2, 4, 5, 6}, 41);
  const auto label = random_label({1, 4, 5, 6}, 42);
  // What the kernel does: out[i] = x[permuted_source(plan, i)] for every element.
  auto by_element = [](const auto& x, const std::array<int, 3>& source, const std::array<bool, 3>& reverse) {
    using T = std::remove_cvref_t<decltype(*x.data())>;
    const voxel::PermutePlan plan = transforms::detail::checked_permute_plan(x, source, reverse);
    auto out = Tensor<T>::empty({x.size(0), plan.out[0], plan.out[1], plan.out[2]});
    for (std::int64_t i = 0; i < out.numel(); ++i) out.data()[i] = x.data()[voxel::permuted_source(plan, i)];
    return out;
  };
  std::array<int, 3> source{0, 1, 2};
  do {
    for (int mask = 0; mask < 8; ++mask) {
      const std::array<bool, 3> reverse{(mask & 1) != 0, (mask & 2) != 0, (mask & 4) != 0};
      INFO("source " << source[0] << source[1] << source[2] << ", reverse mask " << mask);
      REQUIRE(same_bits(permute_reverse(image, source, reverse), by_element(image, source, reverse)));
      REQUIRE(same_bits(permute_reverse(label, source, reverse), by_element(label, source, reverse)));
    }
  } while (std::next_permutation(source.begin(), source.end()));
  for (const Plane plane : {Plane{0, 1}, Plane{2, 0}, Plane{1, 2}})
    for (int k = -1; k <= 4; ++k) {
      const transforms::detail::QuarterTurn q = transforms::detail::quarter_turn(k, plane);
      INFO("k " << k << ", plane " << plane[0] << plane[1]);
      CHECK(q.identity == (((k % 4) + 4) % 4 == 0));
      if (!q.identity) REQUIRE(same_bits(rot90(image, k, plane), by_element(image, q.source, q.reverse)));
    }
}

TEST_CASE("voxel_sampling: resized_value, element by element, is resize_nearest_exact and resize_trilinear") {
  const auto image = random_image({2, 7, 9, 11}, 43);
  const Index3 in{7, 9, 11};
  for (const Index3 size : {Index3{3, 4, 5}, Index3{7, 9, 11}, Index3{13, 5, 20}, Index3{1, 1, 1}, Index3{2, 18, 6}}) {
    for (const bool linear : {false, true}) {
      INFO("size " << index3_text(size) << (linear ? ", trilinear" : ", nearest-exact"));
      const transforms::detail::Taps taps = transforms::detail::separable_taps(in, size, linear);
      const voxel::ResizeSpec spec{{in[0], in[1], in[2]}, {size[0], size[1], size[2]}, taps.i0.data(),
                                   linear ? taps.i1.data() : nullptr, linear ? taps.t.data() : nullptr, linear};
      auto out = Tensor<float>::empty({2, size[0], size[1], size[2]});
      for (std::int64_t i = 0; i < out.numel(); ++i) out.data()[i] = voxel::resized_value(spec, image.data(), i);
      REQUIRE(same_bits(linear ? resize_trilinear(image, size) : resize_nearest_exact(image, size), out));
    }
  }
}

TEST_CASE("voxel_intensity: the bias field's folds, run as the kernels run them, are RandomBiasField's") {
  const auto image = random_image({2, 6, 7, 9}, 44);
  const Index3 size{6, 7, 9};
  for (const int degree : {0, 1, 3, 6}) {
    const RandomBiasField t{.p = 1.0f, .degree = degree, .coefficients = {-0.2f, 0.3f}};
    Sample s{image.clone(), {}};
    RandomStream a(5, 1), b(5, 1);
    t.apply(s, a);
    const std::vector<double> coefficients = t.draw(b);
    REQUIRE(a.position() == b.position());
    REQUIRE(!coefficients.empty());
    // The three kernels: g per plane, h per row, then each voxel's gain on every channel.
    const auto c = transforms::detail::dense_bias_coefficients(degree, coefficients);
    const auto pz = transforms::detail::legendre_table(size[0], degree),
               py = transforms::detail::legendre_table(size[1], degree),
               px = transforms::detail::legendre_table(size[2], degree);
    const std::int64_t stride = degree + 1, n = size[0] * size[1] * size[2];
    std::vector<double> g(static_cast<std::size_t>(size[0] * stride * stride)),
        rows(static_cast<std::size_t>(size[0] * size[1] * stride));
    for (std::int64_t at = 0; at < static_cast<std::int64_t>(g.size()); ++at) {
      const auto k = static_cast<int>(at % stride), j = static_cast<int>((at / stride) % stride);
      if (j + k <= degree) g[at] = voxel::bias_plane_term(c.data(), degree, j, k, &pz[at / (stride * stride) * stride]);
    }
    for (std::int64_t at = 0; at < static_cast<std::int64_t>(rows.size()); ++at) {
      const std::int64_t row = at / stride;
      rows[at] = voxel::bias_row_term(&g[row / size[1] * stride * stride], degree, static_cast<int>(at % stride),
                                      &py[row % size[1] * stride]);
    }
    auto expect = image.clone();
    for (std::int64_t i = 0; i < n; ++i) {
      const float gain =
          std::exp(voxel::bias_log_point(&rows[i / size[2] * stride], degree, &px[i % size[2] * stride]));
      for (std::int64_t ch = 0; ch < 2; ++ch) expect.data()[ch * n + i] = voxel::mul(expect.data()[ch * n + i], gain);
    }
    INFO("degree " << degree);
    REQUIRE(same_bits(s.image, expect));
    auto f = Tensor<float>::empty({size[0], size[1], size[2]});
    for (std::int64_t i = 0; i < n; ++i)
      f.data()[i] = voxel::bias_log_point(&rows[i / size[2] * stride], degree, &px[i % size[2] * stride]);
    REQUIRE(same_bits(bias_field_log(size, degree, coefficients), f));
  }
}

namespace {

/// Applies `t` to a copy of `s0` with stream (seed, 7) and returns it; `after` gets the stream.
template <class T>
Sample applied(const T& t, const Sample& s0, std::uint64_t seed, RandomStream& after) {
  Sample s{s0.image.clone(), s0.label.defined() ? s0.label.clone() : Tensor<std::uint8_t>{}};
  after = RandomStream(seed, 7);
  t.apply(s, after);
  return s;
}

void require_same(const Sample& a, const Sample& b) {
  REQUIRE(same_bits(a.image, b.image));
  REQUIRE(a.label.defined() == b.label.defined());
  if (a.label.defined()) REQUIRE(same_bits(a.label, b.label));
}

}  // namespace

TEST_CASE("voxel_sampling: the draws of the moves, crops and resizes are what their applies draw and do") {
  // The GPU versions call draw() and then do what it says: that must be the CPU apply exactly,
  // in result and in the random words consumed.
  const Sample cube{random_image({2, 7, 7, 7}, 51), random_label({1, 7, 7, 7}, 52)};
  const Sample box{random_image({2, 6, 8, 9}, 53), random_label({1, 6, 8, 9}, 54)};
  for (std::uint64_t seed = 0; seed < 8; ++seed) {
    INFO("seed " << seed);
    RandomStream a(0, 0), b(seed, 7);
    {
      const RandomFlip3D t{.p = 0.5f, .axes = {true, false, true}};
      const Sample got = applied(t, box, seed, a);
      Sample want = box;
      flip(want, t.draw(b));
      CHECK(a.position() == b.position());
      require_same(got, want);
    }
    for (const bool square_only : {true, false}) {
      const RandomQuarterTurn3D t{.p = 0.7f, .square_only = square_only};
      for (const Sample* s0 : {&cube, &box}) {
        const Sample got = applied(t, *s0, seed, a);
        b = RandomStream(seed, 7);
        const auto d = t.draw(s0->spatial(), b);
        Sample want = *s0;
        if (d.turn) want = Sample{rot90(s0->image, d.k, d.plane), rot90(s0->label, d.k, d.plane)};
        CHECK(a.position() == b.position());
        require_same(got, want);
      }
    }
    auto check_grid = [&](const auto& t, const std::optional<SamplingGrid>& grid, ImageInterpolation im,
                          LabelInterpolation lm) {
      const Sample got = applied(t, box, seed, a);
      Sample want = box;
      if (grid) resample(want, *grid, im, lm);
      CHECK(a.position() == b.position());
      require_same(got, want);
    };
    {
      const RandomRotation3D t{.degrees = 50.0f, .p = 0.6f};
      b = RandomStream(seed, 7);
      check_grid(t, t.draw(box.spatial(), b), t.image_interpolation, t.label_interpolation);
    }
    {
      const RandomScale t{.p = 0.6f, .anisotropic = true};
      b = RandomStream(seed, 7);
      check_grid(t, t.draw(box.spatial(), b), t.image_interpolation, t.label_interpolation);
    }
    for (const auto& t :
         {RandomResizedCrop3D{.size = {5, 6, 7}}, RandomResizedCrop3D{.size = {5, 6, 7}, .scale = {3.0f, 4.0f}}}) {
      b = RandomStream(seed, 7);
      check_grid(t, t.draw(box.spatial(), b), ImageInterpolation::linear, LabelInterpolation::nearest);
    }
    {
      const RandomCrop t{.size = {4, 10, 5}};
      const Sample got = applied(t, box, seed, a);
      b = RandomStream(seed, 7);
      Sample want = box;
      crop_or_pad(want, t.draw(box.spatial(), b), t.size);
      CHECK(a.position() == b.position());
      require_same(got, want);
    }
    {
      const ForegroundCrop t{.size = {4, 5, 6}, .foreground_fraction = 0.6f, .margin = {2, 2, 2}};
      const Sample got = applied(t, box, seed, a);
      b = RandomStream(seed, 7);
      Sample want = box;
      crop_or_pad(want, t.draw(box.spatial(), box.label, b), t.size);
      CHECK(a.position() == b.position());
      require_same(got, want);
    }
    {
      const SimulateLowResolution t{.p = 0.8f, .zoom = {0.4f, 0.9f}, .p_per_channel = 0.5f};
      const Sample got = applied(t, box, seed, a);
      b = RandomStream(seed, 7);
      const auto draws = t.draw(box.spatial(), 2, b);
      CHECK(a.position() == b.position());
      Sample want{box.image.clone(), box.label};
      for (std::int64_t c = 0; c < static_cast<std::int64_t>(draws.size()); ++c)
        if (draws[static_cast<std::size_t>(c)].fire)
          want.image.slice(0, c, c + 1).copy_from(
              resize_trilinear(resize_nearest_exact(box.image.slice(0, c, c + 1).contiguous(),
                                                    draws[static_cast<std::size_t>(c)].low),
                               box.spatial()));
      require_same(got, want);
    }
    {
      const RandomBiasField t{.p = 0.5f};
      (void)applied(t, box, seed, a);
      b = RandomStream(seed, 7);
      (void)t.draw(b);
      CHECK(a.position() == b.position());
    }
  }
  // The draw-free boxes.
  CHECK(CenterCrop{.size = {4, 10, 5}}.begin({6, 8, 9}) == Index3{1, -1, 2});
  CHECK(PadToSize{.size = {8, 4, 10}}.box({6, 8, 9}) == std::array<Index3, 2>{Index3{-1, 0, 0}, Index3{8, 8, 10}});
}
