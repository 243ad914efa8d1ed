// Cross-entropy losses as PyTorch defines them: CrossEntropy (softmax over channels, class
// weights, ignore_index, index or probability targets) and BinaryCrossEntropy (sigmoid per
// element, pos_weight per channel, as BCEWithLogitsLoss). Both work from the logits with a
// log-sum-exp, so confident wrong predictions give large finite losses, never inf.
// On either backend: a kernel activates and sums (ops::cross_entropy_sums and
// ops::binary_cross_entropy_sums), the host divides (shared code), a kernel writes the gradient.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "../backends/ops.hpp"
#include "../core/tensor.hpp"
#include "activation.hpp"
#include "concepts.hpp"
#include "target.hpp"

namespace medseg::loss {

struct CrossEntropyOptions {
  /// PyTorch's `weight`: one per class (C values); empty: all 1.
  std::vector<float> class_weights{};
  /// Voxels with this label add nothing, to the loss or to the mean's denominator (PyTorch's
  /// default -100). Only index labels can carry it.
  std::int64_t ignore_index = -100;
  Reduction reduction = Reduction::mean;
};

/// torch.nn.functional.cross_entropy on logits [N,C,spatial...].
/// Index labels y: loss = sum_i w_{y_i} (-log p_{i,y_i}) / sum_i w_{y_i} (mean) over voxels i
/// whose label is not ignore_index. When every voxel is ignored the mean is 0 with a zero
/// gradient, where PyTorch gives NaN: a crop of pure ignore label must not end a run.
/// Probability labels t ([N,C,...] float): loss = sum_i sum_c w_c t_ic (-log p_ic) / (N * S).
template <class B = Cpu>
class CrossEntropy {
 public:
  using backend = B;
  static constexpr std::string_view name = "loss::CrossEntropy";

  CrossEntropy() = default;
  explicit CrossEntropy(CrossEntropyOptions options) : options_(std::move(options)) {}

  template <LabelElement L>
  float forward(const Tensor<float, B>& logits, const Tensor<L, B>& labels);
  Tensor<float, B> backward() const;
  void backward_accumulate(const Tensor<float, B>& grad, float scale) const;

  const CrossEntropyOptions& options() const { return options_; }

 private:
  CrossEntropyOptions options_;
  ops::LossExtents e_;
  ops::LossTarget<B> target_;
  Tensor<float, B> probs_;
  double denominator_ = 1;  // what the summed loss was divided by (1 for Reduction::sum)
  bool ready_ = false;
};

CrossEntropy() -> CrossEntropy<Cpu>;
CrossEntropy(CrossEntropyOptions) -> CrossEntropy<Cpu>;

struct BinaryCrossEntropyOptions {
  /// PyTorch's `pos_weight`, one per channel (C values): > 1 favours recall of that channel.
  std::vector<float> pos_weight{};
  /// PyTorch's `weight`, here one per channel (C values), scaling each channel's loss.
  std::vector<float> class_weights{};
  Reduction reduction = Reduction::mean;
};

/// torch.nn.BCEWithLogitsLoss on logits [N,C,spatial...]: per element
///   l = w_c (pw_c y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))) negated,
/// averaged over all N*C*S elements (mean). Labels: float targets of the logits' shape, or
/// index labels (one channel: the 0/1 mask itself; C channels: one-hot over them).
template <class B = Cpu>
class BinaryCrossEntropy {
 public:
  using backend = B;
  static constexpr std::string_view name = "loss::BinaryCrossEntropy";

  BinaryCrossEntropy() = default;
  explicit BinaryCrossEntropy(BinaryCrossEntropyOptions options) : options_(std::move(options)) {}

  template <LabelElement L>
  float forward(const Tensor<float, B>& logits, const Tensor<L, B>& labels);
  Tensor<float, B> backward() const;
  void backward_accumulate(const Tensor<float, B>& grad, float scale) const;

  const BinaryCrossEntropyOptions& options() const { return options_; }

 private:
  BinaryCrossEntropyOptions options_;
  ops::LossExtents e_;
  ops::LossTarget<B> target_;
  Tensor<float, B> probs_;
  double denominator_ = 1;
  bool ready_ = false;
};

BinaryCrossEntropy() -> BinaryCrossEntropy<Cpu>;
BinaryCrossEntropy(BinaryCrossEntropyOptions) -> BinaryCrossEntropy<Cpu>;

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

/// Checks an optional per-channel vector (empty, or one value per channel).
inline void check_channel_vector(std::string_view loss, const char* field, const std::vector<float>& v,
                                 const Shape& logits) {
  require(v.empty() || static_cast<std::int64_t>(v.size()) == logits[1], [&] {
    return ErrorInfo{.where = std::string(loss), .field = field,
                     .expected = std::to_string(logits[1]) + " values (one per channel of logits " +
                                 logits.to_string() + ")",
                     .actual = std::to_string(v.size())};
  });
}

}  // namespace detail

template <class B>
template <LabelElement L>
float CrossEntropy<B>::forward(const Tensor<float, B>& logits, const Tensor<L, B>& labels) {
  ready_ = false;
  const auto e = detail::check_logits(name, logits);
  detail::check_channel_vector(name, "class_weights", options_.class_weights, logits.shape());
  target_ = detail::make_target(name, logits, labels, {.classes = e.c, .ignore = options_.ignore_index});
  e_ = e;
  const Tensor<float, B> x = logits.contiguous();
  if (!probs_.defined() || probs_.shape() != x.shape()) probs_ = Tensor<float, B>::empty(x.shape());
  const ops::LossSums part = ops::cross_entropy_sums(x, probs_, target_, e, options_.class_weights);
  if (!part.finite) detail::throw_non_finite(name, logits);
  double loss = 0, wsum = 0;
  for (std::size_t i = 0; i < part.values.size(); i += 2) {
    loss += part.values[i];
    wsum += part.values[i + 1];
  }
  if (options_.reduction == Reduction::sum)
    denominator_ = 1;
  else if (target_.is_index())
    denominator_ = wsum;  // 0 only when every voxel is ignored (or weighs 0): loss 0, grad 0
  else
    denominator_ = double(e.n * e.s);
  const double value = denominator_ > 0 ? loss / denominator_ : 0.0;
  if (!std::isfinite(value)) detail::throw_non_finite(name, logits);
  ready_ = true;
  return static_cast<float>(value);
}

template <class B>
Tensor<float, B> CrossEntropy<B>::backward() const {
  detail::require_ready(name, ready_);
  auto grad = Tensor<float, B>::zeros(probs_.shape());
  backward_accumulate(grad, 1.0f);
  return grad;
}

template <class B>
void CrossEntropy<B>::backward_accumulate(const Tensor<float, B>& grad, float scale) const {
  detail::require_ready(name, ready_);
  detail::require_gradient_shape(name, grad, probs_.shape());
  if (denominator_ <= 0) return;
  const float k = static_cast<float>(scale / denominator_);
  ops::cross_entropy_backward(probs_, target_, options_.class_weights, e_, k, grad);
}

template <class B>
template <LabelElement L>
float BinaryCrossEntropy<B>::forward(const Tensor<float, B>& logits, const Tensor<L, B>& labels) {
  ready_ = false;
  const auto e = detail::check_logits(name, logits);
  detail::check_channel_vector(name, "pos_weight", options_.pos_weight, logits.shape());
  detail::check_channel_vector(name, "class_weights", options_.class_weights, logits.shape());
  target_ = detail::make_target(name, logits, labels, {.classes = e.c, .to_dense = true});
  e_ = e;
  const Tensor<float, B> x = logits.contiguous();
  if (!probs_.defined() || probs_.shape() != x.shape()) probs_ = Tensor<float, B>::empty(x.shape());
  const ops::LossSums part = ops::binary_cross_entropy_sums(x, probs_, target_.dense, e, options_.pos_weight);
  if (!part.finite) detail::throw_non_finite(name, logits);
  const auto& cw = options_.class_weights;
  double loss = 0;
  for (std::size_t u = 0; u < part.values.size(); ++u) {
    const auto c = static_cast<std::size_t>((static_cast<std::int64_t>(u) / part.blocks) % e.c);
    loss += (cw.empty() ? 1.0 : cw[c]) * part.values[u];
  }
  denominator_ = options_.reduction == Reduction::sum ? 1.0 : double(x.numel());
  const double value = loss / denominator_;
  if (!std::isfinite(value)) detail::throw_non_finite(name, logits);
  ready_ = true;
  return static_cast<float>(value);
}

template <class B>
Tensor<float, B> BinaryCrossEntropy<B>::backward() const {
  detail::require_ready(name, ready_);
  auto grad = Tensor<float, B>::zeros(probs_.shape());
  backward_accumulate(grad, 1.0f);
  return grad;
}

template <class B>
void BinaryCrossEntropy<B>::backward_accumulate(const Tensor<float, B>& grad, float scale) const {
  detail::require_ready(name, ready_);
  detail::require_gradient_shape(name, grad, probs_.shape());
  const float k = static_cast<float>(scale / denominator_);
  ops::binary_cross_entropy_backward(probs_, target_.dense, options_.pos_weight, options_.class_weights, e_, k, grad);
}

static_assert(Loss<CrossEntropy<Cpu>>);
static_assert(Loss<BinaryCrossEntropy<Cpu>>);

}  // namespace medseg::loss
