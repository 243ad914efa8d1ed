// GroupNorm (torch.nn.GroupNorm, Wu and He 2018): statistics per sample over groups of
// channels, so results do not depend on the batch size; the normalisation of small-batch 3-D
// segmentation (nnU-Net uses InstanceNorm, its groups == channels special case).
#pragma once

#include <cstdint>
#include <string>

#include "../backends/ops.hpp"
#include "concepts.hpp"

namespace medseg::nn {

struct GroupNormOptions {
  std::int64_t num_groups = 1, num_channels = 1;
  double eps = 1e-5;
  bool affine = true;
};

/// x [N, C, ...] -> y, same shape. Parameters "weight", "bias" [C] (ones, zeros).
///   GroupNorm<Cpu> norm{{.num_groups = 8, .num_channels = 32}};
template <class B = Cpu>
class GroupNorm : public LayerBase<B> {
 public:
  using Options = GroupNormOptions;
  GroupNorm(const Options& o);  // NOLINT: implicit, as every layer

  Tensor<float, B> forward(const Tensor<float, B>& x);
  /// dy by value: a gradient handed over (moved in) is overwritten with dx.
  Tensor<float, B> backward(Tensor<float, B> dy);

  void set_path(const std::string& p) {
    this->path_ = p;
    weight_.path = join_path(p, "weight");
    bias_.path = join_path(p, "bias");
  }
  template <class F>
  void visit_parameters(F&& f) {
    if (o_.affine) f(weight_), f(bias_);
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
GroupNorm<B>::GroupNorm(const Options& o) : o_(o) {
  require(o.num_groups >= 1 && o.num_channels >= 1 && o.num_channels % o.num_groups == 0 && o.eps > 0.0, [&] {
    return ErrorInfo{.where = "GroupNorm", .field = "num_groups", .expected = "a divisor of num_channels (both >= 1)",
                     .actual = str(o.num_groups, " groups for ", o.num_channels, " channels")};
  });
  weight_ = make_parameter<B>("weight", Tensor<float, B>::ones({o.num_channels}));
  bias_ = make_parameter<B>("bias", Tensor<float, B>::zeros({o.num_channels}));
}

template <class B>
Tensor<float, B> GroupNorm<B>::forward(const Tensor<float, B>& x) {
  require(x.defined() && x.rank() >= 2, [&] {
    return ErrorInfo{.where = this->where("GroupNorm"), .field = "input rank", .expected = ">= 2 ([N, C, ...])",
                     .actual = x.defined() ? x.shape().to_string() : "an undefined tensor"};
  });
  this->require_input("GroupNorm", x, x.rank(), o_.num_channels, "N, C, ...");
  const Tensor<float, B> xc = x.contiguous();
  const std::int64_t n = x.size(0), c = x.size(1), s = x.numel() / std::max<std::int64_t>(n * c, 1);
  auto y = this->output_buffer(x.shape());
  sets_ = ops::NormSets::group(n, c, s, o_.num_groups);
  auto stats = ops::normalize_forward(sets_, xc, y, o_.affine ? weight_.value.data() : nullptr,
                                      o_.affine ? bias_.value.data() : nullptr, o_.eps);
  if (this->training_) {
    x_ = xc;
    stats_ = std::move(stats);
  }
  return y;
}

template <class B>
Tensor<float, B> GroupNorm<B>::backward(Tensor<float, B> dy) {
  this->require_forward("GroupNorm", x_.defined());
  this->require_grad_shape("GroupNorm", dy, x_.shape());
  const Tensor<float, B> g = dy.contiguous();
  dy = Tensor<float, B>();
  auto dx = this->gradient_buffer(g);
  ops::normalize_backward(sets_, stats_, o_.eps, x_, g, dx, o_.affine ? weight_.value.data() : nullptr,
                          o_.affine ? weight_.grad.data() : nullptr, o_.affine ? bias_.grad.data() : nullptr);
  x_ = Tensor<float, B>();
  return dx;
}

}  // namespace medseg::nn
