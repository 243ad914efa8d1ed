// The Loss concept: what every loss in loss/ offers, so the trainer, Mixed and
// DeepSupervision can take any of them. A loss is a small stateful object, like a layer:
// forward computes the value and keeps what backward needs; backward returns d loss / d logits.
#pragma once

#include <concepts>
#include <cstdint>
#include <string_view>

#include "../core/tensor.hpp"

namespace medseg::loss {

/// How per-voxel losses become one number (PyTorch's `reduction`).
enum class Reduction {
  mean,  // PyTorch's default; weighted mean where class weights apply
  sum,
};

/// A loss on logits [N, C, spatial...] (NCDHW for volumes; any rank >= 2 works).
///
/// Contract (what the compiler cannot check):
/// - `float forward(const Tensor<float,B>& logits, const Tensor<L,B>& labels)` for every label
///   element L of loss/target.hpp: integer class indices shaped [N,1,spatial...] or
///   [N,spatial...], or float one-hot / probability maps shaped like the logits. It checks
///   shapes, label range and finiteness (throwing medseg::Error that names the loss and the
///   shapes), returns the reduced loss, and keeps what backward needs: the activated
///   probabilities and the target, never a reference to the caller's tensors' later contents.
/// - `Tensor<float,B> backward() const` returns d loss / d logits for the last forward, a new
///   tensor with the logits' shape. Calling it again returns the same gradient.
/// - `void backward_accumulate(const Tensor<float,B>& grad, float scale) const` adds
///   scale * d loss / d logits into `grad` (logits' shape, contiguous): how weighted sums of
///   losses avoid a temporary per term.
/// - `L::name` names the loss in errors ("loss::Dice").
/// Backward before any forward throws Error.
template <class L, class B = Cpu>
concept Loss = requires(L& loss, const L& closs, const Tensor<float, B>& logits,
                        const Tensor<std::int64_t, B>& index_labels, const Tensor<std::uint8_t, B>& byte_labels,
                        const Tensor<float, B>& onehot_labels, float scale) {
  { L::name } -> std::convertible_to<std::string_view>;
  { loss.forward(logits, index_labels) } -> std::convertible_to<float>;
  { loss.forward(logits, byte_labels) } -> std::convertible_to<float>;
  { loss.forward(logits, onehot_labels) } -> std::convertible_to<float>;
  { closs.backward() } -> std::same_as<Tensor<float, B>>;
  { closs.backward_accumulate(logits, scale) };
};

}  // namespace medseg::loss
