// RandomBiasField: its log field against numpy's Legendre series (MONAI's construction), and
// the multiplicative application, determinism and probability.
#include "support.hpp"

using namespace medseg;
using namespace medseg::transforms;
using namespace transforms_test;

TEST_CASE("bias field log equals numpy legval3d", "[transforms]") {
  const Index3 size{5, 7, 9};
  std::vector<double> c(bias_field_terms(3).size());
  REQUIRE(c.size() == 20);  // MONAI's n_coeff for degree 3 in 3-D
  for (std::size_t i = 0; i < c.size(); ++i) c[i] = 0.05 * std::sin(1.0 + 3.0 * static_cast<double>(i));
  std::string list;
  for (double v : c) list += (list.empty() ? "" : ",") + std::to_string(v);
  const auto dir = make_references({{"bias", "bias shape=1,5,7,9 degree=3 coefficients=" + list}}, "bias");
  const auto expected = read_raw<float>(dir / "bias.out.raw", {5, 7, 9});
  std::vector<double> rounded;  // what the Python side parsed
  for (double v : c) rounded.push_back(std::stod(std::to_string(v)));
  CHECK(max_abs_diff(bias_field_log(size, 3, rounded), expected) < 1e-6);
  fs::remove_all(dir);
  CHECK_THROWS_AS(bias_field_log(size, 3, std::vector<double>(19)), Error);
}

TEST_CASE("bias field multiplies every channel by the same smooth gain", "[transforms]") {
  Sample s = ramp_sample({6, 8, 10}, 2);
  for (std::int64_t i = 0; i < s.image.numel(); ++i) s.image.data()[i] += 1.0f;
  const Sample before{s.image.clone(), s.label.clone()};
  RandomStream rng(7, 1);
  RandomBiasField{.coefficients = {-0.2f, 0.2f}}.apply(s, rng);
  const std::int64_t n = 6 * 8 * 10;
  double max_dev = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const double g0 = s.image.data()[i] / before.image.data()[i], g1 = s.image.data()[n + i] / before.image.data()[n + i];
    REQUIRE(std::abs(g0 - g1) < 1e-5 * g0);
    max_dev = std::max(max_dev, std::abs(std::log(g0)));
  }
  CHECK(max_dev > 1e-3);   // it did something
  CHECK(max_dev < 20 * 0.2);  // |f| <= sum |c| (|P_n| <= 1 on [-1, 1])
  CHECK(count_different(s.label, before.label) == 0);

  Sample again{before.image.clone(), before.label.clone()};
  RandomStream same(7, 1);
  RandomBiasField{.coefficients = {-0.2f, 0.2f}}.apply(again, same);
  CHECK(max_abs_diff(again.image, s.image) == 0.0);

  Sample untouched{before.image.clone(), before.label.clone()};
  RandomStream other(7, 1);
  RandomBiasField{.p = 0.0f}.apply(untouched, other);
  CHECK(max_abs_diff(untouched.image, before.image) == 0.0);
}
