// Convolutions with few output channels, such as a segmentation network's last 5^3 layer to
// 2-4 class scores. oneDNN computes output channels in blocks of 16, so 3 channels cost as
// much as 16. Folding the kernel's W extent into the output channels fills the block:
//   P[(o, kx)] = the (kD, kH, 1) convolution of x with W[o, :, :, :, kx]   (o * kW channels)
//   y[o][.., x] = bias[o] + sum over kx of P[(o, kx)][.., x + kx - pad_W]
// and backward runs the folded convolution's backward on dP[(o, kx)][.., x'] =
// dy[o][.., x' - kx + pad_W]. Same arithmetic, kW times fewer padded multiply-adds: VNet's
// 32 -> 3 output convolution takes a fifth of the time. Used by conv3d.hpp's ops for the
// shapes narrow_applies() accepts; the folded problem itself is an ordinary oneDNN one.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../../core/parallel.hpp"
#include "../../core/tensor.hpp"
#include "../conv3d.hpp"
#include "conv3d.hpp"

namespace medseg::cpu::detail {

/// Output channels times kernel width at most this fill one oneDNN block.
inline constexpr std::int64_t narrow_block = 16;

/// Whether `s` runs folded: a plain convolution (no groups, no epilogue) whose W axis has
/// stride and dilation 1, a kernel wider than 1 and out_channels * kernel W <= narrow_block.
inline bool narrow_applies(const Conv3dShape& s, const Conv3dEpilogue& epilogue) {
  return !s.transposed && s.groups == 1 && s.stride[2] == 1 && s.dilation[2] == 1 && s.kernel[2] > 1 &&
         s.out_channels * s.kernel[2] <= narrow_block && epilogue == Conv3dEpilogue{};
}

/// The folded problem: out_channels * kW outputs, kernel (kD, kH, 1), no W padding.
inline Conv3dShape narrow_shape(const Conv3dShape& s) {
  Conv3dShape f = s;
  f.out_channels = s.out_channels * s.kernel[2];
  f.kernel[2] = 1;
  f.padding[2] = 0;
  return f;
}

/// Calls f(plain, folded) for every weight: its index in W [O, I, kD, kH, kW] and in the
/// folded weights [O * kW, I, kD, kH, 1].
template <class F>
void narrow_weight_pairs(const Conv3dShape& s, F f) {
  const std::int64_t o_n = s.out_channels, i_n = s.in_channels, kdh = s.kernel[0] * s.kernel[1], kw = s.kernel[2];
  for (std::int64_t o = 0; o < o_n; ++o)
    for (std::int64_t kx = 0; kx < kw; ++kx)
      for (std::int64_t i = 0; i < i_n; ++i)
        for (std::int64_t a = 0; a < kdh; ++a) f(((o * i_n + i) * kdh + a) * kw + kx, ((o * kw + kx) * i_n + i) * kdh + a);
}

/// dP from dy: channel (o, kx) at x' is dy[o] at x' - kx + pad_W, zero outside dy.
inline Tensor<float, Cpu> narrow_output_gradient(const Conv3dShape& s, const Tensor<float, Cpu>& dy) {
  const Conv3dShape f = narrow_shape(s);
  auto dp = Tensor<float, Cpu>::empty(f.output_shape());
  const auto out = s.output();
  const std::int64_t kw = s.kernel[2], pw = s.padding[2], w_out = out[2], w_in = s.input[2];
  const std::int64_t rows = out[0] * out[1], channels = s.out_channels * kw;
  const float* g = dy.data();
  float* d = dp.data();
  parallel_for(0, s.batch * channels * rows, std::max<std::int64_t>(1, 4096 / std::max<std::int64_t>(w_in, 1)),
               [&](std::int64_t b, std::int64_t e) {
                 for (std::int64_t r = b; r < e; ++r) {
                   const std::int64_t n = r / (channels * rows), c = r / rows % channels, row = r % rows;
                   const std::int64_t o = c / kw, kx = c % kw;
                   const float* src = g + ((n * s.out_channels + o) * rows + row) * w_out;
                   float* dst = d + r * w_in;
                   for (std::int64_t x = 0; x < w_in; ++x) {
                     const std::int64_t from = x - kx + pw;
                     dst[x] = from >= 0 && from < w_out ? src[from] : 0.0f;
                   }
                 }
               });
  return dp;
}

inline void narrow_forward(const Conv3dShape& s, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& w,
                           const Tensor<float, Cpu>* bias, const Tensor<float, Cpu>& y) {
  const Conv3dShape f = narrow_shape(s);
  auto wf = Tensor<float, Cpu>::empty(f.weight_shape());
  narrow_weight_pairs(s, [&, src = w.data(), dst = wf.data()](std::int64_t plain, std::int64_t folded) {
    dst[folded] = src[plain];
  });
  auto p = Tensor<float, Cpu>::empty(f.output_shape());
  ops::conv3d_forward(f, x, wf, nullptr, p);
  const auto out = s.output();
  const std::int64_t kw = s.kernel[2], pw = s.padding[2], w_out = out[2], w_in = s.input[2];
  const std::int64_t rows = out[0] * out[1];
  const float* pp = p.data();
  const float* pb = bias ? bias->data() : nullptr;
  float* py = y.data();
  parallel_for(0, s.batch * s.out_channels * rows, std::max<std::int64_t>(1, 4096 / std::max<std::int64_t>(w_out, 1)),
               [&](std::int64_t b, std::int64_t e) {
                 for (std::int64_t r = b; r < e; ++r) {
                   const std::int64_t n = r / (s.out_channels * rows), o = r / rows % s.out_channels, row = r % rows;
                   float* dst = py + r * w_out;
                   const float init = pb ? pb[o] : 0.0f;
                   for (std::int64_t x = 0; x < w_out; ++x) dst[x] = init;
                   for (std::int64_t kx = 0; kx < kw; ++kx) {
                     const float* src = pp + ((n * f.out_channels + o * kw + kx) * rows + row) * w_in;
                     // dst[x] += src[x + kx - pw] where that is inside P's row.
                     const std::int64_t lo = std::max<std::int64_t>(0, pw - kx), hi = std::min(w_out, w_in - kx + pw);
                     for (std::int64_t xx = lo; xx < hi; ++xx) dst[xx] += src[xx + kx - pw];
                   }
                 }
               });
}

/// dbias[o] = the sum of dy over batch and space (double accumulation, serial reduction).
inline void narrow_bias_gradient(const Conv3dShape& s, const Tensor<float, Cpu>& dy, const Tensor<float, Cpu>& dbias) {
  const std::int64_t per = dy.numel() / (s.batch * s.out_channels);
  std::vector<double> partial(static_cast<std::size_t>(s.batch * s.out_channels));
  const float* g = dy.data();
  parallel_for(0, s.batch * s.out_channels, 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t r = b; r < e; ++r) {
      double sum = 0;
      for (std::int64_t i = 0; i < per; ++i) sum += g[r * per + i];
      partial[static_cast<std::size_t>(r)] = sum;
    }
  });
  float* db = dbias.data();
  for (std::int64_t o = 0; o < s.out_channels; ++o) {
    double sum = 0;
    for (std::int64_t n = 0; n < s.batch; ++n) sum += partial[static_cast<std::size_t>(n * s.out_channels + o)];
    db[o] = static_cast<float>(sum);
  }
}

/// conv3d_backward (either gradient optional: dx, dw may be null) on the folded problem.
inline void narrow_backward(const Conv3dShape& s, const Tensor<float, Cpu>* x, const Tensor<float, Cpu>* w,
                            const Tensor<float, Cpu>& dy, const Tensor<float, Cpu>* dx, const Tensor<float, Cpu>* dw,
                            const Tensor<float, Cpu>* dbias) {
  const Conv3dShape f = narrow_shape(s);
  const auto dp = narrow_output_gradient(s, dy);
  Tensor<float, Cpu> wf;
  if (dx) {
    wf = Tensor<float, Cpu>::empty(f.weight_shape());
    narrow_weight_pairs(s, [&, src = w->data(), dst = wf.data()](std::int64_t plain, std::int64_t folded) {
      dst[folded] = src[plain];
    });
  }
  if (dw) {
    auto dwf = Tensor<float, Cpu>::empty(f.weight_shape());
    if (dx)
      ops::conv3d_backward(f, *x, wf, dp, dx, dwf, nullptr);
    else
      ops::conv3d_backward_weights(f, *x, dp, dwf, nullptr);
    narrow_weight_pairs(s, [&, src = dwf.data(), dst = dw->data()](std::int64_t plain, std::int64_t folded) {
      dst[plain] = src[folded];
    });
  } else if (dx) {
    ops::conv3d_backward_data(f, dp, wf, *dx);
  }
  if (dbias) narrow_bias_gradient(s, dy, *dbias);
}

/// conv3d_backward_owned on the folded problem: the bias gradient first, then dy goes once
/// shifted into dP, which the folded problem's owned backward takes over in turn.
inline Tensor<float, Cpu> narrow_backward_owned(const Conv3dShape& s, Tensor<float, Cpu> x, const Tensor<float, Cpu>& w,
                                                Tensor<float, Cpu> dy, bool input_gradient, const Tensor<float, Cpu>& dw,
                                                const Tensor<float, Cpu>* dbias) {
  const Conv3dShape f = narrow_shape(s);
  if (dbias) narrow_bias_gradient(s, dy, *dbias);
  auto dp = narrow_output_gradient(s, dy);
  dy = Tensor<float, Cpu>();
  Tensor<float, Cpu> wf;
  if (input_gradient) {
    wf = Tensor<float, Cpu>::empty(f.weight_shape());
    narrow_weight_pairs(s, [&, src = w.data(), dst = wf.data()](std::int64_t plain, std::int64_t folded) {
      dst[folded] = src[plain];
    });
  } else {
    wf = Tensor<float, Cpu>::empty(f.weight_shape());  // of the right shape, never read
  }
  auto dwf = Tensor<float, Cpu>::empty(f.weight_shape());
  auto dx = ops::conv3d_backward_owned(f, std::move(x), wf, std::move(dp), input_gradient, dwf, nullptr);
  narrow_weight_pairs(s, [&, src = dwf.data(), dst = dw.data()](std::int64_t plain, std::int64_t folded) {
    dst[plain] = src[folded];
  });
  return dx;
}

}  // namespace medseg::cpu::detail
