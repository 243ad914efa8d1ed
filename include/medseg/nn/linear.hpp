// Linear: y = x W^T + b over the last axis of any tensor [..., in] (torch.nn.Linear), the
// projection of transformer blocks and classification heads. Products go through the
// backend's GEMM; the weight gradient accumulates straight into grad (beta = 1).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../backends/ops.hpp"
#include "concepts.hpp"
#include "init.hpp"
#include "members.hpp"

namespace medseg::nn {

struct LinearOptions {
  std::int64_t in_features = 1, out_features = 1;
  bool bias = true;
};

/// x [..., in] -> y [..., out]. Parameters "weight" [out, in] and "bias" [out].
///   Linear<Cpu> proj{{.in_features = 96, .out_features = 288}};
template <class B = Cpu>
class Linear : public Module<Linear<B>, B> {
 public:
  using Options = LinearOptions;
  Linear(const Options& o);  // NOLINT: implicit, as every layer

  Tensor<float, B> forward(const Tensor<float, B>& x);
  Tensor<float, B> backward(const Tensor<float, B>& dy);

  auto members() { return nn::members(param("weight", weight_), param("bias", bias_, o_.bias)); }

  Parameter<B>& weight() { return weight_; }
  Parameter<B>& bias() { return bias_; }

 private:
  Options o_;
  Parameter<B> weight_, bias_;
  Tensor<float, B> x_;  // [rows, in], kept for the weight gradient
  Shape in_shape_, out_shape_;
};

// ----------------------------------------------------------------------------------------
// Implementation

template <class B>
Linear<B>::Linear(const Options& o) : o_(o) {
  require(o.in_features >= 1 && o.out_features >= 1, [&] {
    return ErrorInfo{.where = "Linear", .field = "in_features/out_features", .expected = ">= 1",
                     .actual = str(o.in_features, " -> ", o.out_features)};
  });
  weight_ = make_parameter<B>("weight", Tensor<float, B>::empty({o.out_features, o.in_features}));
  bias_ = make_parameter<B>("bias", Tensor<float, B>::empty(o.bias ? Shape{o.out_features} : Shape{0}));
  init::pytorch_default(weight_.value, o.bias ? &bias_.value : nullptr);
}

template <class B>
Tensor<float, B> Linear<B>::forward(const Tensor<float, B>& x) {
  require(x.defined() && x.rank() >= 1 && x.size(-1) == o_.in_features, [&] {
    return ErrorInfo{.where = this->where("Linear"), .field = "input features (last axis)",
                     .expected = std::to_string(o_.in_features),
                     .actual = x.defined() ? x.shape().to_string() : "an undefined tensor"};
  });
  const std::int64_t rows = x.numel() / o_.in_features;
  const Tensor<float, B> x2 = x.contiguous().reshape({rows, o_.in_features});
  Shape out = x.shape();
  out[out.rank() - 1] = o_.out_features;
  auto y = this->output_buffer(out);
  const auto y2 = y.reshape({rows, o_.out_features});
  if (o_.bias) ops::fill_rows(bias_.value, y2);  // rows of b, then y = x W^T + y
  ops::gemm(false, true, 1.0f, x2, weight_.value, o_.bias ? 1.0f : 0.0f, y2);
  if (this->training_) {
    x_ = x2;
    in_shape_ = x.shape();
    out_shape_ = out;
  }
  return y;
}

template <class B>
Tensor<float, B> Linear<B>::backward(const Tensor<float, B>& dy) {
  this->require_forward("Linear", x_.defined());
  this->require_grad_shape("Linear", dy, out_shape_);
  const std::int64_t rows = x_.size(0);
  const Tensor<float, B> g = dy.contiguous().reshape({rows, o_.out_features});
  auto dx = Tensor<float, B>::empty({rows, o_.in_features});
  ops::gemm(false, false, 1.0f, g, weight_.value, 0.0f, dx);       // dx = dy W
  ops::gemm(true, false, 1.0f, g, x_, 1.0f, weight_.grad);          // dW += dy^T x
  if (o_.bias) ops::accumulate_column_sums(g, bias_.grad);          // db += column sums of dy
  x_ = Tensor<float, B>();
  return dx.reshape(in_shape_);
}

}  // namespace medseg::nn
