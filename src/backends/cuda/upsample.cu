// Trilinear and nearest-exact kernels of the Cuda backend (declared in backends/cuda/upsample.hpp; TrilinearShape
// and the CPU kernels they mirror are in backends/cpu/upsample.hpp). As on the CPU, each axis is
// first reduced to a table of (i0, i1, w0, w1) per output index, computed with the CPU's
// arithmetic (no fused multiply-adds), so both backends read the same voxels with the same
// weights. Backward gathers: the outputs that read input index i along an axis are those with
// i0 <= i <= i1, a contiguous range because i0 and i1 never decrease; a thread per input voxel
// adds their terms in the CPU's order, so results need no atomics and repeat bit for bit.
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>

#include "backends/cuda/launch.cuh"
#include "backends/cuda/word_type.cuh"
#include "medseg/backends/cuda/upsample.hpp"

namespace medseg::ops {
namespace {

using namespace cuda::detail;  // launch.cuh: block_threads, grid_for, grid-stride loops, check_launch;
                               // word_type.cuh: with_word_type

/// One axis: the lerp table over output indices and, for backward, the range [first, last] of
/// outputs that read each input index. Device pointers into the tables' storage.
struct AxisTable {
  std::int64_t in = 0, out = 0;
  double ratio = 0.0;  // input step per output step, align_corners already applied
  bool align_corners = false;
  std::int64_t *i0 = nullptr, *i1 = nullptr, *first = nullptr, *last = nullptr;
  float *w0 = nullptr, *w1 = nullptr;
};
struct Tables {
  AxisTable axis[3];
};

/// Entry o of lerp_axis (backends/cpu/upsample.hpp), operation for operation: the source
/// coordinate in double rounded to float, clamped at 0, and its two neighbours.
__device__ void lerp_entry(const AxisTable& a, std::int64_t o) {
  const double od = static_cast<double>(o);
  float src = a.align_corners ? static_cast<float>(__dmul_rn(a.ratio, od))
                              : static_cast<float>(__dadd_rn(__dmul_rn(a.ratio, __dadd_rn(od, 0.5)), -0.5));
  if (src < 0.0f) src = 0.0f;
  const auto truncated = static_cast<std::int64_t>(src);
  const std::int64_t lo = truncated < a.in - 1 ? truncated : a.in - 1;
  const std::int64_t hi = lo + (lo < a.in - 1 ? 1 : 0);
  const float l1 = src - static_cast<float>(lo);
  a.i0[o] = lo;
  a.i1[o] = hi;
  a.w0[o] = 1.0f - l1;
  a.w1[o] = l1;
}

__global__ void lerp_tables_kernel(Tables t) {
  const std::int64_t n0 = t.axis[0].out, n1 = t.axis[1].out, n2 = t.axis[2].out;
  for (std::int64_t e = first_index(); e < n0 + n1 + n2; e += grid_stride()) {
    if (e < n0)
      lerp_entry(t.axis[0], e);
    else if (e < n0 + n1)
      lerp_entry(t.axis[1], e - n0);
    else
      lerp_entry(t.axis[2], e - n0 - n1);
  }
}

/// first[i] = the first output with i1 >= i, last[i] = the last output with i0 <= i: binary
/// searches over the non-decreasing tables.
__device__ void gather_range(const AxisTable& a, std::int64_t i) {
  std::int64_t lo = 0, hi = a.out;
  while (lo < hi) {
    const std::int64_t mid = lo + (hi - lo) / 2;
    if (a.i1[mid] >= i)
      hi = mid;
    else
      lo = mid + 1;
  }
  a.first[i] = lo;
  lo = 0;
  hi = a.out;
  while (lo < hi) {
    const std::int64_t mid = lo + (hi - lo) / 2;
    if (a.i0[mid] <= i)
      lo = mid + 1;
    else
      hi = mid;
  }
  a.last[i] = lo - 1;
}

__global__ void gather_ranges_kernel(Tables t) {
  const std::int64_t n0 = t.axis[0].in, n1 = t.axis[1].in, n2 = t.axis[2].in;
  for (std::int64_t e = first_index(); e < n0 + n1 + n2; e += grid_stride()) {
    if (e < n0)
      gather_range(t.axis[0], e);
    else if (e < n0 + n1)
      gather_range(t.axis[1], e - n0);
    else
      gather_range(t.axis[2], e - n0 - n1);
  }
}

/// Sizes of the three axes in the kernels' index type I (int32 whenever every index fits:
/// integer division, which the index arithmetic is made of, is several times faster).
template <class I>
struct Extents {
  I in[3], out[3];
  __device__ explicit Extents(const Tables& t) {
    for (int a = 0; a < 3; ++a) in[a] = static_cast<I>(t.axis[a].in), out[a] = static_cast<I>(t.axis[a].out);
  }
};

template <class I>
__global__ void trilinear_forward_kernel(const float* x, float* y, Tables t, I planes) {
  const AxisTable D = t.axis[0], H = t.axis[1], W = t.axis[2];
  const Extents<I> n(t);
  const I ip = n.in[0] * n.in[1] * n.in[2], op = n.out[0] * n.out[1] * n.out[2];
  const auto step = static_cast<I>(grid_stride());
  for (auto e = static_cast<I>(first_index()); e < planes * op; e += step) {
    const I o = e % op;
    const I ow = o % n.out[2], oh = (o / n.out[2]) % n.out[1], od = o / (n.out[2] * n.out[1]);
    const float* xp = x + (e / op) * ip;
    const auto d0 = static_cast<I>(D.i0[od]), d1 = static_cast<I>(D.i1[od]);
    const auto h0 = static_cast<I>(H.i0[oh]), h1 = static_cast<I>(H.i1[oh]);
    const float* r00 = xp + (d0 * n.in[1] + h0) * n.in[2];
    const float* r01 = xp + (d0 * n.in[1] + h1) * n.in[2];
    const float* r10 = xp + (d1 * n.in[1] + h0) * n.in[2];
    const float* r11 = xp + (d1 * n.in[1] + h1) * n.in[2];
    const float w00 = D.w0[od] * H.w0[oh], w01 = D.w0[od] * H.w1[oh];
    const float w10 = D.w1[od] * H.w0[oh], w11 = D.w1[od] * H.w1[oh];
    const auto a = static_cast<I>(W.i0[ow]), c = static_cast<I>(W.i1[ow]);
    y[e] = W.w0[ow] * (w00 * r00[a] + w01 * r01[a] + w10 * r10[a] + w11 * r11[a]) +
           W.w1[ow] * (w00 * r00[c] + w01 * r01[c] + w10 * r10[c] + w11 * r11[c]);
  }
}

/// dx[d, h, w] = the CPU's scattered terms w_dh * (dy * w_w) of every output reading (d, h, w),
/// in its order: outputs in raster order, then the corners (d0 h0, d0 h1, d1 h0, d1 h1) with
/// w0, then with w1. __fmul_rn keeps each product rounded before its addition, as on the CPU.
template <class I>
__global__ void trilinear_backward_kernel(const float* dy, float* dx, Tables t, I planes) {
  const AxisTable D = t.axis[0], H = t.axis[1], W = t.axis[2];
  const Extents<I> n(t);
  const I ip = n.in[0] * n.in[1] * n.in[2], op = n.out[0] * n.out[1] * n.out[2];
  const auto step = static_cast<I>(grid_stride());
  for (auto e = static_cast<I>(first_index()); e < planes * ip; e += step) {
    const I i = e % ip;
    const I w = i % n.in[2], h = (i / n.in[2]) % n.in[1], d = i / (n.in[2] * n.in[1]);
    const float* yp = dy + (e / ip) * op;
    float acc = 0.0f;
    const auto od_end = static_cast<I>(D.last[d]), oh_end = static_cast<I>(H.last[h]);
    const auto ow_begin = static_cast<I>(W.first[w]), ow_end = static_cast<I>(W.last[w]);
    for (auto od = static_cast<I>(D.first[d]); od <= od_end; ++od) {
      const bool d0 = D.i0[od] == d, d1 = D.i1[od] == d;
      for (auto oh = static_cast<I>(H.first[h]); oh <= oh_end; ++oh) {
        const bool h0 = H.i0[oh] == h, h1 = H.i1[oh] == h;
        const float w00 = D.w0[od] * H.w0[oh], w01 = D.w0[od] * H.w1[oh];
        const float w10 = D.w1[od] * H.w0[oh], w11 = D.w1[od] * H.w1[oh];
        const float* yr = yp + (od * n.out[1] + oh) * n.out[2];
        for (I ow = ow_begin; ow <= ow_end; ++ow) {
          if (W.i0[ow] == w) {
            const float ga = yr[ow] * W.w0[ow];
            if (d0 && h0) acc += __fmul_rn(w00, ga);
            if (d0 && h1) acc += __fmul_rn(w01, ga);
            if (d1 && h0) acc += __fmul_rn(w10, ga);
            if (d1 && h1) acc += __fmul_rn(w11, ga);
          }
          if (W.i1[ow] == w) {
            const float gc = yr[ow] * W.w1[ow];
            if (d0 && h0) acc += __fmul_rn(w00, gc);
            if (d0 && h1) acc += __fmul_rn(w01, gc);
            if (d1 && h0) acc += __fmul_rn(w10, gc);
            if (d1 && h1) acc += __fmul_rn(w11, gc);
          }
        }
      }
    }
    dx[e] = acc;
  }
}

// ---------------------------------------------------------------------------------------------
// Host side

std::string dhw(const std::array<std::int64_t, 3>& v) {
  return std::to_string(v[0]) + "x" + std::to_string(v[1]) + "x" + std::to_string(v[2]);
}

void require_valid(const char* op, const TrilinearShape& s) {
  bool ok = s.batch >= 0 && s.channels >= 0;
  for (std::size_t a = 0; a < 3; ++a)
    ok = ok && s.input[a] >= 1 && s.output[a] >= 0 &&
         (s.align_corners || (std::isfinite(s.ratio[a]) && s.ratio[a] > 0.0));
  require(ok, [&] {
    return ErrorInfo{.where = op, .field = "shape",
                     .expected = "input >= 1, output >= 0 and (without align_corners) finite ratios > 0",
                     .actual = "input " + dhw(s.input) + " output " + dhw(s.output) + " ratio " +
                               std::to_string(s.ratio[0]) + "," + std::to_string(s.ratio[1]) + "," +
                               std::to_string(s.ratio[2])};
  });
}

void require_tensor(const char* op, const char* field, const Tensor<float, Cuda>& t, const Shape& expected) {
  require(t.defined() && t.shape() == expected && t.is_contiguous(), [&] {
    return ErrorInfo{.where = op, .field = field, .expected = "contiguous " + expected.to_string(),
                     .actual = t.defined() ? t.layout().to_string() : std::string("an undefined tensor")};
  });
}

/// Whether int32 holds every element index of both volumes (with room for the grid-stride step
/// past the end).
bool fits_int32(const Tensor<float, Cuda>& a, const Tensor<float, Cuda>& b) {
  return a.numel() <= INT_MAX / 2 && b.numel() <= INT_MAX / 2;
}

Shape shape_of(const TrilinearShape& s, const std::array<std::int64_t, 3>& dhw_size) {
  return Shape{s.batch, s.channels, dhw_size[0], dhw_size[1], dhw_size[2]};
}

/// The three axes' tables in device memory (with the gather ranges when `ranges`); the storage
/// lives as long as this value, and the kernels that fill it are queued on the current stream.
struct DeviceTables {
  Tensor<std::int64_t, Cuda> index;
  Tensor<float, Cuda> weight;
  Tables tables;

  DeviceTables(const TrilinearShape& s, bool ranges) {
    std::int64_t outs = 0, ins = 0;
    for (std::size_t a = 0; a < 3; ++a) outs += s.output[a], ins += s.input[a];
    index = Tensor<std::int64_t, Cuda>::empty({2 * outs + 2 * ins});
    weight = Tensor<float, Cuda>::empty({2 * outs});
    std::int64_t* ip = index.data();
    float* wp = weight.data();
    for (std::size_t a = 0; a < 3; ++a) {
      AxisTable& t = tables.axis[a];
      t.in = s.input[a];
      t.out = s.output[a];
      t.align_corners = s.align_corners;
      t.ratio = s.align_corners ? (t.out > 1 ? static_cast<double>(t.in - 1) / static_cast<double>(t.out - 1) : 0.0)
                                : s.ratio[a];
      t.i0 = ip, t.i1 = ip + t.out, t.first = ip + 2 * t.out, t.last = ip + 2 * t.out + t.in;
      ip += 2 * t.out + 2 * t.in;
      t.w0 = wp, t.w1 = wp + t.out;
      wp += 2 * t.out;
    }
    const cudaStream_t stream = cuda::current_stream();
    lerp_tables_kernel<<<grid_for(outs), block_threads, 0, stream>>>(tables);
    check_launch("lerp_tables_kernel");
    if (!ranges) return;
    gather_ranges_kernel<<<grid_for(ins), block_threads, 0, stream>>>(tables);
    check_launch("gather_ranges_kernel");
  }
};

/// y[p] = x at the nearest-exact source of output voxel p, each index computed as the CPU does.
template <class E>
__global__ void nearest_exact_kernel(const E* x, E* y, std::int64_t total, std::int64_t in_d, std::int64_t in_h,
                                     std::int64_t in_w, std::int64_t d, std::int64_t h, std::int64_t w) {
  for (std::int64_t p = first_index(); p < total; p += grid_stride()) {
    const std::int64_t ow = p % w, oh = (p / w) % h, od = (p / (w * h)) % d, nc = p / (w * h * d);
    y[p] = x[((nc * in_d + nearest_exact_source(od, in_d, d)) * in_h + nearest_exact_source(oh, in_h, h)) * in_w +
             nearest_exact_source(ow, in_w, w)];
  }
}

}  // namespace

void resize_nearest_exact_bytes(const void* x, void* y, std::size_t element_bytes, const Shape& in, const Shape& out) {
  const std::int64_t total = out[0] * out[1] * out[2] * out[3] * out[4];
  with_word_type(element_bytes, "ops::resize_nearest_exact", [&](auto tag) {
    using E = decltype(tag);
    nearest_exact_kernel<E><<<grid_for(total), block_threads, 0, cuda::current_stream()>>>(
        static_cast<const E*>(x), static_cast<E*>(y), total, in[2], in[3], in[4], out[2], out[3], out[4]);
  });
  check_launch("nearest_exact_kernel");
}

void trilinear_forward(const TrilinearShape& s, const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& y) {
  const char* op = "ops::trilinear_forward";
  require_valid(op, s);
  require_tensor(op, "x", x, shape_of(s, s.input));
  require_tensor(op, "y", y, shape_of(s, s.output));
  if (y.numel() == 0) return;
  const DeviceTables t(s, false);
  const cudaStream_t stream = cuda::current_stream();
  const std::int64_t planes = s.batch * s.channels;
  if (fits_int32(x, y))
    trilinear_forward_kernel<std::int32_t><<<grid_for(y.numel()), block_threads, 0, stream>>>(
        x.data(), y.data(), t.tables, static_cast<std::int32_t>(planes));
  else
    trilinear_forward_kernel<std::int64_t><<<grid_for(y.numel()), block_threads, 0, stream>>>(x.data(), y.data(),
                                                                                              t.tables, planes);
  check_launch("trilinear_forward_kernel");
}

void trilinear_backward(const TrilinearShape& s, const Tensor<float, Cuda>& dy, const Tensor<float, Cuda>& dx) {
  const char* op = "ops::trilinear_backward";
  require_valid(op, s);
  require_tensor(op, "dy", dy, shape_of(s, s.output));
  require_tensor(op, "dx", dx, shape_of(s, s.input));
  if (dx.numel() == 0) return;
  const DeviceTables t(s, true);
  const cudaStream_t stream = cuda::current_stream();
  const std::int64_t planes = s.batch * s.channels;
  if (fits_int32(dx, dy))
    trilinear_backward_kernel<std::int32_t><<<grid_for(dx.numel()), block_threads, 0, stream>>>(
        dy.data(), dx.data(), t.tables, static_cast<std::int32_t>(planes));
  else
    trilinear_backward_kernel<std::int64_t><<<grid_for(dx.numel()), block_threads, 0, stream>>>(dy.data(), dx.data(),
                                                                                                t.tables, planes);
  check_launch("trilinear_backward_kernel");
}

}  // namespace medseg::ops
