// What the loss kernels of every backend share: the types their signatures use (the logits'
// extents, the checked target, the partial sums, Dice's per-term coefficients, the activation)
// and the per-element arithmetic both the CPU kernels (backends/cpu/loss.hpp) and the Cuda
// ones (backends/cuda/loss.hpp, src/backends/cuda/loss.cu) run, so the two compute the same
// values. The decisions (checks, messages, options, scaling) stay in loss/.
#pragma once

#include <bit>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../core/host_device.hpp"
#include "../core/tensor.hpp"

namespace medseg::ops {

/// What turns logits into per-class scores (loss::Activation).
enum class LossActivation {
  softmax,  // mutually exclusive classes (MedicalSeg, nnU-Net)
  sigmoid,  // independent channels (multi-label regions, binary foreground)
  none,     // the network already outputs probabilities
};

/// Logits seen as [N, C, S]: batch, channels, and every spatial axis flattened into S.
struct LossExtents {
  std::int64_t n = 0, c = 0, s = 0;
};

/// The checked target, on the logits' backend: exactly one of `index` ([N*S] class ids, -1
/// where ignored) and `dense` ([N,C,S]) is defined.
template <class B>
struct LossTarget {
  Tensor<std::int32_t, B> index;
  Tensor<float, B> dense;
  bool is_index() const { return index.defined(); }
};

/// What a loss's statistics kernel hands to the host-side math: partial sums, laid out as
/// each loss says ([rows][blocks][K] in general), where `blocks` is how many spatial blocks
/// each row was summed in (the CPU's fixed-size blocks, summed by the host in order; 1 where
/// a device reduced them already). `finite` is false when the activation met a non-finite logit.
struct LossSums {
  std::vector<double> values{};
  std::int64_t blocks = 1;
  bool finite = true;
};

/// d loss / d p at one voxel of Dice term (n, c): a * g + b * (squared ? 2 p : 1).
struct DiceCoefficients {
  float a = 0, b = 0;
};

namespace detail {

/// Whether label value v is accepted: in [0, classes) (compared without sign trouble for
/// unsigned types) or equal to the ignore value.
template <class L>
MEDSEG_HOST_DEVICE bool valid_label(L v, std::int64_t classes, bool has_ignore, std::int64_t ignore);
/// The int32 class id label v becomes: -1 for the ignore value.
template <class L>
MEDSEG_HOST_DEVICE std::int32_t class_id(L v, bool has_ignore, std::int64_t ignore);

}  // namespace detail

// exp and log for float written as plain arithmetic (Cephes' range reductions and
// polynomials), so that loops over voxels vectorise: std::exp and std::log are calls into
// libm that GCC vectorises only under -ffast-math. Accurate to a few ulp over the ranges the
// losses use; tests/loss/fast_math_test.cpp measures the error against std::exp and std::log.
// Both backends' loss kernels call them, so both compute the same curve. (Not the activations'
// ops::detail::exp_approx, which reduces its range differently: loss values must not move.)
namespace fast_math {

/// `condition ? a : b` by bit masks. Under GCC's default -ftrapping-math a float ?: (or
/// std::min/max) feeding further arithmetic is not if-converted and blocks vectorisation.
MEDSEG_HOST_DEVICE float select(bool condition, float a, float b);
/// e^x for finite x; results below e^-87.3 come out as about 1.2e-38 rather than smaller
/// (no denormals), and above e^88.37 as about 2.4e38. NaN inputs give unspecified values:
/// callers check finiteness separately.
MEDSEG_HOST_DEVICE float exp_approx(float x);
/// ln(x) for normal positive finite x.
MEDSEG_HOST_DEVICE float log_approx(float x);
/// 1 when x is NaN or infinite (exponent bits all set). Integer, so an OR over a loop
/// vectorises where a floating-point test would not.
MEDSEG_HOST_DEVICE std::uint32_t non_finite(float x);

}  // namespace fast_math

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

template <class L>
MEDSEG_HOST_DEVICE bool valid_label(L v, std::int64_t classes, bool has_ignore, std::int64_t ignore) {
  const auto w = static_cast<std::int64_t>(v);
  if (has_ignore && w == ignore) return true;
  if constexpr (std::is_unsigned_v<L>)
    return static_cast<std::uint64_t>(v) < static_cast<std::uint64_t>(classes);
  else
    return w >= 0 && w < classes;
}

template <class L>
MEDSEG_HOST_DEVICE std::int32_t class_id(L v, bool has_ignore, std::int64_t ignore) {
  // An ignore_index outside int32 never equals a valid class, so it maps to -1 safely.
  const auto w = static_cast<std::int64_t>(v);
  return (has_ignore && w == ignore) ? -1 : static_cast<std::int32_t>(w);
}

}  // namespace detail

namespace fast_math {

MEDSEG_HOST_DEVICE float select(bool condition, float a, float b) {
  const std::uint32_t mask = 0u - static_cast<std::uint32_t>(condition);
  return std::bit_cast<float>((std::bit_cast<std::uint32_t>(a) & mask) | (std::bit_cast<std::uint32_t>(b) & ~mask));
}

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

MEDSEG_HOST_DEVICE std::uint32_t non_finite(float x) {
  return (std::bit_cast<std::uint32_t>(x) & 0x7f800000u) == 0x7f800000u;
}

}  // namespace fast_math

}  // namespace medseg::ops
