// The Cuda backend's caching allocator. cudaMalloc and cudaFree synchronise the device and
// cost tens of microseconds, and a training step allocates hundreds of activations and
// gradients of the same few sizes; so freed blocks are kept, keyed by (device, stream, size
// class), and handed out again, as PyTorch's CUDACachingAllocator does (without its block
// splitting: training shapes repeat, so exact size classes are reused well).
//
// A freed block is reused only on the stream it was allocated on (for the per-thread default
// stream, one handle for many streams, the allocating thread is part of the key): work queued
// there before the free has finished with it by the time work queued after the reuse starts.
// The rule this asks of users: a tensor read by another stream must not be freed before that
// work is ordered ahead of its own stream's (an event, or synchronising); there is no
// record_stream. data/cuda.hpp keeps its batches on one stream for this reason. A destroyed
// Stream is synchronised first (stream.hpp), so blocks kept under its handle are idle when a
// new stream inherits the handle. Plain cudaMalloc, never managed memory. Reports peak and reserved bytes; MEDSEG_CUDA_CACHING=0 turns caching off
// (every free is a cudaFree), which is what compute-sanitizer's leak and bounds checks want.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <thread>
#include <unordered_map>
#include <vector>

#include "../../core/error.hpp"
#include "check.hpp"
#include "stream.hpp"

namespace medseg::cuda {

/// Bytes of one device, as the allocator sees them.
struct AllocatorStats {
  std::size_t allocated = 0;       // handed out and not yet freed
  std::size_t reserved = 0;        // taken from the driver: allocated + cached
  std::size_t peak_allocated = 0;  // since the start or the last reset_peak()
  std::size_t peak_reserved = 0;
  std::size_t mallocs = 0;         // cudaMalloc calls made (a steady training loop makes none)
};

class DeviceAllocator {
 public:
  /// Caching unless MEDSEG_CUDA_CACHING=0 (the process's allocator).
  DeviceAllocator() = default;
  /// Caching as asked, whatever the environment says.
  explicit DeviceAllocator(bool caching) : caching_(caching) {}

  /// `bytes` (at least 1) of device memory on the current device, 256-byte aligned, ordered on
  /// the current stream. Running out of memory frees the cache and tries once more, then throws
  /// an Error that says how much was asked and how much is free.
  void* allocate(std::size_t bytes);
  /// Returns a block from allocate() to the cache (or to the driver when caching is off).
  void deallocate(void* p) noexcept;
  /// Gives every cached block back to the driver (synchronises the device).
  void empty_cache();
  AllocatorStats stats(int device = current_device()) const;
  void reset_peak(int device = current_device());

  /// Size class: 512-byte steps up to 1 MiB, 2 MiB steps above (the granularity of the
  /// driver's large pages), so near-equal requests share blocks.
  static std::size_t size_class(std::size_t bytes) {
    constexpr std::size_t small = 512, large = std::size_t{2} << 20, small_limit = std::size_t{1} << 20;
    bytes = std::max<std::size_t>(bytes, 1);
    return bytes <= small_limit ? (bytes + small - 1) / small * small : (bytes + large - 1) / large * large;
  }
  static int current_device() {
    int d = 0;
    MEDSEG_CUDA_CHECK(cudaGetDevice(&d));
    return d;
  }

 private:
  /// Which queue a block's last use was ordered on.
  struct StreamKey {
    cudaStream_t stream;
    std::thread::id thread;  // set only for cudaStreamPerThread
    auto operator<=>(const StreamKey&) const = default;
  };
  static StreamKey current_stream_key() {
    const cudaStream_t s = current_stream();
    return {s, s == cudaStreamPerThread ? std::this_thread::get_id() : std::thread::id{}};
  }
  struct Block {
    int device;
    StreamKey stream;
    std::size_t size;
  };
  using FreeKey = std::tuple<int, StreamKey, std::size_t>;

  void release_cached_locked() noexcept;
  AllocatorStats& stats_locked(int device) { return stats_[device]; }

  mutable std::mutex mutex_;
  bool caching_ = [] {
    const char* v = std::getenv("MEDSEG_CUDA_CACHING");
    return !(v && std::string(v) == "0");
  }();
  std::unordered_map<void*, Block> live_;
  std::map<FreeKey, std::vector<void*>> free_;
  std::map<int, AllocatorStats> stats_;
};

/// The process's allocator. Never destroyed: freeing device memory during static destruction,
/// after the CUDA runtime may have shut down, would fail; the driver reclaims it at exit.
inline DeviceAllocator& device_allocator() {
  static auto* a = new DeviceAllocator();
  return *a;
}

// ----------------------------------------------------------------------------------------
// Implementation

inline void* DeviceAllocator::allocate(std::size_t bytes) {
  const int device = current_device();
  const StreamKey stream = current_stream_key();
  // Uncached, a block is exactly what was asked: compute-sanitizer then sees an access one
  // element past the end, which a size class's slack would hide.
  const std::size_t size = caching_ ? size_class(bytes) : std::max<std::size_t>(bytes, 1);
  std::lock_guard lock(mutex_);
  AllocatorStats& st = stats_locked(device);
  void* p = nullptr;
  if (caching_) {
    auto it = free_.find({device, stream, size});
    if (it != free_.end() && !it->second.empty()) {
      p = it->second.back();
      it->second.pop_back();
    }
  }
  if (!p) {
    cudaError_t status = cudaMalloc(&p, size);
    if (status == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      release_cached_locked();
      status = cudaMalloc(&p, size);
    }
    if (status == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      std::size_t free_bytes = 0, total_bytes = 0;
      (void)cudaMemGetInfo(&free_bytes, &total_bytes);
      throw Error{{.where = "Cuda::allocate", .field = "bytes",
                   .expected = "at most " + std::to_string(free_bytes) + " bytes (free of " +
                               std::to_string(total_bytes) + " on device " + std::to_string(device) + ")",
                   .actual = std::to_string(bytes) + " bytes",
                   .detail = "out of GPU memory; medseg holds " + std::to_string(st.allocated) + " bytes in tensors"}};
    }
    if (status != cudaSuccess) throw_cuda_error(status, "cudaMalloc", __FILE__, __LINE__);
    st.reserved += size;
    st.peak_reserved = std::max(st.peak_reserved, st.reserved);
    ++st.mallocs;
  }
  live_[p] = {device, stream, size};
  st.allocated += size;
  st.peak_allocated = std::max(st.peak_allocated, st.allocated);
  return p;
}

inline void DeviceAllocator::deallocate(void* p) noexcept {
  if (!p) return;
  std::lock_guard lock(mutex_);
  const auto it = live_.find(p);
  if (it == live_.end()) return;  // not ours: nothing sensible to do in a noexcept path
  const Block b = it->second;
  live_.erase(it);
  AllocatorStats& st = stats_locked(b.device);
  st.allocated -= b.size;
  if (caching_) {
    free_[{b.device, b.stream, b.size}].push_back(p);
  } else {
    (void)cudaFree(p);
    st.reserved -= b.size;
  }
}

inline void DeviceAllocator::release_cached_locked() noexcept {
  for (auto& [key, blocks] : free_) {
    for (void* p : blocks) {
      (void)cudaFree(p);
      stats_[std::get<0>(key)].reserved -= std::get<2>(key);
    }
    blocks.clear();
  }
  free_.clear();
}

inline void DeviceAllocator::empty_cache() {
  std::lock_guard lock(mutex_);
  release_cached_locked();
}

inline AllocatorStats DeviceAllocator::stats(int device) const {
  std::lock_guard lock(mutex_);
  const auto it = stats_.find(device);
  return it == stats_.end() ? AllocatorStats{} : it->second;
}

inline void DeviceAllocator::reset_peak(int device) {
  std::lock_guard lock(mutex_);
  AllocatorStats& st = stats_locked(device);
  st.peak_allocated = st.allocated;
  st.peak_reserved = st.reserved;
}

}  // namespace medseg::cuda
