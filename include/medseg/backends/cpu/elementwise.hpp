// Element-wise CPU kernels the layers share: sums, accumulation, channel concatenation and
// counter-based dropout masks. Kept apart from the activations because the composition
// types (Residual, Concat, UNet levels) need only these.
// Every kernel takes contiguous float32 tensors and runs on the thread pool.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "../../core/error.hpp"
#include "../../core/parallel.hpp"
#include "../../core/rng.hpp"
#include "../../core/tensor.hpp"

namespace medseg::ops {

/// Element-wise grain: large enough that a chunk amortises the pool's hand-off.
inline constexpr std::int64_t elementwise_grain = 1 << 15;

/// out = a + b. Shapes equal; out may be a or b.
void add(const Tensor<float, Cpu>& a, const Tensor<float, Cpu>& b, const Tensor<float, Cpu>& out);
/// dst += alpha * src (the gradient accumulation of every parameter and branch).
void accumulate(const Tensor<float, Cpu>& dst, const Tensor<float, Cpu>& src, float alpha = 1.0f);
/// out = a * s.
void scale(const Tensor<float, Cpu>& a, float s, const Tensor<float, Cpu>& out);

/// Concatenates along axis 1 (channels): [N, Ca, ...] and [N, Cb, ...] -> [N, Ca + Cb, ...].
/// Any backend: two pitched copies into channel slices (the inputs may be slices too).
template <class B>
Tensor<float, B> concat_channels(const Tensor<float, B>& a, const Tensor<float, B>& b);
/// Channels [begin, end) of x as a contiguous tensor (the backward of concat_channels); any backend.
template <class B>
Tensor<float, B> channel_range(const Tensor<float, B>& x, std::int64_t begin, std::int64_t end);

/// Dropout masks drawn from the counter-based RNG and recomputed in backward, so nothing is
/// stored: element i belongs to unit i / unit_size (1 for Dropout, D*H*W for Dropout3d,
/// C*D*H*W for DropPath), and a unit is kept when uniform_at(seed, stream, unit) >= p.
/// Kept elements are scaled by 1 / (1 - p), as PyTorch does.
struct DropoutMask {
  float p = 0.5f;
  std::uint64_t seed = 0, stream = 0;
  std::int64_t unit_size = 1;
  bool keeps(std::int64_t element) const {
    return uniform_at(seed, stream, static_cast<std::uint64_t>(element / unit_size)) >= p;
  }
};
/// out = x * mask / (1 - p); also the backward (dx = dy * mask / (1 - p)).
void apply_dropout(const DropoutMask& mask, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& out);

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {
inline void require_same_shape(const char* op, const Tensor<float, Cpu>& a, const Tensor<float, Cpu>& b) {
  require(a.shape() == b.shape(), [&] {
    return ErrorInfo{.where = op, .field = "shapes", .expected = "equal shapes",
                     .actual = a.shape().to_string() + " and " + b.shape().to_string()};
  });
  require(a.is_contiguous() && b.is_contiguous(), [&] {
    return ErrorInfo{.where = op, .field = "layout", .expected = "contiguous tensors",
                     .actual = a.layout().to_string() + " and " + b.layout().to_string()};
  });
}
/// sum of term(i) for i < n: sixteen float lanes within blocks of 1024 (vectorised), blocks
/// added in double, so long runs keep double-like accuracy at float speed.
template <class Term>
double lane_sum(std::int64_t n, Term&& term) {
  constexpr std::int64_t block = 1024;
  double total = 0.0;
  for (std::int64_t b = 0; b < n; b += block) {
    const std::int64_t e = std::min(n, b + block);
    float acc[16] = {};
    std::int64_t i = b;
    for (; i + 16 <= e; i += 16)
      for (int j = 0; j < 16; ++j) acc[j] += term(i + j);
    float s = 0.0f;
    for (; i < e; ++i) s += term(i);
    for (const float a : acc) s += a;
    total += s;
  }
  return total;
}
}  // namespace detail

inline void add(const Tensor<float, Cpu>& a, const Tensor<float, Cpu>& b, const Tensor<float, Cpu>& out) {
  detail::require_same_shape("ops::add", a, b);
  detail::require_same_shape("ops::add", a, out);
  const float* pa = a.data();
  const float* pb = b.data();
  float* po = out.data();
  parallel_for(0, a.numel(), elementwise_grain, [&](std::int64_t s, std::int64_t e) {
    for (std::int64_t i = s; i < e; ++i) po[i] = pa[i] + pb[i];
  });
}

inline void accumulate(const Tensor<float, Cpu>& dst, const Tensor<float, Cpu>& src, float alpha) {
  detail::require_same_shape("ops::accumulate", dst, src);
  float* d = dst.data();
  const float* s = src.data();
  parallel_for(0, dst.numel(), elementwise_grain, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) d[i] += alpha * s[i];
  });
}

inline void scale(const Tensor<float, Cpu>& a, float s, const Tensor<float, Cpu>& out) {
  detail::require_same_shape("ops::scale", a, out);
  const float* pa = a.data();
  float* po = out.data();
  parallel_for(0, a.numel(), elementwise_grain, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) po[i] = pa[i] * s;
  });
}

template <class B>
Tensor<float, B> concat_channels(const Tensor<float, B>& a, const Tensor<float, B>& b) {
  require(a.rank() >= 2 && a.rank() == b.rank(), [&] {
    return ErrorInfo{.where = "ops::concat_channels", .field = "ranks", .expected = "equal ranks >= 2",
                     .actual = a.shape().to_string() + " and " + b.shape().to_string()};
  });
  bool same = a.size(0) == b.size(0);
  for (int i = 2; i < a.rank(); ++i) same = same && a.size(i) == b.size(i);
  require(same, [&] {
    return ErrorInfo{.where = "ops::concat_channels", .field = "shapes",
                     .expected = "equal extents on every axis but 1",
                     .actual = a.shape().to_string() + " and " + b.shape().to_string()};
  });
  Shape s = a.shape();
  s[1] = a.size(1) + b.size(1);
  auto out = Tensor<float, B>::empty(s);
  out.slice(1, 0, a.size(1)).copy_from(a);
  out.slice(1, a.size(1), s[1]).copy_from(b);
  return out;
}

template <class B>
Tensor<float, B> channel_range(const Tensor<float, B>& x, std::int64_t begin, std::int64_t end) {
  return x.slice(1, begin, end).clone();
}

inline void apply_dropout(const DropoutMask& mask, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& out) {
  detail::require_same_shape("ops::apply_dropout", x, out);
  const float keep_scale = mask.p < 1.0f ? 1.0f / (1.0f - mask.p) : 0.0f;
  const float* px = x.data();
  float* po = out.data();
  const std::int64_t n = x.numel();
  const std::int64_t u = std::max<std::int64_t>(mask.unit_size, 1);
  // One draw per unit: whole units per chunk, so a unit's draw is made once.
  parallel_for(0, (n + u - 1) / u, std::max<std::int64_t>(1, elementwise_grain / u), [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t unit = b; unit < e; ++unit) {
      const float f = mask.keeps(unit * u) ? keep_scale : 0.0f;
      const std::int64_t end = std::min(n, (unit + 1) * u);
      for (std::int64_t i = unit * u; i < end; ++i) po[i] = px[i] * f;
    }
  });
}

}  // namespace medseg::ops
