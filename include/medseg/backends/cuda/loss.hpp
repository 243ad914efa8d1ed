// The loss kernels on the GPU, the Cuda overloads of the CPU kernels in backends/cpu/loss.hpp
// (same names and arguments, Tensor<..., Cuda> in place of Tensor<..., Cpu>): label checks and
// conversions, activation with per-term sums, and gradients. Each sum is reduced on the device
// in a fixed order (in double), so a forward copies a handful of numbers back and gives the
// same value every run. The types they take are in backends/loss.hpp; definitions in
// src/backends/cuda/loss.cu.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "../loss.hpp"
#include "backend.hpp"

namespace medseg::ops {

// -- Labels (loss::detail::make_target). One pass each; the first two copy one number back.

/// Flat index of the first label outside [0, classes) that is not `ignore`; -1 when all are
/// valid. Defined for every integer element type.
template <class L>
std::int64_t first_invalid_label(const Tensor<L, Cuda>& labels, std::int64_t classes, std::optional<std::int64_t> ignore);
/// Flat index of the first value outside [0, 1] (NaN included); -1 when all are inside.
std::int64_t first_outside_unit_interval(const Tensor<float, Cuda>& labels);
/// index[i] = labels[i] as int32, -1 where labels[i] == ignore.
template <class L>
void labels_to_index(const Tensor<L, Cuda>& labels, std::optional<std::int64_t> ignore,
                     const Tensor<std::int32_t, Cuda>& index);
/// dense[n,c,s] = (labels[n,s] == c), or labels[n,s] itself with one channel.
template <class L>
void labels_to_one_hot(const Tensor<L, Cuda>& labels, const LossExtents& e, const Tensor<float, Cuda>& dense);

// -- Dice (loss::Dice). Sums come back as [N][1][C][I, P, G].

LossSums dice_sums(const Tensor<float, Cuda>& logits, const Tensor<float, Cuda>& probs,
                   const LossTarget<Cuda>& target, const LossExtents& e, LossActivation activation, bool squared);
void dice_backward(const Tensor<float, Cuda>& probs, const LossTarget<Cuda>& target,
                   const std::vector<DiceCoefficients>& coef, const LossExtents& e, LossActivation activation,
                   bool squared, const Tensor<float, Cuda>& grad, float scale);

// -- Cross-entropy (loss::CrossEntropy). Sums come back as one part [loss, weight].

LossSums cross_entropy_sums(const Tensor<float, Cuda>& logits, const Tensor<float, Cuda>& probs,
                            const LossTarget<Cuda>& target, const LossExtents& e,
                            const std::vector<float>& class_weights);
void cross_entropy_backward(const Tensor<float, Cuda>& probs, const LossTarget<Cuda>& target,
                            const std::vector<float>& class_weights, const LossExtents& e, float k,
                            const Tensor<float, Cuda>& grad);

// -- Binary cross-entropy (loss::BinaryCrossEntropy). Sums come back as [N*C][1].

LossSums binary_cross_entropy_sums(const Tensor<float, Cuda>& logits, const Tensor<float, Cuda>& probs,
                                   const Tensor<float, Cuda>& target, const LossExtents& e,
                                   const std::vector<float>& pos_weight);
void binary_cross_entropy_backward(const Tensor<float, Cuda>& probs, const Tensor<float, Cuda>& target,
                                   const std::vector<float>& pos_weight, const std::vector<float>& class_weights,
                                   const LossExtents& e, float k, const Tensor<float, Cuda>& grad);

}  // namespace medseg::ops
