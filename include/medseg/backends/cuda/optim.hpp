// The optimizer kernels on the GPU, the Cuda overloads of the CPU loops in optim/sgd.hpp,
// optim/adam.hpp and optim/clip.hpp. Each update is one launch over the fused table
// (optim/fused.hpp): one block per chunk, every parameter in the same kernel. The element
// arithmetic is the CPU's, operation for operation and without fused multiply-adds, so a
// step gives the CPU's floats. Defined in src/backends/cuda/optim.cu; optim/optimizer.hpp
// includes this header under MEDSEG_WITH_CUDA, so the optimizer templates see both overloads.
#pragma once

#include "../../optim/fused.hpp"
#include "backend.hpp"

namespace medseg::optim::detail {

/// One SGD step over every chunk of `table` (state[0]: the momentum buffer).
void sgd_update(const FusedTable<Cuda>& table, const SgdScalars& k);

/// One Adam or AdamW step over every chunk of `table` (state: exp_avg, exp_avg_sq,
/// max_exp_avg_sq or null).
void adam_update(const FusedTable<Cuda>& table, const AdamStep& step);

/// Sum of |g|^norm_type over every gradient (g^2 for 2), or for an infinite norm_type the
/// largest |g| (NaN when any g is NaN): per-chunk partials in double, combined in a fixed
/// order on the device; one number comes back.
double gradient_norm_total(const FusedTable<Cuda>& table, double norm_type);

/// g *= factor for every gradient of the table.
void scale_gradients(const FusedTable<Cuda>& table, float factor);

}  // namespace medseg::optim::detail
