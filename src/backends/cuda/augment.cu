// Kernels of backends/cuda/augment.hpp (the Cuda side of the augmentations in transforms/).
// Grid-stride loops with 64-bit indices on the current stream. The per-voxel work is the host-
// device code of backends/augment.hpp, whose products and sums are __fmul_rn / __fadd_rn (and
// the double ones) here, so that nvcc cannot contract them into FMAs: the CPU kernels are built
// with -ffp-contract=off, and the GPU must round where they round, in the same order, to give
// the same bits.
#include "medseg/backends/cuda/augment.hpp"

#include <cstring>
#include <string>

#include "backends/cuda/launch.cuh"
#include "backends/cuda/word_type.cuh"
#include "medseg/backends/cuda/backend.hpp"
#include "medseg/core/rng.hpp"
#include "medseg/core/tensor.hpp"

namespace medseg::ops {

namespace {

using namespace cuda::detail;  // launch.cuh, word_type.cuh: grid_for, grid-stride loops, check_launch
using cuda::current_stream;

// -- The spatial sampling pass --------------------------------------------------------------

struct SampleArgs {
  voxel::GridSpec grid;
  const float* displacement;
  const float* image;
  float* image_out;
  std::int64_t channels, d, h, w;
  SamplingModes modes;
};

/// One thread per output voxel: its input coordinate as walk_grid computes it, then every
/// channel of the image and the label read there as ImageSampler and LabelSampler read.
template <class L>
__global__ void sample_grid_kernel(SampleArgs a, const L* __restrict__ label, L* __restrict__ label_out) {
  const std::int64_t ow = a.grid.out[2], oh = a.grid.out[1];
  const std::int64_t plane = a.grid.out[0] * oh * ow, in_plane = a.d * a.h * a.w;
  for (std::int64_t at = first_index(); at < plane; at += grid_stride()) {
    const std::int64_t x = at % ow, row = at / ow;
    double p[3];
    voxel::grid_point(a.grid, row / oh, row % oh, x, a.displacement, at, plane, p);
    if (a.modes.image == 0) {
      const std::int64_t src = voxel::nearest_offset(p[0], p[1], p[2], a.d, a.h, a.w);
      for (std::int64_t c = 0; c < a.channels; ++c)
        a.image_out[c * plane + at] = src >= 0 ? a.image[c * in_plane + src] : 0.0f;
    } else {
      const voxel::Corner corner = voxel::corner_of(p[0], p[1], p[2]);
      for (std::int64_t c = 0; c < a.channels; ++c)
        a.image_out[c * plane + at] = voxel::linear_sample({a.image + c * in_plane, a.d, a.h, a.w}, corner);
    }
    if (!label) continue;
    if (a.modes.label == 0) {
      const std::int64_t src = voxel::nearest_offset(p[0], p[1], p[2], a.d, a.h, a.w);
      label_out[at] = src >= 0 ? label[src] : L(0);
    } else {
      label_out[at] = voxel::per_class_linear_sample(label, a.d, a.h, a.w, voxel::corner_of(p[0], p[1], p[2]));
    }
  }
}

// -- Whole-voxel moves: crops, flips, quarter turns ------------------------------------------

struct BoxArgs {
  std::int64_t channels, in[3], begin[3], size[3];
};

template <class E>
__global__ void crop_or_pad_kernel(const E* __restrict__ x, E* __restrict__ out, BoxArgs b, E fill) {
  const std::int64_t n = b.channels * b.size[0] * b.size[1] * b.size[2];
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) {
    const std::int64_t ox = i % b.size[2], r = i / b.size[2];
    const std::int64_t oy = r % b.size[1], r2 = r / b.size[1];
    const std::int64_t oz = r2 % b.size[0], c = r2 / b.size[0];
    const std::int64_t z = oz + b.begin[0], y = oy + b.begin[1], xx = ox + b.begin[2];
    const bool inside = z >= 0 && z < b.in[0] && y >= 0 && y < b.in[1] && xx >= 0 && xx < b.in[2];
    out[i] = inside ? x[((c * b.in[0] + z) * b.in[1] + y) * b.in[2] + xx] : fill;
  }
}

/// One thread per output element: voxel::permuted_source, the CPU's plan.
template <class E>
__global__ void permute_reverse_kernel(const E* __restrict__ x, E* __restrict__ out, voxel::PermutePlan plan,
                                       std::int64_t n) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) out[i] = x[voxel::permuted_source(plan, i)];
}

// -- Separable resizes ----------------------------------------------------------------------

/// One thread per output element: voxel::resized_value, resize_trilinear's lerps in its order.
__global__ void resize_separable_kernel(voxel::ResizeSpec r, const float* __restrict__ x, float* __restrict__ out,
                                        std::int64_t n) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) out[i] = voxel::resized_value(r, x, i);
}

// -- Bias field -----------------------------------------------------------------------------

/// The folds of bias_field_log: g [d, stride, stride] per plane, h [d, h, stride] per row
/// (device scratch), then every voxel.
struct BiasArgs {
  std::int64_t d, h, w;
  int degree;
  const double *c, *pz, *py, *px;
  double *g, *rows;
};

__global__ void bias_plane_kernel(BiasArgs a) {
  const std::int64_t stride = a.degree + 1, n = a.d * stride * stride;
  for (std::int64_t at = first_index(); at < n; at += grid_stride()) {
    const auto k = static_cast<int>(at % stride), j = static_cast<int>((at / stride) % stride);
    const std::int64_t z = at / (stride * stride);
    if (j + k <= a.degree) a.g[at] = voxel::bias_plane_term(a.c, a.degree, j, k, a.pz + z * stride);
  }
}

__global__ void bias_row_kernel(BiasArgs a) {
  const std::int64_t stride = a.degree + 1, n = a.d * a.h * stride;
  for (std::int64_t at = first_index(); at < n; at += grid_stride()) {
    const auto k = static_cast<int>(at % stride);
    const std::int64_t row = at / stride, y = row % a.h, z = row / a.h;
    a.rows[at] = voxel::bias_row_term(a.g + z * stride * stride, a.degree, k, a.py + y * stride);
  }
}

/// f of every voxel (bias_field_log).
__global__ void bias_log_kernel(BiasArgs a, float* __restrict__ f) {
  const std::int64_t stride = a.degree + 1, n = a.d * a.h * a.w;
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) {
    const std::int64_t col = i % a.w, row = i / a.w;
    f[i] = voxel::bias_log_point(a.rows + row * stride, a.degree, a.px + col * stride);
  }
}

/// x *= exp(f) for every channel; expf is CUDA's, which may differ from the C library's
/// (the CPU's std::exp) in the last bit.
__global__ void bias_multiply_kernel(BiasArgs a, float* __restrict__ x, std::int64_t channels) {
  const std::int64_t stride = a.degree + 1, n = a.d * a.h * a.w;
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) {
    const std::int64_t col = i % a.w, row = i / a.w;
    const float gain = ::expf(voxel::bias_log_point(a.rows + row * stride, a.degree, a.px + col * stride));
    for (std::int64_t c = 0; c < channels; ++c) x[c * n + i] = voxel::mul(x[c * n + i], gain);
  }
}

// -- Random fields --------------------------------------------------------------------------

__global__ void uniform_noise_kernel(std::uint64_t seed, std::uint64_t stream, float* __restrict__ out, std::int64_t n) {
  const std::int64_t blocks = (n + 3) / 4;
  for (std::int64_t k = first_index(); k < blocks; k += grid_stride()) {
    const auto w = Philox4x32::block(seed, stream, static_cast<std::uint64_t>(k));
    for (std::int64_t j = 0; j < 4 && 4 * k + j < n; ++j)
      out[4 * k + j] = __fsub_rn(__fmul_rn(2.0f, uniform_from_bits(w[static_cast<std::uint64_t>(j)])), 1.0f);
  }
}

__global__ void gaussian_noise_kernel(float* __restrict__ x, std::int64_t n, std::uint64_t seed, std::uint64_t stream,
                                      float sd) {
  const std::int64_t blocks = (n + 3) / 4;
  for (std::int64_t k = first_index(); k < blocks; k += grid_stride()) {
    const auto b = Philox4x32::block(seed, stream, static_cast<std::uint64_t>(k));
    const std::uint32_t w[4] = {b.w[0], b.w[1], b.w[2], b.w[3]};
    float z[4];
    voxel::noise_normals(w, z);
    for (std::int64_t j = 0; j < 4 && 4 * k + j < n; ++j) x[4 * k + j] = __fadd_rn(x[4 * k + j], __fmul_rn(sd, z[j]));
  }
}

// -- Gaussian filter ------------------------------------------------------------------------

/// One thread per output value: gaussian_tap_sum, the CPU's sum in the CPU's order.
__global__ void gaussian_axis_kernel(const float* __restrict__ x, float* __restrict__ y, std::int64_t outer,
                                     std::int64_t n, std::int64_t inner, const float* __restrict__ w, int taps) {
  const std::int64_t total = outer * n * inner;
  for (std::int64_t at = first_index(); at < total; at += grid_stride()) {
    const std::int64_t j = at % inner, r = at / inner;
    const std::int64_t i = r % n, o = r / n;
    y[at] = voxel::gaussian_tap_sum(x + o * n * inner + j, inner, i, n, w, taps);
  }
}

// -- Intensity maps -------------------------------------------------------------------------

__global__ void map_intensity_kernel(float* __restrict__ x, std::int64_t n, IntensityMap m) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) x[i] = voxel::apply_intensity(m, x[i]);
}

// -- Channel statistics ---------------------------------------------------------------------

using voxel::stats_lanes;
constexpr int stats_blocks_per_cta = 8;  // CPU blocks handled by one thread block

/// Thread (block b, lane l) makes lane l's partial of CPU block b (voxel::lane_partial); lane 0
/// then adds the tail and folds lanes 1..7 in, in order, as channel_stats does.
__global__ void channel_partials_kernel(const float* __restrict__ x, std::int64_t n, std::int64_t blocks,
                                        double* __restrict__ sums, double* __restrict__ squares,
                                        float* __restrict__ mins, float* __restrict__ maxs) {
  __shared__ voxel::Partial lanes[stats_blocks_per_cta][stats_lanes];
  const int local = static_cast<int>(threadIdx.x) / stats_lanes, lane = static_cast<int>(threadIdx.x) % stats_lanes;
  const std::int64_t block = static_cast<std::int64_t>(blockIdx.x) * stats_blocks_per_cta + local;
  constexpr std::int64_t size = channel_stats_block;
  const std::int64_t begin = block * size, end = n < begin + size ? n : begin + size;
  if (block < blocks) lanes[local][lane] = voxel::lane_partial(x, begin, end, lane);
  __syncthreads();
  if (lane != 0 || block >= blocks) return;
  voxel::Partial p = lanes[local][0];
  voxel::add_tail(p, x, voxel::lanes_end(begin, end), end);
  for (int l = 1; l < stats_lanes; ++l) voxel::fold(p, lanes[local][l]);
  sums[block] = p.sum;
  squares[block] = p.square;
  mins[block] = p.lo;
  maxs[block] = p.hi;
}

/// A host array copied to a new device tensor of the caching allocator, on the current stream.
/// The tensor is freed on this stream after the kernels that read it are queued (the
/// allocator reuses a block only for work queued later); a copy from pageable memory returns
/// once the source is staged, so the host array may go at once.
template <class T>
Tensor<T, Cuda> upload(const std::vector<T>& host) {
  auto d = Tensor<T, Cuda>::empty({static_cast<std::int64_t>(host.size())});
  if (!host.empty())
    MEDSEG_CUDA_CHECK(cudaMemcpyAsync(d.data(), host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice,
                                      current_stream()));
  return d;
}

/// Calls f(L{}) with the label type of `type`.
template <class F>
void with_label_type(DType type, F&& f) {
  switch (type) {
    case DType::uint8: f(std::uint8_t{}); return;
    case DType::int8: f(std::int8_t{}); return;
    case DType::int16: f(std::int16_t{}); return;
    case DType::uint16: f(std::uint16_t{}); return;
    case DType::int32: f(std::int32_t{}); return;
    case DType::int64: f(std::int64_t{}); return;
    default:
      throw Error{{.where = "cuda augmentation", .field = "label type",
                   .expected = "uint8, int8, int16, uint16, int32 or int64", .actual = std::string(name(type))}};
  }
}

}  // namespace

namespace detail::augment {

void sample_grid(const voxel::GridSpec& grid, const float* displacement, const float* image, float* image_out,
                 std::int64_t channels, const std::int64_t in[3], const void* label, void* label_out, DType label_type,
                 SamplingModes modes) {
  const std::int64_t n = grid.out[0] * grid.out[1] * grid.out[2];
  if (n == 0) return;
  const SampleArgs a{grid, displacement, image, image_out, channels, in[0], in[1], in[2], modes};
  if (!label) {
    sample_grid_kernel<std::uint8_t><<<grid_for(n), block_threads, 0, current_stream()>>>(a, nullptr, nullptr);
    check_launch("sample_grid_kernel");
    return;
  }
  with_label_type(label_type, [&](auto tag) {
    using L = decltype(tag);
    sample_grid_kernel<L><<<grid_for(n), block_threads, 0, current_stream()>>>(a, static_cast<const L*>(label),
                                                                                static_cast<L*>(label_out));
  });
  check_launch("sample_grid_kernel");
}

void crop_or_pad(const void* x, std::size_t element_bytes, std::int64_t channels, const std::int64_t in[3],
                 const std::int64_t begin[3], const std::int64_t size[3], void* out, const void* fill) {
  const BoxArgs b{channels, {in[0], in[1], in[2]}, {begin[0], begin[1], begin[2]}, {size[0], size[1], size[2]}};
  const std::int64_t n = channels * size[0] * size[1] * size[2];
  if (n == 0) return;
  // Elements are moved as unsigned words of their size: a copy, and the fill's bits outside.
  with_word_type(element_bytes, "ops::crop_or_pad", [&](auto tag) {
    using E = decltype(tag);
    E fill_bits;
    std::memcpy(&fill_bits, fill, sizeof(E));
    crop_or_pad_kernel<<<grid_for(n), block_threads, 0, current_stream()>>>(static_cast<const E*>(x),
                                                                            static_cast<E*>(out), b, fill_bits);
  });
  check_launch("crop_or_pad_kernel");
}

void permute_reverse(const void* x, std::size_t element_bytes, const voxel::PermutePlan& plan, std::int64_t n,
                     void* out) {
  if (n == 0) return;
  with_word_type(element_bytes, "ops::permute_reverse", [&](auto tag) {
    using E = decltype(tag);
    permute_reverse_kernel<<<grid_for(n), block_threads, 0, current_stream()>>>(static_cast<const E*>(x),
                                                                                static_cast<E*>(out), plan, n);
  });
  check_launch("permute_reverse_kernel");
}

}  // namespace detail::augment

void resize_separable(const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& out, const std::vector<std::int64_t>& i0,
                      const std::vector<std::int64_t>& i1, const std::vector<float>& t, bool linear) {
  const std::int64_t in[3] = {x.size(1), x.size(2), x.size(3)}, size[3] = {out.size(1), out.size(2), out.size(3)};
  const std::int64_t n = out.numel();
  const auto taps = static_cast<std::size_t>(size[0] + size[1] + size[2]);
  require(i0.size() == taps && (!linear || (i1.size() == taps && t.size() == taps)), [&] {
    return ErrorInfo{.where = "ops::resize_separable", .field = "taps",
                     .expected = std::to_string(taps) + " per array", .actual = std::to_string(i0.size())};
  });
  if (n == 0) return;
  const auto d_i0 = upload(i0);
  Tensor<std::int64_t, Cuda> d_i1;
  Tensor<float, Cuda> d_t;
  if (linear) {
    d_i1 = upload(i1);
    d_t = upload(t);
  }
  const voxel::ResizeSpec r{{in[0], in[1], in[2]}, {size[0], size[1], size[2]}, d_i0.data(),
                            linear ? d_i1.data() : nullptr, linear ? d_t.data() : nullptr, linear};
  resize_separable_kernel<<<grid_for(n), block_threads, 0, current_stream()>>>(r, x.data(), out.data(), n);
  check_launch("resize_separable_kernel");
}

namespace {

/// The coefficients and the three tables on the device, the planes' and rows' scratch, and the
/// two folds (bias_plane_kernel, bias_row_kernel) queued: what the per-voxel kernels read.
/// `keep` holds the device memory until the caller's kernels are queued.
BiasArgs fold_bias_field(const std::int64_t size[3], int degree, const std::vector<double>& coefficients,
                         const std::vector<double>& pz, const std::vector<double>& py, const std::vector<double>& px,
                         Tensor<double, Cuda> (&keep)[2]) {
  const std::int64_t stride = degree + 1;
  require(degree >= 0 && coefficients.size() == static_cast<std::size_t>(stride * stride * stride) &&
              pz.size() == static_cast<std::size_t>(size[0] * stride) &&
              py.size() == static_cast<std::size_t>(size[1] * stride) &&
              px.size() == static_cast<std::size_t>(size[2] * stride),
          [&] {
            return ErrorInfo{.where = "ops::multiply_bias_field", .field = "tables",
                             .expected = "dense coefficients and one Legendre row per voxel of each axis",
                             .actual = std::to_string(coefficients.size()) + " coefficients"};
          });
  // The coefficients and the three tables in one upload, then the planes' and rows' scratch.
  std::vector<double> tables(coefficients);
  tables.insert(tables.end(), pz.begin(), pz.end());
  tables.insert(tables.end(), py.begin(), py.end());
  tables.insert(tables.end(), px.begin(), px.end());
  keep[0] = upload(tables);
  keep[1] = Tensor<double, Cuda>::empty({size[0] * stride * stride + size[0] * size[1] * stride});
  BiasArgs a{size[0], size[1], size[2], degree, keep[0].data(), nullptr, nullptr, nullptr, keep[1].data(), nullptr};
  a.pz = a.c + coefficients.size();
  a.py = a.pz + pz.size();
  a.px = a.py + py.size();
  a.rows = a.g + size[0] * stride * stride;
  const cudaStream_t s = current_stream();
  bias_plane_kernel<<<grid_for(size[0] * stride * stride), block_threads, 0, s>>>(a);
  check_launch("bias_plane_kernel");
  bias_row_kernel<<<grid_for(size[0] * size[1] * stride), block_threads, 0, s>>>(a);
  check_launch("bias_row_kernel");
  return a;
}

}  // namespace

void bias_field_log(const Tensor<float, Cuda>& out, int degree, const std::vector<double>& coefficients,
                    const std::vector<double>& pz, const std::vector<double>& py, const std::vector<double>& px) {
  const std::int64_t size[3] = {out.size(0), out.size(1), out.size(2)}, n = out.numel();
  if (n == 0) return;
  Tensor<double, Cuda> keep[2];
  const BiasArgs a = fold_bias_field(size, degree, coefficients, pz, py, px, keep);
  bias_log_kernel<<<grid_for(n), block_threads, 0, current_stream()>>>(a, out.data());
  check_launch("bias_log_kernel");
}

void multiply_bias_field(const Tensor<float, Cuda>& x, int degree, const std::vector<double>& coefficients,
                         const std::vector<double>& pz, const std::vector<double>& py, const std::vector<double>& px) {
  const std::int64_t size[3] = {x.size(1), x.size(2), x.size(3)}, n = size[0] * size[1] * size[2];
  if (n == 0 || x.size(0) == 0) return;
  Tensor<double, Cuda> keep[2];
  const BiasArgs a = fold_bias_field(size, degree, coefficients, pz, py, px, keep);
  bias_multiply_kernel<<<grid_for(n), block_threads, 0, current_stream()>>>(a, x.data(), x.size(0));
  check_launch("bias_multiply_kernel");
}

void uniform_noise(std::uint64_t seed, std::uint64_t stream, const Tensor<float, Cuda>& out) {
  const std::int64_t n = out.numel();
  if (n == 0) return;
  uniform_noise_kernel<<<grid_for((n + 3) / 4), block_threads, 0, current_stream()>>>(seed, stream, out.data(), n);
  check_launch("uniform_noise_kernel");
}

void add_gaussian_noise(const Tensor<float, Cuda>& x, std::uint64_t seed, std::uint64_t stream, float sd) {
  const std::int64_t n = x.numel();
  if (n == 0) return;
  gaussian_noise_kernel<<<grid_for((n + 3) / 4), block_threads, 0, current_stream()>>>(x.data(), n, seed, stream, sd);
  check_launch("gaussian_noise_kernel");
}

void gaussian_axis(const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& y, std::int64_t outer, std::int64_t n,
                   std::int64_t inner, const std::vector<float>& weights) {
  const std::int64_t total = outer * n * inner;
  if (total == 0) return;
  const auto w = upload(weights);  // the taps
  gaussian_axis_kernel<<<grid_for(total), block_threads, 0, current_stream()>>>(x.data(), y.data(), outer, n, inner,
                                                                               w.data(), static_cast<int>(weights.size()));
  check_launch("gaussian_axis_kernel");
}

void map_intensity(const Tensor<float, Cuda>& x, const IntensityMap& map) {
  const std::int64_t n = x.numel();
  if (n == 0) return;
  map_intensity_kernel<<<grid_for(n), block_threads, 0, current_stream()>>>(x.data(), n, map);
  check_launch("map_intensity_kernel");
}

ChannelPartials channel_partials(const Tensor<float, Cuda>& values) {
  const float* x = values.data();
  const std::int64_t n = values.numel();
  constexpr std::int64_t size = channel_stats_block;
  const std::int64_t blocks = (n + size - 1) / size;
  ChannelPartials out;
  out.sums.assign(static_cast<std::size_t>(blocks), 0.0);
  out.squares.assign(out.sums.size(), 0.0);
  out.mins.assign(out.sums.size(), 0.0f);
  out.maxs.assign(out.sums.size(), 0.0f);
  if (blocks == 0) return out;
  // One device buffer for the four arrays: doubles first, then floats.
  auto parts = Tensor<double, Cuda>::empty({3 * blocks});
  double* d_sums = parts.data();
  double* d_squares = d_sums + blocks;
  float* d_mins = reinterpret_cast<float*>(d_squares + blocks);
  float* d_maxs = d_mins + blocks;
  const auto ctas = static_cast<unsigned>((blocks + stats_blocks_per_cta - 1) / stats_blocks_per_cta);
  channel_partials_kernel<<<ctas, stats_blocks_per_cta * stats_lanes, 0, current_stream()>>>(x, n, blocks, d_sums, d_squares,
                                                                                              d_mins, d_maxs);
  check_launch("channel_partials_kernel");
  const cudaStream_t s = current_stream();
  MEDSEG_CUDA_CHECK(cudaMemcpyAsync(out.sums.data(), d_sums, out.sums.size() * sizeof(double), cudaMemcpyDeviceToHost, s));
  MEDSEG_CUDA_CHECK(
      cudaMemcpyAsync(out.squares.data(), d_squares, out.squares.size() * sizeof(double), cudaMemcpyDeviceToHost, s));
  MEDSEG_CUDA_CHECK(cudaMemcpyAsync(out.mins.data(), d_mins, out.mins.size() * sizeof(float), cudaMemcpyDeviceToHost, s));
  MEDSEG_CUDA_CHECK(cudaMemcpyAsync(out.maxs.data(), d_maxs, out.maxs.size() * sizeof(float), cudaMemcpyDeviceToHost, s));
  MEDSEG_CUDA_CHECK(cudaStreamSynchronize(s));
  return out;
}

}  // namespace medseg::ops
