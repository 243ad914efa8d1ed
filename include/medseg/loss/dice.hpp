// Soft Dice loss, with the variants MONAI's DiceLoss, nnU-Net's SoftDiceLoss, MedicalSeg's
// DiceLoss and the VNet paper use: softmax or sigmoid, with or without the background class,
// plain or squared denominator, smoothing terms, per-sample or batch Dice, class weights.
// Dice's overlap term makes it robust to the class imbalance of small structures in big volumes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "../core/parallel.hpp"
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
  static_assert(B::is_host, "medseg: loss::Dice has CPU kernels only; compute the loss on Tensor<float, Cpu>");

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
  /// d loss / d p at one voxel of term (n, c): a * g + b * (squared ? 2 p : 1).
  struct Coefficients {
    float a = 0, b = 0;
  };

  DiceOptions options_;
  detail::Extents e_;
  detail::Target target_;
  Tensor<float, B> probs_;
  std::vector<Coefficients> coef_;  // [N * C]; zero for unscored classes
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
  if (options_.activation == Activation::none) {
    probs_ = x.clone();  // the caller may overwrite its tensor before backward
  } else {
    if (!probs_.defined() || probs_.shape() != x.shape() || probs_.use_count() > 1) probs_ = Tensor<float, B>::empty(x.shape());
    const bool finite = options_.activation == Activation::softmax
                            ? detail::softmax_channels(x.data(), probs_.data(), e)
                            : detail::sigmoid(x.data(), probs_.data(), x.numel());
    if (!finite) detail::throw_non_finite(name, logits);
  }

  // Per (sample, block, class) partial sums of I, P and G, reduced below in block order.
  const std::int64_t blocks = detail::block_count(e.s);
  std::vector<double> part(static_cast<std::size_t>(e.n * blocks * e.c * 3), 0.0);
  const bool squared = options_.squared_denominator;
  const float* p = probs_.data();
  parallel_for(0, e.n * blocks, 1, [&](std::int64_t u0, std::int64_t u1) {
    for (std::int64_t u = u0; u < u1; ++u) {
      const std::int64_t n = u / blocks, s0 = (u % blocks) * detail::block_size;
      const std::int64_t m = std::min(detail::block_size, e.s - s0);
      double* out = part.data() + u * e.c * 3;  // [c][I, P, G]
      for (std::int64_t c = 0; c < e.c; ++c) {
        const float* pc = p + (n * e.c + c) * e.s + s0;
        double sp = 0;
        if (squared)
          for (std::int64_t s = 0; s < m; ++s) sp += double(pc[s]) * pc[s];
        else
          for (std::int64_t s = 0; s < m; ++s) sp += pc[s];
        out[c * 3 + 1] = sp;
        if (!target_.is_index()) {
          const float* gc = target_.dense.data() + (n * e.c + c) * e.s + s0;
          double si = 0, sg = 0;
          for (std::int64_t s = 0; s < m; ++s) {
            si += double(pc[s]) * gc[s];
            sg += squared ? double(gc[s]) * gc[s] : double(gc[s]);
          }
          out[c * 3] = si;
          out[c * 3 + 2] = sg;
        }
      }
      if (target_.is_index()) {
        const std::int32_t* y = target_.index.data() + n * e.s + s0;
        for (std::int64_t s = 0; s < m; ++s) {
          const std::int64_t c = y[s];
          out[c * 3] += p[(n * e.c + c) * e.s + s0 + s];
          out[c * 3 + 2] += 1.0;  // a one-hot g is its own square
        }
      }
    }
  });

  // Reduce to terms, then the loss and the per-term backward coefficients.
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
          const double* q = part.data() + ((n * blocks + b) * e.c + c) * 3;
          I += q[0];
          P += q[1];
          G += q[2];
        }
      const double wc = w.empty() ? 1.0 : w[static_cast<std::size_t>(c - first)];
      const double den = P + G + sd;
      loss += wc * (1.0 - (2.0 * I + sn) / den) / terms;
      const Coefficients k{static_cast<float>(-wc / terms * 2.0 / den),
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
  require(ready_, [&] {
    return ErrorInfo{.where = std::string(name), .field = "backward", .expected = "a forward call first",
                     .actual = "no forward since construction or since a failed forward"};
  });
  auto grad = Tensor<float, B>::zeros(probs_.shape());
  backward_accumulate(grad, 1.0f);
  return grad;
}

template <class B>
void Dice<B>::backward_accumulate(const Tensor<float, B>& grad, float scale) const {
  const std::string where(name);
  require(ready_, [&] {
    return ErrorInfo{.where = where, .field = "backward", .expected = "a forward call first",
                     .actual = "no forward since construction or since a failed forward"};
  });
  require(grad.shape() == probs_.shape() && grad.is_contiguous(), [&] {
    return ErrorInfo{.where = where, .field = "gradient", .expected = "contiguous " + probs_.shape().to_string(),
                     .actual = grad.layout().to_string()};
  });
  const auto e = e_;
  const std::int64_t blocks = detail::block_count(e.s);
  const bool squared = options_.squared_denominator;
  const float* p = probs_.data();
  float* gx = grad.data();
  const Activation act = options_.activation;
  parallel_for(0, e.n * blocks, 1, [&](std::int64_t u0, std::int64_t u1) {
    float dot[detail::block_size];
    for (std::int64_t u = u0; u < u1; ++u) {
      const std::int64_t n = u / blocks, s0 = (u % blocks) * detail::block_size;
      const std::int64_t m = std::min(detail::block_size, e.s - s0);
      const std::int32_t* y = target_.is_index() ? target_.index.data() + n * e.s + s0 : nullptr;
      // d loss / d p for class c at voxel s of this block.
      auto dp = [&](std::int64_t c, const float* pc, const float* gc, std::int64_t s) {
        const Coefficients k = coef_[static_cast<std::size_t>(n * e.c + c)];
        const float g = y ? (y[s] == c ? 1.0f : 0.0f) : gc[s];
        return k.a * g + k.b * (squared ? 2.0f * pc[s] : 1.0f);
      };
      auto target_row = [&](std::int64_t c) {
        return y ? nullptr : target_.dense.data() + (n * e.c + c) * e.s + s0;
      };
      if (act == Activation::softmax) {
        // Softmax's Jacobian: dx_c = p_c (dp_c - sum_k p_k dp_k).
        std::fill_n(dot, m, 0.0f);
        for (std::int64_t c = 0; c < e.c; ++c) {
          const float* pc = p + (n * e.c + c) * e.s + s0;
          const float* gc = target_row(c);
          for (std::int64_t s = 0; s < m; ++s) dot[s] += pc[s] * dp(c, pc, gc, s);
        }
        for (std::int64_t c = 0; c < e.c; ++c) {
          const float* pc = p + (n * e.c + c) * e.s + s0;
          const float* gc = target_row(c);
          float* oc = gx + (n * e.c + c) * e.s + s0;
          for (std::int64_t s = 0; s < m; ++s) oc[s] += scale * pc[s] * (dp(c, pc, gc, s) - dot[s]);
        }
      } else {
        for (std::int64_t c = 0; c < e.c; ++c) {
          const float* pc = p + (n * e.c + c) * e.s + s0;
          const float* gc = target_row(c);
          float* oc = gx + (n * e.c + c) * e.s + s0;
          if (act == Activation::sigmoid)
            for (std::int64_t s = 0; s < m; ++s) oc[s] += scale * dp(c, pc, gc, s) * pc[s] * (1.0f - pc[s]);
          else
            for (std::int64_t s = 0; s < m; ++s) oc[s] += scale * dp(c, pc, gc, s);
        }
      }
    }
  });
}

static_assert(Loss<Dice<Cpu>>);

}  // namespace medseg::loss
