#include "medseg/backends/loss.hpp"

#include <catch2/catch.hpp>

#include <cmath>

using namespace medseg::ops::fast_math;

TEST_CASE("exp_approx is within a few ulp of exp over the float range") {
  double worst = 0;
  for (int i = 0; i <= 2000000; ++i) {
    const float x = -87.0f + 175.0f * static_cast<float>(i) / 2000000.0f;
    const double exact = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::abs(exp_approx(x) - exact) / exact);
  }
  INFO("worst relative error " << worst);
  CHECK(worst < 4e-7);
  CHECK(exp_approx(0.0f) == 1.0f);
  CHECK(exp_approx(-1000.0f) < 1.3e-38f);
  CHECK(exp_approx(-1000.0f) >= 0.0f);
  CHECK(std::isfinite(exp_approx(1000.0f)));
}

TEST_CASE("log_approx is within a few ulp of log for normal floats") {
  double worst = 0;
  for (int i = 0; i <= 2000000; ++i) {
    const float x = std::ldexp(1.0f + static_cast<float>(i % 100000) / 100000.0f, i / 100000 * 6 - 60);
    const double exact = std::log(static_cast<double>(x));
    worst = std::max(worst, std::abs(log_approx(x) - exact) / std::max(1.0, std::abs(exact)));
  }
  INFO("worst error " << worst);
  CHECK(worst < 4e-7);
  CHECK(log_approx(1.0f) == 0.0f);
  CHECK(log_approx(2.0f) == Approx(0.69314718f).epsilon(1e-7));
}
