// The Cuda overload of backends/cpu/gemm.hpp: single-precision matrix products through
// cuBLAS, with the CPU's row-major arguments, checks and results. TF32 tensor cores only
// when allow_tf32() (backends/cuda/math_mode.hpp). Defined in src/backends/cuda/gemm.cpp.
#pragma once

#include <algorithm>
#include <cstdint>

#include "../gemm.hpp"
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

/// Every row of y [rows, n] set to bias [n], as the CPU op: the product ones[rows,1] b[1,n].
inline void fill_rows(const Tensor<float, Cuda>& bias, const Tensor<float, Cuda>& y) {
  require_row_operands("ops::fill_rows", bias, y);
  const std::int64_t n = bias.numel(), rows = y.numel() / std::max<std::int64_t>(n, 1);
  gemm(false, false, 1.0f, Tensor<float, Cuda>::ones({rows, 1}), bias.reshape({1, n}), 0.0f, y.reshape({rows, n}));
}

/// dbias [n] += the column sums of dy [rows, n], as the CPU op: one product dy^T ones.
inline void accumulate_column_sums(const Tensor<float, Cuda>& dy, const Tensor<float, Cuda>& dbias) {
  require_row_operands("ops::accumulate_column_sums", dbias, dy);
  const std::int64_t n = dbias.numel(), rows = dy.numel() / std::max<std::int64_t>(n, 1);
  gemm(true, false, 1.0f, dy.reshape({rows, n}), Tensor<float, Cuda>::ones({rows, 1}), 1.0f, dbias.reshape({n, 1}));
}

}  // namespace medseg::ops
