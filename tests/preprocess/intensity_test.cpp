// HU window, range normalise, clip + min-max, z-score and CT normalisation against NumPy
// (reference.py), thread-count independence of the statistics, and the errors.
#include <catch2/catch.hpp>

#include "medseg/preprocess/intensity.hpp"
#include "medseg/preprocess/resample.hpp"
#include "reference.hpp"

using namespace medseg;
using namespace medseg::preprocess;
using preprocess_test::Case;

TEST_CASE("intensity ops match NumPy") {
  const Shape shape{7, 19, 23};
  const std::vector<Case> cases = {
      {"window", "window in=7,19,23 data=ct dtype=int16 lo=-1250 hi=250"},
      {"window255", "window in=7,19,23 data=ct dtype=float32 lo=-1200 hi=600 scale255=1"},
      {"zscore", "zscore in=7,19,23 data=ct dtype=int16"},
      {"zscore_nonzero", "zscore in=7,19,23 data=positive dtype=float32 nonzero=1"},
      {"ct_norm", "ct_norm in=7,19,23 data=ct dtype=int16 threshold=-500"},
      {"minmax", "minmax in=7,19,23 data=ct dtype=float32 lo=-1000 hi=1000"},
  };
  const auto dir = preprocess_test::make_references(cases, "intensity");
  auto in16 = [&](const char* n) { return preprocess_test::read_raw<std::int16_t>(dir / (std::string(n) + ".in"), shape); };
  auto in32 = [&](const char* n) { return preprocess_test::read_raw<float>(dir / (std::string(n) + ".in"), shape); };
  auto ref = [&](const char* n) { return preprocess_test::read_raw<float>(dir / (std::string(n) + ".ref"), shape); };

  CHECK(preprocess_test::relative_error(hu_window(in16("window"), {.lo = -1250, .hi = 250}), ref("window")) < 1e-6);
  CHECK(preprocess_test::relative_error(hu_window(in32("window255"), {.lo = -1200, .hi = 600, .scale_255 = true}),
                                        ref("window255")) < 1e-6);
  CHECK(preprocess_test::relative_error(zscore(in16("zscore")), ref("zscore")) < 1e-5);
  CHECK(preprocess_test::relative_error(zscore(in32("zscore_nonzero"), true), ref("zscore_nonzero")) < 1e-5);
  {
    auto x = in16("ct_norm");
    auto mask = Tensor<std::uint8_t>::empty(shape);
    for (std::int64_t i = 0; i < x.numel(); ++i) mask.data()[i] = x.data()[i] > -500 ? 1 : 0;
    CHECK(preprocess_test::relative_error(ct_normalize(x, ct_statistics(x, mask)), ref("ct_norm")) < 1e-5);
  }
  CHECK(preprocess_test::relative_error(clip_minmax(in32("minmax"), -1000, 1000), ref("minmax")) < 1e-6);
  preprocess_test::remove_references(dir);
}

TEST_CASE("HU window handles NaN and the fixed range normalise of MedicalSeg") {
  auto x = Tensor<float>::from({NAN, -2000.0f, -1250.0f, -500.0f, 250.0f, 3000.0f}, {6});
  CHECK(hu_window(x, {.lo = -1250, .hi = 250}).to_vector() == std::vector<float>{0, 0, 0, 0.5f, 1, 1});
  CHECK(hu_window(x, {.lo = -1250, .hi = 250, .nan_value = 250.0f}).to_vector()[0] == 1.0f);
  auto y = Tensor<std::int16_t>::from({0, 1325, 2650, 4000}, {4});
  CHECK(normalize_range(y, 0.0f, 2650.0f).to_vector() == std::vector<float>{0, 0.5f, 1, 1});
  const auto auto_range = normalize_range(y).to_vector();
  CHECK(auto_range.front() == 0.0f);
  CHECK(auto_range.back() == 1.0f);
}

TEST_CASE("the window fused into resize equals window then resize") {
  auto x = Tensor<std::int16_t>::empty({9, 14, 17});
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] = static_cast<std::int16_t>((i * 7919) % 4000 - 2000);
  const HuWindow w{.lo = -1250, .hi = 250};
  for (int order : {0, 1, 3}) {
    const auto fused = resize(x, {5, 20, 8}, {.order = order}, w);
    const auto staged = resize(hu_window(x, w), {5, 20, 8}, {.order = order});
    CHECK(preprocess_test::relative_error(fused, staged) < 1e-6);
  }
}

TEST_CASE("statistics do not depend on the thread count") {
  auto x = Tensor<float>::empty({300000});
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] = static_cast<float>(std::sin(0.001 * static_cast<double>(i))) * 900 - 400;
  const int before = num_threads();
  set_num_threads(1);
  const auto a = moments(x);
  set_num_threads(std::max(before, 2));
  const auto b = moments(x);
  set_num_threads(before);
  CHECK(a.mean == b.mean);
  CHECK(a.std == b.std);
  CHECK(a.count == 300000);
}

TEST_CASE("percentile interpolates as numpy does") {
  std::vector<float> v{5, 1, 4, 2, 3};
  CHECK(percentile(v, 50) == Approx(3));
  std::vector<float> w{10, 0};
  CHECK(percentile(w, 25) == Approx(2.5));
  std::vector<float> empty;
  CHECK_THROWS_WITH(percentile(empty, 50), Catch::Contains("empty foreground"));
}

TEST_CASE("intensity ops reject bad ranges") {
  auto x = Tensor<float>::zeros({2, 2, 2});
  CHECK_THROWS_WITH(hu_window(x, {.lo = 10, .hi = -10}), Catch::Contains("lo < hi"));
  CHECK_THROWS_WITH(clip_minmax(x, 5, 5), Catch::Contains("clip range"));
  CHECK_THROWS_WITH(ct_statistics(x, Tensor<std::uint8_t>::zeros({2, 2})), Catch::Contains("foreground mask"));
}
