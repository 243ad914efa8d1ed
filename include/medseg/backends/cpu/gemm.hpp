// Single-precision matrix products on the CPU for Linear layers and attention, through
// oneDNN's sgemm rather than Eigen: sgemm's AVX-512 JIT kernels run on oneDNN's OpenMP
// threads (MEDSEG_NUM_THREADS of them), while Eigen's products run on one thread unless the
// whole program is built with OpenMP.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "../../core/error.hpp"
#include "../../core/parallel.hpp"
#include "../../core/tensor.hpp"
#include "../gemm.hpp"
#include "dnnl.hpp"

namespace medseg::ops {

/// C = alpha * op(A) op(B) + beta * C, row-major float32; op transposes when asked.
///   2-D: A [M, K] ([K, M] when transpose_a), B [K, N] ([N, K] when transpose_b), C [M, N].
///   3-D: a batch of such products, [batch, ...] for all three (attention heads).
/// With beta == 0, C's old values are ignored (NaNs in C do not propagate).
/// All contiguous; C must not overlap A or B. Throws Error naming the operand and shapes.
void gemm(bool transpose_a, bool transpose_b, float alpha, const Tensor<float, Cpu>& a, const Tensor<float, Cpu>& b,
          float beta, const Tensor<float, Cpu>& c);

/// Every row of y [rows, n] set to bias [n]: a Linear layer's bias before y += x W^T.
void fill_rows(const Tensor<float, Cpu>& bias, const Tensor<float, Cpu>& y);

/// dbias [n] += the column sums of dy [rows, n]: a Linear layer's bias gradient. The sums
/// are made in double, row by row.
void accumulate_column_sums(const Tensor<float, Cpu>& dy, const Tensor<float, Cpu>& dbias);

}  // namespace medseg::ops

// ----------------------------------------------------------------------------------------
// Implementation

namespace medseg::ops {

inline void gemm(bool transpose_a, bool transpose_b, float alpha, const Tensor<float, Cpu>& a,
                 const Tensor<float, Cpu>& b, float beta, const Tensor<float, Cpu>& c) {
  const std::string where = "gemm";
  const GemmProblem p = gemm_problem(transpose_a, transpose_b, a, b, c);
  const std::int64_t batch = p.batch, m = p.m, n = p.n, k = p.k;
  if (m == 0 || n == 0) return;
  if (k == 0) {
    // sgemm with K = 0 still scales C by beta; spell it out so beta == 0 clears NaNs.
    for (std::int64_t i = 0; i < c.numel(); ++i) c.data()[i] = beta == 0.0f ? 0.0f : beta * c.data()[i];
    return;
  }
  cpu::match_dnnl_threads();
  const std::int64_t lda = p.lda, ldb = p.ldb, ldc = n;
  for (std::int64_t i = 0; i < batch; ++i) {
    const float* pa = a.data() + i * m * k;
    const float* pb = b.data() + i * k * n;
    float* pc = c.data() + i * m * n;
    const auto status = dnnl_sgemm(transpose_a ? 'T' : 'N', transpose_b ? 'T' : 'N', m, n, k, alpha, pa, lda, pb,
                                   ldb, beta, pc, ldc);
    require(status == dnnl_success, [&] {
      return ErrorInfo{.where = where, .field = "oneDNN sgemm", .expected = "success",
                       .actual = dnnl_status2str(status), .detail = p.operands};
    });
  }
}

inline void fill_rows(const Tensor<float, Cpu>& bias, const Tensor<float, Cpu>& y) {
  const std::int64_t n = bias.numel(), rows = y.numel() / std::max<std::int64_t>(n, 1);
  require_row_operands("ops::fill_rows", bias, y);
  const float* b = bias.data();
  float* py = y.data();
  parallel_for(0, rows, std::max<std::int64_t>(1, 4096 / std::max<std::int64_t>(n, 1)),
               [&](std::int64_t r0, std::int64_t r1) {
                 for (std::int64_t r = r0; r < r1; ++r) std::copy_n(b, n, py + r * n);
               });
}

inline void accumulate_column_sums(const Tensor<float, Cpu>& dy, const Tensor<float, Cpu>& dbias) {
  const std::int64_t n = dbias.numel(), rows = dy.numel() / std::max<std::int64_t>(n, 1);
  require_row_operands("ops::accumulate_column_sums", dbias, dy);
  const float* pg = dy.data();
  float* db = dbias.data();
  std::vector<double> sum(static_cast<std::size_t>(n), 0.0);  // row by row: unit stride
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t j = 0; j < n; ++j) sum[static_cast<std::size_t>(j)] += pg[r * n + j];
  for (std::int64_t j = 0; j < n; ++j) db[j] += static_cast<float>(sum[static_cast<std::size_t>(j)]);
}

}  // namespace medseg::ops
