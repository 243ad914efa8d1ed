// A weighted sum of losses on the same logits and labels: MedicalSeg's MixedLoss, MONAI's
// DiceCELoss, nnU-Net's DC_and_CE_loss. The terms are a tuple, so the sum is a type and each
// term keeps its own options; backward adds every term's gradient into one tensor.
#pragma once

#include <array>
#include <cstddef>
#include <string_view>
#include <tuple>
#include <utility>

#include "concepts.hpp"
#include "cross_entropy.hpp"
#include "dice.hpp"
#include "target.hpp"

namespace medseg::loss {

/// loss = sum_i weight_i * term_i(logits, labels); weights default to 1 each.
///
///   loss::Mixed loss{loss::CrossEntropy{}, loss::Dice{}};                 // MedicalSeg, 1:1
///   loss::Mixed weighted{{0.5f, 1.0f}, loss::CrossEntropy{}, loss::Dice{}};
///   float v = loss.forward(logits, labels);  auto parts = loss.values();   // per term, for logs
template <class First, class... Rest>
class Mixed {
 public:
  using backend = typename First::backend;
  static constexpr std::size_t size = 1 + sizeof...(Rest);
  static constexpr std::string_view name = "loss::Mixed";

  explicit Mixed(First first, Rest... rest) : terms_(std::move(first), std::move(rest)...) { weights_.fill(1.0f); }
  Mixed(std::array<float, size> weights, First first, Rest... rest)
      : terms_(std::move(first), std::move(rest)...), weights_(weights) {}

  template <LabelElement L>
  float forward(const Tensor<float, backend>& logits, const Tensor<L, backend>& labels);
  Tensor<float, backend> backward() const;
  void backward_accumulate(const Tensor<float, backend>& grad, float scale) const;

  /// Each term's unweighted value from the last forward.
  const std::array<float, size>& values() const { return values_; }
  const std::array<float, size>& weights() const { return weights_; }
  /// Term I, to read or change its options.
  template <std::size_t I>
  auto& term() {
    return std::get<I>(terms_);
  }

 private:
  std::tuple<First, Rest...> terms_;
  std::array<float, size> weights_{};
  std::array<float, size> values_{};
  Shape shape_;
  bool ready_ = false;
};

template <class First, class... Rest>
Mixed(First, Rest...) -> Mixed<First, Rest...>;
template <class First, class... Rest>
Mixed(std::array<float, 1 + sizeof...(Rest)>, First, Rest...) -> Mixed<First, Rest...>;

/// MONAI's DiceCELoss: lambda_dice * Dice + lambda_ce * CrossEntropy.
template <class B = Cpu>
using DiceCE = Mixed<Dice<B>, CrossEntropy<B>>;

template <class B = Cpu>
DiceCE<B> dice_ce(DiceOptions dice = {}, CrossEntropyOptions ce = {}, float lambda_dice = 1.0f,
                  float lambda_ce = 1.0f) {
  return DiceCE<B>{{lambda_dice, lambda_ce}, Dice<B>{std::move(dice)}, CrossEntropy<B>{std::move(ce)}};
}

// ----------------------------------------------------------------------------------------
// Implementation

template <class First, class... Rest>
template <LabelElement L>
float Mixed<First, Rest...>::forward(const Tensor<float, backend>& logits, const Tensor<L, backend>& labels) {
  ready_ = false;
  double total = 0;
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    ((values_[I] = std::get<I>(terms_).forward(logits, labels), total += double(weights_[I]) * values_[I]), ...);
  }(std::make_index_sequence<size>{});
  shape_ = logits.shape();
  ready_ = true;
  return static_cast<float>(total);
}

template <class First, class... Rest>
Tensor<float, typename First::backend> Mixed<First, Rest...>::backward() const {
  detail::require_ready(name, ready_);
  auto grad = Tensor<float, backend>::zeros(shape_);
  backward_accumulate(grad, 1.0f);
  return grad;
}

template <class First, class... Rest>
void Mixed<First, Rest...>::backward_accumulate(const Tensor<float, backend>& grad, float scale) const {
  detail::require_ready(name, ready_);
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (std::get<I>(terms_).backward_accumulate(grad, scale * weights_[I]), ...);
  }(std::make_index_sequence<size>{});
}

static_assert(Loss<DiceCE<Cpu>>);

}  // namespace medseg::loss
