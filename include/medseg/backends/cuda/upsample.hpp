// The Cuda backend's trilinear resizing over NCDHW: the ops of backends/cpu/upsample.hpp (which
// defines TrilinearShape and PyTorch's coordinate conventions) on device tensors. Backward
// gathers: a thread per input voxel adds the weighted gradients of the outputs that read it,
// in output order, so results repeat bit for bit. Definitions in src/backends/cuda/upsample.cu.
#pragma once

#include "../cpu/upsample.hpp"
#include "backend.hpp"

namespace medseg::ops {

/// x [batch, channels, input...] -> y [batch, channels, output...], both contiguous.
void trilinear_forward(const TrilinearShape& s, const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& y);
/// dx (overwritten, [batch, channels, input...]) receives each output gradient spread over its
/// eight input voxels.
void trilinear_backward(const TrilinearShape& s, const Tensor<float, Cuda>& dy, const Tensor<float, Cuda>& dx);

}  // namespace medseg::ops
