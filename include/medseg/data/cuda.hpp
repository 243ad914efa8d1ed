// The loader's GPU mode: Loader<D, T, L, Cuda> (data/loader.hpp) hands out Batch<L, Cuda>,
// augmented and collated on the device by the transforms' Cuda kernels (backends/cuda/
// augment.hpp), drawing the same random numbers as the CPU loader: its batch b is
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

#include <cstring>
#include <memory>

#include "../backends/cuda/allocator.hpp"
#include "../backends/cuda/backend.hpp"
#include "../backends/cuda/pinned.hpp"
#include "loader.hpp"

namespace medseg::data::detail {

/// The Cuda loader's hand-over: stage() copies a host sample into pinned blocks (a worker
/// thread), upload() queues their copies to new device tensors on the current stream (the
/// consumer's thread) and gives the blocks back once those copies are queued.
template <class L>
class Staging<Cuda, L> {
 public:
  struct Staged {
    std::shared_ptr<cuda::PinnedPool::Block> image, label;  // label null when the sample has none
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
  std::shared_ptr<cuda::PinnedPool::Block> copy_in(const Tensor<T>& t) const {
    const Tensor<T> dense = t.contiguous();
    auto block = pool_->acquire(dense.nbytes());
    std::memcpy(block->buffer.data(), dense.data(), dense.nbytes());
    return block;
  }

  /// A device tensor filled from `block` by a copy queued on the current stream, which the
  /// augmentation queued after it on that stream waits for; the block is released here and
  /// reused once the copy is done (its event).
  template <class T>
  static Tensor<T, Cuda> copy_out(std::shared_ptr<cuda::PinnedPool::Block>& block, const Shape& shape) {
    auto t = block->template upload<T>(shape);
    block.reset();
    return t;
  }

  // The device current where the loader is made: its batches are made there.
  std::shared_ptr<cuda::PinnedPool> pool_ = std::make_shared<cuda::PinnedPool>(cuda::DeviceAllocator::current_device());
};

}  // namespace medseg::data::detail
