// Pooling kernels of the Cuda backend (declared in backends/cuda/pooling.hpp; Pool3dShape and
// the CPU kernels they mirror are in backends/cpu/pooling.hpp). Forward: a thread per output
// voxel walks its window, clipped to the input. Backward, without atomics either way:
//  - disjoint windows (stride >= kernel on every axis, as the usual 2^3 pooling): a thread per
//    output writes its whole window, so each voxel is written once (dx is zeroed first only
//    where windows leave voxels uncovered);
//  - overlapping windows: a thread per input voxel walks the windows that cover it, along each
//    axis the outputs o with o stride - pad <= i < o stride - pad + kernel, in output order.
// Both give the CPU kernel's sums exactly.
#include <climits>
#include <cstdint>
#include <limits>
#include <string>

#include "backends/cuda/launch.cuh"
#include "medseg/backends/cuda/pooling.hpp"

namespace medseg::ops {
namespace {

using namespace cuda::detail;  // launch.cuh: block_threads, grid_for, grid-stride loops, check_launch

/// Pool3dShape as plain numbers for the kernels, in the index type I: int32 whenever every
/// index fits (integer division, which the index arithmetic is made of, is several times
/// faster in 32 bits), else int64.
template <class I>
struct PoolGeometry {
  I planes = 0, in_plane = 0, out_plane = 0;
  I in[3]{}, out[3]{}, kernel[3]{}, stride[3]{}, pad[3]{};

  explicit PoolGeometry(const Pool3dShape& s)
      : planes(static_cast<I>(s.batch * s.channels)), in_plane(static_cast<I>(s.in_plane())),
        out_plane(static_cast<I>(s.out_plane())) {
    const auto o = s.output();
    for (std::size_t a = 0; a < 3; ++a) {
      in[a] = static_cast<I>(s.input[a]);
      out[a] = static_cast<I>(o[a]);
      kernel[a] = static_cast<I>(s.kernel[a]);
      stride[a] = static_cast<I>(s.stride[a]);
      pad[a] = static_cast<I>(s.padding[a]);
    }
  }
};

/// Whether int32 holds every index and intermediate of the kernels (with room for the
/// grid-stride step past the end).
bool fits_int32(const Pool3dShape& s) {
  constexpr std::int64_t limit = INT_MAX / 2;
  bool ok = s.batch * s.channels * s.in_plane() <= limit && s.batch * s.channels * s.out_plane() <= limit;
  for (std::size_t a = 0; a < 3; ++a) ok = ok && s.input[a] + 2 * s.padding[a] + s.kernel[a] + s.stride[a] <= limit;
  return ok && s.kernel[0] <= limit / s.kernel[1] / s.kernel[2];  // the window volume
}

/// Calls f(I{}) with I = int32 when the problem fits it, else int64.
template <class F>
void with_index_type(const Pool3dShape& s, F&& f) {
  if (fits_int32(s))
    f(std::int32_t{});
  else
    f(std::int64_t{});
}

template <class I>
__device__ I clip(I v, I hi) {
  return v < 0 ? 0 : (v > hi ? hi : v);
}

/// The window of output voxel o of a plane along each axis, clipped to the input: [lo[a], hi[a]).
template <class I>
__device__ void window_of(const PoolGeometry<I>& g, I o, I (&lo)[3], I (&hi)[3]) {
  const I pos[3] = {o / (g.out[1] * g.out[2]), (o / g.out[2]) % g.out[1], o % g.out[2]};
  for (int a = 0; a < 3; ++a) {
    const I start = pos[a] * g.stride[a] - g.pad[a];
    lo[a] = clip<I>(start, g.in[a]);
    hi[a] = clip<I>(start + g.kernel[a], g.in[a]);
  }
}

/// The outputs whose windows cover input voxel i of a plane, per axis [first[a], last[a]]
/// (empty when first > last): o stride >= i + pad - kernel + 1 and o stride <= i + pad.
template <class I>
__device__ void covering(const PoolGeometry<I>& g, I i, I (&first)[3], I (&last)[3]) {
  const I pos[3] = {i / (g.in[1] * g.in[2]), (i / g.in[2]) % g.in[1], i % g.in[2]};
  for (int a = 0; a < 3; ++a) {
    const I lo = pos[a] + g.pad[a] - g.kernel[a] + 1;
    first[a] = lo <= 0 ? 0 : (lo + g.stride[a] - 1) / g.stride[a];
    const I hi = (pos[a] + g.pad[a]) / g.stride[a];
    last[a] = hi < g.out[a] - 1 ? hi : g.out[a] - 1;
  }
}

/// Divisor of output voxel o's window: the kernel volume with count_include_pad, else the
/// voxels inside the input (at least 1).
template <class I>
__device__ I avg_divisor(const PoolGeometry<I>& g, I o, bool count_include_pad) {
  I lo[3], hi[3];
  window_of(g, o, lo, hi);
  const I count = (hi[0] - lo[0]) * (hi[1] - lo[1]) * (hi[2] - lo[2]);
  const I divisor = count_include_pad ? g.kernel[0] * g.kernel[1] * g.kernel[2] : count;
  return divisor > 1 ? divisor : 1;
}

template <class I>
__global__ void max_pool_forward_kernel(const float* x, float* y, std::int32_t* argmax, PoolGeometry<I> g) {
  const auto step = static_cast<I>(grid_stride());
  for (auto e = static_cast<I>(first_index()); e < g.planes * g.out_plane; e += step) {
    const float* xp = x + (e / g.out_plane) * g.in_plane;
    I lo[3], hi[3];
    window_of<I>(g, e % g.out_plane, lo, hi);
    float best = -std::numeric_limits<float>::infinity();
    I arg = -1;
    for (I d = lo[0]; d < hi[0]; ++d)
      for (I h = lo[1]; h < hi[1]; ++h)
        for (I w = lo[2]; w < hi[2]; ++w) {
          const I i = (d * g.in[1] + h) * g.in[2] + w;
          const float v = xp[i];
          if (v > best || arg < 0 || isnan(v)) {  // the CPU's rule: first maximum, NaN wins
            best = v;
            arg = i;
          }
        }
    y[e] = best;
    argmax[e] = static_cast<std::int32_t>(arg);
  }
}

template <class I>
__global__ void max_pool_backward_kernel(const std::int32_t* argmax, const float* dy, float* dx, PoolGeometry<I> g) {
  const auto step = static_cast<I>(grid_stride());
  for (auto e = static_cast<I>(first_index()); e < g.planes * g.in_plane; e += step) {
    const I plane = e / g.in_plane, i = e % g.in_plane;
    const std::int32_t* ap = argmax + plane * g.out_plane;
    const float* gp = dy + plane * g.out_plane;
    I first[3], last[3];
    covering<I>(g, i, first, last);
    float acc = 0.0f;
    for (I od = first[0]; od <= last[0]; ++od)
      for (I oh = first[1]; oh <= last[1]; ++oh)
        for (I ow = first[2]; ow <= last[2]; ++ow) {
          const I o = (od * g.out[1] + oh) * g.out[2] + ow;
          if (ap[o] == i) acc += gp[o];
        }
    dx[e] = acc;
  }
}

/// Disjoint windows: each output writes dy at its argmax and 0 over the rest of its window.
template <class I>
__global__ void max_pool_window_backward_kernel(const std::int32_t* argmax, const float* dy, float* dx,
                                                PoolGeometry<I> g) {
  const auto step = static_cast<I>(grid_stride());
  for (auto e = static_cast<I>(first_index()); e < g.planes * g.out_plane; e += step) {
    float* dp = dx + (e / g.out_plane) * g.in_plane;
    I lo[3], hi[3];
    window_of<I>(g, e % g.out_plane, lo, hi);
    const std::int32_t arg = argmax[e];
    const float grad = dy[e];
    for (I d = lo[0]; d < hi[0]; ++d)
      for (I h = lo[1]; h < hi[1]; ++h)
        for (I w = lo[2]; w < hi[2]; ++w) {
          const I i = (d * g.in[1] + h) * g.in[2] + w;
          dp[i] = i == arg ? grad : 0.0f;
        }
  }
}

template <class I>
__global__ void avg_pool_forward_kernel(const float* x, float* y, PoolGeometry<I> g, bool count_include_pad) {
  const auto step = static_cast<I>(grid_stride());
  for (auto e = static_cast<I>(first_index()); e < g.planes * g.out_plane; e += step) {
    const float* xp = x + (e / g.out_plane) * g.in_plane;
    I lo[3], hi[3];
    window_of<I>(g, e % g.out_plane, lo, hi);
    double sum = 0.0;
    for (I d = lo[0]; d < hi[0]; ++d)
      for (I h = lo[1]; h < hi[1]; ++h)
        for (I w = lo[2]; w < hi[2]; ++w) sum += xp[(d * g.in[1] + h) * g.in[2] + w];
    y[e] = static_cast<float>(sum / static_cast<double>(avg_divisor<I>(g, e % g.out_plane, count_include_pad)));
  }
}

template <class I>
__global__ void avg_pool_backward_kernel(const float* dy, float* dx, PoolGeometry<I> g, bool count_include_pad) {
  const auto step = static_cast<I>(grid_stride());
  for (auto e = static_cast<I>(first_index()); e < g.planes * g.in_plane; e += step) {
    const float* gp = dy + (e / g.in_plane) * g.out_plane;
    I first[3], last[3];
    covering<I>(g, e % g.in_plane, first, last);
    float acc = 0.0f;
    for (I od = first[0]; od <= last[0]; ++od)
      for (I oh = first[1]; oh <= last[1]; ++oh)
        for (I ow = first[2]; ow <= last[2]; ++ow) {
          const I o = (od * g.out[1] + oh) * g.out[2] + ow;
          acc += gp[o] / static_cast<float>(avg_divisor<I>(g, o, count_include_pad));
        }
    dx[e] = acc;
  }
}

/// Disjoint windows: each output writes its share over its window.
template <class I>
__global__ void avg_pool_window_backward_kernel(const float* dy, float* dx, PoolGeometry<I> g,
                                                bool count_include_pad) {
  const auto step = static_cast<I>(grid_stride());
  for (auto e = static_cast<I>(first_index()); e < g.planes * g.out_plane; e += step) {
    float* dp = dx + (e / g.out_plane) * g.in_plane;
    I lo[3], hi[3];
    window_of<I>(g, e % g.out_plane, lo, hi);
    const float share = dy[e] / static_cast<float>(avg_divisor<I>(g, e % g.out_plane, count_include_pad));
    for (I d = lo[0]; d < hi[0]; ++d)
      for (I h = lo[1]; h < hi[1]; ++h)
        for (I w = lo[2]; w < hi[2]; ++w) dp[(d * g.in[1] + h) * g.in[2] + w] = share;
  }
}

/// How backward covers the input: disjoint windows let a thread per window write it, and
/// when they also tile the input (stride == kernel, the last window reaching its end), nothing
/// is left to zero.
struct WindowCover {
  bool disjoint = true, tiling = true;
};
WindowCover window_cover(const Pool3dShape& s) {
  WindowCover c;
  const auto out = s.output();
  for (std::size_t a = 0; a < 3; ++a) {
    c.disjoint = c.disjoint && s.stride[a] >= s.kernel[a];
    c.tiling = c.tiling && s.stride[a] == s.kernel[a] && out[a] * s.stride[a] - s.padding[a] >= s.input[a];
  }
  return c;
}

// ---------------------------------------------------------------------------------------------
// Host-side checks

std::string dhw(const std::array<std::int64_t, 3>& v) {
  return std::to_string(v[0]) + "x" + std::to_string(v[1]) + "x" + std::to_string(v[2]);
}

void require_valid(const char* op, const Pool3dShape& s) {
  bool ok = s.batch >= 0 && s.channels >= 0;
  for (std::size_t a = 0; a < 3; ++a)
    ok = ok && s.input[a] >= 0 && s.kernel[a] >= 1 && s.stride[a] >= 1 && s.padding[a] >= 0;
  require(ok, [&] {
    return ErrorInfo{.where = op, .field = "shape", .expected = "input, padding >= 0 and kernel, stride >= 1",
                     .actual = "input " + dhw(s.input) + " kernel " + dhw(s.kernel) + " stride " + dhw(s.stride) +
                               " padding " + dhw(s.padding)};
  });
  // argmax holds in-plane indices as int32, as on the CPU
  require(s.in_plane() <= INT_MAX, [&] {
    return ErrorInfo{.where = op, .field = "input", .expected = "at most 2^31 - 1 voxels per plane",
                     .actual = dhw(s.input)};
  });
}

template <class T>
void require_tensor(const char* op, const char* field, const Tensor<T, Cuda>& t, const Shape& expected) {
  require(t.defined() && t.shape() == expected && t.is_contiguous(), [&] {
    return ErrorInfo{.where = op, .field = field, .expected = "contiguous " + expected.to_string(),
                     .actual = t.defined() ? t.layout().to_string() : std::string("an undefined tensor")};
  });
}

Shape input_shape(const Pool3dShape& s) { return Shape{s.batch, s.channels, s.input[0], s.input[1], s.input[2]}; }

}  // namespace

void max_pool3d_forward(const Pool3dShape& s, const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& y,
                        const Tensor<std::int32_t, Cuda>& argmax) {
  const char* op = "ops::max_pool3d_forward";
  require_valid(op, s);
  require_tensor(op, "x", x, input_shape(s));
  require_tensor(op, "y", y, s.output_shape());
  require_tensor(op, "argmax", argmax, s.output_shape());
  const std::int64_t n = s.batch * s.channels * s.out_plane();
  if (n == 0) return;
  with_index_type(s, [&]<class I>(I) {
    max_pool_forward_kernel<I><<<grid_for(n), block_threads, 0, cuda::current_stream()>>>(
        x.data(), y.data(), argmax.data(), PoolGeometry<I>(s));
  });
  check_launch("max_pool_forward_kernel");
}

void max_pool3d_backward(const Pool3dShape& s, const Tensor<std::int32_t, Cuda>& argmax,
                         const Tensor<float, Cuda>& dy, const Tensor<float, Cuda>& dx) {
  const char* op = "ops::max_pool3d_backward";
  require_valid(op, s);
  require_tensor(op, "argmax", argmax, s.output_shape());
  require_tensor(op, "dy", dy, s.output_shape());
  require_tensor(op, "dx", dx, input_shape(s));
  const std::int64_t n = s.batch * s.channels * s.in_plane(), windows = s.batch * s.channels * s.out_plane();
  if (n == 0) return;
  const cudaStream_t stream = cuda::current_stream();
  const WindowCover cover = window_cover(s);
  if (cover.disjoint) {
    if (!cover.tiling) MEDSEG_CUDA_CHECK(cudaMemsetAsync(dx.data(), 0, dx.nbytes(), stream));
    if (windows == 0) return;
    with_index_type(s, [&]<class I>(I) {
      max_pool_window_backward_kernel<I><<<grid_for(windows), block_threads, 0, stream>>>(
          argmax.data(), dy.data(), dx.data(), PoolGeometry<I>(s));
    });
    check_launch("max_pool_window_backward_kernel");
    return;
  }
  with_index_type(s, [&]<class I>(I) {
    max_pool_backward_kernel<I><<<grid_for(n), block_threads, 0, stream>>>(argmax.data(), dy.data(), dx.data(),
                                                                           PoolGeometry<I>(s));
  });
  check_launch("max_pool_backward_kernel");
}

void avg_pool3d_forward(const Pool3dShape& s, bool count_include_pad, const Tensor<float, Cuda>& x,
                        const Tensor<float, Cuda>& y) {
  const char* op = "ops::avg_pool3d_forward";
  require_valid(op, s);
  require_tensor(op, "x", x, input_shape(s));
  require_tensor(op, "y", y, s.output_shape());
  const std::int64_t n = s.batch * s.channels * s.out_plane();
  if (n == 0) return;
  with_index_type(s, [&]<class I>(I) {
    avg_pool_forward_kernel<I><<<grid_for(n), block_threads, 0, cuda::current_stream()>>>(
        x.data(), y.data(), PoolGeometry<I>(s), count_include_pad);
  });
  check_launch("avg_pool_forward_kernel");
}

void avg_pool3d_backward(const Pool3dShape& s, bool count_include_pad, const Tensor<float, Cuda>& dy,
                         const Tensor<float, Cuda>& dx) {
  const char* op = "ops::avg_pool3d_backward";
  require_valid(op, s);
  require_tensor(op, "dy", dy, s.output_shape());
  require_tensor(op, "dx", dx, input_shape(s));
  const std::int64_t n = s.batch * s.channels * s.in_plane(), windows = s.batch * s.channels * s.out_plane();
  if (n == 0) return;
  const cudaStream_t stream = cuda::current_stream();
  const WindowCover cover = window_cover(s);
  if (cover.disjoint) {
    if (!cover.tiling) MEDSEG_CUDA_CHECK(cudaMemsetAsync(dx.data(), 0, dx.nbytes(), stream));
    if (windows == 0) return;
    with_index_type(s, [&]<class I>(I) {
      avg_pool_window_backward_kernel<I><<<grid_for(windows), block_threads, 0, stream>>>(
          dy.data(), dx.data(), PoolGeometry<I>(s), count_include_pad);
    });
    check_launch("avg_pool_window_backward_kernel");
    return;
  }
  with_index_type(s, [&]<class I>(I) {
    avg_pool_backward_kernel<I><<<grid_for(n), block_threads, 0, stream>>>(dy.data(), dx.data(), PoolGeometry<I>(s),
                                                                           count_include_pad);
  });
  check_launch("avg_pool_backward_kernel");
}

}  // namespace medseg::ops
