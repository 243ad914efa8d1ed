// The Cuda overload of backends/cpu/gemm.hpp: single-precision matrix products through
// cuBLAS, with the CPU's row-major arguments, checks and results. TF32 tensor cores only
// when allow_tf32() (backends/cuda/math_mode.hpp). Defined in src/backends/cuda/gemm.cpp.
#pragma once

#include "backend.hpp"
#include "math_mode.hpp"  // allow_tf32

namespace medseg::ops {

/// C = alpha * op(A) op(B) + beta * C, row-major float32; op transposes when asked.
///   2-D: A [M, K] ([K, M] when transpose_a), B [K, N] ([N, K] when transpose_b), C [M, N].
///   3-D: a batch of such products, [batch, ...] for all three (attention heads), in one
///   strided-batched cuBLAS call.
/// With beta == 0, C's old values are ignored (NaNs in C do not propagate).
/// All contiguous device tensors; C must not overlap A or B. Throws Error naming the operand
/// and shapes. Queued on the current stream.
void gemm(bool transpose_a, bool transpose_b, float alpha, const Tensor<float, Cuda>& a, const Tensor<float, Cuda>& b,
          float beta, const Tensor<float, Cuda>& c);

}  // namespace medseg::ops
