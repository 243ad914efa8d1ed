// InstanceNorm3d (torch.nn.InstanceNorm3d): each sample's channel normalised by its own
// statistics, nnU-Net's default norm (with affine = true). Optional running statistics follow
// PyTorch: averages over the batch of per-instance means and unbiased variances, used in eval,
// kept and updated in the backend's memory.
#pragma once

#include <cstdint>
#include <string>

#include "../backends/ops.hpp"
#include "concepts.hpp"

namespace medseg::nn {

struct InstanceNorm3dOptions {
  std::int64_t num_features = 1;
  double eps = 1e-5;
  double momentum = 0.1;
  bool affine = false;  // PyTorch's default; nnU-Net passes affine = true
  bool track_running_stats = false;
};

/// x [N, C, D, H, W] -> y. Parameters "weight", "bias" [C] when affine; buffers
/// "running_mean", "running_var", "num_batches_tracked" when tracking.
template <class B = Cpu>
class InstanceNorm3d : public LayerBase<B> {
 public:
  using Options = InstanceNorm3dOptions;
  InstanceNorm3d(const Options& o);  // NOLINT: implicit, as every layer

  Tensor<float, B> forward(const Tensor<float, B>& x);
  /// dy by value: a gradient handed over (moved in) is overwritten with dx.
  Tensor<float, B> backward(Tensor<float, B> dy);

  void set_path(const std::string& p) {
    this->path_ = p;
    weight_.path = join_path(p, "weight");
    bias_.path = join_path(p, "bias");
    running_mean_.path = join_path(p, "running_mean");
    running_var_.path = join_path(p, "running_var");
    batches_.path = join_path(p, "num_batches_tracked");
  }
  template <class F>
  void visit_parameters(F&& f) {
    if (o_.affine) f(weight_), f(bias_);
  }
  template <class F>
  void visit_buffers(F&& f) {
    if (o_.track_running_stats) f(running_mean_), f(running_var_), f(batches_);
  }

  Parameter<B>& weight() { return weight_; }
  Parameter<B>& bias() { return bias_; }

 private:
  Options o_;
  Parameter<B> weight_, bias_;
  Buffer<B> running_mean_, running_var_, batches_;
  Tensor<float, B> x_;
  ops::NormSets sets_;
  ops::norm_stats_t<B> stats_;  // host vectors on the CPU, device tensors on the GPU
};

// ----------------------------------------------------------------------------------------
// Implementation

template <class B>
InstanceNorm3d<B>::InstanceNorm3d(const Options& o) : o_(o) {
  require(o.num_features >= 1 && o.eps > 0.0, [&] {
    return ErrorInfo{.where = "InstanceNorm3d", .field = "num_features/eps",
                     .expected = "num_features >= 1 and eps > 0", .actual = str(o.num_features, ", ", o.eps)};
  });
  const Shape c{o.num_features};
  weight_ = make_parameter<B>("weight", Tensor<float, B>::ones(c));
  bias_ = make_parameter<B>("bias", Tensor<float, B>::zeros(c));
  running_mean_ = {"running_mean", Tensor<float, B>::zeros(c)};
  running_var_ = {"running_var", Tensor<float, B>::ones(c)};
  batches_ = {"num_batches_tracked", Tensor<float, B>::zeros({}), DType::int64};
}

template <class B>
Tensor<float, B> InstanceNorm3d<B>::forward(const Tensor<float, B>& x) {
  this->require_input("InstanceNorm3d", x, 5, o_.num_features);
  const Tensor<float, B> xc = x.contiguous();
  const std::int64_t n = x.size(0), c = x.size(1), s = x.numel() / std::max<std::int64_t>(n * c, 1);
  auto y = this->output_buffer(x.shape());
  const float* gamma = o_.affine ? weight_.value.data() : nullptr;
  const float* beta = o_.affine ? bias_.value.data() : nullptr;
  if (!this->training_ && o_.track_running_stats) {
    ops::normalize_with_running_stats(xc, running_mean_.value, running_var_.value, gamma, beta, o_.eps, y);
    return y;
  }
  sets_ = ops::NormSets::group(n, c, s, c);
  auto stats = ops::normalize_forward(sets_, xc, y, gamma, beta, o_.eps);
  if (this->training_ && o_.track_running_stats) {
    // Averages over the batch of per-instance statistics; torch's instance_norm leaves
    // num_batches_tracked at 0 (only _BatchNorm counts).
    const double unbias = s > 1 ? static_cast<double>(s) / static_cast<double>(s - 1) : 1.0;
    ops::update_running_stats(stats, o_.momentum, unbias, running_mean_.value, running_var_.value, nullptr);
  }
  if (this->training_) {
    x_ = xc;
    stats_ = std::move(stats);
  }
  return y;
}

template <class B>
Tensor<float, B> InstanceNorm3d<B>::backward(Tensor<float, B> dy) {
  this->require_forward("InstanceNorm3d", x_.defined());
  this->require_grad_shape("InstanceNorm3d", dy, x_.shape());
  const Tensor<float, B> g = dy.contiguous();
  dy = Tensor<float, B>();
  auto dx = this->gradient_buffer(g);
  ops::normalize_backward(sets_, stats_, o_.eps, x_, g, dx, o_.affine ? weight_.value.data() : nullptr,
                          o_.affine ? weight_.grad.data() : nullptr, o_.affine ? bias_.grad.data() : nullptr);
  x_ = Tensor<float, B>();
  return dx;
}

}  // namespace medseg::nn
