// Soft Dice loss, with the variants MONAI's DiceLoss, nnU-Net's SoftDiceLoss, MedicalSeg's
// DiceLoss and the VNet paper use: softmax or sigmoid, with or without the background class,
// plain or squared denominator, smoothing terms, per-sample or batch Dice, class weights.
// Dice's overlap term makes it robust to the class imbalance of small structures in big volumes.
// On either backend: a kernel activates and sums per term (ops::dice_sums), the host turns
// the sums into the loss and per-term gradient coefficients (shared code), a kernel applies
// them in backward (ops::dice_backward).
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

struct DiceOptions {
  Activation activation = Activation::softmax;
  /// Score class 0 too (MONAI's default). nnU-Net trains with false (do_bg=False); with a
  /// softmax the background still takes part in the normalisation.
  bool include_background = true;
  /// Denominator sum p^2 + sum g^2 as in VNet (Milletari et al. 2016); false: sum p + sum g.
  bool squared_denominator = false;
  /// (2 I + smooth_numerator) / (denominator + smooth_denominator); MONAI's defaults.
  double smooth_numerator = 1e-5;
  double smooth_denominator = 1e-5;
  /// Sum over the batch before the ratio (MONAI batch=True, nnU-Net batch_dice, MedicalSeg).
  bool batch = false;
  /// One weight per scored class (C, or C - 1 without background); empty: all 1. MONAI's
  /// `weight`: each class's 1 - Dice is multiplied by its weight before the mean.
  std::vector<float> class_weights{};
};

/// loss = mean over scored terms t = (sample, class) or (class) with batch of
///        w_c * (1 - (2 I_t + smooth_nr) / (D_t + smooth_dr)),
/// I_t = sum_s p g, D_t = sum_s p + sum_s g (or sum p^2 + sum g^2), p = activation(logits).
/// Labels: class indices ([N,1,...] or [N,...], in [0, C)) or one-hot float maps ([N,C,...]).
/// With a sigmoid on one channel, index labels 0/1 are the foreground mask itself.
///
/// nnU-Net's SoftDiceLoss reports -Dice where this reports 1 - Dice: the same gradient.
///
///   loss::Dice dice{{.include_background = false, .batch = true}};    // nnU-Net's Dice
///   float v = dice.forward(logits, labels);  auto dlogits = dice.backward();
template <class B = Cpu>
class Dice {
 public:
  using backend = B;
  static constexpr std::string_view name = "loss::Dice";

  Dice() = default;
  explicit Dice(DiceOptions options) : options_(std::move(options)) {}

  template <LabelElement L>
  float forward(const Tensor<float, B>& logits, const Tensor<L, B>& labels);
  Tensor<float, B> backward() const;
  void backward_accumulate(const Tensor<float, B>& grad, float scale) const;

  const DiceOptions& options() const { return options_; }

 private:
  DiceOptions options_;
  ops::LossExtents e_;
  ops::LossTarget<B> target_;
  Tensor<float, B> probs_;
  std::vector<ops::DiceCoefficients> coef_;  // [N * C]; zero for unscored classes
  bool ready_ = false;
};

Dice() -> Dice<Cpu>;
Dice(DiceOptions) -> Dice<Cpu>;

// ----------------------------------------------------------------------------------------
// Implementation

template <class B>
template <LabelElement L>
float Dice<B>::forward(const Tensor<float, B>& logits, const Tensor<L, B>& labels) {
  ready_ = false;
  const std::string where(name);
  const auto e = detail::check_logits(name, logits);
  const std::int64_t first = options_.include_background ? 0 : 1;
  const std::int64_t scored = e.c - first;
  require(scored >= 1, [&] {
    return ErrorInfo{.where = where, .field = "logits channels " + logits.shape().to_string(),
                     .expected = "at least 2 channels when include_background is false", .actual = std::to_string(e.c)};
  });
  const auto& w = options_.class_weights;
  require(w.empty() || static_cast<std::int64_t>(w.size()) == scored, [&] {
    return ErrorInfo{.where = where, .field = "class_weights",
                     .expected = std::to_string(scored) + " weights (one per scored class of logits " +
                                 logits.shape().to_string() + ")",
                     .actual = std::to_string(w.size())};
  });
  require(options_.smooth_denominator >= 0 && options_.smooth_numerator >= 0, [&] {
    return ErrorInfo{.where = where, .field = "smooth_numerator, smooth_denominator", .expected = ">= 0",
                     .actual = str(options_.smooth_numerator, ", ", options_.smooth_denominator)};
  });
  target_ = detail::make_target(name, logits, labels,
                                {.classes = e.c, .to_dense = options_.activation == Activation::sigmoid});
  e_ = e;
  const Tensor<float, B> x = logits.contiguous();
  if (options_.activation == Activation::none)
    probs_ = x.clone();  // the caller may overwrite its tensor before backward
  else if (!probs_.defined() || probs_.shape() != x.shape() || probs_.use_count() > 1)
    probs_ = Tensor<float, B>::empty(x.shape());
  const ops::LossSums part = ops::dice_sums(x, probs_, target_, e, options_.activation, options_.squared_denominator);
  if (!part.finite) detail::throw_non_finite(name, logits);

  // Reduce to terms (blocks in order), then the loss and the per-term backward coefficients.
  const std::int64_t blocks = part.blocks;
  const std::int64_t samples = options_.batch ? 1 : e.n;
  const double terms = static_cast<double>(samples * scored);
  const double sn = options_.smooth_numerator, sd = options_.smooth_denominator;
  coef_.assign(static_cast<std::size_t>(e.n * e.c), {});
  double loss = 0;
  for (std::int64_t t = 0; t < samples; ++t) {
    const std::int64_t n0 = options_.batch ? 0 : t, n1 = options_.batch ? e.n : t + 1;
    for (std::int64_t c = first; c < e.c; ++c) {
      double I = 0, P = 0, G = 0;
      for (std::int64_t n = n0; n < n1; ++n)
        for (std::int64_t b = 0; b < blocks; ++b) {
          const double* q = part.values.data() + ((n * blocks + b) * e.c + c) * 3;
          I += q[0];
          P += q[1];
          G += q[2];
        }
      const double wc = w.empty() ? 1.0 : w[static_cast<std::size_t>(c - first)];
      const double den = P + G + sd;
      loss += wc * (1.0 - (2.0 * I + sn) / den) / terms;
      const ops::DiceCoefficients k{static_cast<float>(-wc / terms * 2.0 / den),
                                    static_cast<float>(wc / terms * (2.0 * I + sn) / (den * den))};
      for (std::int64_t n = n0; n < n1; ++n) coef_[static_cast<std::size_t>(n * e.c + c)] = k;
    }
  }
  if (!std::isfinite(loss)) detail::throw_non_finite(name, logits);
  ready_ = true;
  return static_cast<float>(loss);
}

template <class B>
Tensor<float, B> Dice<B>::backward() const {
  detail::require_ready(name, ready_);
  auto grad = Tensor<float, B>::zeros(probs_.shape());
  backward_accumulate(grad, 1.0f);
  return grad;
}

template <class B>
void Dice<B>::backward_accumulate(const Tensor<float, B>& grad, float scale) const {
  detail::require_ready(name, ready_);
  detail::require_gradient_shape(name, grad, probs_.shape());
  ops::dice_backward(probs_, target_, coef_, e_, options_.activation, options_.squared_denominator, grad, scale);
}

static_assert(Loss<Dice<Cpu>>);

}  // namespace medseg::loss
