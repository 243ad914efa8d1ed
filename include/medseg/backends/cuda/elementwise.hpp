// The Cuda overloads of backends/cpu/elementwise.hpp: sums, accumulation, scaling and
// counter-based dropout on device tensors (its channel concatenation serves both backends).
// Arguments, checks and results are the CPU kernels'; dropout keeps exactly the CPU's
// elements, because the same Philox numbers (core/rng.hpp) decide. Defined in src/backends/cuda/elementwise.cu.
#pragma once

#include <cstdint>

#include "../cpu/elementwise.hpp"  // DropoutMask, and the Cpu overloads these mirror
#include "backend.hpp"

namespace medseg::ops {

/// out = a + b. Shapes equal, tensors contiguous; out may be a or b.
void add(const Tensor<float, Cuda>& a, const Tensor<float, Cuda>& b, const Tensor<float, Cuda>& out);
/// dst += alpha * src, rounded as the CPU rounds it (a product, then a sum; never a fused FMA).
void accumulate(const Tensor<float, Cuda>& dst, const Tensor<float, Cuda>& src, float alpha = 1.0f);
/// out = a * s. out may be a.
void scale(const Tensor<float, Cuda>& a, float s, const Tensor<float, Cuda>& out);

/// out = x * mask / (1 - p), the mask of `mask` (see DropoutMask); also the backward.
/// out may be x.
void apply_dropout(const DropoutMask& mask, const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& out);

namespace detail {
/// The CPU's check for device tensors: equal shapes and both contiguous, or an Error that
/// names `op` and both layouts. For every Cuda kernel file that takes same-shaped operands.
void require_same_shape(const char* op, const Tensor<float, Cuda>& a, const Tensor<float, Cuda>& b);
}  // namespace detail

}  // namespace medseg::ops
