// Kernels of conv3d_epilogue.hpp. The bias and activation pass is one thread per element in
// a grid-stride loop. The bias gradient is two deterministic passes: blocks sum fixed chunks
// of one channel each (a shared-memory tree), then one thread per channel adds its chunks'
// sums in order; the chunking depends on the sizes alone, never on the GPU.
#include "backends/cuda/conv3d_epilogue.hpp"

#include <algorithm>

#include "backends/cuda/launch.cuh"
#include "medseg/backends/cuda/backend.hpp"
#include "medseg/core/tensor.hpp"

namespace medseg::cuda::detail {

namespace {

using Activation = Conv3dEpilogue::Activation;

/// The CPU's (oneDNN's) definitions: leaky_relu is relu with a negative slope, elu has
/// alpha, gelu is the exact (erf) form.
__device__ float activate(float v, Activation activation, float alpha) {
  switch (activation) {
    case Activation::relu: return v > 0.0f ? v : 0.0f;
    case Activation::leaky_relu: return v > 0.0f ? v : alpha * v;
    case Activation::elu: return v > 0.0f ? v : alpha * expm1f(v);
    case Activation::gelu: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    case Activation::sigmoid: return 1.0f / (1.0f + expf(-v));
    case Activation::none: break;
  }
  return v;
}

__global__ void bias_activation_kernel(float* y, const float* bias, std::int64_t n, std::int64_t channels,
                                       std::int64_t spatial, Activation activation, float alpha) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) {
    float v = y[i];
    if (bias) v += bias[(i / spatial) % channels];
    y[i] = activate(v, activation, alpha);
  }
}

// A block of the first pass sums this many elements of one channel.
constexpr int reduce_threads = 256;  // a power of two: the tree halves it
constexpr std::int64_t chunk_elements = std::int64_t{1} << 14;

/// partials[c * chunks + k] = the sum of elements [k * chunk_elements, (k + 1) *
/// chunk_elements) of channel c, counting over (n, s) in row-major order.
__global__ void bias_gradient_partials_kernel(const float* dy, float* partials, std::int64_t channels,
                                              std::int64_t spatial, std::int64_t per_channel, std::int64_t chunks) {
  __shared__ float sums[reduce_threads];
  const std::int64_t pairs = channels * chunks;
  // The loop bound depends on the block alone, so every thread meets every __syncthreads.
  for (std::int64_t pair = blockIdx.x; pair < pairs; pair += gridDim.x) {
    const std::int64_t c = pair / chunks;
    const std::int64_t begin = (pair - c * chunks) * chunk_elements;
    const std::int64_t end = begin + chunk_elements < per_channel ? begin + chunk_elements : per_channel;
    float sum = 0.0f;
    for (std::int64_t j = begin + threadIdx.x; j < end; j += reduce_threads) {
      const std::int64_t n = j / spatial;
      const std::int64_t s = j - n * spatial;
      sum += dy[(n * channels + c) * spatial + s];
    }
    sums[threadIdx.x] = sum;
    __syncthreads();
    for (int width = reduce_threads / 2; width > 0; width /= 2) {
      if (static_cast<int>(threadIdx.x) < width) sums[threadIdx.x] += sums[threadIdx.x + width];
      __syncthreads();
    }
    if (threadIdx.x == 0) partials[pair] = sums[0];
    __syncthreads();  // sums[0] is read before the next pair overwrites it
  }
}

__global__ void bias_gradient_total_kernel(const float* partials, float* dbias, std::int64_t channels,
                                           std::int64_t chunks) {
  for (std::int64_t c = first_index(); c < channels; c += grid_stride()) {
    float total = 0.0f;
    for (std::int64_t k = 0; k < chunks; ++k) total += partials[c * chunks + k];
    dbias[c] = total;
  }
}

}  // namespace

void conv3d_bias_activation(float* y, const float* bias, std::int64_t batch, std::int64_t channels,
                            std::int64_t spatial, const Conv3dEpilogue& epilogue) {
  if (!bias && epilogue.activation == Activation::none) return;
  const std::int64_t n = batch * channels * spatial;
  if (n == 0) return;
  bias_activation_kernel<<<grid_for(n), block_threads, 0, current_stream()>>>(y, bias, n, channels, spatial,
                                                                              epilogue.activation, epilogue.alpha);
  check_launch("conv3d bias_activation_kernel");
}

void conv3d_bias_gradient(const float* dy, float* dbias, std::int64_t batch, std::int64_t channels,
                          std::int64_t spatial) {
  if (channels == 0) return;
  const std::int64_t per_channel = batch * spatial;
  const std::int64_t chunks = std::max<std::int64_t>(1, (per_channel + chunk_elements - 1) / chunk_elements);
  // Freed when this returns, while the kernels may still run: the allocator reuses a block
  // only for work queued after them on the same stream.
  const auto partials = Tensor<float, Cuda>::empty({channels * chunks});
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>(channels * chunks, 65535));
  bias_gradient_partials_kernel<<<blocks, reduce_threads, 0, current_stream()>>>(dy, partials.data(), channels,
                                                                                 spatial, per_channel, chunks);
  check_launch("conv3d bias_gradient_partials_kernel");
  bias_gradient_total_kernel<<<grid_for(channels), block_threads, 0, current_stream()>>>(partials.data(), dbias,
                                                                                         channels, chunks);
  check_launch("conv3d bias_gradient_total_kernel");
}

}  // namespace medseg::cuda::detail
