// The Cuda backend's 3-D max and average pooling over NCDHW: the ops of backends/cpu/pooling.hpp
// (which defines Pool3dShape and PyTorch's conventions) on device tensors. Backward gathers:
// a thread per input voxel adds the gradients of the windows covering it in output order, so
// results repeat bit for bit and equal the CPU's sums. Definitions in src/backends/cuda/pooling.cu.
#pragma once

#include <cstdint>

#include "../cpu/pooling.hpp"
#include "backend.hpp"

namespace medseg::ops {

/// x [batch, channels, input...] -> y and argmax (int32 in-plane index, first maximum on ties,
/// NaN propagates) [batch, channels, output...]; all contiguous.
void max_pool3d_forward(const Pool3dShape& s, const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& y,
                        const Tensor<std::int32_t, Cuda>& argmax);
/// dx (overwritten) receives dy at each window's argmax, summed where windows overlap.
void max_pool3d_backward(const Pool3dShape& s, const Tensor<std::int32_t, Cuda>& argmax,
                         const Tensor<float, Cuda>& dy, const Tensor<float, Cuda>& dx);
/// y = mean over each window; padding counts in the divisor when count_include_pad.
void avg_pool3d_forward(const Pool3dShape& s, bool count_include_pad, const Tensor<float, Cuda>& x,
                        const Tensor<float, Cuda>& y);
/// dx (overwritten) = dy spread evenly over each window.
void avg_pool3d_backward(const Pool3dShape& s, bool count_include_pad, const Tensor<float, Cuda>& dy,
                         const Tensor<float, Cuda>& dx);

}  // namespace medseg::ops
