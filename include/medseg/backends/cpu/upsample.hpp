// CPU kernels of trilinear resizing over NCDHW with PyTorch's coordinate conventions
// (align_corners false: half-pixel centres clamped at 0; true: corner voxels aligned).
// Each axis is reduced to a table of (index, weight) pairs once, then planes run in parallel.
// Also the nearest-exact resize of label maps (any element type) for deep supervision.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "../../core/host_device.hpp"
#include "elementwise.hpp"

namespace medseg::ops {

/// Trilinear resize of [N, C, D, H, W] to [N, C, out...]. `ratio` per axis is the input step
/// per output voxel: in/out when sizes are given, 1/scale_factor when a factor is (PyTorch).
/// With align_corners the ratio is (in - 1)/(out - 1) whatever is passed.
struct TrilinearShape {
  std::int64_t batch = 1, channels = 1;
  std::array<std::int64_t, 3> input{}, output{};
  std::array<double, 3> ratio{1.0, 1.0, 1.0};
  bool align_corners = false;
};

void trilinear_forward(const TrilinearShape& s, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& y);
/// dx (overwritten) receives each output gradient spread over its eight input voxels.
void trilinear_backward(const TrilinearShape& s, const Tensor<float, Cpu>& dy, const Tensor<float, Cpu>& dx);

/// PyTorch's "nearest-exact" source index of output voxel i on an axis resized from `in` to
/// `out` voxels: floor((i + 0.5) * in / out), at most in - 1. The CPU loops and the GPU
/// kernel both call it (host-device: no index table to upload).
MEDSEG_HOST_DEVICE std::int64_t nearest_exact_source(std::int64_t i, std::int64_t in, std::int64_t out) {
  const auto s = static_cast<std::int64_t>((static_cast<double>(i) + 0.5) * static_cast<double>(in) / static_cast<double>(out));
  return s < in - 1 ? s : in - 1;
}

/// y [N, C, d, h, w] = x [N, C, D, H, W] read at each output voxel's nearest_exact_source:
/// label maps brought to a lower-resolution head's size (deep supervision). Any element
/// type; values are copied, never mixed. Both contiguous, y must not overlap x.
template <class T>
void resize_nearest_exact(const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& y);

/// Checks resize_nearest_exact's operands, the same on every backend; throws Error naming
/// `op` and both shapes.
template <class T, class B>
void require_resize_operands(const char* op, const Tensor<T, B>& x, const Tensor<T, B>& y) {
  const bool ok = x.defined() && y.defined() && x.is_contiguous() && y.is_contiguous() && x.rank() == 5 &&
                  y.rank() == 5 && x.size(0) == y.size(0) && x.size(1) == y.size(1) &&
                  (y.numel() == 0 || (x.size(2) > 0 && x.size(3) > 0 && x.size(4) > 0));
  require(ok, [&] {
    return ErrorInfo{.where = op, .field = "x, y",
                     .expected = "contiguous [N,C,D,H,W] and [N,C,d,h,w] (the same N and C, a non-empty x)",
                     .actual = (x.defined() ? x.shape().to_string() : std::string("undefined")) + " and " +
                               (y.defined() ? y.shape().to_string() : std::string("undefined"))};
  });
}

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {
struct LerpAxis {
  std::vector<std::int64_t> i0, i1;
  std::vector<float> w0, w1;
};
inline LerpAxis lerp_axis(std::int64_t in, std::int64_t out, double ratio, bool align_corners) {
  LerpAxis a;
  const double r = align_corners ? (out > 1 ? static_cast<double>(in - 1) / static_cast<double>(out - 1) : 0.0) : ratio;
  for (std::int64_t o = 0; o < out; ++o) {
    // PyTorch computes source coordinates in the tensor's type: float here.
    float src = align_corners ? static_cast<float>(r * static_cast<double>(o))
                              : static_cast<float>(r * (static_cast<double>(o) + 0.5) - 0.5);
    if (src < 0.0f) src = 0.0f;
    const auto lo = std::min(static_cast<std::int64_t>(src), in - 1);
    const std::int64_t hi = lo + (lo < in - 1 ? 1 : 0);
    const float l1 = src - static_cast<float>(lo);
    a.i0.push_back(lo);
    a.i1.push_back(hi);
    a.w0.push_back(1.0f - l1);
    a.w1.push_back(l1);
  }
  return a;
}
}  // namespace detail

inline void trilinear_forward(const TrilinearShape& s, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& y) {
  const auto ad = detail::lerp_axis(s.input[0], s.output[0], s.ratio[0], s.align_corners);
  const auto ah = detail::lerp_axis(s.input[1], s.output[1], s.ratio[1], s.align_corners);
  const auto aw = detail::lerp_axis(s.input[2], s.output[2], s.ratio[2], s.align_corners);
  const std::int64_t ip = s.input[0] * s.input[1] * s.input[2], op = s.output[0] * s.output[1] * s.output[2];
  const std::int64_t ih = s.input[1], iw = s.input[2];
  const float* px = x.data();
  float* py = y.data();
  parallel_for(0, s.batch * s.channels, 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t p = b; p < e; ++p) {
      const float* xp = px + p * ip;
      float* yp = py + p * op;
      for (std::int64_t od = 0; od < s.output[0]; ++od)
        for (std::int64_t oh = 0; oh < s.output[1]; ++oh) {
          const auto d = static_cast<std::size_t>(od), h = static_cast<std::size_t>(oh);
          const float* r00 = xp + (ad.i0[d] * ih + ah.i0[h]) * iw;
          const float* r01 = xp + (ad.i0[d] * ih + ah.i1[h]) * iw;
          const float* r10 = xp + (ad.i1[d] * ih + ah.i0[h]) * iw;
          const float* r11 = xp + (ad.i1[d] * ih + ah.i1[h]) * iw;
          const float w00 = ad.w0[d] * ah.w0[h], w01 = ad.w0[d] * ah.w1[h];
          const float w10 = ad.w1[d] * ah.w0[h], w11 = ad.w1[d] * ah.w1[h];
          float* yr = yp + (od * s.output[1] + oh) * s.output[2];
          for (std::size_t w = 0; w < static_cast<std::size_t>(s.output[2]); ++w) {
            const std::int64_t a = aw.i0[w], c = aw.i1[w];
            yr[w] = aw.w0[w] * (w00 * r00[a] + w01 * r01[a] + w10 * r10[a] + w11 * r11[a]) +
                    aw.w1[w] * (w00 * r00[c] + w01 * r01[c] + w10 * r10[c] + w11 * r11[c]);
          }
        }
    }
  });
}

inline void trilinear_backward(const TrilinearShape& s, const Tensor<float, Cpu>& dy, const Tensor<float, Cpu>& dx) {
  dx.fill(0.0f);
  const auto ad = detail::lerp_axis(s.input[0], s.output[0], s.ratio[0], s.align_corners);
  const auto ah = detail::lerp_axis(s.input[1], s.output[1], s.ratio[1], s.align_corners);
  const auto aw = detail::lerp_axis(s.input[2], s.output[2], s.ratio[2], s.align_corners);
  const std::int64_t ip = s.input[0] * s.input[1] * s.input[2], op = s.output[0] * s.output[1] * s.output[2];
  const std::int64_t ih = s.input[1], iw = s.input[2];
  const float* pdy = dy.data();
  float* pdx = dx.data();
  parallel_for(0, s.batch * s.channels, 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t p = b; p < e; ++p) {
      float* xp = pdx + p * ip;
      const float* yp = pdy + p * op;
      for (std::int64_t od = 0; od < s.output[0]; ++od)
        for (std::int64_t oh = 0; oh < s.output[1]; ++oh) {
          const auto d = static_cast<std::size_t>(od), h = static_cast<std::size_t>(oh);
          float* r00 = xp + (ad.i0[d] * ih + ah.i0[h]) * iw;
          float* r01 = xp + (ad.i0[d] * ih + ah.i1[h]) * iw;
          float* r10 = xp + (ad.i1[d] * ih + ah.i0[h]) * iw;
          float* r11 = xp + (ad.i1[d] * ih + ah.i1[h]) * iw;
          const float w00 = ad.w0[d] * ah.w0[h], w01 = ad.w0[d] * ah.w1[h];
          const float w10 = ad.w1[d] * ah.w0[h], w11 = ad.w1[d] * ah.w1[h];
          const float* yr = yp + (od * s.output[1] + oh) * s.output[2];
          for (std::size_t w = 0; w < static_cast<std::size_t>(s.output[2]); ++w) {
            const std::int64_t a = aw.i0[w], c = aw.i1[w];
            const float ga = yr[w] * aw.w0[w], gc = yr[w] * aw.w1[w];
            r00[a] += w00 * ga, r01[a] += w01 * ga, r10[a] += w10 * ga, r11[a] += w11 * ga;
            r00[c] += w00 * gc, r01[c] += w01 * gc, r10[c] += w10 * gc, r11[c] += w11 * gc;
          }
        }
    }
  });
}

template <class T>
void resize_nearest_exact(const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& y) {
  require_resize_operands("ops::resize_nearest_exact", x, y);
  const Shape in = x.shape(), out = y.shape();
  std::array<std::vector<std::int64_t>, 3> source;
  for (int a = 0; a < 3; ++a)
    for (std::int64_t i = 0; i < out[a + 2]; ++i) source[a].push_back(nearest_exact_source(i, in[a + 2], out[a + 2]));
  const T* px = x.data();
  T* py = y.data();
  const std::int64_t rows = out[0] * out[1] * out[2];
  parallel_for(0, rows, std::max<std::int64_t>(1, 4096 / std::max<std::int64_t>(out[3] * out[4], 1)),
               [&](std::int64_t r0, std::int64_t r1) {
                 for (std::int64_t r = r0; r < r1; ++r) {
                   const std::int64_t nc = r / out[2], z = r % out[2];
                   const T* plane = px + (nc * in[2] + source[0][static_cast<std::size_t>(z)]) * in[3] * in[4];
                   T* o = py + r * out[3] * out[4];
                   for (std::int64_t h = 0; h < out[3]; ++h) {
                     const T* row = plane + source[1][static_cast<std::size_t>(h)] * in[4];
                     for (std::int64_t w = 0; w < out[4]; ++w) *o++ = row[source[2][static_cast<std::size_t>(w)]];
                   }
                 }
               });
}

}  // namespace medseg::ops
