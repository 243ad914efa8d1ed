// The activations losses apply to logits before comparing them with labels: softmax over
// the channel axis and an element-wise sigmoid, on [N, C, S] data. They run over fixed
// spatial blocks on the thread pool and report non-finite input, which every loss must
// refuse (a NaN loss would otherwise propagate silently into the weights).
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>

#include "../core/host_device.hpp"
#include "../core/parallel.hpp"
#include "fast_math.hpp"
#include "target.hpp"

namespace medseg::loss {

/// What turns logits into per-class scores.
enum class Activation {
  softmax,  // mutually exclusive classes (MedicalSeg, nnU-Net)
  sigmoid,  // independent channels (multi-label regions, binary foreground)
  none,     // the network already outputs probabilities
};

namespace detail {

/// 1 when x is NaN or infinite (exponent bits all set). Integer, so an OR over a loop
/// vectorises where a floating-point test would not. (Shared with the Cuda kernels.)
MEDSEG_HOST_DEVICE std::uint32_t non_finite(float x) {
  return (std::bit_cast<std::uint32_t>(x) & 0x7f800000u) == 0x7f800000u;
}

/// p[n,c,s] = exp(x[n,c,s]) / sum_k exp(x[n,k,s]). When `lse` is given it receives the
/// log-sum-exp [N*S], so log p = x - lse keeps full precision where p underflows.
/// Returns false when any logit is not finite.
inline bool softmax_channels(const float* x, float* p, const Extents& e, float* lse = nullptr);
/// p = 1 / (1 + exp(-x)) element-wise over `count` values. Returns false on non-finite input.
inline bool sigmoid(const float* x, float* p, std::int64_t count);

// ----------------------------------------------------------------------------------------
// Implementation

inline bool softmax_channels(const float* x, float* p, const Extents& e, float* lse) {
  const std::int64_t blocks = block_count(e.s);
  std::atomic<bool> finite{true};
  parallel_for(0, e.n * blocks, 1, [&](std::int64_t u0, std::int64_t u1) {
    float mx[block_size], sum[block_size];
    for (std::int64_t u = u0; u < u1; ++u) {
      const std::int64_t n = u / blocks, s0 = (u % blocks) * block_size;
      const std::int64_t m = std::min(block_size, e.s - s0);
      const float* xn = x + n * e.c * e.s + s0;
      float* pn = p + n * e.c * e.s + s0;
      std::uint32_t bad = 0;
      std::fill_n(mx, m, -INFINITY);
      std::fill_n(sum, m, 0.0f);
      for (std::int64_t c = 0; c < e.c; ++c) {
        const float* xc = xn + c * e.s;
        for (std::int64_t s = 0; s < m; ++s) {
          mx[s] = select(xc[s] > mx[s], xc[s], mx[s]);
          bad |= non_finite(xc[s]);
        }
      }
      for (std::int64_t c = 0; c < e.c; ++c) {
        const float* xc = xn + c * e.s;
        float* pc = pn + c * e.s;
        for (std::int64_t s = 0; s < m; ++s) {
          pc[s] = exp_approx(xc[s] - mx[s]);
          sum[s] += pc[s];
        }
      }
      if (lse)
        for (std::int64_t s = 0; s < m; ++s) lse[n * e.s + s0 + s] = mx[s] + std::log(sum[s]);
      for (std::int64_t s = 0; s < m; ++s) sum[s] = 1.0f / sum[s];
      for (std::int64_t c = 0; c < e.c; ++c) {
        float* pc = pn + c * e.s;
        for (std::int64_t s = 0; s < m; ++s) pc[s] *= sum[s];
      }
      if (bad) finite.store(false, std::memory_order_relaxed);
    }
  });
  return finite.load();
}

inline bool sigmoid(const float* x, float* p, std::int64_t count) {
  std::atomic<bool> finite{true};
  parallel_for(0, count, 1 << 14, [&](std::int64_t b, std::int64_t e) {
    std::uint32_t bad = 0;
    for (std::int64_t i = b; i < e; ++i) {
      p[i] = 1.0f / (1.0f + exp_approx(-x[i]));
      bad |= non_finite(x[i]);
    }
    if (bad) finite.store(false, std::memory_order_relaxed);
  });
  return finite.load();
}

}  // namespace detail
}  // namespace medseg::loss
