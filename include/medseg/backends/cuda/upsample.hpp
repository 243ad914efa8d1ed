// The Cuda backend's trilinear resizing over NCDHW: the ops of backends/cpu/upsample.hpp (which
// defines TrilinearShape and PyTorch's coordinate conventions) on device tensors. Backward
// gathers: a thread per input voxel adds the weighted gradients of the outputs that read it,
// in output order, so results repeat bit for bit. The nearest-exact resize of label maps moves
// elements as bits. Definitions in src/backends/cuda/upsample.cu.
#pragma once

#include <cstddef>

#include "../cpu/upsample.hpp"
#include "backend.hpp"

namespace medseg::ops {

/// x [batch, channels, input...] -> y [batch, channels, output...], both contiguous.
void trilinear_forward(const TrilinearShape& s, const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& y);
/// dx (overwritten, [batch, channels, input...]) receives each output gradient spread over its
/// eight input voxels.
void trilinear_backward(const TrilinearShape& s, const Tensor<float, Cuda>& dy, const Tensor<float, Cuda>& dx);

/// resize_nearest_exact's gather on raw device memory, elements of `element_bytes` (1, 2, 4
/// or 8) moved as bits; `in`, `out`: [N, C, D, H, W] and [N, C, d, h, w].
void resize_nearest_exact_bytes(const void* x, void* y, std::size_t element_bytes, const Shape& in, const Shape& out);

/// y = x read at each output voxel's nearest_exact_source, as the CPU op: any element type.
template <class T>
void resize_nearest_exact(const Tensor<T, Cuda>& x, const Tensor<T, Cuda>& y) {
  require_resize_operands("ops::resize_nearest_exact", x, y);
  if (y.numel() > 0) resize_nearest_exact_bytes(x.data(), y.data(), sizeof(T), x.shape(), y.shape());
}

}  // namespace medseg::ops
