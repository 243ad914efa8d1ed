// The loader's GPU mode: Loader<D, T, L, Cuda> (data/loader.hpp) hands out Batch<L, Cuda>,
// augmented and collated on the device with the GPU versions of the transforms
// (transforms/cuda.hpp), drawing the same random numbers as the CPU loader: its batch b is
// the CPU loader's batch b (labels exactly, images to the GPU transforms' rounding). Include
// this header and link medseg::cuda.
//   auto loader = data::make_loader<Cuda>(train, transforms::SpatialTransform{.patch_size = {128, 128, 128}} |
//                                                    transforms::GaussianNoise{}, {.batch_size = 2, .workers = 2});
//   data::Batch<data::LabelValue, Cuda> batch = loader.next();
//
// Who does what. The workers decode and cache cases in host memory, as on the CPU, and copy
// each sample into page-locked staging memory. next() uploads the staged samples, augments
// and collates them on the calling thread, on its current stream (cuda::current_stream()).
// Why there and not on the workers, each with a stream of its own:
// - Order for free: the batch's kernels are queued on the stream the training step is queued
//   on next, so the step reads a finished batch with no event and no synchronisation.
// - Memory stays safe: the caching allocator (backends/cuda/allocator.hpp) hands a freed block
//   out again only on the stream, and for cudaStreamPerThread the thread, that allocated it.
//   Batches allocated on a worker's stream and freed by the training thread would go back to
//   the worker's stream and be rewritten there while the training stream may still read them
//   (it has no record_stream to hold them back). Allocated, used and freed on one stream,
//   they keep its rule.
// - The cost: the host side of the GPU transforms (drawing parameters, launching kernels, the
//   few reads their draws need: channel statistics for Contrast and Gamma, the label for a
//   foreground crop) runs on the training thread, and the augmentation kernels queue behind
//   the training step's instead of beside them. That is small next to a step; the per-voxel
//   host work (decoding, the staging copy) stays on the workers.
// Using a batch: it is complete on the stream that was current in next() (work queued there
// later sees it); on another stream, synchronise or wait for an event first. The loader works
// on the device that was current when it was made. batch(b) needs no staging: it uploads each
// host sample directly (a synchronous copy).
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstring>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "../backends/cuda/backend.hpp"
#include "../backends/cuda/check.hpp"
#include "../backends/cuda/stream.hpp"
#include "../transforms/cuda.hpp"
#include "loader.hpp"

namespace medseg::data::detail {

/// Page-locked buffers for the loader's uploads, reused: cudaMallocHost costs milliseconds and
/// cudaFreeHost synchronises the device. A block is written on a worker thread and read by an
/// asynchronous copy queued on the consumer's stream; its event, recorded after that copy,
/// tells the next writer when the copy is done.
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
    cuda::PinnedBuffer buffer;
    cuda::Event copied;  // recorded on the consumer's stream after the last upload from buffer
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
      MEDSEG_CUDA_CHECK(cudaSetDevice(device_));
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

/// The Cuda loader's hand-over: stage() copies a host sample into pinned blocks (a worker
/// thread), upload() queues their copies to new device tensors on the current stream (the
/// consumer's thread) and gives the blocks back once those copies are queued.
template <class L>
class Staging<Cuda, L> {
 public:
  struct Staged {
    std::shared_ptr<PinnedPool::Block> image, label;  // label null when the sample has none
    Shape image_shape, label_shape;
  };

  Staged stage(const transforms::BasicSample<L>& s) const {
    Staged out;
    out.image_shape = s.image.shape();
    out.image = copy_in(s.image);
    if (s.label.defined()) {
      out.label_shape = s.label.shape();
      out.label = copy_in(s.label);
    }
    return out;
  }

  transforms::BasicSample<L, Cuda> upload(Staged& s) const {
    transforms::BasicSample<L, Cuda> out;
    out.image = copy_out<float>(s.image, s.image_shape);
    if (s.label) out.label = copy_out<L>(s.label, s.label_shape);
    return out;
  }

 private:
  template <class T>
  std::shared_ptr<PinnedPool::Block> copy_in(const Tensor<T>& t) const {
    const Tensor<T> dense = t.contiguous();
    auto block = pool_->acquire(dense.nbytes());
    std::memcpy(block->buffer.data(), dense.data(), dense.nbytes());
    return block;
  }

  /// A device tensor filled from `block` by a copy queued on the current stream, which the
  /// augmentation queued after it on that stream waits for; the block is released here and
  /// reused once the copy is done (its event).
  template <class T>
  static Tensor<T, Cuda> copy_out(std::shared_ptr<PinnedPool::Block>& block, const Shape& shape) {
    auto t = Tensor<T, Cuda>::empty(shape);
    const cudaStream_t stream = cuda::current_stream();
    MEDSEG_CUDA_CHECK(cudaMemcpyAsync(t.data(), block->buffer.data(), t.nbytes(), cudaMemcpyHostToDevice, stream));
    block->copied.record(stream);
    block.reset();
    return t;
  }

  // The device current where the loader is made: its batches are made there.
  std::shared_ptr<PinnedPool> pool_ = std::make_shared<PinnedPool>(cuda::DeviceAllocator::current_device());
};

}  // namespace medseg::data::detail
