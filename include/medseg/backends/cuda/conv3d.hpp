// The Cuda overloads of backends/cpu/conv3d.hpp: 3-D convolution and transposed convolution
// through cuDNN's convolution API on plain NCDHW float32 tensors and PyTorch's weight layouts.
// Arguments, checks and results are the CPU's. The bias and the Conv3dEpilogue (activation,
// residual sum) are one small kernel after cuDNN; the bias gradient is a deterministic
// reduction. Descriptors and algorithms are chosen once per problem (Conv3dShape, device,
// allow_tf32, cudnn_benchmark) and cached. Defined in src/backends/cuda/conv3d.cpp.
#pragma once

#include <cstddef>

#include "../conv3d.hpp"
#include "backend.hpp"
#include "math_mode.hpp"  // allow_tf32, cudnn_benchmark: what the plans depend on

namespace medseg::ops {

/// y = epilogue(conv(x, w) + bias), the transposed convolution when shape.transposed.
///   x [N, Cin, D, H, W] = shape.input_shape(), w = shape.weight_shape(),
///   bias [Cout] or nullptr, y = shape.output_shape(): overwritten, or added to when
///   epilogue.accumulate. All contiguous float32 on the device; y must not overlap x or w.
/// Throws Error naming the op, the tensor and both shapes. Work is queued on the current
/// stream; safe to call from several threads at once.
void conv3d_forward(const Conv3dShape& shape, const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& w,
                    const Tensor<float, Cuda>* bias, const Tensor<float, Cuda>& y,
                    const Conv3dEpilogue& epilogue = {});

/// dx = the gradient of the (epilogue-free) forward pass with respect to x, given dy
/// (output_shape()). dx (input_shape()) is overwritten.
void conv3d_backward_data(const Conv3dShape& shape, const Tensor<float, Cuda>& dy, const Tensor<float, Cuda>& w,
                          const Tensor<float, Cuda>& dx);

/// dw (weight_shape()) and, when not null, dbias ([Cout]) are overwritten (not accumulated)
/// with the gradients of the forward pass, given its input x and dy.
void conv3d_backward_weights(const Conv3dShape& shape, const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& dy,
                             const Tensor<float, Cuda>& dw, const Tensor<float, Cuda>* dbias);

/// Both backward passes in one call, the same results as the two above. dx may be nullptr
/// (a first layer needs no input gradient), as may dbias.
void conv3d_backward(const Conv3dShape& shape, const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& w,
                     const Tensor<float, Cuda>& dy, const Tensor<float, Cuda>* dx, const Tensor<float, Cuda>& dw,
                     const Tensor<float, Cuda>* dbias);

/// conv3d_forward that allocates y, as the CPU op of the same name. On the device the caching
/// allocator makes y cheap at any point, so this is the plain forward into a fresh tensor.
inline Tensor<float, Cuda> conv3d_forward_alloc(const Conv3dShape& shape, const Tensor<float, Cuda>& x,
                                                const Tensor<float, Cuda>& w, const Tensor<float, Cuda>* bias) {
  auto y = Tensor<float, Cuda>::empty(shape.output_shape());
  conv3d_forward(shape, x, w, bias, y);
  return y;
}

/// conv3d_backward for a caller that hands x and dy over, as the CPU op of the same name:
/// returns dx, or an undefined tensor when !input_gradient. Both are released on return.
inline Tensor<float, Cuda> conv3d_backward_owned(const Conv3dShape& shape, Tensor<float, Cuda> x,
                                                 const Tensor<float, Cuda>& w, Tensor<float, Cuda> dy,
                                                 bool input_gradient, const Tensor<float, Cuda>& dw,
                                                 const Tensor<float, Cuda>* dbias) {
  Tensor<float, Cuda> dx;
  if (input_gradient) dx = Tensor<float, Cuda>::empty(shape.input_shape());
  conv3d_backward(shape, x, w, dy, input_gradient ? &dx : nullptr, dw, dbias);
  return dx;
}

}  // namespace medseg::ops

namespace medseg::cuda {

/// Number of distinct problems (Conv3dShape, device, allow_tf32, cudnn_benchmark) whose
/// cuDNN descriptors and algorithms are cached; the counterpart of ops::conv3d_cached_problems()
/// on the CPU, which takes the same (empty) argument list and so cannot share its name.
std::size_t conv3d_cached_problems();

/// Most bytes of workspace a cuDNN algorithm may ask for, MEDSEG_CUDNN_WORKSPACE_MB when set,
/// else no cap (SIZE_MAX). Algorithms are also held to half the device's free memory at the
/// time they are chosen; faster ones that need more are passed over.
std::size_t conv3d_workspace_limit();

}  // namespace medseg::cuda
