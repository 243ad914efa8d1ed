// CPU kernels of the point-wise activations (ReLU, LeakyReLU, ELU, exact GELU, Sigmoid),
// PReLU with one or per-channel slopes, and Softmax over the channel axis of NCDHW.
// Forward and backward are separate calls so layers decide what to keep: the input for the
// activations whose derivative needs it, the output for Sigmoid and Softmax.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include "elementwise.hpp"

namespace medseg::ops {

enum class Activation { relu, leaky_relu, elu, gelu, sigmoid };

/// y = f(x). `alpha` is LeakyReLU's negative slope or ELU's alpha; ignored otherwise.
void activation_forward(Activation f, float alpha, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& y);
/// dx = dy * f'(x). `x` is the forward input, except for sigmoid, whose derivative is
/// computed from its output y (pass y as `x`). dx may be dy (in place).
void activation_backward(Activation f, float alpha, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& dy,
                         const Tensor<float, Cpu>& dx);

/// PReLU over [N, C, ...] (or any rank >= 1 when there is one slope): y = x > 0 ? x : a[c] x.
/// `slope` has 1 or C entries.
void prelu_forward(const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& slope, const Tensor<float, Cpu>& y);
/// dx = dy * (x > 0 ? 1 : a[c]);  dslope[c] += sum over (x <= 0) of dy * x. dx may be dy.
void prelu_backward(const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& slope, const Tensor<float, Cpu>& dy,
                    const Tensor<float, Cpu>& dx, const Tensor<float, Cpu>& dslope);

/// y = prelu(x * scale[c] + shift[c]): a per-channel affine map (BatchNorm's, as its
/// channel_affine_of gives it) and PReLU in one pass, bit for bit the two ops in a row.
/// scale and shift have an entry per channel of x [N, C, ...].
void prelu_affine_forward(const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& scale,
                          const Tensor<float, Cpu>& shift, const Tensor<float, Cpu>& slope, const Tensor<float, Cpu>& y);

/// prelu_backward at the input x * scale[c] + shift[c], recomputed from x rather than stored:
/// the backward of prelu_affine_forward with respect to the affine map's output.
void prelu_affine_backward(const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& scale,
                           const Tensor<float, Cpu>& shift, const Tensor<float, Cpu>& slope,
                           const Tensor<float, Cpu>& dy, const Tensor<float, Cpu>& dx, const Tensor<float, Cpu>& dslope);

/// prelu_backward from the forward's output y instead of its input, for slopes that are all
/// positive: then y > 0 exactly where x > 0, and x = y / slope below zero.
void prelu_backward_from_output(const Tensor<float, Cpu>& y, const Tensor<float, Cpu>& slope,
                                const Tensor<float, Cpu>& dy, const Tensor<float, Cpu>& dx,
                                const Tensor<float, Cpu>& dslope);

/// Whether a PReLU layer may keep its output rather than its input for backward (then
/// prelu_backward_from_output): when every slope is > 0. With positive slopes the next layer
/// (a conv) usually keeps the output anyway, while the input is otherwise dead.
bool prelu_keeps_output(const Tensor<float, Cpu>& slope);

/// Softmax over axis 1 of [N, C, ...]: y[n,c,v] = exp(x[n,c,v]) / sum_k exp(x[n,k,v]).
void softmax_channels_forward(const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& y);
/// dx = y * (dy - sum_c dy * y), from the forward output y.
void softmax_channels_backward(const Tensor<float, Cpu>& y, const Tensor<float, Cpu>& dy, const Tensor<float, Cpu>& dx);

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {
template <class F>
void pointwise(const char* op, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& y, F f) {
  require_same_shape(op, x, y);
  const float* px = x.data();
  float* py = y.data();
  parallel_for(0, x.numel(), elementwise_grain, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) py[i] = f(px[i]);
  });
}
template <class F>
void pointwise_grad(const char* op, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& dy,
                    const Tensor<float, Cpu>& dx, F f) {
  require_same_shape(op, x, dy);
  require_same_shape(op, x, dx);
  const float* px = x.data();
  const float* pdy = dy.data();
  float* pdx = dx.data();
  parallel_for(0, x.numel(), elementwise_grain, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) pdx[i] = pdy[i] * f(px[i]);
  });
}
inline constexpr float inv_sqrt2 = 0.70710678118654752440f;
inline constexpr float inv_sqrt_2pi = 0.39894228040143267794f;

// The activations are written without branches and without libm calls, which GCC neither
// if-converts (-ftrapping-math) nor vectorises (no vector libm without -ffast-math): these
// versions vectorise at the library's default flags.

/// c ? a : b through bit masks. GCC keeps a float ?: or std::min as a branch (it may not
/// speculate trapping float operations past it), and a branch stops vectorisation.
inline float select(bool c, float a, float b) {
  const auto m = -static_cast<std::int32_t>(c);
  return std::bit_cast<float>((std::bit_cast<std::int32_t>(a) & m) | (std::bit_cast<std::int32_t>(b) & ~m));
}

/// e^x to about 2 ulp (Cephes' expf: range reduction by ln 2, degree-6 polynomial,
/// exponent bits built directly). Saturates to 0 below -87.3 and to e^88.7 above.
inline float exp_approx(float x) {
  x = select(x < -87.3f, -87.3f, x);
  x = select(x > 88.7f, 88.7f, x);
  const float fx = x * 1.44269504088896341f + 0.5f;
  auto n = static_cast<std::int32_t>(fx);
  n -= static_cast<std::int32_t>(static_cast<float>(n) > fx);  // floor for negative fx
  const float nf = static_cast<float>(n);
  const float r = x - nf * 0.693359375f + nf * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * r * r + r + 1.0f;
  return e * std::bit_cast<float>(static_cast<std::int32_t>((n + 127) << 23));
}

/// erf(x) to 5e-7 absolute (Abramowitz and Stegun 7.1.26: 1.5e-7, plus float rounding).
inline float erf_approx(float x) {
  const float a = std::abs(x);
  const float t = 1.0f / (1.0f + 0.3275911f * a);
  const float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
  const float r = 1.0f - poly * exp_approx(-a * a);
  return std::copysign(r, x);
}

/// [outer, C, inner] view of a tensor with channels on axis 1 (or one channel for rank < 2).
struct ChannelGeometry {
  std::int64_t outer, channels, inner;
};
inline ChannelGeometry channel_geometry(const Tensor<float, Cpu>& x) {
  if (x.rank() < 2) return {1, 1, x.numel()};
  const std::int64_t c = x.size(1);
  return {x.size(0), c, c ? x.numel() / (x.size(0) * c) : 0};
}
}  // namespace detail

inline void activation_forward(Activation f, float alpha, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& y) {
  using detail::exp_approx;
  const char* op = "ops::activation_forward";
  switch (f) {
    case Activation::relu: return detail::pointwise(op, x, y, [](float v) { return std::max(v, 0.0f); });
    case Activation::leaky_relu:
      return detail::pointwise(op, x, y, [alpha](float v) { return std::max(v, 0.0f) + alpha * std::min(v, 0.0f); });
    case Activation::elu:
      return detail::pointwise(op, x, y, [alpha](float v) {
        return detail::select(v > 0.0f, v, alpha * (exp_approx(detail::select(v > 0.0f, 0.0f, v)) - 1.0f));
      });
    case Activation::gelu:
      return detail::pointwise(op, x, y,
                               [](float v) { return 0.5f * v * (1.0f + detail::erf_approx(v * detail::inv_sqrt2)); });
    case Activation::sigmoid: return detail::pointwise(op, x, y, [](float v) { return 1.0f / (1.0f + exp_approx(-v)); });
  }
}

inline void activation_backward(Activation f, float alpha, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& dy,
                                const Tensor<float, Cpu>& dx) {
  using detail::exp_approx;
  const char* op = "ops::activation_backward";
  switch (f) {
    // Comparisons as 0/1 values rather than ?: keep the loops free of branches.
    case Activation::relu: return detail::pointwise_grad(op, x, dy, dx, [](float v) { return static_cast<float>(v > 0.0f); });
    case Activation::leaky_relu:
      return detail::pointwise_grad(op, x, dy, dx, [alpha](float v) {
        const auto pos = static_cast<float>(v > 0.0f);
        return pos + (1.0f - pos) * alpha;
      });
    case Activation::elu:
      return detail::pointwise_grad(op, x, dy, dx, [alpha](float v) {
        const auto pos = static_cast<float>(v > 0.0f);
        return pos + (1.0f - pos) * alpha * exp_approx(detail::select(v > 0.0f, 0.0f, v));
      });
    case Activation::gelu:
      return detail::pointwise_grad(op, x, dy, dx, [](float v) {
        const float cdf = 0.5f * (1.0f + detail::erf_approx(v * detail::inv_sqrt2));
        return cdf + v * detail::inv_sqrt_2pi * exp_approx(-0.5f * v * v);
      });
    case Activation::sigmoid:  // x holds the forward output
      return detail::pointwise_grad(op, x, dy, dx, [](float s) { return s * (1.0f - s); });
  }
}

namespace detail {
/// PReLU forward over rows of [N, C, S] at the input in(c, x) (x itself, or an affine map of it).
template <class In>
void prelu_forward_rows(const char* op, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& slope,
                        const Tensor<float, Cpu>& y, In in) {
  require_same_shape(op, x, y);
  const auto g = channel_geometry(x);
  require(slope.numel() == 1 || slope.numel() == g.channels, [&] {
    return ErrorInfo{.where = op, .field = "slope",
                     .expected = "1 or " + std::to_string(g.channels) + " entries for input " + x.shape().to_string(),
                     .actual = std::to_string(slope.numel())};
  });
  const float* px = x.data();
  const float* a = slope.data();
  float* py = y.data();
  const bool shared = slope.numel() == 1;
  parallel_for(0, g.outer * g.channels, std::max<std::int64_t>(1, elementwise_grain / std::max<std::int64_t>(g.inner, 1)),
               [&](std::int64_t b, std::int64_t e) {
                 for (std::int64_t row = b; row < e; ++row) {
                   const std::int64_t c = row % g.channels;
                   const float s = a[shared ? 0 : c];
                   const auto f = in.at(c);
                   const float* xr = px + row * g.inner;
                   float* yr = py + row * g.inner;
                   for (std::int64_t i = 0; i < g.inner; ++i) {
                     const float v = f(xr[i]);
                     yr[i] = std::max(v, 0.0f) + s * std::min(v, 0.0f);
                   }
                 }
               });
}

/// PReLU backward over rows at the input in(c, x); with `from_output`, x is the forward's
/// output and the slopes are positive: the sign is y's and the input below zero is y / a.
template <class In>
void prelu_backward_rows(const char* op, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& slope,
                         const Tensor<float, Cpu>& dy, const Tensor<float, Cpu>& dx, const Tensor<float, Cpu>& dslope,
                         In in, bool from_output) {
  require_same_shape(op, x, dy);
  require_same_shape(op, x, dx);
  const auto g = channel_geometry(x);
  const float* px = x.data();
  const float* pdy = dy.data();
  const float* a = slope.data();
  float* pdx = dx.data();
  const bool shared = slope.numel() == 1;
  // Per-row partial sums, reduced serially afterwards: the result does not depend on threads.
  std::vector<double> partial(static_cast<std::size_t>(g.outer * g.channels), 0.0);
  parallel_for(0, g.outer * g.channels, std::max<std::int64_t>(1, elementwise_grain / std::max<std::int64_t>(g.inner, 1)),
               [&](std::int64_t b, std::int64_t e) {
                 for (std::int64_t row = b; row < e; ++row) {
                   const std::int64_t c = row % g.channels;
                   const float s = a[shared ? 0 : c];
                   const auto f = in.at(c);
                   const float* xr = px + row * g.inner;
                   const float* dyr = pdy + row * g.inner;
                   float* dxr = pdx + row * g.inner;
                   // The slope's sum first: dx may be dy itself (written in place).
                   const double sum = detail::lane_sum(g.inner, [&](std::int64_t i) { return dyr[i] * std::min(f(xr[i]), 0.0f); });
                   partial[static_cast<std::size_t>(row)] = from_output ? sum / static_cast<double>(s) : sum;
                   for (std::int64_t i = 0; i < g.inner; ++i) {
                     const auto pos = static_cast<float>(f(xr[i]) > 0.0f);
                     dxr[i] = dyr[i] * (pos + (1.0f - pos) * s);
                   }
                 }
               });
  float* ds = dslope.data();
  for (std::int64_t row = 0; row < g.outer * g.channels; ++row)
    ds[shared ? 0 : row % g.channels] += static_cast<float>(partial[static_cast<std::size_t>(row)]);
}

/// The input as it is.
struct PlainInput {
  auto at(std::int64_t) const {
    return [](float v) { return v; };
  }
};
/// v * scale[c] + shift[c], as channel_affine and normalize_forward compute it.
struct AffineInput {
  const float* scale;
  const float* shift;
  auto at(std::int64_t c) const {
    const float a = scale[c], t = shift[c];
    return [a, t](float v) { return v * a + t; };
  }
};

inline void require_affine(const char* op, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& scale,
                           const Tensor<float, Cpu>& shift) {
  const auto c = channel_geometry(x).channels;
  require(scale.is_contiguous() && shift.is_contiguous() && scale.numel() == c && shift.numel() == c, [&] {
    return ErrorInfo{.where = op, .field = "scale/shift", .expected = std::to_string(c) + " entries each",
                     .actual = std::to_string(scale.numel()) + " and " + std::to_string(shift.numel())};
  });
}
}  // namespace detail

inline void prelu_forward(const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& slope, const Tensor<float, Cpu>& y) {
  detail::prelu_forward_rows("ops::prelu_forward", x, slope, y, detail::PlainInput{});
}

inline void prelu_backward(const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& slope, const Tensor<float, Cpu>& dy,
                           const Tensor<float, Cpu>& dx, const Tensor<float, Cpu>& dslope) {
  detail::prelu_backward_rows("ops::prelu_backward", x, slope, dy, dx, dslope, detail::PlainInput{}, false);
}

inline void prelu_affine_forward(const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& scale,
                                 const Tensor<float, Cpu>& shift, const Tensor<float, Cpu>& slope,
                                 const Tensor<float, Cpu>& y) {
  detail::require_affine("ops::prelu_affine_forward", x, scale, shift);
  detail::prelu_forward_rows("ops::prelu_affine_forward", x, slope, y, detail::AffineInput{scale.data(), shift.data()});
}

inline void prelu_affine_backward(const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& scale,
                                  const Tensor<float, Cpu>& shift, const Tensor<float, Cpu>& slope,
                                  const Tensor<float, Cpu>& dy, const Tensor<float, Cpu>& dx,
                                  const Tensor<float, Cpu>& dslope) {
  detail::require_affine("ops::prelu_affine_backward", x, scale, shift);
  detail::prelu_backward_rows("ops::prelu_affine_backward", x, slope, dy, dx, dslope,
                              detail::AffineInput{scale.data(), shift.data()}, false);
}

inline void prelu_backward_from_output(const Tensor<float, Cpu>& y, const Tensor<float, Cpu>& slope,
                                       const Tensor<float, Cpu>& dy, const Tensor<float, Cpu>& dx,
                                       const Tensor<float, Cpu>& dslope) {
  detail::prelu_backward_rows("ops::prelu_backward_from_output", y, slope, dy, dx, dslope, detail::PlainInput{}, true);
}

inline bool prelu_keeps_output(const Tensor<float, Cpu>& slope) {
  const float* a = slope.data();
  for (std::int64_t i = 0; i < slope.numel(); ++i)
    if (!(a[i] > 0.0f)) return false;
  return true;
}

inline void softmax_channels_forward(const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& y) {
  detail::require_same_shape("ops::softmax_channels_forward", x, y);
  const auto g = detail::channel_geometry(x);
  const float* px = x.data();
  float* py = y.data();
  // Blocks of voxels with the channel loop outside keep the inner loops unit-stride.
  constexpr std::int64_t block = 256;
  const std::int64_t blocks = (g.inner + block - 1) / block;
  parallel_for(0, g.outer * blocks, 4, [&](std::int64_t b, std::int64_t e) {
    float mx[block], sum[block];
    for (std::int64_t job = b; job < e; ++job) {
      const std::int64_t n = job / blocks, v0 = (job % blocks) * block, len = std::min(block, g.inner - v0);
      const float* xs = px + n * g.channels * g.inner + v0;
      float* ys = py + n * g.channels * g.inner + v0;
      std::fill_n(mx, len, -INFINITY);
      std::fill_n(sum, len, 0.0f);
      for (std::int64_t c = 0; c < g.channels; ++c)
        for (std::int64_t i = 0; i < len; ++i) mx[i] = std::max(mx[i], xs[c * g.inner + i]);
      for (std::int64_t c = 0; c < g.channels; ++c)
        for (std::int64_t i = 0; i < len; ++i) {
          const float ev = detail::exp_approx(xs[c * g.inner + i] - mx[i]);
          ys[c * g.inner + i] = ev;
          sum[i] += ev;
        }
      for (std::int64_t i = 0; i < len; ++i) sum[i] = 1.0f / sum[i];
      for (std::int64_t c = 0; c < g.channels; ++c)
        for (std::int64_t i = 0; i < len; ++i) ys[c * g.inner + i] *= sum[i];
    }
  });
}

inline void softmax_channels_backward(const Tensor<float, Cpu>& y, const Tensor<float, Cpu>& dy,
                                      const Tensor<float, Cpu>& dx) {
  detail::require_same_shape("ops::softmax_channels_backward", y, dy);
  detail::require_same_shape("ops::softmax_channels_backward", y, dx);
  const auto g = detail::channel_geometry(y);
  const float* py = y.data();
  const float* pdy = dy.data();
  float* pdx = dx.data();
  constexpr std::int64_t block = 256;
  const std::int64_t blocks = (g.inner + block - 1) / block;
  parallel_for(0, g.outer * blocks, 4, [&](std::int64_t b, std::int64_t e) {
    float dot[block];
    for (std::int64_t job = b; job < e; ++job) {
      const std::int64_t n = job / blocks, v0 = (job % blocks) * block, len = std::min(block, g.inner - v0);
      const std::int64_t base = n * g.channels * g.inner + v0;
      std::fill_n(dot, len, 0.0f);
      for (std::int64_t c = 0; c < g.channels; ++c)
        for (std::int64_t i = 0; i < len; ++i) dot[i] += py[base + c * g.inner + i] * pdy[base + c * g.inner + i];
      for (std::int64_t c = 0; c < g.channels; ++c)
        for (std::int64_t i = 0; i < len; ++i) {
          const std::int64_t k = base + c * g.inner + i;
          pdx[k] = py[k] * (pdy[k] - dot[i]);
        }
    }
  });
}

}  // namespace medseg::ops
