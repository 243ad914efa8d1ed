// The Cuda overloads of backends/cpu/activation.hpp: the point-wise activations, PReLU and
// Softmax over channels on device tensors, with the CPU's arguments, checks and formulas.
// The GPU evaluates exp and erf with CUDA's expf/erff (2 ulp) where the CPU uses its own
// vectorisable approximations (exp to 2 ulp, erf to 5e-7): results agree to about 1e-6.
// Defined in src/backends/cuda/activation.cu.
#pragma once

#include "../cpu/activation.hpp"  // Activation, and the Cpu overloads these mirror
#include "backend.hpp"
#include "elementwise.hpp"

namespace medseg::ops {

/// y = f(x). `alpha` is LeakyReLU's negative slope or ELU's alpha; ignored otherwise.
/// y may be x.
void activation_forward(Activation f, float alpha, const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& y);
/// dx = dy * f'(x). `x` is the forward input, except for sigmoid, whose derivative is
/// computed from its output y (pass y as `x`). dx may be dy.
void activation_backward(Activation f, float alpha, const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& dy,
                         const Tensor<float, Cuda>& dx);

/// PReLU over [N, C, ...] (or any rank >= 1 when there is one slope): y = x > 0 ? x : a[c] x.
/// `slope` has 1 or C entries.
void prelu_forward(const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& slope, const Tensor<float, Cuda>& y);
/// dx = dy * (x > 0 ? 1 : a[c]);  dslope[c] += sum over (x <= 0) of dy * x. The sums are
/// made in double in a fixed order, so they are the same on every run.
void prelu_backward(const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& slope, const Tensor<float, Cuda>& dy,
                    const Tensor<float, Cuda>& dx, const Tensor<float, Cuda>& dslope);

/// y = prelu(x * scale[c] + shift[c]): a norm's per-channel map (BatchNorm3d::channel_affine_of)
/// and PReLU in one pass; scale and shift [C] on the device.
void prelu_affine_forward(const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& scale,
                          const Tensor<float, Cuda>& shift, const Tensor<float, Cuda>& slope,
                          const Tensor<float, Cuda>& y);
/// prelu_backward at the input x * scale[c] + shift[c], recomputed from x.
void prelu_affine_backward(const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& scale,
                           const Tensor<float, Cuda>& shift, const Tensor<float, Cuda>& slope,
                           const Tensor<float, Cuda>& dy, const Tensor<float, Cuda>& dx,
                           const Tensor<float, Cuda>& dslope);

/// prelu_backward from the forward's output y instead of its input, for slopes that are all
/// positive: then y > 0 exactly where x > 0, and x = y / slope below zero.
void prelu_backward_from_output(const Tensor<float, Cuda>& y, const Tensor<float, Cuda>& slope,
                                const Tensor<float, Cuda>& dy, const Tensor<float, Cuda>& dx,
                                const Tensor<float, Cuda>& dslope);

/// Whether a PReLU layer may keep its output rather than its input for backward: never on
/// the device, where the slopes would have to be read back (a wait for the stream) on every
/// forward to know they are all positive.
inline bool prelu_keeps_output(const Tensor<float, Cuda>&) { return false; }

/// Softmax over axis 1 of [N, C, ...]: y[n,c,v] = exp(x[n,c,v] - m) / sum_k exp(x[n,k,v] - m),
/// m the largest x[n,k,v]. y may be x.
void softmax_channels_forward(const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& y);
/// dx = y * (dy - sum_c dy * y), from the forward output y. dx may be dy.
void softmax_channels_backward(const Tensor<float, Cuda>& y, const Tensor<float, Cuda>& dy,
                               const Tensor<float, Cuda>& dx);

}  // namespace medseg::ops
