// exp and log for float written as plain arithmetic (Cephes' range reductions and
// polynomials), so that loops over voxels vectorise: std::exp and std::log are calls into
// libm that GCC vectorises only under -ffast-math. Accurate to a few ulp over the ranges the
// losses use; tests/loss/fast_math_test.cpp measures the error against std::exp and std::log.
// The Cuda loss kernels call the same functions, so both backends compute the same curve.
#pragma once

#include <bit>
#include <cstdint>

#include "../core/host_device.hpp"

namespace medseg::loss::detail {

/// `condition ? a : b` by bit masks. Under GCC's default -ftrapping-math a float ?: (or
/// std::min/max) feeding further arithmetic is not if-converted and blocks vectorisation.
MEDSEG_HOST_DEVICE float select(bool condition, float a, float b) {
  const std::uint32_t mask = 0u - static_cast<std::uint32_t>(condition);
  return std::bit_cast<float>((std::bit_cast<std::uint32_t>(a) & mask) | (std::bit_cast<std::uint32_t>(b) & ~mask));
}

/// e^x for finite x; results below e^-87.3 come out as about 1.2e-38 rather than smaller
/// (no denormals), and above e^88.37 as about 2.4e38. NaN inputs give unspecified values:
/// callers check finiteness separately.
MEDSEG_HOST_DEVICE float exp_approx(float x);
/// ln(x) for normal positive finite x.
MEDSEG_HOST_DEVICE float log_approx(float x);

// ----------------------------------------------------------------------------------------
// Implementation

MEDSEG_HOST_DEVICE float exp_approx(float x) {
  x = select(x < -87.3f, -87.3f, x);  // 2^n stays a normal float
  x = select(x > 88.37f, 88.37f, x);
  // n = round(x / ln 2) by the 1.5 * 2^23 trick (exact under round-to-nearest, branch-free).
  constexpr float magic = 12582912.0f;
  const float shifted = x * 1.44269504088896341f + magic;  // n sits in the low mantissa bits
  const float n = shifted - magic;
  // r = x - n ln 2 with ln 2 split in two so the product is exact (Cody-Waite).
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const std::uint32_t scale = (std::bit_cast<std::uint32_t>(shifted) - 0x4b400000u + 127u) << 23;  // 2^n
  return p * std::bit_cast<float>(scale);
}

MEDSEG_HOST_DEVICE float log_approx(float x) {
  const auto bits = std::bit_cast<std::uint32_t>(x);
  float e = static_cast<float>(static_cast<std::int32_t>(bits >> 23) - 127);
  float m = std::bit_cast<float>((bits & 0x007fffffu) | 0x3f800000u);  // mantissa in [1, 2)
  // Centre the mantissa on 1: [sqrt(1/2), sqrt(2)) keeps the polynomial's argument small.
  const bool high = m > 1.41421356f;
  m = select(high, m * 0.5f, m);
  e = select(high, e + 1.0f, e);
  const float f = m - 1.0f;
  const float z = f * f;
  float y = 7.0376836292e-2f;
  y = y * f - 1.1514610310e-1f;
  y = y * f + 1.1676998740e-1f;
  y = y * f - 1.2420140846e-1f;
  y = y * f + 1.4249322787e-1f;
  y = y * f - 1.6668057665e-1f;
  y = y * f + 2.0000714765e-1f;
  y = y * f - 2.4999993993e-1f;
  y = y * f + 3.3333331174e-1f;
  y = y * f * z;
  y += e * -2.12194440e-4f;
  y += -0.5f * z;
  return f + y + e * 0.693359375f;
}

}  // namespace medseg::loss::detail
