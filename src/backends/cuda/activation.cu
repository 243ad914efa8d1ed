// Kernels of backends/cuda/activation.hpp. The point-wise activations are one thread per
// element; PReLU gives each block a chunk of one [n, c] row (so the slope is looked up once
// per block, not divided out per element) and reduces the slope gradient in double, in a
// fixed order: per chunk, then per slope; Softmax gives each thread one voxel and walks its
// channels (consecutive threads read consecutive voxels of a channel: coalesced).
#include "medseg/backends/cuda/activation.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "backends/cuda/launch.cuh"

namespace medseg::ops {
namespace {

using namespace cuda::detail;  // launch.cuh: block_threads, grid_for, grid-stride loops, check_launch

static_assert((block_threads & (block_threads - 1)) == 0, "block_sum halves the block: it needs a power of two");

/// Elements of one PReLU row that one block handles.
constexpr std::int64_t prelu_chunk = block_threads * 16;
/// Most blocks launched for a block-stride loop; more work loops within the blocks.
constexpr std::int64_t max_blocks = 65535LL * 8;

unsigned blocks_for(std::int64_t work_items) {
  return static_cast<unsigned>(std::clamp<std::int64_t>(work_items, 1, max_blocks));
}

// std::max(v, 0.0f) and std::min(v, 0.0f) exactly as the CPU evaluates them, NaN included
// (fmaxf/fminf would drop a NaN where the CPU passes it on).
__device__ inline float max0(float v) { return v < 0.0f ? 0.0f : v; }
__device__ inline float min0(float v) { return 0.0f < v ? 0.0f : v; }

constexpr float inv_sqrt2 = 0.70710678118654752440f;
constexpr float inv_sqrt_2pi = 0.39894228040143267794f;

// The activations f, and their derivatives as factors of dy, written as the CPU writes them
// (backends/cpu/activation.hpp) with CUDA's expf and erff in place of the approximations.
struct Relu {
  __device__ float operator()(float v) const { return max0(v); }
};
struct LeakyRelu {
  float alpha;
  __device__ float operator()(float v) const { return max0(v) + alpha * min0(v); }
};
struct Elu {
  float alpha;
  __device__ float operator()(float v) const { return v > 0.0f ? v : alpha * (expf(v) - 1.0f); }
};
struct Gelu {
  __device__ float operator()(float v) const { return 0.5f * v * (1.0f + erff(v * inv_sqrt2)); }
};
struct Sigmoid {
  __device__ float operator()(float v) const { return 1.0f / (1.0f + expf(-v)); }
};

struct ReluGrad {
  __device__ float operator()(float v) const { return v > 0.0f ? 1.0f : 0.0f; }
};
struct LeakyReluGrad {
  float alpha;
  __device__ float operator()(float v) const {
    const float pos = v > 0.0f ? 1.0f : 0.0f;
    return pos + (1.0f - pos) * alpha;
  }
};
struct EluGrad {
  float alpha;
  __device__ float operator()(float v) const {
    const float pos = v > 0.0f ? 1.0f : 0.0f;
    return pos + (1.0f - pos) * alpha * expf(v > 0.0f ? 0.0f : v);
  }
};
struct GeluGrad {
  __device__ float operator()(float v) const {
    const float cdf = 0.5f * (1.0f + erff(v * inv_sqrt2));
    return cdf + v * inv_sqrt_2pi * expf(-0.5f * v * v);
  }
};
struct SigmoidGrad {  // of the forward output s
  __device__ float operator()(float s) const { return s * (1.0f - s); }
};

template <class F>
__global__ void pointwise_kernel(const float* x, float* y, std::int64_t n, F f) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) y[i] = f(x[i]);
}

template <class F>
__global__ void pointwise_grad_kernel(const float* x, const float* dy, float* dx, std::int64_t n, F f) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) dx[i] = dy[i] * f(x[i]);
}

template <class F>
void pointwise(const char* op, const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& y, F f) {
  detail::require_same_shape(op, x, y);
  const std::int64_t n = x.numel();
  if (n == 0) return;
  pointwise_kernel<<<grid_for(n), block_threads, 0, cuda::current_stream()>>>(x.data(), y.data(), n, f);
  check_launch(op);
}

template <class F>
void pointwise_grad(const char* op, const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& dy,
              const Tensor<float, Cuda>& dx, F f) {
  detail::require_same_shape(op, x, dy);
  detail::require_same_shape(op, x, dx);
  const std::int64_t n = x.numel();
  if (n == 0) return;
  pointwise_grad_kernel<<<grid_for(n), block_threads, 0, cuda::current_stream()>>>(x.data(), dy.data(), dx.data(), n, f);
  check_launch(op);
}

/// [outer, C, inner] view of a tensor with channels on axis 1 (or one channel for rank < 2),
/// as the CPU's detail::channel_geometry (with inner 0 for an empty batch, where it divides by 0).
struct ChannelGeometry {
  std::int64_t outer, channels, inner;
};
ChannelGeometry channel_geometry(const Tensor<float, Cuda>& x) {
  if (x.rank() < 2) return {1, 1, x.numel()};
  const std::int64_t rows = x.size(0) * x.size(1);
  return {x.size(0), x.size(1), rows ? x.numel() / rows : 0};
}

/// The sum of `value` over the block's threads, added in a fixed tree order; every thread
/// gets it. Every thread of the block must call it (it synchronises); `scratch` has
/// blockDim.x entries and is free again when it returns.
__device__ double block_sum(double value, double* scratch) {
  scratch[threadIdx.x] = value;
  __syncthreads();
  for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) scratch[threadIdx.x] += scratch[threadIdx.x + half];
    __syncthreads();
  }
  const double total = scratch[0];
  __syncthreads();
  return total;
}

/// PReLU's input: x itself, or x * scale[c] + shift[c] (a norm's per-channel map fused in),
/// rounded as the CPU's AffineInput (no FMA).
struct PreluInput {
  const float* scale = nullptr;  // null: x as it is
  const float* shift = nullptr;
  __device__ float operator()(float v, std::int64_t c) const {
    return scale ? __fadd_rn(__fmul_rn(v, scale[c]), shift[c]) : v;
  }
};

/// Block b handles chunk (b % chunks) of row (b / chunks); a row is one [n, c] run of `inner`.
__global__ void prelu_forward_kernel(const float* x, const float* slope, float* y, std::int64_t rows,
                                     std::int64_t channels, std::int64_t inner, std::int64_t chunks, bool shared,
                                     PreluInput in) {
  for (std::int64_t b = blockIdx.x; b < rows * chunks; b += gridDim.x) {
    const std::int64_t row = b / chunks, begin = (b % chunks) * prelu_chunk;
    const std::int64_t end = inner < begin + prelu_chunk ? inner : begin + prelu_chunk;
    const float s = slope[shared ? 0 : row % channels];
    const float* xr = x + row * inner;
    float* yr = y + row * inner;
    for (std::int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
      const float v = in(xr[i], row % channels);
      yr[i] = max0(v) + s * min0(v);
    }
  }
}

/// Walks the rows as prelu_forward_kernel does, writing dx, and sets partial[b] to the sum
/// over block b's chunk of dy * min(x, 0), in double. From the output y (`from_output`, all
/// slopes positive) the sign is y's and the input below zero y / s: the sum is divided by s.
__global__ void prelu_backward_kernel(const float* x, const float* slope, const float* dy, float* dx, double* partial,
                                      std::int64_t rows, std::int64_t channels, std::int64_t inner, std::int64_t chunks,
                                      bool shared, bool from_output, PreluInput in) {
  __shared__ double scratch[block_threads];
  for (std::int64_t b = blockIdx.x; b < rows * chunks; b += gridDim.x) {
    const std::int64_t row = b / chunks, begin = (b % chunks) * prelu_chunk;
    const std::int64_t end = inner < begin + prelu_chunk ? inner : begin + prelu_chunk;
    const float s = slope[shared ? 0 : row % channels];
    const float* xr = x + row * inner;
    const float* dyr = dy + row * inner;
    float* dxr = dx + row * inner;
    double acc = 0.0;
    for (std::int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
      const float v = in(xr[i], row % channels), g = dyr[i];
      const float pos = v > 0.0f ? 1.0f : 0.0f;
      dxr[i] = g * (pos + (1.0f - pos) * s);
      acc += static_cast<double>(g * min0(v));
    }
    const double total = block_sum(acc, scratch);
    if (threadIdx.x == 0) partial[b] = from_output ? total / static_cast<double>(s) : total;
  }
}

/// dslope[k] += the sum of the partials of slope k: all of them for a shared slope, else
/// those of rows n * channels + k. Block k sums them (thread t takes every blockDim.x-th).
__global__ void prelu_slope_kernel(const double* partial, float* dslope, std::int64_t slopes, std::int64_t outer,
                                   std::int64_t channels, std::int64_t chunks, bool shared) {
  __shared__ double scratch[block_threads];
  const std::int64_t items = shared ? outer * channels * chunks : outer * chunks;
  for (std::int64_t k = blockIdx.x; k < slopes; k += gridDim.x) {
    double acc = 0.0;
    for (std::int64_t j = threadIdx.x; j < items; j += blockDim.x)
      acc += partial[shared ? j : ((j / chunks) * channels + k) * chunks + j % chunks];
    const double total = block_sum(acc, scratch);
    if (threadIdx.x == 0) dslope[k] += static_cast<float>(total);
  }
}

/// One thread per voxel p = (n, v) of outer * inner: the channels of a voxel are `inner` apart.
__global__ void softmax_forward_kernel(const float* x, float* y, std::int64_t positions, std::int64_t channels,
                                       std::int64_t inner) {
  for (std::int64_t p = first_index(); p < positions; p += grid_stride()) {
    const std::int64_t n = p / inner, v = p - n * inner;
    const float* xs = x + n * channels * inner + v;
    float* ys = y + n * channels * inner + v;
    float mx = -INFINITY;
    for (std::int64_t c = 0; c < channels; ++c) {
      const float t = xs[c * inner];
      mx = mx < t ? t : mx;  // std::max(mx, t), as the CPU
    }
    float sum = 0.0f;
    for (std::int64_t c = 0; c < channels; ++c) sum += expf(xs[c * inner] - mx);
    const float inv = 1.0f / sum;
    // exp again rather than a store and a reload of y: the arithmetic is cheaper than memory.
    for (std::int64_t c = 0; c < channels; ++c) ys[c * inner] = expf(xs[c * inner] - mx) * inv;
  }
}

__global__ void softmax_backward_kernel(const float* y, const float* dy, float* dx, std::int64_t positions,
                                        std::int64_t channels, std::int64_t inner) {
  for (std::int64_t p = first_index(); p < positions; p += grid_stride()) {
    const std::int64_t n = p / inner, v = p - n * inner;
    const std::int64_t base = n * channels * inner + v;
    float dot = 0.0f;
    for (std::int64_t c = 0; c < channels; ++c) dot += y[base + c * inner] * dy[base + c * inner];
    for (std::int64_t c = 0; c < channels; ++c) {
      const std::int64_t k = base + c * inner;
      dx[k] = y[k] * (dy[k] - dot);
    }
  }
}

/// PReLU's slope argument: 1 or C entries (C of `x`), contiguous. The CPU checks the count in
/// forward only; here backward checks it too, and dslope, as a device read past the end would
/// not fail where it happens.
void require_slope(const char* op, const char* field, const Tensor<float, Cuda>& x, const ChannelGeometry& g,
                   const Tensor<float, Cuda>& slope) {
  require(slope.numel() == 1 || slope.numel() == g.channels, [&] {
    return ErrorInfo{.where = op, .field = field,
                     .expected = "1 or " + std::to_string(g.channels) + " entries for input " + x.shape().to_string(),
                     .actual = std::to_string(slope.numel())};
  });
  require(slope.is_contiguous(), [&] {
    return ErrorInfo{.where = op, .field = field, .expected = "a contiguous tensor", .actual = slope.layout().to_string()};
  });
}

}  // namespace

void activation_forward(Activation f, float alpha, const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& y) {
  const char* op = "ops::activation_forward";
  switch (f) {
    case Activation::relu: return pointwise(op, x, y, Relu{});
    case Activation::leaky_relu: return pointwise(op, x, y, LeakyRelu{alpha});
    case Activation::elu: return pointwise(op, x, y, Elu{alpha});
    case Activation::gelu: return pointwise(op, x, y, Gelu{});
    case Activation::sigmoid: return pointwise(op, x, y, Sigmoid{});
  }
}

void activation_backward(Activation f, float alpha, const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& dy,
                         const Tensor<float, Cuda>& dx) {
  const char* op = "ops::activation_backward";
  switch (f) {
    case Activation::relu: return pointwise_grad(op, x, dy, dx, ReluGrad{});
    case Activation::leaky_relu: return pointwise_grad(op, x, dy, dx, LeakyReluGrad{alpha});
    case Activation::elu: return pointwise_grad(op, x, dy, dx, EluGrad{alpha});
    case Activation::gelu: return pointwise_grad(op, x, dy, dx, GeluGrad{});
    case Activation::sigmoid: return pointwise_grad(op, x, dy, dx, SigmoidGrad{});  // x holds the forward output
  }
}

namespace {
/// The affine map's factors, checked: [C] each, contiguous, on the device.
PreluInput affine_input(const char* op, const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& scale,
                        const Tensor<float, Cuda>& shift) {
  const std::int64_t c = channel_geometry(x).channels;
  require(scale.defined() && shift.defined() && scale.is_contiguous() && shift.is_contiguous() &&
              scale.numel() == c && shift.numel() == c,
          [&] {
            return ErrorInfo{.where = op, .field = "scale/shift", .expected = std::to_string(c) + " entries each",
                             .actual = std::to_string(scale.numel()) + " and " + std::to_string(shift.numel())};
          });
  return {scale.data(), shift.data()};
}

void prelu_forward_rows(const char* op, const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& slope,
                        const Tensor<float, Cuda>& y, PreluInput in) {
  detail::require_same_shape(op, x, y);
  const auto g = channel_geometry(x);
  require_slope(op, "slope", x, g, slope);
  if (x.numel() == 0) return;
  const std::int64_t rows = g.outer * g.channels;
  const std::int64_t chunks = (g.inner + prelu_chunk - 1) / prelu_chunk;
  prelu_forward_kernel<<<blocks_for(rows * chunks), block_threads, 0, cuda::current_stream()>>>(
      x.data(), slope.data(), y.data(), rows, g.channels, g.inner, chunks, slope.numel() == 1, in);
  check_launch(op);
}

/// prelu_backward, from the input x (mapped by `in`) or (from_output) the output.
void prelu_backward_rows(const char* op, const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& slope,
                         const Tensor<float, Cuda>& dy, const Tensor<float, Cuda>& dx, const Tensor<float, Cuda>& dslope,
                         bool from_output, PreluInput in = {}) {
  detail::require_same_shape(op, x, dy);
  detail::require_same_shape(op, x, dx);
  const auto g = channel_geometry(x);
  require_slope(op, "slope", x, g, slope);
  require_slope(op, "dslope", x, g, dslope);
  require(dslope.numel() == slope.numel(), [&] {
    return ErrorInfo{.where = op, .field = "dslope", .expected = std::to_string(slope.numel()) + " entries, as slope",
                     .actual = std::to_string(dslope.numel())};
  });
  if (x.numel() == 0) return;
  const bool shared = slope.numel() == 1;
  const std::int64_t rows = g.outer * g.channels;
  const std::int64_t chunks = (g.inner + prelu_chunk - 1) / prelu_chunk;
  // Freed at return while the kernels may still run: the device allocator reuses a block
  // only in stream order (and cudaFree waits for the device), so that is safe.
  auto partial = Tensor<double, Cuda>::empty({rows * chunks});
  const cudaStream_t stream = cuda::current_stream();
  prelu_backward_kernel<<<blocks_for(rows * chunks), block_threads, 0, stream>>>(
      x.data(), slope.data(), dy.data(), dx.data(), partial.data(), rows, g.channels, g.inner, chunks, shared, from_output,
      in);
  check_launch(op);
  prelu_slope_kernel<<<blocks_for(slope.numel()), block_threads, 0, stream>>>(
      partial.data(), dslope.data(), slope.numel(), g.outer, g.channels, chunks, shared);
  check_launch(op);
}
}  // namespace

void prelu_forward(const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& slope, const Tensor<float, Cuda>& y) {
  prelu_forward_rows("ops::prelu_forward", x, slope, y, {});
}

void prelu_affine_forward(const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& scale,
                          const Tensor<float, Cuda>& shift, const Tensor<float, Cuda>& slope,
                          const Tensor<float, Cuda>& y) {
  const char* op = "ops::prelu_affine_forward";
  prelu_forward_rows(op, x, slope, y, affine_input(op, x, scale, shift));
}

void prelu_backward(const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& slope, const Tensor<float, Cuda>& dy,
                    const Tensor<float, Cuda>& dx, const Tensor<float, Cuda>& dslope) {
  prelu_backward_rows("ops::prelu_backward", x, slope, dy, dx, dslope, false);
}

void prelu_affine_backward(const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& scale,
                           const Tensor<float, Cuda>& shift, const Tensor<float, Cuda>& slope,
                           const Tensor<float, Cuda>& dy, const Tensor<float, Cuda>& dx,
                           const Tensor<float, Cuda>& dslope) {
  const char* op = "ops::prelu_affine_backward";
  prelu_backward_rows(op, x, slope, dy, dx, dslope, false, affine_input(op, x, scale, shift));
}

void prelu_backward_from_output(const Tensor<float, Cuda>& y, const Tensor<float, Cuda>& slope,
                                const Tensor<float, Cuda>& dy, const Tensor<float, Cuda>& dx,
                                const Tensor<float, Cuda>& dslope) {
  prelu_backward_rows("ops::prelu_backward_from_output", y, slope, dy, dx, dslope, true);
}

void softmax_channels_forward(const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& y) {
  const char* op = "ops::softmax_channels_forward";
  detail::require_same_shape(op, x, y);
  const auto g = channel_geometry(x);
  const std::int64_t positions = g.outer * g.inner;
  if (positions == 0 || g.channels == 0) return;
  softmax_forward_kernel<<<grid_for(positions), block_threads, 0, cuda::current_stream()>>>(x.data(), y.data(), positions,
                                                                                             g.channels, g.inner);
  check_launch(op);
}

void softmax_channels_backward(const Tensor<float, Cuda>& y, const Tensor<float, Cuda>& dy,
                               const Tensor<float, Cuda>& dx) {
  const char* op = "ops::softmax_channels_backward";
  detail::require_same_shape(op, y, dy);
  detail::require_same_shape(op, y, dx);
  const auto g = channel_geometry(y);
  const std::int64_t positions = g.outer * g.inner;
  if (positions == 0 || g.channels == 0) return;
  softmax_backward_kernel<<<grid_for(positions), block_threads, 0, cuda::current_stream()>>>(
      y.data(), dy.data(), dx.data(), positions, g.channels, g.inner);
  check_launch(op);
}

}  // namespace medseg::ops
