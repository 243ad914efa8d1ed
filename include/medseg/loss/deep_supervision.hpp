// Deep supervision as nnU-Net trains it: the decoder emits logits at every resolution, each
// is compared with labels downsampled to it, and the losses are summed with weights 1/2^i
// (full resolution first), the lowest resolution weighted 0, renormalised to sum to 1.
// Coarse outputs get a gradient signal early in training without dominating the result.
#pragma once

#include <cmath>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "concepts.hpp"
#include "target.hpp"

namespace medseg::loss {

/// nnU-Net's weights for `scales` outputs: w_i = 2^-i, w_last = 0, divided by their sum.
/// For 4 scales: 8/14, 4/14, 2/14, 0. One scale gets weight 1.
std::vector<double> deep_supervision_weights(std::size_t scales);

/// Sum_i weight_i * loss(logits[i], labels[i]); one copy of `loss` per scale keeps each
/// scale's backward state. Scales with weight 0 are not computed; their gradient is zero.
///
///   loss::DeepSupervision ds{loss::dice_ce({.include_background = false}), 4};
///   float v = ds.forward(outputs, targets);        // vectors, full resolution first
///   std::vector<Tensor<float>> grads = ds.backward();
template <class L>
class DeepSupervision {
 public:
  using backend = typename L::backend;
  static constexpr std::string_view name = "loss::DeepSupervision";

  /// nnU-Net's weights for `scales` outputs.
  DeepSupervision(L loss, std::size_t scales) : DeepSupervision(std::move(loss), deep_supervision_weights(scales)) {}
  /// Explicit weights, used as given (not renormalised).
  DeepSupervision(L loss, std::vector<double> weights);

  template <LabelElement Label>
  float forward(const std::vector<Tensor<float, backend>>& logits, const std::vector<Tensor<Label, backend>>& labels);
  /// d loss / d logits[i] for every scale, in the order of forward's logits.
  std::vector<Tensor<float, backend>> backward() const;

  const std::vector<double>& weights() const { return weights_; }
  /// Each scale's unweighted value from the last forward (0 for skipped scales).
  const std::vector<float>& values() const { return values_; }

 private:
  std::vector<L> losses_;
  std::vector<double> weights_;
  std::vector<float> values_;
  std::vector<Shape> shapes_;
  bool ready_ = false;
};

// ----------------------------------------------------------------------------------------
// Implementation

inline std::vector<double> deep_supervision_weights(std::size_t scales) {
  require(scales >= 1, [&] {
    return ErrorInfo{.where = "loss::deep_supervision_weights", .field = "scales", .expected = ">= 1",
                     .actual = std::to_string(scales)};
  });
  if (scales == 1) return {1.0};
  std::vector<double> w(scales);
  double sum = 0;
  for (std::size_t i = 0; i < scales; ++i) sum += (w[i] = i + 1 == scales ? 0.0 : std::ldexp(1.0, -static_cast<int>(i)));
  for (double& v : w) v /= sum;
  return w;
}

template <class L>
DeepSupervision<L>::DeepSupervision(L loss, std::vector<double> weights)
    : losses_(weights.size(), loss), weights_(std::move(weights)), values_(weights_.size(), 0.0f) {
  require(!weights_.empty(), [&] {
    return ErrorInfo{.where = std::string(name), .field = "weights", .expected = "at least one scale", .actual = "none"};
  });
  for (std::size_t i = 0; i < weights_.size(); ++i)
    require(std::isfinite(weights_[i]) && weights_[i] >= 0, [&] {
      return ErrorInfo{.where = std::string(name), .field = "weights[" + std::to_string(i) + "]",
                       .expected = "a finite value >= 0", .actual = str(weights_[i])};
    });
}

template <class L>
template <LabelElement Label>
float DeepSupervision<L>::forward(const std::vector<Tensor<float, backend>>& logits,
                                  const std::vector<Tensor<Label, backend>>& labels) {
  ready_ = false;
  require(logits.size() == weights_.size() && labels.size() == weights_.size(), [&] {
    return ErrorInfo{.where = std::string(name), .field = "scales",
                     .expected = std::to_string(weights_.size()) + " logits and labels, full resolution first",
                     .actual = std::to_string(logits.size()) + " logits, " + std::to_string(labels.size()) + " labels"};
  });
  double total = 0;
  shapes_.clear();
  for (std::size_t i = 0; i < weights_.size(); ++i) {
    shapes_.push_back(logits[i].shape());
    values_[i] = 0.0f;
    if (weights_[i] == 0.0) continue;
    try {
      values_[i] = losses_[i].forward(logits[i], labels[i]);
    } catch (const Error& e) {
      // Say which scale failed: the shapes alone rarely tell a user which output was wrong.
      ErrorInfo info = e.info();
      info.where = std::string(name) + " scale " + std::to_string(i) + ": " + info.where;
      throw Error{info};
    }
    total += weights_[i] * values_[i];
  }
  ready_ = true;
  return static_cast<float>(total);
}

template <class L>
std::vector<Tensor<float, typename L::backend>> DeepSupervision<L>::backward() const {
  detail::require_ready(name, ready_);
  std::vector<Tensor<float, backend>> grads;
  for (std::size_t i = 0; i < weights_.size(); ++i) {
    grads.push_back(Tensor<float, backend>::zeros(shapes_[i]));
    if (weights_[i] != 0.0) losses_[i].backward_accumulate(grads.back(), static_cast<float>(weights_[i]));
  }
  return grads;
}

}  // namespace medseg::loss
