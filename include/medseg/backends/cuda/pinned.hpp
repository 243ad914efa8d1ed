// Page-locked host memory for uploads and downloads that run at the bus's speed and do not
// block the thread that queues them: a pool of reusable blocks for many threads handing
// samples to one consumer (the GPU loader), and a per-thread stage for one case at a time
// (`medseg prepare --device cuda`). Every copy is queued on the current stream; an event per
// buffer tells the next writer when the copy that last read it is done.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "../../core/tensor.hpp"
#include "backend.hpp"
#include "check.hpp"
#include "stream.hpp"

namespace medseg::cuda {

/// Makes `device` current on the calling thread.
inline void set_device(int device) { MEDSEG_CUDA_CHECK(cudaSetDevice(device)); }

/// Page-locked blocks, reused: cudaMallocHost costs milliseconds and cudaFreeHost
/// synchronises the device. A block is written on one thread (a worker) and read by an
/// asynchronous copy queued on another's stream (the consumer's); its event, recorded after
/// that copy, tells the next writer when the copy is done.
class PinnedPool : public std::enable_shared_from_this<PinnedPool> {
 public:
  /// Blocks for uploads to `device`: their events are made there, as recording one on that
  /// device's stream requires (workers are threads of their own, whose current device may differ).
  explicit PinnedPool(int device) : device_(device) {}

  struct Block {
    explicit Block(std::size_t bytes) : buffer(bytes) {}
    ~Block() { (void)cudaEventSynchronize(copied.get()); }  // no upload still reads the buffer
    Block(const Block&) = delete;
    Block& operator=(const Block&) = delete;

    /// A new device tensor of `shape`, filled from the buffer by a copy queued on the current
    /// stream (work queued there later sees it); the block may be given back at once.
    template <class T>
    Tensor<T, Cuda> upload(const Shape& shape) {
      auto t = Tensor<T, Cuda>::empty(shape);
      const cudaStream_t stream = current_stream();
      MEDSEG_CUDA_CHECK(cudaMemcpyAsync(t.data(), buffer.data(), t.nbytes(), cudaMemcpyHostToDevice, stream));
      copied.record(stream);
      return t;
    }

    PinnedBuffer buffer;
    Event copied;  // recorded on the consumer's stream after the last upload from buffer
  };

  /// A block of at least `bytes`, free to write: the upload that last read it has finished.
  /// It returns to the pool when the last shared_ptr to it goes.
  std::shared_ptr<Block> acquire(std::size_t bytes) {
    std::unique_ptr<Block> block, dropped;
    {
      std::lock_guard lock(mutex_);
      auto best = free_.end();
      for (auto it = free_.begin(); it != free_.end(); ++it)
        if ((*it)->buffer.bytes() >= bytes && (best == free_.end() || (*it)->buffer.bytes() < (*best)->buffer.bytes()))
          best = it;
      if (best != free_.end()) {
        block = std::move(*best);
        free_.erase(best);
      } else if (!free_.empty()) {
        // None fits: the smallest goes, so the pool never holds more blocks than were in use at once.
        const auto smallest = std::min_element(free_.begin(), free_.end(), [](const auto& a, const auto& b) {
          return a->buffer.bytes() < b->buffer.bytes();
        });
        dropped = std::move(*smallest);
        free_.erase(smallest);
      }
    }
    dropped.reset();
    if (!block) {
      set_device(device_);
      block = std::make_unique<Block>(block_size(bytes));
    }
    block->copied.synchronize();
    return {block.release(), [pool = shared_from_this()](Block* b) { pool->release(b); }};
  }

 private:
  /// Rounded up to a quarter of a power of two: cases differ in size, and a slightly larger
  /// case then still fits a block made for another, at most a quarter more memory held.
  static std::size_t block_size(std::size_t bytes) {
    bytes = std::max<std::size_t>(bytes, 4096);
    const std::size_t step = std::bit_floor(bytes) / 4;
    return (bytes + step - 1) / step * step;
  }

  void release(Block* b) noexcept {
    std::unique_ptr<Block> owned(b);
    std::lock_guard lock(mutex_);
    try {
      free_.push_back(std::move(owned));
    } catch (...) {  // no room to keep it: freed instead (owned still holds it)
    }
  }

  int device_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<Block>> free_;
};

/// A page-locked host buffer that host tensors pass through on their way to and from the
/// device, so the copies are DMA at the bus's speed and an upload does not block the thread.
/// One per direction and thread; `ready` orders a reuse after the copy that last read it.
class PinnedStage {
 public:
  template <class T>
  Tensor<T, Cuda> upload(const Tensor<T>& host) {
    const Tensor<T> c = host.contiguous();
    const auto bytes = static_cast<std::size_t>(c.nbytes());
    if (recorded_) ready_.synchronize();  // the previous upload has left the buffer
    reserve(bytes);
    std::memcpy(buffer_->data(), c.data(), bytes);
    auto out = Tensor<T, Cuda>::empty(c.shape());
    MEDSEG_CUDA_CHECK(cudaMemcpyAsync(out.data(), buffer_->data(), bytes, cudaMemcpyHostToDevice, current_stream()));
    ready_.record(current_stream());
    recorded_ = true;
    return out;
  }

  template <class T>
  Tensor<T> download(const Tensor<T, Cuda>& device) {
    const Tensor<T, Cuda> c = device.contiguous();
    const auto bytes = static_cast<std::size_t>(c.nbytes());
    if (recorded_) ready_.synchronize();
    reserve(bytes);
    MEDSEG_CUDA_CHECK(cudaMemcpyAsync(buffer_->data(), c.data(), bytes, cudaMemcpyDeviceToHost, current_stream()));
    MEDSEG_CUDA_CHECK(cudaStreamSynchronize(current_stream()));
    auto out = Tensor<T>::empty(c.shape());
    std::memcpy(out.data(), buffer_->data(), bytes);
    return out;
  }

 private:
  /// Grows the buffer to `bytes` (page-locking is slow: a case of a dataset mostly fits the last).
  void reserve(std::size_t bytes) {
    if (buffer_ && buffer_->bytes() >= bytes) return;
    buffer_.reset();
    buffer_ = std::make_unique<PinnedBuffer>(bytes);
  }
  std::unique_ptr<PinnedBuffer> buffer_;
  Event ready_;
  bool recorded_ = false;
};

}  // namespace medseg::cuda
