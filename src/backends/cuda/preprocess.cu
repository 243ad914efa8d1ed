// Kernels of backends/cuda/preprocess.hpp. Every kernel is one thread per output element (or
// per line, for the spline prefilter; per row, for the nonzero box) in grid-stride loops with
// 64-bit indices, on the current stream. Sums of products are written with __fmul_rn /
// __fadd_rn (and __dmul_rn / __dadd_rn) so nvcc cannot contract them into FMAs: the CPU path is
// built with -ffp-contract=off, and the GPU must round where it rounds, in the same order, to
// give the same bits. Reductions are deterministic: float partials in the CPU's own blocking
// (moments), fixed grids and fixed-order trees (double sums), integer counts (radix select),
// min / max (order-free).
#include "medseg/backends/cuda/preprocess.hpp"

#include <algorithm>
#include <climits>
#include <cstring>
#include <string>

#include "backends/cuda/launch.cuh"
#include "backends/cuda/word_type.cuh"

namespace medseg::cuda {

using ops::VoxelMap;

namespace {

using detail::block_threads;
using detail::check_launch;
using detail::first_index;
using detail::grid_for;
using detail::grid_stride;
using ops::Extent3;

// -- Element types ------------------------------------------------------------------------

/// Calls f(T{}) with the C++ type of `type`, one of the PreprocessVoxel types.
template <class F>
void with_voxel_type(DType type, const char* where, F&& f) {
  switch (type) {
    case DType::uint8: f(std::uint8_t{}); return;
    case DType::int8: f(std::int8_t{}); return;
    case DType::uint16: f(std::uint16_t{}); return;
    case DType::int16: f(std::int16_t{}); return;
    case DType::int32: f(std::int32_t{}); return;
    case DType::float32: f(float{}); return;
    default:
      throw Error{{.where = where, .field = "element type", .expected = "uint8, int8, uint16, int16, int32 or float32",
                   .actual = std::string(name(type))}};
  }
}

/// The same, for label maps (the integral types only).
template <class F>
void with_label_type(DType type, const char* where, F&& f) {
  require(type != DType::float32, [&] {
    return ErrorInfo{.where = where, .field = "label type", .expected = "uint8, int8, uint16, int16 or int32",
                     .actual = "float32"};
  });
  with_voxel_type(type, where, [&](auto tag) {
    if constexpr (std::is_integral_v<decltype(tag)>) f(tag);
  });
}

cudaStream_t stream() { return current_stream(); }

// -- The pointwise ops ----------------------------------------------------------------------

/// std::clamp's comparisons exactly (NaN passes through).
__device__ inline float clamp_like_std(float v, float lo, float hi) { return v < lo ? lo : (hi < v ? hi : v); }

/// What the CPU's functor computes for VoxelMap `m` (preprocess/intensity.hpp).
__device__ inline float apply_map(const VoxelMap& m, float v) {
  switch (m.kind) {
    case VoxelMap::Kind::identity:
      return v;
    case VoxelMap::Kind::window:
      if (v != v) v = m.nan_value;
      return clamp_like_std(__fmul_rn(__fsub_rn(v, m.shift), m.scale), 0.0f, m.top);
    case VoxelMap::Kind::affine:
      return __fmul_rn(__fsub_rn(v, m.shift), m.scale);
    case VoxelMap::Kind::clip_affine:
      return __fmul_rn(__fsub_rn(clamp_like_std(v, m.lo, m.hi), m.shift), m.scale);
    case VoxelMap::Kind::affine_nonzero:
      return v != 0.0f ? __fmul_rn(__fsub_rn(v, m.shift), m.scale) : 0.0f;
    case VoxelMap::Kind::equals:
      return v == m.lo ? 1.0f : 0.0f;
  }
  return v;
}

/// The resampler's read of one input value: to float, then through the load (the CPU's loader()).
template <class T>
__device__ inline float load_value(const T* x, std::int64_t i, const VoxelMap& load) {
  return apply_map(load, static_cast<float>(x[i]));
}

template <class T>
__global__ void map_kernel(const T* __restrict__ x, float* __restrict__ out, std::int64_t n, VoxelMap map) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) out[i] = apply_map(map, static_cast<float>(x[i]));
}

template <class T>
__global__ void nonzero_flags_kernel(const T* __restrict__ x, std::uint8_t* __restrict__ out, std::int64_t n) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) out[i] = x[i] != T(0) ? 1 : 0;
}

// -- Resampling -----------------------------------------------------------------------------

/// One axis's taps on the device: output k reads index[k * taps + t] with weight[k * taps + t].
struct AxisTaps {
  const std::int64_t* index;
  const float* weight;
  int taps;
};

/// Launch shape of the per-voxel resampling kernels: x along the output's W (a warp reads
/// neighbouring outputs), y over output rows (c, k, j) in a grid-stride loop.
constexpr int row_block_x = 32, row_block_y = 8;

struct RowLaunch {
  dim3 grid, block;
};
RowLaunch row_launch(std::int64_t width, std::int64_t rows) {
  const std::int64_t gx = (width + row_block_x - 1) / row_block_x;
  const std::int64_t gy = std::clamp<std::int64_t>((rows + row_block_y - 1) / row_block_y, 1, 65535);
  return {dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy)), dim3(row_block_x, row_block_y)};
}
__device__ inline std::int64_t launch_row() {
  return static_cast<std::int64_t>(blockIdx.y) * row_block_y + threadIdx.y;
}
__device__ inline std::int64_t launch_row_stride() { return static_cast<std::int64_t>(gridDim.y) * row_block_y; }
__device__ inline std::int64_t launch_column() {
  return static_cast<std::int64_t>(blockIdx.x) * row_block_x + threadIdx.x;
}

/// a / b and a % b for a, b >= 0: in 32 bits when both fit (a 64-bit division costs several
/// times more, and the per-voxel kernels do two per voxel).
struct DivMod {
  std::int64_t quot, rem;
};
__device__ inline DivMod divmod(std::int64_t a, std::int64_t b) {
  if (a <= 0xffffffffLL && b <= 0xffffffffLL) {
    const auto ua = static_cast<std::uint32_t>(a), ub = static_cast<std::uint32_t>(b);
    const std::uint32_t q = ua / ub;
    return {q, ua - q * ub};
  }
  const std::int64_t q = a / b;
  return {q, a - q * b};
}

template <class Out>
__device__ inline Out store_value(float v) {
  return static_cast<Out>(v);
}

/// Every axis order 0: a gather of the input's own values (the CPU's resize_nearest). Rows are
/// (c, k, j) over all channels; x and out hold `channels` volumes each.
template <class T, class Out>
__global__ void resample_nearest_kernel(const T* __restrict__ x, Out* __restrict__ out, std::int64_t rows,
                                        Extent3 in, Extent3 o, AxisTaps pd, AxisTaps ph, AxisTaps pw, VoxelMap load,
                                        bool has_load) {
  const std::int64_t i = launch_column();
  if (i >= o[2]) return;
  const std::int64_t iw = pw.index[i];
  for (std::int64_t row = launch_row(); row < rows; row += launch_row_stride()) {
    const DivMod jk = divmod(row, o[1]), kc = divmod(jk.quot, o[0]);
    const std::int64_t j = jk.rem, k = kc.rem, c = kc.quot;
    const std::int64_t src = ((c * in[0] + pd.index[k]) * in[1] + ph.index[j]) * in[2] + iw;
    out[row * o[2] + i] = has_load ? store_value<Out>(load_value(x, src, load)) : static_cast<Out>(x[src]);
  }
}

/// Orders 0 and 1 (not all 0), one thread per output voxel. `blend_rows_first` repeats the
/// CPU's resize_blend_rows_first (the D x H blend of each W tap, then the W pair); otherwise
/// resize_separable's order (W pairs, then H, then D). Same products, same sums, same order.
template <class T>
__global__ void resample_linear_kernel(const T* __restrict__ x, float* __restrict__ out, std::int64_t rows,
                                       Extent3 in, Extent3 o, AxisTaps pd, AxisTaps ph, AxisTaps pw, VoxelMap load,
                                       bool blend_rows_first) {
  const std::int64_t i = launch_column();
  if (i >= o[2]) return;
  const std::int64_t* iw = pw.index + i * pw.taps;
  const float* ww = pw.weight + i * pw.taps;
  for (std::int64_t row = launch_row(); row < rows; row += launch_row_stride()) {
    const DivMod jk = divmod(row, o[1]), kc = divmod(jk.quot, o[0]);
    const std::int64_t j = jk.rem, k = kc.rem, c = kc.quot;
    const std::int64_t* id = pd.index + k * pd.taps;
    const std::int64_t* ih = ph.index + j * ph.taps;
    const float* wd = pd.weight + k * pd.taps;
    const float* wh = ph.weight + j * ph.taps;
    const T* volume = x + c * in[0] * in[1] * in[2];
    float result = 0;
    if (blend_rows_first) {
      // l(w) = sum over (td, th) of (wd * wh) * v, left to right, as the CPU's row blend.
      float l[2] = {0, 0};
      for (int m = 0; m < pw.taps; ++m) {
        float acc = 0;
        int n = 0;
        for (int a = 0; a < pd.taps; ++a)
          for (int b = 0; b < ph.taps; ++b) {
            const float weight = __fmul_rn(wd[a], wh[b]);
            const float term = __fmul_rn(weight, load_value(volume, (id[a] * in[1] + ih[b]) * in[2] + iw[m], load));
            acc = n++ == 0 ? term : __fadd_rn(acc, term);
          }
        l[m] = acc;
      }
      result = pw.taps == 1 ? l[0] : __fadd_rn(__fmul_rn(ww[0], l[0]), __fmul_rn(ww[1], l[1]));
    } else {
      float along_d[2] = {0, 0};
      for (int a = 0; a < pd.taps; ++a) {
        float along_h[2] = {0, 0};
        for (int b = 0; b < ph.taps; ++b) {
          const std::int64_t base = (id[a] * in[1] + ih[b]) * in[2];
          const float v0 = load_value(volume, base + iw[0], load);
          along_h[b] = pw.taps == 1 ? v0
                                    : __fadd_rn(__fmul_rn(ww[0], v0), __fmul_rn(ww[1], load_value(volume, base + iw[1], load)));
        }
        along_d[a] = ph.taps == 1 ? along_h[0] : __fadd_rn(__fmul_rn(wh[0], along_h[0]), __fmul_rn(wh[1], along_h[1]));
      }
      result = pd.taps == 1 ? along_d[0] : __fadd_rn(__fmul_rn(wd[0], along_d[0]), __fmul_rn(wd[1], along_d[1]));
    }
    out[row * o[2] + i] = result;
  }
}

/// One pass of the separable path along one axis: src is [A][n_in][B] (B innermost), dst is
/// [A][n_out][B], dst[a][k][b] = sum over taps of weight * load(src[a][index][b]), summed left
/// to right as the CPU's combine_rows / gather_row.
template <class Tin, class Out>
__global__ void resample_axis_kernel(const Tin* __restrict__ src, Out* __restrict__ dst, std::int64_t A,
                                     std::int64_t n_in, std::int64_t n_out, std::int64_t B, AxisTaps p, VoxelMap load) {
  const std::int64_t total = A * n_out * B;
  for (std::int64_t e = first_index(); e < total; e += grid_stride()) {
    const DivMod bk = divmod(e, B), ka = divmod(bk.quot, n_out);
    const std::int64_t b = bk.rem, k = ka.rem, a = ka.quot;
    const Tin* line = src + a * n_in * B + b;
    const std::int64_t* idx = p.index + k * p.taps;
    const float* w = p.weight + k * p.taps;
    float acc = load_value(line, idx[0] * B, load);
    if (p.taps > 1) {
      acc = __fmul_rn(w[0], acc);
      for (int t = 1; t < p.taps; ++t) acc = __fadd_rn(acc, __fmul_rn(w[t], load_value(line, idx[t] * B, load)));
    }
    dst[e] = store_value<Out>(acc);
  }
}

/// The prefilter's constants on the device (ops::SplineConstants of the line length).
struct SplineArgs {
  double z, zn1, norm;
  float zf, gain, k;
  bool exact_start;  // n <= horizon: the mirrored sum; else the first `horizon` terms
};

/// SciPy's cubic B-spline prefilter along lines of n samples, one thread per line, the CPU's
/// spline_prefilter step for step. Line l = (a, b) starts at base + a * sa + b * sb (b in
/// [0, inner)); its samples are `stride` apart.
__global__ void spline_prefilter_kernel(float* base, std::int64_t n, std::int64_t stride, std::int64_t lines,
                                        std::int64_t inner, std::int64_t sa, std::int64_t sb, SplineArgs s) {
  constexpr std::int64_t horizon = ops::SplineConstants::horizon;
  for (std::int64_t l = first_index(); l < lines; l += grid_stride()) {
    float* p = base + (l / inner) * sa + (l % inner) * sb;
    for (std::int64_t i = 0; i < n; ++i) p[i * stride] = __fmul_rn(p[i * stride], s.gain);
    if (s.exact_start) {
      double acc = __dadd_rn(static_cast<double>(p[0]), __dmul_rn(s.zn1, static_cast<double>(p[(n - 1) * stride])));
      double zi = s.z;
      for (std::int64_t i = 1; i < n - 1; ++i) {
        const double pair = __dadd_rn(static_cast<double>(p[i * stride]),
                                      __dmul_rn(s.zn1, static_cast<double>(p[(n - 1 - i) * stride])));
        acc = __dadd_rn(acc, __dmul_rn(zi, pair));
        zi = __dmul_rn(zi, s.z);
      }
      p[0] = static_cast<float>(__dmul_rn(acc, s.norm));
    } else {
      double acc = static_cast<double>(p[0]);
      double zi = s.z;
      for (std::int64_t i = 1; i < horizon; ++i) {
        acc = __dadd_rn(acc, __dmul_rn(zi, static_cast<double>(p[i * stride])));
        zi = __dmul_rn(zi, s.z);
      }
      p[0] = static_cast<float>(acc);
    }
    for (std::int64_t i = 1; i < n; ++i) p[i * stride] = __fadd_rn(p[i * stride], __fmul_rn(s.zf, p[(i - 1) * stride]));
    p[(n - 1) * stride] = __fmul_rn(s.k, __fadd_rn(__fmul_rn(s.zf, p[(n - 2) * stride]), p[(n - 1) * stride]));
    for (std::int64_t i = n - 2; i >= 0; --i) p[i * stride] = __fmul_rn(s.zf, __fsub_rn(p[(i + 1) * stride], p[i * stride]));
  }
}

/// Prefilters the lines of an axis of n samples (nothing for n < 2, as on the CPU).
void spline_prefilter(float* base, std::int64_t n, std::int64_t stride, std::int64_t lines, std::int64_t inner,
                      std::int64_t sa, std::int64_t sb) {
  if (n < 2 || lines == 0) return;
  const ops::SplineConstants c(n);
  const SplineArgs s{c.z, c.zn1, c.norm, c.zf, c.gain, c.k, n <= ops::SplineConstants::horizon};
  spline_prefilter_kernel<<<grid_for(lines), block_threads, 0, stream()>>>(base, n, stride, lines, inner, sa, sb, s);
  check_launch("preprocess spline_prefilter_kernel");
}

template <class Tin, class Out>
void resample_axis(const Tin* src, Out* dst, std::int64_t A, std::int64_t n_in, std::int64_t n_out, std::int64_t B,
                   const AxisTaps& p, const VoxelMap& load) {
  const std::int64_t total = A * n_out * B;
  if (total == 0) return;
  resample_axis_kernel<<<grid_for(total), block_threads, 0, stream()>>>(src, dst, A, n_in, n_out, B, p, load);
  check_launch("preprocess resample_axis_kernel");
}

/// Orders with a 3: the CPU's resize_separable, one channel. W: the rows resampled along W
/// (read, loaded, prefiltered along W first for order 3); H: prefilter along H for order 3,
/// then the H pass; D likewise. Prefiltering along one axis commutes with resampling along
/// another, which is what lets the CPU (and so this) prefilter the shrunken data.
template <class T, class Out>
void resample_separable(const T* x, Out* out, const Extent3& in, const Extent3& o, const std::array<int, 3>& orders,
                        const std::array<AxisTaps, 3>& p, const VoxelMap& load) {
  const std::int64_t D = in[0], H = in[1], W = in[2];
  const std::int64_t Do = o[0], Ho = o[1], Wo = o[2];
  auto rows = Tensor<float, Cuda>::empty({D, H, Wo});
  if (orders[2] == 3) {
    auto loaded = Tensor<float, Cuda>::empty({D, H, W});
    map_kernel<<<grid_for(D * H * W), block_threads, 0, stream()>>>(x, loaded.data(), D * H * W, load);
    check_launch("preprocess map_kernel");
    spline_prefilter(loaded.data(), W, 1, D * H, 1, W, 0);
    resample_axis(loaded.data(), rows.data(), D * H, W, Wo, 1, p[2], VoxelMap{});
  } else {
    resample_axis(x, rows.data(), D * H, W, Wo, 1, p[2], load);
  }
  if (orders[1] == 3) spline_prefilter(rows.data(), H, Wo, D * Wo, Wo, H * Wo, 1);
  auto mid = Tensor<float, Cuda>::empty({D, Ho, Wo});
  resample_axis(rows.data(), mid.data(), D, H, Ho, Wo, p[1], VoxelMap{});
  if (orders[0] == 3) spline_prefilter(mid.data(), D, Ho * Wo, Ho * Wo, Ho * Wo, 0, 1);
  resample_axis(mid.data(), out, 1, D, Do, Ho * Wo, p[0], VoxelMap{});
}

// -- Reductions -----------------------------------------------------------------------------

/// Blocks of the fixed-grid reductions: a function of nothing, so their trees never change.
constexpr unsigned reduce_grid = 1024;

/// Sum of a block's `v` in a fixed tree (block_threads threads); thread 0 gets the total.
__device__ inline double block_sum(double v, double* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (unsigned s = block_threads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) shared[threadIdx.x] = __dadd_rn(shared[threadIdx.x], shared[threadIdx.x + s]);
    __syncthreads();
  }
  return shared[0];
}

/// Per-block min and max of map(float(x)), the CPU's comparisons (NaN never taken).
template <class T>
__global__ void min_max_kernel(const T* __restrict__ x, std::int64_t n, VoxelMap map, float* block_lo, float* block_hi) {
  __shared__ float lo_s[block_threads], hi_s[block_threads];
  float lo = __int_as_float(0x7f800000), hi = -__int_as_float(0x7f800000);  // +inf, -inf
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) {
    const float v = apply_map(map, static_cast<float>(x[i]));
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
  }
  lo_s[threadIdx.x] = lo;
  hi_s[threadIdx.x] = hi;
  __syncthreads();
  for (unsigned s = block_threads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      lo_s[threadIdx.x] = lo_s[threadIdx.x + s] < lo_s[threadIdx.x] ? lo_s[threadIdx.x + s] : lo_s[threadIdx.x];
      hi_s[threadIdx.x] = hi_s[threadIdx.x] < hi_s[threadIdx.x + s] ? hi_s[threadIdx.x + s] : hi_s[threadIdx.x];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    block_lo[blockIdx.x] = lo_s[0];
    block_hi[blockIdx.x] = hi_s[0];
  }
}

/// The smallest index i with x[i] != 0 (result starts at LLONG_MAX): each thread stops at its
/// first nonzero element (its later ones come after it), a warp keeps its smallest, one atomic.
template <class T>
__global__ void first_nonzero_kernel(const T* __restrict__ x, std::int64_t n, long long* result) {
  long long first = LLONG_MAX;
  for (std::int64_t i = first_index(); i < n; i += grid_stride())
    if (x[i] != T(0)) {
      first = static_cast<long long>(i);
      break;
    }
  for (int offset = 16; offset > 0; offset >>= 1) {
    const long long o = __shfl_xor_sync(0xffffffffu, first, offset);
    first = o < first ? o : first;
  }
  if (threadIdx.x % 32 == 0 && first != LLONG_MAX) atomicMin(result, first);
}

// The CPU's moments() blocking (preprocess/intensity.hpp): blocks of reduce_block elements,
// runs of 1024 in a block, 16 float lanes in a run (lane l takes elements l, l + 16, ...; the
// tail of a run that is not a multiple of 16 goes to lane 0, after its own), each run's lanes
// folded into the block's double sums in lane order, the blocks summed in order.
constexpr std::int64_t moment_run = 1024, moment_lanes = 16;
static_assert(ops::reduce_block % moment_run == 0, "runs must tile the CPU's blocks");

/// One thread per (run, lane): its float sums of v - shift and (v - shift)^2, and its count.
template <class T>
__global__ void moment_lanes_kernel(const T* __restrict__ x, std::int64_t n, bool nonzero_only, float shift,
                                    float* lane_sum, float* lane_sq, std::int32_t* lane_count, std::int64_t threads) {
  for (std::int64_t t = first_index(); t < threads; t += grid_stride()) {
    const std::int64_t run = t / moment_lanes, lane = t % moment_lanes;
    const std::int64_t r0 = run * moment_run, r1 = std::min(n, r0 + moment_run);
    const std::int64_t full = (r1 - r0) / moment_lanes * moment_lanes;
    float sum = 0, sq = 0;
    std::int32_t count = 0;
    auto add = [&](std::int64_t e) {
      const bool keep = !nonzero_only || x[e] != T(0);
      const float v = keep ? __fsub_rn(static_cast<float>(x[e]), shift) : 0.0f;
      sum = __fadd_rn(sum, v);
      sq = __fadd_rn(sq, __fmul_rn(v, v));
      count += keep ? 1 : 0;
    };
    for (std::int64_t j = lane; j < full; j += moment_lanes) add(r0 + j);
    if (lane == 0)
      for (std::int64_t e = r0 + full; e < r1; ++e) add(e);
    lane_sum[t] = sum;
    lane_sq[t] = sq;
    lane_count[t] = count;
  }
}

/// One thread per CPU block: its runs' lanes folded into double in order. (The 16 lanes of a run
/// are unrolled so their loads are in flight together: few threads, each a long serial sum.)
__global__ void moment_blocks_kernel(const float* __restrict__ lane_sum, const float* __restrict__ lane_sq,
                                     const std::int32_t* __restrict__ lane_count, std::int64_t runs,
                                     std::int64_t blocks, double* __restrict__ block_sum_out,
                                     double* __restrict__ block_sq_out, long long* __restrict__ block_count_out) {
  constexpr std::int64_t runs_per_block = ops::reduce_block / moment_run;
  for (std::int64_t b = first_index(); b < blocks; b += grid_stride()) {
    double sum = 0, sq = 0;
    long long count = 0;
    const std::int64_t end = std::min(runs, (b + 1) * runs_per_block);
    for (std::int64_t r = b * runs_per_block; r < end; ++r)
#pragma unroll
      for (std::int64_t l = 0; l < moment_lanes; ++l) {
        sum = __dadd_rn(sum, static_cast<double>(lane_sum[r * moment_lanes + l]));
        sq = __dadd_rn(sq, static_cast<double>(lane_sq[r * moment_lanes + l]));
        count += lane_count[r * moment_lanes + l];
      }
    block_sum_out[b] = sum;
    block_sq_out[b] = sq;
    block_count_out[b] = count;
  }
}

/// Per-block double sum and count of values where flags (all when flags is null); with
/// `squares`, the sum of (v - mean)^2 instead.
__global__ void masked_sum_kernel(const float* __restrict__ values, const std::uint8_t* __restrict__ flags,
                                  std::int64_t n, bool squares, double mean, double* block_out, long long* count_out) {
  __shared__ double shared[block_threads];
  double acc = 0;
  long long count = 0;
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) {
    if (flags && !flags[i]) continue;
    const double v = static_cast<double>(values[i]);
    if (squares) {
      const double d = __dsub_rn(v, mean);
      acc = __dadd_rn(acc, __dmul_rn(d, d));
    } else {
      acc = __dadd_rn(acc, v);
    }
    ++count;
  }
  const double total = block_sum(acc, shared);
  __syncthreads();
  const double counted = block_sum(static_cast<double>(count), shared);
  if (threadIdx.x == 0) {
    block_out[blockIdx.x] = total;
    count_out[blockIdx.x] = static_cast<long long>(counted);
  }
}

/// Floats as unsigned keys in the same order (negatives flipped whole, positives by the sign bit).
__device__ inline std::uint32_t ordered_key(float f) {
  const std::uint32_t bits = __float_as_uint(f);
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}
float key_to_float(std::uint32_t key) {
  const std::uint32_t bits = (key & 0x80000000u) ? (key & 0x7fffffffu) : ~key;
  float f = 0;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

/// Histogram of the next 8 bits (at `shift`) of the keys of the selected values whose higher
/// bits equal `prefix`: one step of the radix select.
__global__ void radix_histogram_kernel(const float* __restrict__ values, const std::uint8_t* __restrict__ flags,
                                       std::int64_t n, std::uint32_t prefix, std::uint32_t prefix_mask, int shift,
                                       unsigned long long* hist) {
  __shared__ unsigned int local[256];
  for (unsigned b = threadIdx.x; b < 256; b += blockDim.x) local[b] = 0;
  __syncthreads();
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) {
    if (flags && !flags[i]) continue;
    const std::uint32_t key = ordered_key(values[i]);
    if ((key & prefix_mask) == prefix) atomicAdd(&local[(key >> shift) & 0xffu], 1u);
  }
  __syncthreads();
  for (unsigned b = threadIdx.x; b < 256; b += blockDim.x)
    if (local[b]) atomicAdd(&hist[b], static_cast<unsigned long long>(local[b]));
}

// -- Crop, box, labels ----------------------------------------------------------------------

/// One warp per row (c, d, h): its lanes scan the row; each thread keeps the smallest and
/// largest d, h, w of the elements != background it has seen; the block's extremes go to
/// box[6] = {min d, min h, min w, max d, max h, max w} by atomics (order-free).
template <class T>
__global__ void nonzero_box_kernel(const T* __restrict__ x, std::int64_t rows, Extent3 e, T background,
                                   long long* box) {
  constexpr int warps_per_block = block_threads / 32;
  __shared__ long long warp_lo[warps_per_block][3], warp_hi[warps_per_block][3];
  const std::int64_t lane = threadIdx.x % 32;
  const std::int64_t warp = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * blockDim.x / 32;
  long long lo[3] = {LLONG_MAX, LLONG_MAX, LLONG_MAX}, hi[3] = {-1, -1, -1};
  for (std::int64_t row = warp; row < rows; row += warps) {
    const std::int64_t h = row % e[1], d = (row / e[1]) % e[0];
    const T* r = x + row * e[2];
    for (std::int64_t w = lane; w < e[2]; w += 32)
      if (r[w] != background) {
        const long long at[3] = {d, h, w};
        for (int a = 0; a < 3; ++a) {
          lo[a] = at[a] < lo[a] ? at[a] : lo[a];
          hi[a] = at[a] > hi[a] ? at[a] : hi[a];
        }
      }
  }
  for (int a = 0; a < 3; ++a) {
    for (int offset = 16; offset > 0; offset >>= 1) {
      const long long l = __shfl_xor_sync(0xffffffffu, lo[a], offset);
      const long long h = __shfl_xor_sync(0xffffffffu, hi[a], offset);
      lo[a] = l < lo[a] ? l : lo[a];
      hi[a] = h > hi[a] ? h : hi[a];
    }
    if (lane == 0) {
      warp_lo[threadIdx.x / 32][a] = lo[a];
      warp_hi[threadIdx.x / 32][a] = hi[a];
    }
  }
  __syncthreads();
  if (threadIdx.x < 3) {
    const unsigned a = threadIdx.x;
    long long l = LLONG_MAX, h = -1;
    for (int w = 0; w < warps_per_block; ++w) {
      l = warp_lo[w][a] < l ? warp_lo[w][a] : l;
      h = warp_hi[w][a] > h ? warp_hi[w][a] : h;
    }
    if (h >= 0) {
      atomicMin(&box[a], l);
      atomicMax(&box[3 + a], h);
    }
  }
}

/// out = the box of x, elements copied as `E` (an unsigned type of the element's size).
template <class E>
__global__ void crop_kernel(const E* __restrict__ x, E* __restrict__ out, std::int64_t rows, Extent3 e, Extent3 begin,
                            Extent3 size) {
  const std::int64_t w = launch_column();
  if (w >= size[2]) return;
  for (std::int64_t row = launch_row(); row < rows; row += launch_row_stride()) {
    const DivMod hd = divmod(row, size[1]), dc = divmod(hd.quot, size[0]);
    const std::int64_t h = hd.rem, d = dc.rem, c = dc.quot;
    out[row * size[2] + w] = x[((c * e[0] + begin[0] + d) * e[1] + begin[1] + h) * e[2] + begin[2] + w];
  }
}

template <class L>
__global__ void remap_kernel(const L* __restrict__ x, L* __restrict__ out, std::int64_t n, const L* from, const L* to,
                             int pairs, bool has_unmapped, L unmapped) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) {
    const L v = x[i];
    L r = has_unmapped ? unmapped : v;
    for (int m = 0; m < pairs; ++m)
      if (from[m] == v) {
        r = to[m];
        break;
      }
    out[i] = r;
  }
}

template <class L>
__global__ void set_ignore_kernel(const L* __restrict__ seg, const std::uint8_t* __restrict__ keep, L* __restrict__ out,
                                  std::int64_t n, L ignore) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) out[i] = keep[i] ? seg[i] : ignore;
}

/// The smallest value above `after` (any value when `first`); result starts at LLONG_MAX.
template <class L>
__global__ void next_value_kernel(const L* __restrict__ x, std::int64_t n, long long after, bool first,
                                  long long* result) {
  long long best = LLONG_MAX;
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) {
    const auto v = static_cast<long long>(x[i]);
    if ((first || v > after) && v < best) best = v;
  }
  for (int offset = 16; offset > 0; offset >>= 1) {
    const long long o = __shfl_xor_sync(0xffffffffu, best, offset);
    best = o < best ? o : best;
  }
  if (threadIdx.x % 32 == 0 && best != LLONG_MAX) atomicMin(result, best);
}

template <class L>
__global__ void paint_kernel(const float* __restrict__ mask, L* __restrict__ out, std::int64_t n, L label) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride())
    if (mask[i] >= ops::label_mask_threshold) out[i] = label;
}

/// A one-element device counter set to `value`. Tensors hold std::int64_t (long); CUDA's 64-bit
/// atomics take long long, the same representation.
Tensor<std::int64_t, Cuda> device_scalar(std::int64_t value) { return Tensor<std::int64_t, Cuda>::from({value}, {1}); }
long long* as_atomic(const Tensor<std::int64_t, Cuda>& t) { return reinterpret_cast<long long*>(t.data()); }
static_assert(sizeof(long long) == sizeof(std::int64_t));

}  // namespace

// -- ResamplePlan ---------------------------------------------------------------------------

ResamplePlan::ResamplePlan(const Extent3& in, const Extent3& out, const ops::ResampleOptions& options)
    : order_(options.order) {
  const std::string where = "cuda::ResamplePlan";
  const std::array<int, 3> orders = ops::checked_orders(options, where);
  ops::check_output_shape(out, where);
  require(in[0] >= 1 && in[1] >= 1 && in[2] >= 1, [&] {
    return ErrorInfo{.where = where, .field = "input extent", .expected = "non-empty spatial axes",
                     .actual = "[" + std::to_string(in[0]) + "," + std::to_string(in[1]) + "," + std::to_string(in[2]) + "]"};
  });
  upload(ops::plan_resample(in, out, orders, options));
}

ResamplePlan::ResamplePlan(const ops::ResampleTaps& taps)
    : order_(std::max({taps.orders[0], taps.orders[1], taps.orders[2]})) {
  upload(taps);
}

void ResamplePlan::upload(const ops::ResampleTaps& taps) {
  in_ = taps.in;
  out_ = taps.out;
  orders_ = taps.orders;
  std::vector<std::int64_t> index;
  std::vector<float> weight;
  for (std::size_t a = 0; a < 3; ++a) {
    const ops::AxisPlan& p = taps.axes[a];
    taps_[a] = p.taps;
    first_[a] = static_cast<std::int64_t>(index.size());
    index.insert(index.end(), p.index.begin(), p.index.end());
    weight.insert(weight.end(), p.weight.begin(), p.weight.end());
  }
  const auto count = static_cast<std::int64_t>(index.size());
  index_ = Tensor<std::int64_t, Cuda>::from(std::span<const std::int64_t>(index), {count});
  weight_ = Tensor<float, Cuda>::from(std::span<const float>(weight), {count});
}

void ResamplePlan::launch(const void* x, DType in_type, void* out, DType out_type, std::int64_t channels,
                          const VoxelMap& load) const {
  const std::array<AxisTaps, 3> p{AxisTaps{index_.data() + first_[0], weight_.data() + first_[0], taps_[0]},
                                  AxisTaps{index_.data() + first_[1], weight_.data() + first_[1], taps_[1]},
                                  AxisTaps{index_.data() + first_[2], weight_.data() + first_[2], taps_[2]}};
  const bool all_nearest = orders_ == std::array<int, 3>{0, 0, 0};
  const bool all_linear = orders_[0] <= 1 && orders_[1] <= 1 && orders_[2] <= 1;
  const std::int64_t rows = channels * out_[0] * out_[1];
  const std::int64_t in_volume = in_[0] * in_[1] * in_[2], out_volume = out_[0] * out_[1] * out_[2];
  const RowLaunch shape = row_launch(out_[2], rows);
  with_voxel_type(in_type, "cuda::ResamplePlan::run", [&](auto tag) {
    using T = decltype(tag);
    const T* src = static_cast<const T*>(x);
    if (all_nearest) {
      const bool has_load = load.kind != VoxelMap::Kind::identity;
      if (out_type == DType::float32)
        resample_nearest_kernel<<<shape.grid, shape.block, 0, stream()>>>(src, static_cast<float*>(out), rows, in_, out_,
                                                                          p[0], p[1], p[2], load, has_load);
      else
        resample_nearest_kernel<<<shape.grid, shape.block, 0, stream()>>>(src, static_cast<T*>(out), rows, in_, out_,
                                                                          p[0], p[1], p[2], load, has_load);
      check_launch("preprocess resample_nearest_kernel");
      return;
    }
    // Orders 1 and 3 write float (checked by run()).
    float* dst = static_cast<float*>(out);
    if (all_linear) {
      const bool blend = ops::blends_rows_first(orders_, in_, out_);
      resample_linear_kernel<<<shape.grid, shape.block, 0, stream()>>>(src, dst, rows, in_, out_, p[0], p[1], p[2], load,
                                                                       blend);
      check_launch("preprocess resample_linear_kernel");
      return;
    }
    for (std::int64_t c = 0; c < channels; ++c)
      resample_separable(src + c * in_volume, dst + c * out_volume, in_, out_, orders_, p, load);
  });
}

namespace detail {

// -- Pointwise ------------------------------------------------------------------------------

void map_to_float(const void* x, DType type, std::int64_t n, float* out, const VoxelMap& map) {
  if (n == 0) return;
  with_voxel_type(type, "preprocess (Cuda)", [&](auto tag) {
    using T = decltype(tag);
    map_kernel<<<grid_for(n), block_threads, 0, stream()>>>(static_cast<const T*>(x), out, n, map);
    check_launch("preprocess map_kernel");
  });
}

void nonzero_flags(const void* x, DType type, std::int64_t n, std::uint8_t* out) {
  if (n == 0) return;
  with_voxel_type(type, "preprocess (Cuda)", [&](auto tag) {
    using T = decltype(tag);
    nonzero_flags_kernel<<<grid_for(n), block_threads, 0, stream()>>>(static_cast<const T*>(x), out, n);
    check_launch("preprocess nonzero_flags_kernel");
  });
}

// -- Reductions -----------------------------------------------------------------------------

ops::MinMax min_max(const void* x, DType type, std::int64_t n, const VoxelMap& map) {
  ops::MinMax total;
  if (n == 0) return total;
  const unsigned blocks = std::min(reduce_grid, grid_for(n));
  auto lo = Tensor<float, Cuda>::empty({blocks});
  auto hi = Tensor<float, Cuda>::empty({blocks});
  with_voxel_type(type, "preprocess::min_max (Cuda)", [&](auto tag) {
    using T = decltype(tag);
    min_max_kernel<<<blocks, block_threads, 0, stream()>>>(static_cast<const T*>(x), n, map, lo.data(), hi.data());
    check_launch("preprocess min_max_kernel");
  });
  const auto l = lo.to_vector(), h = hi.to_vector();
  for (unsigned b = 0; b < blocks; ++b) total = total + ops::MinMax{l[b], h[b]};
  return total;
}

std::int64_t first_nonzero(const void* x, DType type, std::int64_t n) {
  if (n == 0) return -1;
  auto result = device_scalar(LLONG_MAX);
  with_voxel_type(type, "preprocess::moments (Cuda)", [&](auto tag) {
    using T = decltype(tag);
    first_nonzero_kernel<<<std::min(reduce_grid, grid_for(n)), block_threads, 0, stream()>>>(static_cast<const T*>(x), n,
                                                                                             as_atomic(result));
    check_launch("preprocess first_nonzero_kernel");
  });
  const std::int64_t r = result.to_vector()[0];
  return r == LLONG_MAX ? -1 : r;
}

ops::SumSq shifted_sums(const void* x, DType type, std::int64_t n, bool nonzero_only, float shift) {
  ops::SumSq total;
  if (n == 0) return total;
  const std::int64_t runs = (n + moment_run - 1) / moment_run;
  const std::int64_t threads = runs * moment_lanes;
  const std::int64_t blocks = (n + ops::reduce_block - 1) / ops::reduce_block;
  auto lane_sum = Tensor<float, Cuda>::empty({threads});
  auto lane_sq = Tensor<float, Cuda>::empty({threads});
  auto lane_count = Tensor<std::int32_t, Cuda>::empty({threads});
  auto block_sum_d = Tensor<double, Cuda>::empty({blocks});
  auto block_sq_d = Tensor<double, Cuda>::empty({blocks});
  auto block_count_d = Tensor<std::int64_t, Cuda>::empty({blocks});
  with_voxel_type(type, "preprocess::moments (Cuda)", [&](auto tag) {
    using T = decltype(tag);
    moment_lanes_kernel<<<grid_for(threads), block_threads, 0, stream()>>>(
        static_cast<const T*>(x), n, nonzero_only, shift, lane_sum.data(), lane_sq.data(), lane_count.data(), threads);
    check_launch("preprocess moment_lanes_kernel");
  });
  moment_blocks_kernel<<<grid_for(blocks), block_threads, 0, stream()>>>(lane_sum.data(), lane_sq.data(),
                                                                          lane_count.data(), runs, blocks,
                                                                          block_sum_d.data(), block_sq_d.data(),
                                                                          as_atomic(block_count_d));
  check_launch("preprocess moment_blocks_kernel");
  const auto s = block_sum_d.to_vector(), q = block_sq_d.to_vector();
  const auto c = block_count_d.to_vector();
  // The CPU's last step: total = total + block, in block order.
  for (std::int64_t b = 0; b < blocks; ++b) {
    const auto i = static_cast<std::size_t>(b);
    total = total + ops::SumSq{s[i], q[i], static_cast<std::int64_t>(c[i])};
  }
  return total;
}

namespace {
ops::SumSq masked_reduce(const float* values, const std::uint8_t* flags, std::int64_t n, bool squares,
                                        double mean) {
  ops::SumSq total;
  if (n == 0) return total;
  const unsigned blocks = std::min(reduce_grid, grid_for(n));
  auto partial = Tensor<double, Cuda>::empty({blocks});
  auto counts = Tensor<std::int64_t, Cuda>::empty({blocks});
  masked_sum_kernel<<<blocks, block_threads, 0, stream()>>>(values, flags, n, squares, mean, partial.data(),
                                                            as_atomic(counts));
  check_launch("preprocess masked_sum_kernel");
  const auto p = partial.to_vector();
  const auto c = counts.to_vector();
  for (unsigned b = 0; b < blocks; ++b) {
    total.sum += p[b];
    total.count += static_cast<std::int64_t>(c[b]);
  }
  return total;
}
}  // namespace

ops::SumSq masked_sum(const float* values, const std::uint8_t* flags, std::int64_t n) {
  return masked_reduce(values, flags, n, false, 0.0);
}

double masked_squared_deviation(const float* values, const std::uint8_t* flags, std::int64_t n, double mean) {
  return masked_reduce(values, flags, n, true, mean).sum;
}

float kth_smallest(const float* values, const std::uint8_t* flags, std::int64_t n, std::int64_t k) {
  // Four 8-bit digits of the ordered key, most significant first: each step keeps the bin
  // that holds rank k among the values that share the digits chosen so far.
  auto hist = Tensor<std::uint64_t, Cuda>::empty({256});
  const unsigned blocks = std::min(reduce_grid, grid_for(n));
  std::uint32_t prefix = 0, prefix_mask = 0;
  auto remaining = static_cast<unsigned long long>(k);
  for (int shift = 24; shift >= 0; shift -= 8) {
    MEDSEG_CUDA_CHECK(cudaMemsetAsync(hist.data(), 0, hist.nbytes(), stream()));
    radix_histogram_kernel<<<blocks, block_threads, 0, stream()>>>(values, flags, n, prefix, prefix_mask, shift,
                                                                   reinterpret_cast<unsigned long long*>(hist.data()));
    check_launch("preprocess radix_histogram_kernel");
    const auto h = hist.to_vector();
    unsigned long long below = 0;
    int bin = -1;
    for (int b = 0; b < 256; ++b) {
      if (remaining < below + h[static_cast<std::size_t>(b)]) {
        bin = b;
        break;
      }
      below += h[static_cast<std::size_t>(b)];
    }
    require(bin >= 0, [&] {
      return ErrorInfo{.where = "preprocess::percentile (Cuda)", .field = "rank", .expected = "below the value count",
                       .actual = std::to_string(k)};
    });
    remaining -= below;
    prefix |= static_cast<std::uint32_t>(bin) << shift;
    prefix_mask |= 0xffu << shift;
  }
  return key_to_float(prefix);
}

// -- Crop, box ------------------------------------------------------------------------------

ops::Box nonzero_box(const void* x, DType type, std::int64_t channels, const Extent3& e, const void* background) {
  const std::int64_t rows = channels * e[0] * e[1];
  auto box = Tensor<std::int64_t, Cuda>::from({LLONG_MAX, LLONG_MAX, LLONG_MAX, -1, -1, -1}, {6});
  if (rows > 0 && e[2] > 0) {
    // Warps stride over the rows, so a fixed number of blocks keeps the atomics few.
    const unsigned blocks = static_cast<unsigned>(std::clamp<std::int64_t>((rows + 7) / 8, 1, reduce_grid));
    with_voxel_type(type, "preprocess::nonzero_box (Cuda)", [&](auto tag) {
      using T = decltype(tag);
      T bg{};
      std::memcpy(&bg, background, sizeof(T));
      nonzero_box_kernel<<<blocks, block_threads, 0, stream()>>>(static_cast<const T*>(x), rows, e, bg, as_atomic(box));
      check_launch("preprocess nonzero_box_kernel");
    });
  }
  const auto b = box.to_vector();
  if (b[3] < 0) return ops::Box{{0, 0, 0}, e};  // nothing differs from the background
  return ops::Box{{b[0], b[1], b[2]}, {b[3] + 1, b[4] + 1, b[5] + 1}};
}

void crop(const void* x, std::size_t element_bytes, std::int64_t channels, const Extent3& e, const ops::Box& box,
          void* out) {
  const Extent3 size = box.shape();
  const std::int64_t rows = channels * size[0] * size[1];
  if (rows == 0 || size[2] == 0) return;
  const RowLaunch shape = row_launch(size[2], rows);
  with_word_type(element_bytes, "preprocess::crop (Cuda)", [&](auto tag) {
    using E = decltype(tag);
    crop_kernel<<<shape.grid, shape.block, 0, stream()>>>(static_cast<const E*>(x), static_cast<E*>(out), rows, e,
                                                          box.begin, size);
    check_launch("preprocess crop_kernel");
  });
}

// -- Labels ---------------------------------------------------------------------------------

void remap_labels(const void* x, DType type, std::int64_t n, const std::vector<std::int64_t>& from,
                  const std::vector<std::int64_t>& to, std::optional<std::int64_t> unmapped, void* out) {
  if (n == 0) return;
  with_label_type(type, "preprocess::remap_labels (Cuda)", [&](auto tag) {
    using L = decltype(tag);
    std::vector<L> f, t;
    for (std::size_t i = 0; i < from.size(); ++i) {
      f.push_back(static_cast<L>(from[i]));
      t.push_back(static_cast<L>(to[i]));
    }
    const auto pairs = static_cast<std::int64_t>(f.size());
    // One element at least: a zero-byte device buffer is still a valid pointer to pass.
    f.resize(std::max<std::size_t>(f.size(), 1));
    t.resize(std::max<std::size_t>(t.size(), 1));
    const auto from_d = Tensor<L, Cuda>::from(std::span<const L>(f), {static_cast<std::int64_t>(f.size())});
    const auto to_d = Tensor<L, Cuda>::from(std::span<const L>(t), {static_cast<std::int64_t>(t.size())});
    remap_kernel<<<grid_for(n), block_threads, 0, stream()>>>(static_cast<const L*>(x), static_cast<L*>(out), n,
                                                              from_d.data(), to_d.data(), static_cast<int>(pairs),
                                                              unmapped.has_value(), static_cast<L>(unmapped.value_or(0)));
    check_launch("preprocess remap_kernel");
    // The mapping buffers go back to the allocator when this returns; the allocator orders
    // their reuse after the kernel on this stream.
  });
}

void set_ignore_label(const void* seg, DType type, const void* mask, DType mask_type, std::int64_t n,
                      std::int64_t ignore, void* out) {
  if (n == 0) return;
  auto keep = Tensor<std::uint8_t, Cuda>::empty({n});
  nonzero_flags(mask, mask_type, n, keep.data());
  with_label_type(type, "preprocess::set_ignore_label (Cuda)", [&](auto tag) {
    using L = decltype(tag);
    set_ignore_kernel<<<grid_for(n), block_threads, 0, stream()>>>(static_cast<const L*>(seg), keep.data(),
                                                                   static_cast<L*>(out), n, static_cast<L>(ignore));
    check_launch("preprocess set_ignore_kernel");
  });
}

std::vector<std::int64_t> unique_values(const void* x, DType type, std::int64_t n) {
  // Label maps hold a handful of values: one pass per value, each finding the next larger one.
  std::vector<std::int64_t> values;
  if (n == 0) return values;
  with_label_type(type, "preprocess::unique_labels (Cuda)", [&](auto tag) {
    using L = decltype(tag);
    for (;;) {
      auto next = device_scalar(LLONG_MAX);
      const bool first = values.empty();
      next_value_kernel<<<std::min(reduce_grid, grid_for(n)), block_threads, 0, stream()>>>(static_cast<const L*>(x), n,
                                                                     first ? 0LL : static_cast<long long>(values.back()),
                                                                     first, as_atomic(next));
      check_launch("preprocess next_value_kernel");
      const std::int64_t v = next.to_vector()[0];
      if (v == LLONG_MAX) break;
      values.push_back(v);
    }
  });
  return values;
}

void paint_label(const float* mask, std::int64_t n, void* out, DType type, std::int64_t label) {
  if (n == 0) return;
  with_label_type(type, "preprocess::resample_segmentation (Cuda)", [&](auto tag) {
    using L = decltype(tag);
    paint_kernel<<<grid_for(n), block_threads, 0, stream()>>>(mask, static_cast<L*>(out), n, static_cast<L>(label));
    check_launch("preprocess paint_kernel");
  });
}

}  // namespace detail

}  // namespace medseg::cuda
