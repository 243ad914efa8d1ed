// CPU kernels of 3-D max and average pooling over NCDHW, with PyTorch's output sizes and
// conventions (floor mode, implicit -inf padding for max, count_include_pad for average).
// Each (sample, channel) plane is independent, so planes are spread over the thread pool.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "elementwise.hpp"

namespace medseg::ops {

/// A pooling problem: per axis D, H, W.  out = floor((in + 2 pad - kernel) / stride) + 1.
struct Pool3dShape {
  std::int64_t batch = 1, channels = 1;
  std::array<std::int64_t, 3> input{}, kernel{2, 2, 2}, stride{2, 2, 2}, padding{0, 0, 0};

  std::array<std::int64_t, 3> output() const {
    std::array<std::int64_t, 3> o{};
    for (std::size_t i = 0; i < 3; ++i) {
      const std::int64_t span = input[i] + 2 * padding[i] - kernel[i];
      o[i] = span < 0 ? 0 : span / stride[i] + 1;  // a window larger than the input gives none
    }
    return o;
  }
  Shape output_shape() const {
    const auto o = output();
    return Shape{batch, channels, o[0], o[1], o[2]};
  }
  std::int64_t in_plane() const { return input[0] * input[1] * input[2]; }
  std::int64_t out_plane() const {
    const auto o = output();
    return o[0] * o[1] * o[2];
  }
};

/// y = max over each window; `argmax` (int32, y's shape) receives the in-plane index of the
/// maximum (the first one in D, H, W order on ties, as PyTorch).
void max_pool3d_forward(const Pool3dShape& s, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& y,
                        const Tensor<std::int32_t, Cpu>& argmax);
/// dx (overwritten) receives dy at each window's argmax, summed where windows overlap.
void max_pool3d_backward(const Pool3dShape& s, const Tensor<std::int32_t, Cpu>& argmax, const Tensor<float, Cpu>& dy,
                         const Tensor<float, Cpu>& dx);
/// y = mean over each window; padding counts in the divisor when count_include_pad.
void avg_pool3d_forward(const Pool3dShape& s, bool count_include_pad, const Tensor<float, Cpu>& x,
                        const Tensor<float, Cpu>& y);
/// dx (overwritten) = dy spread evenly over each window.
void avg_pool3d_backward(const Pool3dShape& s, bool count_include_pad, const Tensor<float, Cpu>& dy,
                         const Tensor<float, Cpu>& dx);

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {
/// Calls f(plane, od, oh, ow, window start d0,h0,w0 and clipped ranges) for every output voxel.
template <class F>
void for_each_window(const Pool3dShape& s, F&& f) {
  const auto o = s.output();
  const std::int64_t planes = s.batch * s.channels;
  parallel_for(0, planes, 1, [&](std::int64_t pb, std::int64_t pe) {
    for (std::int64_t p = pb; p < pe; ++p)
      for (std::int64_t od = 0; od < o[0]; ++od)
        for (std::int64_t oh = 0; oh < o[1]; ++oh)
          for (std::int64_t ow = 0; ow < o[2]; ++ow) {
            const std::int64_t d0 = od * s.stride[0] - s.padding[0];
            const std::int64_t h0 = oh * s.stride[1] - s.padding[1];
            const std::int64_t w0 = ow * s.stride[2] - s.padding[2];
            f(p, (od * o[1] + oh) * o[2] + ow, std::array<std::int64_t, 3>{d0, h0, w0});
          }
  });
}
inline std::int64_t clip(std::int64_t v, std::int64_t hi) { return std::min(std::max<std::int64_t>(v, 0), hi); }
}  // namespace detail

inline void max_pool3d_forward(const Pool3dShape& s, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& y,
                               const Tensor<std::int32_t, Cpu>& argmax) {
  const float* px = x.data();
  float* py = y.data();
  std::int32_t* pa = argmax.data();
  const std::int64_t ip = s.in_plane(), op = s.out_plane();
  const auto& in = s.input;
  detail::for_each_window(s, [&](std::int64_t p, std::int64_t o, std::array<std::int64_t, 3> start) {
    const float* xp = px + p * ip;
    float best = -std::numeric_limits<float>::infinity();
    std::int64_t arg = -1;
    for (std::int64_t d = detail::clip(start[0], in[0]); d < detail::clip(start[0] + s.kernel[0], in[0]); ++d)
      for (std::int64_t h = detail::clip(start[1], in[1]); h < detail::clip(start[1] + s.kernel[1], in[1]); ++h)
        for (std::int64_t w = detail::clip(start[2], in[2]); w < detail::clip(start[2] + s.kernel[2], in[2]); ++w) {
          const std::int64_t i = (d * in[1] + h) * in[2] + w;
          if (xp[i] > best || arg < 0 || std::isnan(xp[i])) {
            best = xp[i];
            arg = i;
          }
        }
    py[p * op + o] = best;
    pa[p * op + o] = static_cast<std::int32_t>(arg);
  });
}

inline void max_pool3d_backward(const Pool3dShape& s, const Tensor<std::int32_t, Cpu>& argmax,
                                const Tensor<float, Cpu>& dy, const Tensor<float, Cpu>& dx) {
  dx.fill(0.0f);
  const float* pdy = dy.data();
  const std::int32_t* pa = argmax.data();
  float* pdx = dx.data();
  const std::int64_t ip = s.in_plane(), op = s.out_plane();
  parallel_for(0, s.batch * s.channels, 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t p = b; p < e; ++p)
      for (std::int64_t o = 0; o < op; ++o)
        if (pa[p * op + o] >= 0) pdx[p * ip + pa[p * op + o]] += pdy[p * op + o];
  });
}

inline void avg_pool3d_forward(const Pool3dShape& s, bool count_include_pad, const Tensor<float, Cpu>& x,
                               const Tensor<float, Cpu>& y) {
  const float* px = x.data();
  float* py = y.data();
  const std::int64_t ip = s.in_plane(), op = s.out_plane();
  const auto& in = s.input;
  detail::for_each_window(s, [&](std::int64_t p, std::int64_t o, std::array<std::int64_t, 3> st) {
    const float* xp = px + p * ip;
    double sum = 0.0;
    std::int64_t count = 0;
    for (std::int64_t d = detail::clip(st[0], in[0]); d < detail::clip(st[0] + s.kernel[0], in[0]); ++d)
      for (std::int64_t h = detail::clip(st[1], in[1]); h < detail::clip(st[1] + s.kernel[1], in[1]); ++h)
        for (std::int64_t w = detail::clip(st[2], in[2]); w < detail::clip(st[2] + s.kernel[2], in[2]); ++w) {
          sum += xp[(d * in[1] + h) * in[2] + w];
          ++count;
        }
    const std::int64_t divisor = count_include_pad ? s.kernel[0] * s.kernel[1] * s.kernel[2] : count;
    py[p * op + o] = static_cast<float>(sum / static_cast<double>(std::max<std::int64_t>(divisor, 1)));
  });
}

inline void avg_pool3d_backward(const Pool3dShape& s, bool count_include_pad, const Tensor<float, Cpu>& dy,
                                const Tensor<float, Cpu>& dx) {
  dx.fill(0.0f);
  const float* pdy = dy.data();
  float* pdx = dx.data();
  const std::int64_t ip = s.in_plane(), op = s.out_plane();
  const auto& in = s.input;
  // Windows of one plane write only into that plane: planes are the unit of parallelism.
  detail::for_each_window(s, [&](std::int64_t p, std::int64_t o, std::array<std::int64_t, 3> st) {
    float* dp = pdx + p * ip;
    const std::int64_t d0 = detail::clip(st[0], in[0]), d1 = detail::clip(st[0] + s.kernel[0], in[0]);
    const std::int64_t h0 = detail::clip(st[1], in[1]), h1 = detail::clip(st[1] + s.kernel[1], in[1]);
    const std::int64_t w0 = detail::clip(st[2], in[2]), w1 = detail::clip(st[2] + s.kernel[2], in[2]);
    const std::int64_t count = (d1 - d0) * (h1 - h0) * (w1 - w0);
    const std::int64_t divisor = count_include_pad ? s.kernel[0] * s.kernel[1] * s.kernel[2] : count;
    const float g = pdy[p * op + o] / static_cast<float>(std::max<std::int64_t>(divisor, 1));
    for (std::int64_t d = d0; d < d1; ++d)
      for (std::int64_t h = h0; h < h1; ++h)
        for (std::int64_t w = w0; w < w1; ++w) dp[(d * in[1] + h) * in[2] + w] += g;
  });
}

}  // namespace medseg::ops
