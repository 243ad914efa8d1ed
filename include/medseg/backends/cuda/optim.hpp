// The optimizer kernels on the GPU, the Cuda overloads of those in backends/cpu/optim.hpp.
// Each update is one launch over the fused table (backends/optim.hpp): one block per chunk,
// every parameter in the same kernel. The element arithmetic is the CPU's, operation for
// operation and without fused multiply-adds, so a step gives the CPU's floats. Defined in
// src/backends/cuda/optim.cu; reached through backends/ops.hpp.
#pragma once

#include "../optim.hpp"
#include "backend.hpp"

namespace medseg::ops {

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

}  // namespace medseg::ops
