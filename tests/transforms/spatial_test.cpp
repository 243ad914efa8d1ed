// transforms/spatial.hpp: the one-pass sampler against scipy.ndimage.affine_transform (image
// linear, label nearest and per-class linear), and the fused SpatialTransform: alignment of
// image and label, labels stay in the label set, zoom statistics, reproducibility.
#include "support.hpp"

#include <numbers>
#include <set>
#include <sstream>

using namespace medseg;
using namespace medseg::transforms;
using namespace transforms_test;

namespace {
/// Comma-separated, with every digit a double has (the reference must use our exact matrix).
std::string join(const double* v, int n) {
  std::ostringstream s;
  s.precision(17);
  for (int i = 0; i < n; ++i) s << (i ? "," : "") << v[i];
  return s.str();
}
}  // namespace

TEST_CASE("sample_image and sample_label match scipy affine_transform") {
  struct Affine {
    std::string name;
    Index3 in, out;
    Mat3 matrix;
  };
  const std::vector<Affine> cases = {
      {"rotscale", {12, 14, 16}, {12, 14, 16},
       Mat3::plane_rotation(0, 1, 0.4) * Mat3::plane_rotation(1, 2, -0.7) * Mat3::diagonal(1.2, 0.9, 1.1)},
      {"shrink", {10, 13, 11}, {7, 9, 15}, Mat3::plane_rotation(0, 2, 1.1) * Mat3::diagonal(0.8, 0.8, 0.8)},
  };
  std::vector<Case> refs;
  std::vector<SamplingGrid> grids;
  for (const auto& c : cases) {
    SamplingGrid g = SamplingGrid::centered(c.in, c.out, c.matrix);
    g.in_center[1] += 0.3;  // off the voxel grid, so nothing lands exactly on a voxel
    double m[9], offset[3];
    for (int i = 0; i < 3; ++i) {
      offset[i] = g.in_center[i];
      for (int j = 0; j < 3; ++j) {
        m[3 * i + j] = c.matrix.m[i][j];
        offset[i] -= c.matrix.m[i][j] * g.out_center[j];
      }
    }
    grids.push_back(g);
    refs.push_back({c.name, str("affine shape=2,", c.in[0], ",", c.in[1], ",", c.in[2], " out=", c.out[0], ",", c.out[1],
                                ",", c.out[2], " matrix=", join(m, 9), " offset=", join(offset, 3), " seed=3")});
  }
  const auto dir = make_references(refs, "affine");
  for (std::size_t k = 0; k < cases.size(); ++k) {
    const auto& c = cases[k];
    INFO(c.name);
    const auto image = read_raw<float>(dir / (c.name + ".in.raw"), {2, c.in[0], c.in[1], c.in[2]});
    const auto label = read_raw<std::uint8_t>(dir / (c.name + ".label.raw"), {1, c.in[0], c.in[1], c.in[2]});
    const Shape out1{1, c.out[0], c.out[1], c.out[2]};
    const auto want = read_raw<float>(dir / (c.name + ".out.raw"), {2, c.out[0], c.out[1], c.out[2]});
    CHECK(max_abs_diff(sample_image(image, grids[k]), want) < 1e-5);
    const auto nearest = read_raw<std::uint8_t>(dir / (c.name + ".label_nearest.raw"), out1);
    const auto linear = read_raw<std::uint8_t>(dir / (c.name + ".label_linear.raw"), out1);
    CHECK(count_different(sample_label(label, grids[k], LabelInterpolation::nearest), nearest) == 0);
    // Near-ties of two classes' weights may round either way: allow 0.2% of voxels.
    CHECK(count_different(sample_label(label, grids[k], LabelInterpolation::per_class_linear), linear) <=
          out1.product() / 500);
  }
  fs::remove_all(dir);
}

TEST_CASE("an identity grid is an exact crop and pad") {
  const Sample s = ramp_sample({6, 7, 8});
  const auto grid = SamplingGrid::centered({6, 7, 8}, {4, 9, 8});
  const auto out = sample_image(s.image, grid);
  // Offsets floor((n_in - n_out) / 2): D starts at 1, H at -1 (one padded row), W at 0.
  for (std::int64_t z = 0; z < 4; ++z)
    for (std::int64_t y = 0; y < 9; ++y)
      for (std::int64_t x = 0; x < 8; ++x) {
        const std::int64_t iy = y - 1;
        const float want = iy < 0 || iy >= 7 ? 0.0f : s.image(0, z + 1, iy, x);
        REQUIRE(out(0, z, y, x) == want);
      }
}

TEST_CASE("SpatialTransform keeps image and label aligned under rotation and scaling") {
  const Sample s0 = blob_sample({28, 30, 32});
  for (int t = 0; t < 5; ++t) {
    Sample s = s0;
    RandomStream rng(21, static_cast<std::uint64_t>(t));
    SpatialTransform{.patch_size = {24, 24, 24}, .p_rotation = 1.0f, .p_scale = 1.0f, .scale = {0.9f, 1.1f}}.apply(s, rng);
    REQUIRE(s.image.shape() == Shape{1, 24, 24, 24});
    // Only boundary voxels may disagree (one-hot vs intensity interpolation round a
    // boundary differently): a few percent of the foreground.
    CHECK(misaligned_per_boundary(s) < 0.2);
  }
}

TEST_CASE("the alignment measure catches a label shifted by one voxel") {
  const Sample s0 = blob_sample({28, 30, 32});
  CHECK(misaligned_per_boundary(s0) == 0.0);
  Sample shifted = s0;
  shifted.label = crop_or_pad(s0.label, {0, 0, 1}, {28, 30, 32});
  CHECK(misaligned_per_boundary(shifted) > 0.3);
}

TEST_CASE("SpatialTransform with elastic deformation keeps alignment and the label set") {
  Sample s0 = blob_sample({24, 24, 24});
  // Ids {0, 3, 7}: the label set every output voxel must stay in.
  for (std::int64_t i = 0; i < s0.label.numel(); ++i)
    s0.label.data()[i] = s0.label.data()[i] ? (s0.image.data()[i] > 0.8f ? 7 : 3) : 0;
  for (const auto interpolation : {LabelInterpolation::nearest, LabelInterpolation::per_class_linear}) {
    Sample s = s0;
    RandomStream rng(4, 0);
    SpatialTransform{.p_rotation = 1.0f, .p_scale = 0.0f, .p_elastic = 1.0f, .elastic_alpha = {60, 60},
                     .elastic_sigma = {4, 4}, .label_interpolation = interpolation}
        .apply(s, rng);
    std::set<int> ids;
    std::int64_t bad = 0;
    for (std::int64_t i = 0; i < s.label.numel(); ++i) {
      ids.insert(s.label.data()[i]);
      bad += (s.image.data()[i] > 0.5f) != (s.label.data()[i] != 0);
    }
    CHECK(std::includes(std::set<int>{0, 3, 7}.begin(), std::set<int>{0, 3, 7}.end(), ids.begin(), ids.end()));
    CHECK(ids.count(7) == 1);
    CHECK(static_cast<double>(bad) < 0.2 * static_cast<double>(boundary_voxels(s)));
    CHECK(count_different(s.image, s0.image) > 0);
  }
}

TEST_CASE("elastic displacement has the smoothed-noise scale alpha sets") {
  RandomStream rng(8, 1);
  const auto field = elastic_displacement({16, 16, 16}, 100.0, 3.0, rng);
  double sum2 = 0;
  for (std::int64_t i = 0; i < field.numel(); ++i) sum2 += double(field.data()[i]) * field.data()[i];
  const double rms = std::sqrt(sum2 / static_cast<double>(field.numel()));
  // Uniform [-1, 1] noise (variance 1/3) smoothed by a 3-D Gaussian of sigma 3 keeps a variance
  // of about (1/3) / (2 sqrt(pi) sigma)^3 = 1/3 / 1150: rms about 0.017, times alpha.
  CHECK(rms > 0.5 * 1.7);
  CHECK(rms < 2.0 * 1.7);
}

TEST_CASE("SpatialTransform zooms the foreground by the cube of the scale") {
  const Sample s0 = blob_sample({32, 32, 32});
  Sample s = s0;
  RandomStream rng(2, 2);
  SpatialTransform{.p_rotation = 0.0f, .p_scale = 1.0f, .scale = {1.25f, 1.25f}}.apply(s, rng);
  const double ratio = static_cast<double>(foreground(s)) / static_cast<double>(foreground(s0));
  CHECK(ratio == Approx(1.0 / (1.25 * 1.25 * 1.25)).epsilon(0.08));
}

TEST_CASE("SpatialTransform with nothing firing is an exact centre crop") {
  const Sample s0 = ramp_sample({10, 10, 10});
  Sample s = s0;
  RandomStream rng(0, 0);
  SpatialTransform{.patch_size = {6, 6, 6}, .p_rotation = 0.0f, .p_scale = 0.0f}.apply(s, rng);
  for (std::int64_t z = 0; z < 6; ++z) REQUIRE(s.image(0, z, 0, 0) == s0.image(0, z + 2, 2, 2));
  CHECK(count_different(s.label, crop_or_pad(s0.label, {2, 2, 2}, {6, 6, 6})) == 0);
}

TEST_CASE("SpatialTransform repeats with the same stream and any thread count") {
  const Sample s0 = blob_sample({20, 20, 20});
  const SpatialTransform t{.p_rotation = 1.0f, .p_scale = 1.0f, .p_elastic = 1.0f, .elastic_sigma = {3, 3}};
  auto run = [&] {
    Sample s = s0;
    RandomStream rng(9, 9);
    t.apply(s, rng);
    return s;
  };
  const int before = num_threads();
  set_num_threads(1);
  const Sample a = run();
  set_num_threads(3);
  const Sample b = run();
  set_num_threads(before);
  CHECK(count_different(a.image, b.image) == 0);
  CHECK(count_different(a.label, b.label) == 0);
}

TEST_CASE("sample_image names a wrong displacement shape") {
  const Sample s = ramp_sample({4, 4, 4});
  auto grid = SamplingGrid::centered({4, 4, 4}, {4, 4, 4});
  grid.displacement = Tensor<float>::zeros({3, 4, 4, 5});
  CHECK_THROWS_WITH(sample_image(s.image, grid), Catch::Contains("grid.displacement") && Catch::Contains("[3,4,4,4]"));
}

TEST_CASE("SpatialTransform with crop_size places the patch as ForegroundCrop would") {
  // A volume with a small foreground cube: every patch of the fused transform must see it
  // when oversampling is certain, and with nothing firing it equals the two-step chain.
  Sample s0 = ramp_sample({40, 40, 40});
  s0.label = Tensor<std::uint8_t>::zeros({1, 40, 40, 40});
  // Far enough from the edges that no crop is clamped away from it.
  for (int z = 18; z < 21; ++z)
    for (int y = 10; y < 13; ++y)
      for (int x = 25; x < 28; ++x) s0.label(0, z, y, x) = 1;
  for (int t = 0; t < 8; ++t) {
    Sample two_step = s0, fused = s0;
    RandomStream r1(6, static_cast<std::uint64_t>(t)), r2(6, static_cast<std::uint64_t>(t));
    ForegroundCrop{.size = {20, 22, 24}, .foreground_fraction = 1.0f, .margin = {8, 10, 12}}.apply(two_step, r1);
    SpatialTransform{.patch_size = {12, 12, 12}, .p_rotation = 0.0f, .p_scale = 0.0f}.apply(two_step, r1);
    SpatialTransform{.patch_size = {12, 12, 12}, .crop_size = {20, 22, 24}, .foreground_fraction = 1.0f,
                     .p_rotation = 0.0f, .p_scale = 0.0f}
        .apply(fused, r2);
    REQUIRE(fused.image.shape() == Shape{1, 12, 12, 12});
    CHECK(count_different(fused.image, two_step.image) == 0);
    CHECK(count_different(fused.label, two_step.label) == 0);
    CHECK(foreground(fused) > 0);
    Sample rotated = s0;
    RandomStream r3(7, static_cast<std::uint64_t>(t));
    SpatialTransform{.patch_size = {12, 12, 12}, .crop_size = {20, 22, 24}, .foreground_fraction = 1.0f,
                     .p_rotation = 1.0f, .p_scale = 1.0f, .scale = {0.9f, 1.1f}}
        .apply(rotated, r3);
    CHECK(foreground(rotated) > 0);
  }
}
