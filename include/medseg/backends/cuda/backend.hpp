// The Cuda backend's memory: device allocations, pitched copies in every direction, zeroing.
// Copies that touch the host are complete when they return; device-to-device copies are
// ordered on the current stream (backends/cuda/stream.hpp). Memory comes from the caching
// allocator (backends/cuda/allocator.hpp).
#pragma once

#include <cuda_runtime_api.h>

#include <string>
#include <string_view>

#include "../../core/backend.hpp"
#include "allocator.hpp"
#include "check.hpp"
#include "device.hpp"
#include "stream.hpp"

namespace medseg {

struct Cuda {
  static constexpr std::string_view name = "cuda";
  static constexpr bool is_host = false;
  /// The norm kernels read dy again after writing dx (backward passes in several launches),
  /// so a backward never writes dx over dy here.
  static constexpr bool gradients_in_place = false;

  /// Through the caching allocator (backends/cuda/allocator.hpp): no cudaMalloc or cudaFree
  /// per training step; running out of memory says how much was asked and how much is free.
  static void* allocate(std::size_t bytes) { return cuda::device_allocator().allocate(bytes); }
  static void deallocate(void* p, std::size_t) noexcept { cuda::device_allocator().deallocate(p); }

  static void copy_2d(void* dst, std::size_t dst_pitch, const void* src, std::size_t src_pitch, std::size_t width,
                      std::size_t rows, CopyKind kind) {
    if (width == 0 || rows == 0) return;
    const cudaMemcpyKind k = kind == CopyKind::host_to_device   ? cudaMemcpyHostToDevice
                             : kind == CopyKind::device_to_host ? cudaMemcpyDeviceToHost
                             : kind == CopyKind::host_to_host   ? cudaMemcpyHostToHost
                                                                : cudaMemcpyDeviceToDevice;
    const cudaStream_t s = cuda::current_stream();
    if (rows == 1 || (dst_pitch == width && src_pitch == width))
      MEDSEG_CUDA_CHECK(cudaMemcpyAsync(dst, src, width * rows, k, s));
    else
      MEDSEG_CUDA_CHECK(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, width, rows, k, s));
    // The host side may be pageable memory that the caller reuses at once.
    if (kind != CopyKind::device_to_device) MEDSEG_CUDA_CHECK(cudaStreamSynchronize(s));
  }
  static void zero(void* p, std::size_t bytes) { MEDSEG_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, cuda::current_stream())); }
  static void synchronize() { MEDSEG_CUDA_CHECK(cudaStreamSynchronize(cuda::current_stream())); }
};

static_assert(Backend<Cuda>);

namespace cuda {

/// Page-locked host memory: copies from and to it can overlap kernels.
class PinnedBuffer {
 public:
  explicit PinnedBuffer(std::size_t bytes) : bytes_(bytes) { MEDSEG_CUDA_CHECK(cudaMallocHost(&data_, std::max<std::size_t>(bytes, 1))); }
  ~PinnedBuffer() {
    if (data_) (void)cudaFreeHost(data_);
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  std::size_t bytes_;
};

}  // namespace cuda
}  // namespace medseg
