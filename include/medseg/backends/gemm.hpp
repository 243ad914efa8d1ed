// GemmProblem: one (batched) row-major matrix product C = alpha op(A) op(B) + beta C, read
// off its operands and checked, the same way for every backend's gemm (the CPU's oneDNN
// sgemm, the GPU's cuBLAS), so both refuse the same operands with the same words.
#pragma once

#include <cstdint>
#include <string>

#include "../core/error.hpp"
#include "../core/tensor.hpp"

namespace medseg::ops {

struct GemmProblem {
  int row_axis = 0;  // 0 for 2-D operands, 1 for batched 3-D ones
  std::int64_t batch = 1, m = 0, n = 0, k = 0;
  std::int64_t lda = 0, ldb = 0;  // row lengths of A and B as stored (before op)
  std::string operands;           // "A [..], B [..]^T, C [..]": the detail of any later error
};

/// The product's sizes, after checking that A, B and C are defined, contiguous, all 2-D or all
/// 3-D, and agree: op(A) [M, K], op(B) [K, N], C [M, N], per batch entry. Throws Error naming
/// the operand and all three shapes.
template <class B>
GemmProblem gemm_problem(bool transpose_a, bool transpose_b, const Tensor<float, B>& a, const Tensor<float, B>& b,
                         const Tensor<float, B>& c) {
  const std::string where = "gemm";
  GemmProblem p;
  p.operands = "A " + a.shape().to_string() + (transpose_a ? "^T" : "") + ", B " + b.shape().to_string() +
               (transpose_b ? "^T" : "") + ", C " + c.shape().to_string();
  for (const auto* t : {&a, &b, &c})
    require(t->defined() && t->is_contiguous(), [&] {
      return ErrorInfo{.where = where, .field = t == &a ? "A" : t == &b ? "B" : "C",
                       .expected = "a defined contiguous tensor",
                       .actual = t->defined() ? t->layout().to_string() : "an undefined tensor"};
    });
  const int rank = a.rank();
  require((rank == 2 || rank == 3) && b.rank() == rank && c.rank() == rank, [&] {
    return ErrorInfo{.where = where, .field = "ranks", .expected = "A, B and C all 2-D or all 3-D (batched)",
                     .actual = p.operands};
  });
  const int r = p.row_axis = rank - 2;
  p.batch = rank == 3 ? a.size(0) : 1;
  p.m = transpose_a ? a.size(r + 1) : a.size(r);
  p.k = transpose_a ? a.size(r) : a.size(r + 1);
  const std::int64_t kb = transpose_b ? b.size(r + 1) : b.size(r);
  p.n = transpose_b ? b.size(r) : b.size(r + 1);
  p.lda = a.size(r + 1);
  p.ldb = b.size(r + 1);
  require(p.k == kb, [&] {
    return ErrorInfo{.where = where, .field = "inner dimension", .expected = "op(A) columns == op(B) rows",
                     .actual = str(p.k, " vs ", kb, " (", p.operands, ")")};
  });
  require(c.size(r) == p.m && c.size(r + 1) == p.n, [&] {
    return ErrorInfo{.where = where, .field = "C", .expected = str("[", p.m, ",", p.n, "] per product"),
                     .actual = p.operands};
  });
  require(rank == 2 || (b.size(0) == p.batch && c.size(0) == p.batch), [&] {
    return ErrorInfo{.where = where, .field = "batch", .expected = str(p.batch, " products in A, B and C"),
                     .actual = p.operands};
  });
  return p;
}

/// Checks a row operation's operands: `vector` [n] and `matrix` [rows, n] (any rank, last
/// axis n), both defined and contiguous. Throws Error naming `op` and both shapes.
template <class B>
void require_row_operands(const char* op, const Tensor<float, B>& vector, const Tensor<float, B>& matrix) {
  const bool ok = vector.defined() && matrix.defined() && vector.is_contiguous() && matrix.is_contiguous() &&
                  vector.rank() == 1 && matrix.rank() >= 1 && matrix.size(-1) == vector.numel();
  require(ok, [&] {
    return ErrorInfo{.where = op, .field = "operands", .expected = "a contiguous [n] and a contiguous [..., n]",
                     .actual = (vector.defined() ? vector.shape().to_string() : std::string("undefined")) + " and " +
                               (matrix.defined() ? matrix.shape().to_string() : std::string("undefined"))};
  });
}

}  // namespace medseg::ops
