// Single-precision matrix products on the CPU for Linear layers and attention, through
// oneDNN's sgemm rather than Eigen: sgemm's AVX-512 JIT kernels run on oneDNN's OpenMP
// threads (MEDSEG_NUM_THREADS of them), while Eigen's products run on one thread unless the
// whole program is built with OpenMP.
#pragma once

#include <cstdint>
#include <string>

#include "../../core/error.hpp"
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

}  // namespace medseg::ops
