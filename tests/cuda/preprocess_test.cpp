// The Cuda preprocessing ops (backends/cuda/preprocess.hpp) against the CPU ones on the same
// random inputs: resampling of odd-sized volumes (shrink and grow, orders 0, 1, 3, both grid
// modes and boundaries, int16 and float, with a fused window), per-label segmentation
// resampling, the intensity normalisations and their statistics, crop to nonzero, label maps.
// Order 0, crops and label ops must be equal; the interpolations and normalisations within
// 1e-5 of the output's scale (the kernels round as the CPU does, so they are expected to be
// bit-identical; the reported max difference says whether they are).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "compare.hpp"
#include "medseg/cuda.hpp"
#include "medseg/preprocess/crop.hpp"
#include "medseg/preprocess/intensity.hpp"
#include "medseg/preprocess/labels.hpp"
#include "medseg/preprocess/resample.hpp"
#include "medseg/preprocess/segmentation_resample.hpp"

using namespace medseg;
using namespace medseg::preprocess;

namespace {

/// Uniform values in [lo, hi] (integers for integral T), fixed seed.
template <class T>
Tensor<T> random_volume(const Shape& shape, double lo, double hi, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  auto t = Tensor<T>::empty(shape);
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    const double v = u(rng);
    t.data()[i] = static_cast<T>(std::is_integral_v<T> ? std::floor(v) : v);
  }
  return t;
}

/// A label map of `labels` in blobs (runs along W), so interpolated masks have edges.
template <class L>
Tensor<L> random_labels(const Shape& shape, const std::vector<L>& labels, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<std::size_t> pick(0, labels.size() - 1);
  std::uniform_int_distribution<int> run(1, 9);
  auto t = Tensor<L>::empty(shape);
  std::int64_t i = 0;
  while (i < t.numel()) {
    const L v = labels[pick(rng)];
    for (int r = run(rng); r > 0 && i < t.numel(); --r) t.data()[i++] = v;
  }
  return t;
}

/// The shared comparison (compare.hpp): relative to the data's magnitude, so values that
/// cancel to near zero (order 3) are held to it too.
using cuda_test::check_close;

template <class T>
void require_equal(const Tensor<T>& cpu, const Tensor<T, Cuda>& gpu) {
  REQUIRE(gpu.shape() == cpu.shape());
  const auto g = gpu.to_vector();
  std::int64_t bad = 0, first_bad = -1;
  for (std::int64_t i = 0; i < cpu.numel(); ++i)
    if (g[static_cast<std::size_t>(i)] != cpu.data()[i]) {
      if (first_bad < 0) first_bad = i;
      ++bad;
    }
  INFO("shape " << cpu.shape().to_string() << ": " << bad << " elements differ, first at " << first_bad);
  CHECK(bad == 0);
}

void require_near(double gpu, double cpu, double rel) {
  INFO("gpu " << gpu << ", cpu " << cpu);
  CHECK(std::abs(gpu - cpu) <= rel * std::max(1.0, std::abs(cpu)));
}

std::string describe(const ResampleOptions& o, const Extent3& in, const Extent3& out) {
  return "order " + std::to_string(o.order) + (o.grid == GridMode::corners ? ", corners" : ", extent") +
         (o.boundary == Boundary::mirror ? ", mirror" : ", nearest") + ", separate axis " +
         std::to_string(o.separate_axis) + " order " + std::to_string(o.separate_order) + ", [" +
         std::to_string(in[0]) + "," + std::to_string(in[1]) + "," + std::to_string(in[2]) + "] -> [" +
         std::to_string(out[0]) + "," + std::to_string(out[1]) + "," + std::to_string(out[2]) + "]";
}

// Shrink D and W and grow H; grow every axis (W too: the separable order); a one-voxel axis.
const std::vector<std::pair<Extent3, Extent3>> resample_shapes{
    {{37, 41, 29}, {20, 50, 17}}, {{13, 11, 9}, {29, 23, 40}}, {{1, 41, 35}, {3, 20, 36}}};

}  // namespace

TEST_CASE("Cuda resize equals the CPU resize: every order, grid mode, boundary, shrink and grow", "[preprocess]") {
  for (const auto& [in, out] : resample_shapes) {
    const auto ct = random_volume<std::int16_t>({in[0], in[1], in[2]}, -1024, 2000, 1);
    const auto f = random_volume<float>({in[0], in[1], in[2]}, -3, 5, 2);
    const auto ct_d = ct.to<Cuda>();
    const auto f_d = f.to<Cuda>();
    for (const int order : {0, 1, 3})
      for (const GridMode grid : {GridMode::corners, GridMode::extent})
        for (const Boundary boundary : {Boundary::mirror, Boundary::nearest}) {
          const ResampleOptions o{.order = order, .grid = grid, .boundary = boundary};
          INFO(describe(o, in, out));
          check_close(resize(f, out, o), resize(f_d, out, o));
          check_close(resize(ct, out, o), resize(ct_d, out, o));
          if (order == 0) {  // the gather keeps the input's own type, exactly
            require_equal(resize<std::int16_t>(ct, out, o), resize<std::int16_t>(ct_d, out, o));
            require_equal(resize<float>(f, out, o), resize<float>(f_d, out, o));
          }
        }
  }
}

TEST_CASE("Cuda resize fuses an HU window or an affine into its read, as the CPU does", "[preprocess]") {
  const Extent3 in{37, 41, 29}, out{20, 50, 17};
  auto ct = random_volume<std::int16_t>({in[0], in[1], in[2]}, -1400, 900, 3);
  const auto ct_d = ct.to<Cuda>();
  const HuWindow window{.lo = -1250, .hi = 250};
  const HuWindow window_255{.lo = -160, .hi = 240, .scale_255 = true};
  const Affine affine{.shift = 40, .scale = 1.0f / 350};
  for (const int order : {0, 1, 3}) {
    const ResampleOptions o{.order = order};
    INFO(describe(o, in, out));
    check_close(resize(ct, out, o, window), resize(ct_d, out, o, window));
    check_close(resize(ct, out, o, window_255), resize(ct_d, out, o, window_255));
    check_close(resize(ct, out, o, affine), resize(ct_d, out, o, affine));
  }
  // W grows: the separable order of sums, with the window.
  check_close(resize(ct, {9, 20, 60}, {.order = 1}, window), resize(ct_d, {9, 20, 60}, {.order = 1}, window));
}

TEST_CASE("Cuda resize: channels, anisotropic separate axes, zoom, and one plan reused", "[preprocess]") {
  const Extent3 in{19, 33, 37};
  const auto x = random_volume<float>({2, in[0], in[1], in[2]}, -1, 1, 4);
  const auto x_d = x.to<Cuda>();
  for (const int order : {1, 3})
    for (const int axis : {0, 1, 2})
      for (const int separate_order : {0, 1}) {
        const ResampleOptions o{.order = order, .grid = GridMode::extent, .boundary = Boundary::nearest,
                                .separate_axis = axis, .separate_order = separate_order};
        INFO(describe(o, in, {31, 17, 20}));
        check_close(resize(x, {31, 17, 20}, o), resize(x_d, {31, 17, 20}, o));
      }
  check_close(zoom(x, {0.5, 1.7, 0.9}), zoom(x_d, {0.5, 1.7, 0.9}));

  // One plan, two inputs of the plan's extent; a wrong output shape is refused.
  const cuda::ResamplePlan plan(in, {10, 12, 14}, {.order = 1});
  auto out = Tensor<float, Cuda>::empty({2, 10, 12, 14});
  plan.run(x_d, out);
  check_close(resize(x, {10, 12, 14}), out);
  const auto y = random_volume<float>({2, in[0], in[1], in[2]}, 0, 9, 5);
  plan.run(y.to<Cuda>(), out);
  check_close(resize(y, {10, 12, 14}), out);
  auto wrong = Tensor<float, Cuda>::empty({2, 10, 12, 15});
  CHECK_THROWS_AS(plan.run(x_d, wrong), Error);
  CHECK_THROWS_AS(resize<std::int16_t>(random_volume<std::int16_t>({4, 4, 4}, 0, 9, 6).to<Cuda>(), {2, 2, 2},
                                       {.order = 1}),
                  Error);
}

TEST_CASE("Cuda per-label segmentation resampling equals the CPU's", "[preprocess]") {
  const Extent3 in{23, 31, 27};
  const auto seg = random_labels<std::uint8_t>({in[0], in[1], in[2]}, {0, 1, 2, 5}, 7);
  const auto seg_d = seg.to<Cuda>();
  for (const int order : {0, 1, 3})
    for (const int axis : {-1, 0}) {
      const SegmentationResampleOptions o{.order = order};
      INFO("order " << order << ", separate axis " << axis);
      require_equal(resample_segmentation(seg, {14, 40, 19}, o, axis), resample_segmentation(seg_d, {14, 40, 19}, o, axis));
    }
  // int32 labels without a 0, corners grid, mirror boundary.
  const auto seg32 = random_labels<std::int32_t>({in[0], in[1], in[2]}, {3, 7, 1000}, 8);
  const SegmentationResampleOptions corners{.order = 1, .grid = GridMode::corners, .boundary = Boundary::mirror};
  require_equal(resample_segmentation(seg32, {30, 16, 33}, corners), resample_segmentation(seg32.to<Cuda>(), {30, 16, 33}, corners));
  CHECK(unique_labels(seg_d) == std::vector<std::uint8_t>{0, 1, 2, 5});
  CHECK(unique_labels(seg32.to<Cuda>()) == std::vector<std::int32_t>{3, 7, 1000});
}

TEST_CASE("Cuda HU window, range and clip + min-max normalisation equal the CPU's", "[preprocess]") {
  // 183915 elements: three of the CPU's reduction blocks, a partial run, a partial lane.
  const Shape shape{67, 45, 61};
  const auto ct = random_volume<std::int16_t>(shape, -1500, 3000, 9);
  const auto ct_d = ct.to<Cuda>();
  auto f = random_volume<float>(shape, -2, 7, 10);
  f.data()[17] = std::numeric_limits<float>::quiet_NaN();  // the window reads NaN as its lo (or nan_value)
  const auto f_d = f.to<Cuda>();
  const HuWindow window{.lo = -1250, .hi = 250};
  const HuWindow odd{.lo = -1, .hi = 3, .scale_255 = true, .nan_value = 2.5f};
  check_close(hu_window(ct, window), hu_window(ct_d, window));
  check_close(hu_window(f, odd), hu_window(f_d, odd));
  check_close(normalize_range(ct), normalize_range(ct_d));
  check_close(normalize_range(ct, -1000.0f, 1000.0f), normalize_range(ct_d, -1000.0f, 1000.0f));
  check_close(clip_minmax(ct, -200, 400), clip_minmax(ct_d, -200, 400));
  check_close(clip_minmax(f, 0, 3), clip_minmax(f_d, 0, 3));
  CHECK_THROWS_AS(hu_window(ct_d, HuWindow{.lo = 5, .hi = 5}), Error);
}

TEST_CASE("Cuda moments and z-scores equal the CPU's (blocks, runs and lanes as the CPU sums them)", "[preprocess]") {
  const Shape shape{67, 45, 61};
  auto ct = random_volume<std::int16_t>(shape, -1024, 1500, 11);
  for (std::int64_t i = 0; i < ct.numel(); i += 3) ct.data()[i] = 0;  // zeros for the masked variants
  const auto ct_d = ct.to<Cuda>();
  const auto f = random_volume<float>(shape, 100, 140, 12);  // far from zero: the shift matters
  const auto f_d = f.to<Cuda>();
  for (const bool nonzero : {false, true}) {
    INFO("nonzero_only " << nonzero);
    const Moments c = moments(ct, nonzero), g = moments(ct_d, nonzero);
    CHECK(g.count == c.count);
    require_near(g.mean, c.mean, 1e-12);
    require_near(g.std, c.std, 1e-12);
    check_close(zscore(ct, nonzero), zscore(ct_d, nonzero));
    const Moments cf = moments(f, nonzero), gf = moments(f_d, nonzero);
    require_near(gf.mean, cf.mean, 1e-12);
    require_near(gf.std, cf.std, 1e-12);
    check_close(zscore(f, nonzero), zscore(f_d, nonzero));
  }
  const Moments dataset{.mean = 12.5, .std = 310.0};
  check_close(zscore(ct, dataset), zscore(ct_d, dataset));
  // A small input (one partial run) and an all-zero one.
  const auto small = random_volume<float>({3, 5, 7}, -4, 4, 13);
  check_close(zscore(small), zscore(small.to<Cuda>()));
  const auto zeros = Tensor<std::int16_t>::zeros({4, 5, 6});
  CHECK(moments(zeros.to<Cuda>(), true).count == 0);
}

TEST_CASE("Cuda CT statistics and percentiles equal the CPU's", "[preprocess]") {
  const Shape shape{41, 37, 53};
  const auto ct = random_volume<std::int16_t>(shape, -1024, 1800, 14);
  const auto fg = random_labels<std::uint8_t>(shape, {0, 1, 2}, 15);
  const auto ct_d = ct.to<Cuda>();
  const auto fg_d = fg.to<Cuda>();
  const CtStats c = ct_statistics(ct, fg), g = ct_statistics(ct_d, fg_d);
  require_near(g.mean, c.mean, 1e-12);
  require_near(g.std, c.std, 1e-12);
  require_near(g.lower, c.lower, 1e-12);
  require_near(g.upper, c.upper, 1e-12);
  check_close(ct_normalize(ct, c), ct_normalize(ct_d, g));
  // Whole-tensor percentiles of floats with negatives, ties and an exact rank.
  const auto f = random_volume<float>({9, 11, 13}, -50, 50, 16);
  std::vector<float> values(f.data(), f.data() + f.numel());
  const auto f_d = f.to<Cuda>();
  for (const double q : {0.0, 0.5, 25.0, 50.0, 99.5, 100.0}) {
    std::vector<float> v = values;
    INFO("q " << q);
    require_near(percentile(f_d, q), percentile(v, q), 1e-12);
  }
  const auto empty_fg = Tensor<std::uint8_t>::zeros(shape).to<Cuda>();
  CHECK_THROWS_AS(ct_statistics(ct_d, empty_fg), Error);
}

TEST_CASE("Cuda crop to nonzero equals the CPU's, channels and empty volumes included", "[preprocess]") {
  auto ct = Tensor<std::int16_t>::full({30, 41, 37}, std::int16_t(-1024));
  const auto body = random_volume<std::int16_t>({30, 41, 37}, -900, 900, 17);
  for (std::int64_t d = 4; d < 27; ++d)
    for (std::int64_t h = 9; h < 33; ++h)
      for (std::int64_t w = 2; w < 35; ++w) ct(d, h, w) = body(d, h, w);
  const auto ct_d = ct.to<Cuda>();
  const Box box = nonzero_box(ct, std::int16_t(-1024));
  CHECK(nonzero_box(ct_d, std::int16_t(-1024)) == box);
  require_equal(crop(ct, box), crop(ct_d, box));

  auto two = Tensor<float>::zeros({2, 12, 17, 19});
  two(0, 3, 4, 5) = 1.5f;
  two(1, 9, 15, 2) = -2.0f;
  const auto two_d = two.to<Cuda>();
  CHECK(nonzero_box(two_d) == nonzero_box(two));
  require_equal(crop(two, nonzero_box(two)), crop(two_d, nonzero_box(two_d)));
  const auto none = Tensor<std::uint8_t>::zeros({5, 6, 7});
  CHECK(nonzero_box(none.to<Cuda>()) == Box{{0, 0, 0}, {5, 6, 7}});
  CHECK_THROWS_AS(crop(ct_d, Box{{0, 0, 0}, {31, 5, 5}}), Error);
}

TEST_CASE("Cuda label remapping and ignore labels equal the CPU's", "[preprocess]") {
  const auto seg = random_labels<std::uint8_t>({17, 23, 29}, {0, 1, 2, 3, 7}, 18);
  const auto seg_d = seg.to<Cuda>();
  const LabelMapping<std::uint8_t> merge{{1, 1}, {2, 1}, {7, 4}};
  require_equal(remap_labels(seg, merge), remap_labels(seg_d, merge));
  require_equal(remap_labels(seg, merge, std::uint8_t{255}), remap_labels(seg_d, merge, std::uint8_t{255}));
  require_equal(remap_labels(seg, {}), remap_labels(seg_d, {}));
  const auto seg16 = random_labels<std::int16_t>({17, 23, 29}, {-1, 0, 4, 300}, 19);
  const LabelMapping<std::int16_t> m16{{300, 2}, {-1, 0}};
  require_equal(remap_labels(seg16, m16, std::int16_t{-1}), remap_labels(seg16.to<Cuda>(), m16, std::int16_t{-1}));
  const auto mask = random_labels<float>({17, 23, 29}, {0.0f, 1.0f}, 20);
  require_equal(set_ignore_label(seg, mask, std::uint8_t{255}), set_ignore_label(seg_d, mask.to<Cuda>(), std::uint8_t{255}));
}
