// Sliding-window inference against a NumPy implementation of nnU-Net's algorithm (window
// starts, Gaussian map, weighted accumulation, mirroring, padding), and the properties that
// pin it down without a reference: a translation-equivariant predictor with constant blending
// equals the whole-image prediction, mirroring a flip-equivariant predictor changes nothing,
// the batch size changes nothing.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>

#include "medseg/infer/sliding_window.hpp"
#include "reference.hpp"

using namespace medseg;
using namespace medseg::infer;

TEST_CASE("window_starts follow nnU-Net's compute_steps_for_sliding_window") {
  CHECK(window_starts(17, 10, 0.5) == std::vector<std::int64_t>{0, 4, 7});  // 3.5 rounds to even
  CHECK(window_starts(13, 8, 0.5) == std::vector<std::int64_t>{0, 2, 5});   // 2.5 rounds to even too
  CHECK(window_starts(10, 10, 0.5) == std::vector<std::int64_t>{0});
  CHECK(window_starts(20, 8, 0.5) == std::vector<std::int64_t>{0, 4, 8, 12});
  CHECK(window_starts(23, 12, 0.5) == std::vector<std::int64_t>{0, 6, 11});
  CHECK(window_starts(100, 10, 0.0) == std::vector<std::int64_t>{0, 10, 20, 30, 40, 50, 60, 70, 80, 90});
  CHECK_THROWS_WITH(window_starts(5, 10, 0.5), Catch::Contains("at least the window"));
}

TEST_CASE("sliding_window matches the NumPy reference") {
  struct Run {
    const char* name;
    const char* line;
    Shape shape;
    std::int64_t C, K;
    SlidingWindowOptions options;
  };
  const std::vector<Run> runs = {
      {"gauss_mirror", "seed=1 C=2 K=3 shape=20,17,23 roi=8,10,12 overlap=0.5 blend=gaussian mirror=0,2",
       {20, 17, 23}, 2, 3, {.roi = {8, 10, 12}, .mirror_axes = {0, 2}}},
      {"pad_logits", "seed=2 C=1 K=2 shape=6,17,9 roi=8,10,12 overlap=0.5 blend=constant output=logits",
       {6, 17, 9}, 1, 2, {.roi = {8, 10, 12}, .blend = Blend::constant, .batch = 2, .output = Output::logits}},
      {"edge_pad", "seed=3 C=2 K=2 shape=5,12,7 roi=8,8,8 overlap=0.25 pad=edge mirror=1",
       {5, 12, 7}, 2, 2, {.roi = {8, 8, 8}, .overlap = 0.25, .pad = PadMode::edge, .mirror_axes = {1}}},
      {"narrow_gauss", "seed=4 C=1 K=3 shape=19,21,16 roi=16,16,8 overlap=0.6 sigma=0.0625 mirror=0,1,2",
       {19, 21, 16}, 1, 3,
       {.roi = {16, 16, 8}, .overlap = 0.6, .sigma_scale = 0.0625, .batch = 3, .mirror_axes = {0, 1, 2}}},
  };
  std::vector<infer_test::Case> cases;
  for (const auto& r : runs) cases.push_back({r.name, r.line});
  const auto dir = infer_test::make_references(cases, "sw");
  for (const auto& r : runs) {
    INFO(r.name);
    const std::string base = (dir / r.name).string();
    const auto image = infer_test::read_tensor(base + ".image", {r.C, r.shape[0], r.shape[1], r.shape[2]});
    const auto expected = infer_test::read_tensor(base + ".out", {r.K, r.shape[0], r.shape[1], r.shape[2]});
    const auto& roi = r.options.roi;
    const auto gauss = infer_test::read_tensor(base + ".gauss", {roi[0], roi[1], roi[2]});
    const auto blend = r.options.blend;
    CHECK(infer_test::max_abs_diff(importance_map(roi, blend, r.options.sigma_scale), gauss) < 1e-6);
    const auto steps = infer_test::read_steps(base + ".steps");
    REQUIRE(steps.size() == 3);
    for (std::size_t a = 0; a < 3; ++a)
      CHECK(window_starts(std::max(r.shape[static_cast<int>(a)], roi[a]), roi[a], r.options.overlap) == steps[a]);
    std::int64_t calls = 0;
    auto predictor = infer_test::read_predictor(base + ".params", r.C, r.K, 3);
    predictor.calls = &calls;
    const auto out = sliding_window(image, predictor, r.options);
    CHECK(out.shape() == expected.shape());
    CHECK(infer_test::max_abs_diff(out, expected) < 2e-5);
    std::int64_t windows = 1;
    for (const auto& s : steps) windows *= static_cast<std::int64_t>(s.size());
    const auto flips = std::int64_t{1} << r.options.mirror_axes.size();
    CHECK(calls == (windows + r.options.batch - 1) / r.options.batch * flips);
  }
  CHECK(infer_test::read_steps(dir / "gauss_mirror.steps")[1] == std::vector<std::int64_t>{0, 4, 7});
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

namespace {

/// A predictor with seeded weights; symmetric kernels (w depends on |offset| only) make it
/// flip-equivariant, pos = 0 translation-equivariant.
infer_test::ConvPredictor make_predictor(std::int64_t C, std::int64_t K, std::int64_t ks, bool symmetric, bool position) {
  infer_test::ConvPredictor p{C, K, ks, {}, {}, {}};
  const std::int64_t r = ks / 2;
  for (std::int64_t k = 0; k < K; ++k)
    for (std::int64_t c = 0; c < C; ++c)
      for (std::int64_t i = 0; i < ks; ++i)
        for (std::int64_t j = 0; j < ks; ++j)
          for (std::int64_t l = 0; l < ks; ++l) {
            const double a = symmetric ? static_cast<double>(std::abs(i - r) + 2 * std::abs(j - r) + 4 * std::abs(l - r))
                                       : static_cast<double>(i + 3 * j + 9 * l);
            p.weights.push_back(static_cast<float>(std::sin(1.7 * a + 0.9 * static_cast<double>(k * C + c)) * 0.4));
          }
  for (std::int64_t k = 0; k < K; ++k) {
    p.bias.push_back(static_cast<float>(0.3 * static_cast<double>(k) - 0.2));
    p.pos.push_back(position ? static_cast<float>(1.5 - static_cast<double>(k)) : 0.0f);
  }
  return p;
}

Tensor<float> smooth_image(std::int64_t C, std::int64_t D, std::int64_t H, std::int64_t W) {
  auto x = Tensor<float>::empty({C, D, H, W});
  for (std::int64_t c = 0; c < C; ++c)
    for (std::int64_t z = 0; z < D; ++z)
      for (std::int64_t y = 0; y < H; ++y)
        for (std::int64_t u = 0; u < W; ++u)
          x(c, z, y, u) = static_cast<float>(std::sin(0.7 * static_cast<double>(z) + 1.3 * static_cast<double>(c)) *
                                                 std::cos(0.45 * static_cast<double>(y)) +
                                             0.1 * static_cast<double>(u % 5));
  return x;
}

}  // namespace

TEST_CASE("constant blending of a translation-equivariant predictor equals the whole-image prediction") {
  const auto image = smooth_image(2, 18, 15, 20);
  const auto net = make_predictor(2, 3, 3, false, false);
  const Index3 roi{8, 7, 9};
  const auto whole = net(image.reshape({1, 2, 18, 15, 20}))[0];  // logits [K,D,H,W] of one big window
  const auto out = sliding_window(image, net, {.roi = roi, .blend = Blend::constant, .output = Output::logits});
  // Compare where every window covering a voxel also holds its 3x3x3 neighbourhood: there all
  // windows agree with the whole-image convolution.
  const auto s0 = window_starts(18, roi[0], 0.5), s1 = window_starts(15, roi[1], 0.5), s2 = window_starts(20, roi[2], 0.5);
  auto interior = [&](const std::vector<std::int64_t>& starts, std::int64_t r, std::int64_t i) {
    for (auto s : starts)
      if (i >= s && i < s + r && (i == s || i == s + r - 1)) return false;
    return true;
  };
  std::int64_t compared = 0;
  double worst = 0;
  for (std::int64_t k = 0; k < 3; ++k)
    for (std::int64_t z = 0; z < 18; ++z)
      for (std::int64_t y = 0; y < 15; ++y)
        for (std::int64_t x = 0; x < 20; ++x) {
          // The image border is a window border too, and there both see zero padding.
          const bool ok = (interior(s0, roi[0], z) || z == 0 || z == 17) && (interior(s1, roi[1], y) || y == 0 || y == 14) &&
                          (interior(s2, roi[2], x) || x == 0 || x == 19);
          if (!ok) continue;
          ++compared;
          worst = std::max(worst, static_cast<double>(std::abs(out(k, z, y, x) - whole(k, z, y, x))));
        }
  CHECK(compared > 300);
  CHECK(worst < 1e-5);
  // A pointwise (1x1x1) predictor agrees everywhere.
  const auto point = make_predictor(2, 3, 1, false, false);
  const auto whole_point = point(image.reshape({1, 2, 18, 15, 20}))[0];
  CHECK(infer_test::max_abs_diff(
            sliding_window(image, point, {.roi = roi, .blend = Blend::constant, .output = Output::logits}),
            whole_point) < 1e-5);
  // With Gaussian weights too: every window gives the same value, so any weighting does.
  CHECK(infer_test::max_abs_diff(sliding_window(image, point, {.roi = roi, .output = Output::logits}), whole_point) <
        1e-5);
}

TEST_CASE("mirroring a flip-equivariant predictor changes nothing") {
  const auto image = smooth_image(1, 13, 16, 11);
  const auto net = make_predictor(1, 2, 3, true, false);
  const SlidingWindowOptions plain{.roi = {8, 8, 8}};
  SlidingWindowOptions mirrored = plain;
  mirrored.mirror_axes = {0, 1, 2};
  const auto a = sliding_window(image, net, plain);
  const auto b = sliding_window(image, net, mirrored);
  CHECK(infer_test::max_abs_diff(a, b) < 1e-6);
  // A predictor that is not flip-equivariant does change: the test can fail.
  const auto skewed = make_predictor(1, 2, 3, false, true);
  CHECK(infer_test::max_abs_diff(sliding_window(image, skewed, plain), sliding_window(image, skewed, mirrored)) > 1e-3);
}

TEST_CASE("the batch size and thread count and a predictor that keeps its input change nothing") {
  const auto image = smooth_image(2, 14, 17, 12).reshape({1, 2, 14, 17, 12});  // [1,C,D,H,W] accepted
  const auto net = make_predictor(2, 3, 3, false, true);
  SlidingWindowOptions o{.roi = {8, 8, 8}, .mirror_axes = {2}};
  const auto one = sliding_window(image, net, o);
  for (std::int64_t batch : {2, 3, 64}) {
    o.batch = batch;
    CHECK(sliding_window(image, net, o).to_vector() == one.to_vector());
  }
  // One thread or many: windows are blended in order and tasks never share a voxel.
  const int threads = num_threads();
  set_num_threads(1);
  o.batch = 1;
  const auto serial = sliding_window(image, net, o);
  set_num_threads(threads);
  CHECK(serial.to_vector() == one.to_vector());
  std::vector<Tensor<float>> kept;
  o.batch = 2;
  const auto keeping = sliding_window(image, [&](const Tensor<float>& x) {
    kept.push_back(x);  // holds the buffer: sliding_window must not overwrite it
    return net(x);
  }, o);
  CHECK(keeping.to_vector() == one.to_vector());
  for (std::size_t i = 1; i < kept.size(); ++i) CHECK_FALSE(kept[i].shares_storage_with(kept[i - 1]));
  // Probabilities sum to one and argmax picks the largest.
  const std::int64_t V = 14 * 17 * 12;
  const auto labels = argmax(one);
  CHECK(labels.shape() == Shape{14, 17, 12});
  for (std::int64_t v = 0; v < V; v += 97) {
    const float* p = one.data() + v;
    CHECK(p[0] + p[V] + p[2 * V] == Approx(1.0f).epsilon(1e-5));
    int best = 0;
    for (int k = 1; k < 3; ++k)
      if (p[k * V] > p[best * V]) best = k;
    CHECK(labels.data()[v] == best);
  }
}

TEST_CASE("argmax breaks ties toward the lower class") {
  const auto s = Tensor<float>::from({1, 5, 2, 2, 5, 0, 2, 3}, {2, 1, 2, 2});
  CHECK(argmax(s).to_vector() == std::vector<std::uint8_t>{1, 0, 0, 1});  // voxel 2: 2 vs 2
  CHECK_THROWS_WITH(argmax(Tensor<float>::zeros({3, 4, 5})), Catch::Contains("[K,D,H,W]"));
}

TEST_CASE("sliding_window rejects bad options and predictor outputs") {
  const auto image = smooth_image(1, 8, 8, 8);
  const auto net = make_predictor(1, 2, 1, false, false);
  CHECK_THROWS_WITH(sliding_window(image, net, {.roi = {8, 0, 8}}), Catch::Contains("roi[1]"));
  CHECK_THROWS_WITH(sliding_window(image, net, {.roi = {4, 4, 4}, .overlap = 1.0}), Catch::Contains("overlap"));
  CHECK_THROWS_WITH(sliding_window(image, net, {.roi = {4, 4, 4}, .batch = 0}), Catch::Contains("batch"));
  CHECK_THROWS_WITH(sliding_window(image, net, {.roi = {4, 4, 4}, .mirror_axes = {0, 3}}),
                    Catch::Contains("mirror_axes") && Catch::Contains("got 3"));
  CHECK_THROWS_WITH(sliding_window(image, net, {.roi = {4, 4, 4}, .mirror_axes = {1, 1}}), Catch::Contains("mirror_axes"));
  CHECK_THROWS_WITH(sliding_window(image[0], net, {.roi = {4, 4, 4}}), Catch::Contains("[C,D,H,W]"));
  auto wrong = [](const Tensor<float>& x) { return Tensor<float>::zeros({x.size(0), 2, 4, 4, 3}); };
  CHECK_THROWS_WITH(sliding_window(image, wrong, {.roi = {4, 4, 4}}),
                    Catch::Contains("predict output") && Catch::Contains("[1,K,4,4,4]") && Catch::Contains("[1,2,4,4,3]"));
  std::int64_t call = 0;
  auto changing = [&](const Tensor<float>& x) { return Tensor<float>::zeros({x.size(0), ++call == 1 ? 2 : 3, 4, 4, 4}); };
  CHECK_THROWS_WITH(sliding_window(image, changing, {.roi = {4, 4, 4}}), Catch::Contains("[1,2,4,4,4]"));
}
