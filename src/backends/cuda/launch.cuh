// What every kernel file of medseg::cuda shares: launch shapes for element-wise grids and
// the check after a launch. Kernels run on the calling thread's current stream
// (medseg::cuda::current_stream(), backends/cuda/stream.hpp), so work ordered by a
// StreamGuard stays ordered.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <source_location>

#include "medseg/backends/cuda/check.hpp"
#include "medseg/backends/cuda/stream.hpp"

namespace medseg::cuda::detail {

inline constexpr int block_threads = 256;

/// Blocks for a grid-stride loop over n elements: enough to fill the GPU, never more than needed.
inline unsigned grid_for(std::int64_t n, int threads = block_threads) {
  const std::int64_t blocks = (std::max<std::int64_t>(n, 1) + threads - 1) / threads;
  return static_cast<unsigned>(std::min<std::int64_t>(blocks, 65535LL * 8));
}

/// Grid-stride loop: for (auto i = first_index(); i < n; i += grid_stride()).
__device__ inline std::int64_t first_index() {
  return static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ inline std::int64_t grid_stride() { return static_cast<std::int64_t>(gridDim.x) * blockDim.x; }

/// After a kernel launch: a bad launch configuration becomes an Error naming the kernel and
/// the line that launched it (the caller's, not this function's).
inline void check_launch(const char* kernel, std::source_location at = std::source_location::current()) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) throw_cuda_error(status, kernel, at.file_name(), static_cast<int>(at.line()));
}

}  // namespace medseg::cuda::detail
