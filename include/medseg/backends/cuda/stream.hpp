// CUDA streams and events as RAII values, and the current stream that the Cuda backend's
// copies and (later) kernels are ordered on. The default current stream is the per-thread
// default stream, so threads do not serialise on the legacy stream.
#pragma once

#include <cuda_runtime_api.h>

#include <utility>

#include "check.hpp"

namespace medseg::cuda {

class Stream {
 public:
  /// A new non-blocking stream (it does not synchronise with the legacy default stream).
  Stream() { MEDSEG_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
  /// Waits for the stream's work first: cudaStreamDestroy returns at once, and the caching
  /// allocator keeps the blocks freed on this stream under its handle, which a stream created
  /// later may be given; they must be idle by then.
  ~Stream() {
    if (!stream_) return;
    (void)cudaStreamSynchronize(stream_);
    (void)cudaStreamDestroy(stream_);
  }
  Stream(Stream&& o) noexcept : stream_(std::exchange(o.stream_, nullptr)) {}
  Stream& operator=(Stream&& o) noexcept {
    std::swap(stream_, o.stream_);
    return *this;
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  cudaStream_t get() const { return stream_; }
  void synchronize() const { MEDSEG_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

 private:
  cudaStream_t stream_ = nullptr;
};

class Event {
 public:
  Event() { MEDSEG_CUDA_CHECK(cudaEventCreate(&event_)); }
  ~Event() {
    if (event_) (void)cudaEventDestroy(event_);
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  void record(cudaStream_t s) { MEDSEG_CUDA_CHECK(cudaEventRecord(event_, s)); }
  void synchronize() const { MEDSEG_CUDA_CHECK(cudaEventSynchronize(event_)); }
  /// Milliseconds from `start` to this event; both must have completed.
  float elapsed_ms_since(const Event& start) const {
    float ms = 0;
    MEDSEG_CUDA_CHECK(cudaEventElapsedTime(&ms, start.event_, event_));
    return ms;
  }
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

namespace detail {
inline cudaStream_t& current_stream_slot() {
  thread_local cudaStream_t s = cudaStreamPerThread;
  return s;
}
}  // namespace detail

/// The stream this thread's Cuda work is ordered on.
inline cudaStream_t current_stream() { return detail::current_stream_slot(); }

/// Makes `s` the current stream of this thread until the guard goes out of scope.
class StreamGuard {
 public:
  explicit StreamGuard(const Stream& s) : previous_(std::exchange(detail::current_stream_slot(), s.get())) {}
  ~StreamGuard() { detail::current_stream_slot() = previous_; }
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  cudaStream_t previous_;
};

}  // namespace medseg::cuda
