// The loss kernels on the GPU, the Cuda overloads of the CPU kernels in loss/target.hpp,
// loss/dice.hpp and loss/cross_entropy.hpp: label checks and conversions, activation with
// per-term sums, and gradients. Each sum is reduced on the device in a fixed order (in
// double), so a forward copies a handful of numbers back and gives the same value every run.
// Defined in src/backends/cuda/loss.cu; loss/target.hpp includes this header under
// MEDSEG_WITH_CUDA, so the loss templates see both overloads.
//
// The loss types are only declared here (defined in loss/): the loss headers include this
// one before they define their templates, so it cannot include them.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "../../core/tensor.hpp"
#include "backend.hpp"

namespace medseg::loss {

enum class Activation;  // loss/activation.hpp

namespace detail {

struct Extents;  // loss/target.hpp
template <class B>
struct Target;
struct PartialSums;
struct DiceCoefficients;  // loss/dice.hpp

// -- Labels (loss/target.hpp's make_target). One pass each; the first two copy one number back.

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
void labels_to_one_hot(const Tensor<L, Cuda>& labels, const Extents& e, const Tensor<float, Cuda>& dense);

// -- Dice (loss/dice.hpp). Sums come back as [N][1][C][I, P, G].

PartialSums dice_sums(const Tensor<float, Cuda>& logits, const Tensor<float, Cuda>& probs, const Target<Cuda>& target,
                      const Extents& e, Activation activation, bool squared);
void dice_backward(const Tensor<float, Cuda>& probs, const Target<Cuda>& target,
                   const std::vector<DiceCoefficients>& coef, const Extents& e, Activation activation, bool squared,
                   const Tensor<float, Cuda>& grad, float scale);

// -- Cross-entropy (loss/cross_entropy.hpp). Sums come back as one part [loss, weight].

PartialSums cross_entropy_sums(const Tensor<float, Cuda>& logits, const Tensor<float, Cuda>& probs,
                               const Target<Cuda>& target, const Extents& e, const std::vector<float>& class_weights);
void cross_entropy_backward(const Tensor<float, Cuda>& probs, const Target<Cuda>& target,
                            const std::vector<float>& class_weights, const Extents& e, float k,
                            const Tensor<float, Cuda>& grad);

// -- Binary cross-entropy (loss/cross_entropy.hpp). Sums come back as [N*C][1].

PartialSums binary_cross_entropy_sums(const Tensor<float, Cuda>& logits, const Tensor<float, Cuda>& probs,
                                      const Tensor<float, Cuda>& target, const Extents& e,
                                      const std::vector<float>& pos_weight);
void binary_cross_entropy_backward(const Tensor<float, Cuda>& probs, const Tensor<float, Cuda>& target,
                                   const std::vector<float>& pos_weight, const std::vector<float>& class_weights,
                                   const Extents& e, float k, const Tensor<float, Cuda>& grad);

}  // namespace detail
}  // namespace medseg::loss
