// LayerNorm (torch.nn.LayerNorm over the last axis of token tensors [..., C], as in UNETR and
// nnFormer), and the same normalisation over the channel axis of NCDHW volumes (ConvNeXt's
// "channels_first" LayerNorm, MedNeXt), which avoids permuting a volume to channels-last.
#pragma once

#include <cstdint>
#include <string>

#include "../backends/ops.hpp"
#include "concepts.hpp"

namespace medseg::nn {

/// Which axis holds the normalised features.
enum class LayerNormAxis { last, channels };

struct LayerNormOptions {
  std::int64_t normalized_shape = 1;  // the feature count C
  double eps = 1e-5;
  bool elementwise_affine = true;
  LayerNormAxis axis = LayerNormAxis::last;
};

/// last: x [..., C]; channels: x [N, C, ...]. Same shape out. Parameters "weight", "bias" [C].
///   LayerNorm<Cpu> ln{{.normalized_shape = 768}};
///   LayerNorm<Cpu> ln3d{{.normalized_shape = 32, .axis = LayerNormAxis::channels}};
template <class B = Cpu>
class LayerNorm : public LayerBase<B> {
 public:
  using Options = LayerNormOptions;
  LayerNorm(const Options& o);  // NOLINT: implicit, as every layer

  Tensor<float, B> forward(const Tensor<float, B>& x);
  Tensor<float, B> backward(const Tensor<float, B>& dy);

  void set_path(const std::string& p) {
    this->path_ = p;
    weight_.path = join_path(p, "weight");
    bias_.path = join_path(p, "bias");
  }
  template <class F>
  void visit_parameters(F&& f) {
    if (o_.elementwise_affine) f(weight_), f(bias_);
  }
  template <class F>
  void visit_buffers(F&&) {}

  Parameter<B>& weight() { return weight_; }
  Parameter<B>& bias() { return bias_; }

 private:
  Options o_;
  Parameter<B> weight_, bias_;
  Tensor<float, B> x_;
  ops::NormSets sets_;
  ops::norm_stats_t<B> stats_;  // host vectors on the CPU, device tensors on the GPU
};

// ----------------------------------------------------------------------------------------
// Implementation

template <class B>
LayerNorm<B>::LayerNorm(const Options& o) : o_(o) {
  require(o.normalized_shape >= 1 && o.eps > 0.0, [&] {
    return ErrorInfo{.where = "LayerNorm", .field = "normalized_shape/eps", .expected = ">= 1 and eps > 0",
                     .actual = str(o.normalized_shape, ", ", o.eps)};
  });
  weight_ = make_parameter<B>("weight", Tensor<float, B>::ones({o.normalized_shape}));
  bias_ = make_parameter<B>("bias", Tensor<float, B>::zeros({o.normalized_shape}));
}

template <class B>
Tensor<float, B> LayerNorm<B>::forward(const Tensor<float, B>& x) {
  const bool last = o_.axis == LayerNormAxis::last;
  const std::int64_t c = o_.normalized_shape;
  require(x.defined() && x.rank() >= (last ? 1 : 2) && x.size(last ? -1 : 1) == c, [&] {
    return ErrorInfo{.where = this->where("LayerNorm"), .field = last ? "input (last axis)" : "input channels (axis 1)",
                     .expected = std::to_string(c) + " features",
                     .actual = x.defined() ? x.shape().to_string() : "an undefined tensor"};
  });
  const Tensor<float, B> xc = x.contiguous();
  auto y = this->output_buffer(x.shape());
  if (last)
    sets_ = ops::NormSets::last_axis(x.numel() / c, c);
  else
    sets_ = ops::NormSets::channels(x.size(0), c, x.numel() / (x.size(0) * c));
  auto stats = ops::normalize_forward(sets_, xc, y, o_.elementwise_affine ? weight_.value.data() : nullptr,
                                      o_.elementwise_affine ? bias_.value.data() : nullptr, o_.eps);
  if (this->training_) {
    x_ = xc;
    stats_ = std::move(stats);
  }
  return y;
}

template <class B>
Tensor<float, B> LayerNorm<B>::backward(const Tensor<float, B>& dy) {
  this->require_forward("LayerNorm", x_.defined());
  this->require_grad_shape("LayerNorm", dy, x_.shape());
  auto dx = Tensor<float, B>::empty(x_.shape());
  const bool affine = o_.elementwise_affine;
  ops::normalize_backward(sets_, stats_, o_.eps, x_, dy.contiguous(), dx, affine ? weight_.value.data() : nullptr,
                          affine ? weight_.grad.data() : nullptr, affine ? bias_.grad.data() : nullptr);
  x_ = Tensor<float, B>();
  return dx;
}

}  // namespace medseg::nn
