// cuBLAS GEMM for backends/cuda/gemm.hpp. cuBLAS is column-major, and a row-major matrix
// read column-major is its transpose; so row-major C = op(A) op(B) is computed as
// column-major C^T = op(B)^T op(A)^T, which is the same call with A and B swapped and every
// leading dimension the row length. One strided-batched call covers 2-D and 3-D operands.
#include "medseg/backends/cuda/gemm.hpp"

#include <cstdint>
#include <string>

#include "medseg/backends/cuda/cublas.hpp"
#include "medseg/backends/gemm.hpp"
#include "medseg/core/tensor.hpp"

namespace medseg::ops {

void gemm(bool transpose_a, bool transpose_b, float alpha, const Tensor<float, Cuda>& a, const Tensor<float, Cuda>& b,
          float beta, const Tensor<float, Cuda>& c) {
  const std::string where = "gemm";
  const GemmProblem p = gemm_problem(transpose_a, transpose_b, a, b, c);  // the CPU's checks and wording
  const std::int64_t batch = p.batch, m = p.m, n = p.n, k = p.k;
  if (m == 0 || n == 0 || batch == 0) return;
  try {
    if (k == 0) {
      // An empty sum: C = beta * C, with beta == 0 clearing NaNs, as on the CPU.
      if (beta == 0.0f)
        Cuda::zero(c.data(), c.nbytes());
      else
        MEDSEG_CUBLAS_CHECK(cublasSscal_64(cuda::cublas_handle(), c.numel(), &beta, c.data(), 1));
      return;
    }
    const auto op = [](bool transpose) { return transpose ? CUBLAS_OP_T : CUBLAS_OP_N; };
    const std::int64_t lda = p.lda, ldb = p.ldb, ldc = n;
    // cuBLAS does not read C when beta == 0, so NaNs there do not propagate.
    MEDSEG_CUBLAS_CHECK(cublasSgemmStridedBatched_64(cuda::cublas_handle(), op(transpose_b), op(transpose_a), n, m, k,
                                                     &alpha, b.data(), ldb, k * n, a.data(), lda, m * k, &beta,
                                                     c.data(), ldc, m * n, batch));
  } catch (const Error& e) {
    throw Error{{.where = where, .detail = p.operands + ": " + e.what()}};
  }
}

}  // namespace medseg::ops
