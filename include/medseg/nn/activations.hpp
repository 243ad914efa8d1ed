// Point-wise activation layers: ReLU, LeakyReLU, ELU, GELU (exact, erf form), Sigmoid, and
// PReLU with one shared or per-channel learned slope (VNet's activation). Each keeps for
// backward only the tensor its derivative needs: the input, or the output for Sigmoid.
#pragma once

#include <cstdint>
#include <string>

#include "../backends/ops.hpp"
#include "concepts.hpp"
#include "members.hpp"

namespace medseg::nn {

namespace detail {
/// One point-wise function f with an optional scalar parameter (slope or alpha).
template <class B, ops::Activation F>
class PointwiseActivation : public LayerBase<B> {
 public:
  Tensor<float, B> forward(const Tensor<float, B>& x) {
    require(x.defined(), [&] {
      return ErrorInfo{.where = this->where(kind()), .field = "input", .expected = "a defined tensor",
                       .actual = "an undefined tensor"};
    });
    const Tensor<float, B> xc = x.contiguous();
    auto y = this->output_buffer(x.shape());
    ops::activation_forward(F, alpha_, xc, y);
    if (this->training_) kept_ = keeps_output() ? y : xc;
    return y;
  }
  /// dy by value: a gradient handed over (moved in) is overwritten with dx.
  Tensor<float, B> backward(Tensor<float, B> dy) {
    this->require_forward(kind(), kept_.defined());
    this->require_grad_shape(kind(), dy, kept_.shape());
    const Tensor<float, B> g = dy.contiguous();
    dy = Tensor<float, B>();
    auto dx = this->gradient_buffer(g);
    ops::activation_backward(F, alpha_, kept_, g, dx);
    kept_ = Tensor<float, B>();
    return dx;
  }

 protected:
  static constexpr const char* kind() {
    switch (F) {
      case ops::Activation::relu: return "ReLU";
      case ops::Activation::leaky_relu: return "LeakyReLU";
      case ops::Activation::elu: return "ELU";
      case ops::Activation::gelu: return "GELU";
      case ops::Activation::sigmoid: return "Sigmoid";
    }
    return "activation";
  }
  /// Sigmoid's derivative is a function of its output. ReLU's and LeakyReLU's (slope >= 0)
  /// depend only on x > 0, which is y > 0: keeping y lets the input (a norm's output, say) go
  /// as soon as the next layer has read it, while y is kept by that next layer anyway.
  bool keeps_output() const {
    return F == ops::Activation::sigmoid || F == ops::Activation::relu ||
           (F == ops::Activation::leaky_relu && alpha_ >= 0.0f);
  }

  float alpha_ = 0.0f;
  Tensor<float, B> kept_;
};
}  // namespace detail

struct NoOptions {};

/// max(x, 0).
template <class B = Cpu>
class ReLU : public detail::PointwiseActivation<B, ops::Activation::relu> {
 public:
  using Options = NoOptions;
  ReLU(const Options& = {}) {}  // NOLINT: implicit, as every layer
};

struct LeakyReLUOptions {
  float negative_slope = 0.01f;  // PyTorch's default; nnU-Net uses 0.01 as well
};
/// x > 0 ? x : slope x.
template <class B = Cpu>
class LeakyReLU : public detail::PointwiseActivation<B, ops::Activation::leaky_relu> {
 public:
  using Options = LeakyReLUOptions;
  LeakyReLU(const Options& o = {}) { this->alpha_ = o.negative_slope; }  // NOLINT: implicit
};

struct ELUOptions {
  float alpha = 1.0f;
};
/// x > 0 ? x : alpha (exp(x) - 1).
template <class B = Cpu>
class ELU : public detail::PointwiseActivation<B, ops::Activation::elu> {
 public:
  using Options = ELUOptions;
  ELU(const Options& o = {}) { this->alpha_ = o.alpha; }  // NOLINT: implicit
};

/// x Phi(x) with the exact normal CDF (torch.nn.GELU(approximate='none')).
template <class B = Cpu>
class GELU : public detail::PointwiseActivation<B, ops::Activation::gelu> {
 public:
  using Options = NoOptions;
  GELU(const Options& = {}) {}  // NOLINT: implicit
};

/// 1 / (1 + exp(-x)).
template <class B = Cpu>
class Sigmoid : public detail::PointwiseActivation<B, ops::Activation::sigmoid> {
 public:
  using Options = NoOptions;
  Sigmoid(const Options& = {}) {}  // NOLINT: implicit
};

struct PReLUOptions {
  std::int64_t num_parameters = 1;  // 1 (shared) or the channel count
  float init = 0.25f;
};

/// x > 0 ? x : a x, with a learned ("weight" [num_parameters]) per channel of [N, C, ...].
template <class B = Cpu>
class PReLU : public Module<PReLU<B>, B> {
 public:
  using Options = PReLUOptions;
  PReLU(const Options& o = {}) : o_(o) {  // NOLINT: implicit
    require(o.num_parameters >= 1, [&] {
      return ErrorInfo{.where = "PReLU", .field = "num_parameters", .expected = ">= 1",
                       .actual = std::to_string(o.num_parameters)};
    });
    weight_ = make_parameter<B>("weight", Tensor<float, B>::full({o.num_parameters}, o.init));
  }

  Tensor<float, B> forward(const Tensor<float, B>& x) {
    require(x.defined() && (o_.num_parameters == 1 || (x.rank() >= 2 && x.size(1) == o_.num_parameters)), [&] {
      return ErrorInfo{.where = this->where("PReLU"), .field = "input channels",
                       .expected = std::to_string(o_.num_parameters) + " on axis 1",
                       .actual = x.defined() ? x.shape().to_string() : "an undefined tensor"};
    });
    const Tensor<float, B> xc = x.contiguous();
    auto y = this->output_buffer(x.shape());
    ops::prelu_forward(xc, weight_.value, y);
    if (this->training_) {
      // With positive slopes the output determines the gradient, and the next layer (a conv)
      // usually keeps the output anyway, while the input (a sum or a norm's output) is
      // otherwise dead: keeping y lets x go. The backend says whether it can tell cheaply.
      kept_output_ = ops::prelu_keeps_output(weight_.value);
      x_ = kept_output_ ? y : xc;
    }
    return y;
  }
  /// dy by value: a gradient handed over (moved in) is overwritten with dx.
  Tensor<float, B> backward(Tensor<float, B> dy) {
    this->require_forward("PReLU", x_.defined());
    this->require_grad_shape("PReLU", dy, x_.shape());
    const Tensor<float, B> g = dy.contiguous();
    dy = Tensor<float, B>();
    auto dx = this->gradient_buffer(g);
    if (kept_output_)
      ops::prelu_backward_from_output(x_, weight_.value, g, dx, weight_.grad);
    else
      ops::prelu_backward(x_, weight_.value, g, dx, weight_.grad);
    x_ = Tensor<float, B>();
    return dx;
  }

  auto members() { return nn::members(param("weight", weight_)); }
  Parameter<B>& weight() { return weight_; }

 private:
  Options o_;
  Parameter<B> weight_;
  Tensor<float, B> x_;  // the input, or the output when kept_output_
  bool kept_output_ = false;
};

}  // namespace medseg::nn
