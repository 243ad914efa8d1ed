// What the cuDNN convolutions of conv3d.cpp leave to kernels of our own (conv3d_epilogue.cu):
// adding the bias and applying the Conv3dEpilogue's activation after the convolution, and
// the bias gradient. Host functions over raw device pointers of contiguous NCDHW tensors,
// queued on the current stream; internal to medseg::cuda.
#pragma once

#include <cstdint>

#include "medseg/backends/conv3d.hpp"

namespace medseg::cuda::detail {

/// y[n, c, s] = activation(y[n, c, s] + bias[c]) for y [batch, channels, spatial...];
/// bias may be null. The residual sum of the epilogue is not here: cuDNN adds y's old
/// contents itself (beta = 1).
void conv3d_bias_activation(float* y, const float* bias, std::int64_t batch, std::int64_t channels,
                            std::int64_t spatial, const Conv3dEpilogue& epilogue);

/// dbias[c] = the sum of dy[n, c, s] over n and s, overwriting dbias. Deterministic: a
/// fixed split into chunks and a fixed order of sums, no atomics.
void conv3d_bias_gradient(const float* dy, float* dbias, std::int64_t batch, std::int64_t channels,
                          std::int64_t spatial);

}  // namespace medseg::cuda::detail
