// BatchNorm3d (torch.nn.BatchNorm3d): per-channel normalisation with batch statistics in
// training and running statistics in eval mode. The running averages, their momentum, the
// unbiased variance they store and num_batches_tracked all follow PyTorch, so state dicts and
// eval outputs match after the same training steps. Statistics stay in the backend's memory
// and the ops update the running averages there, so BatchNorm3d<Cuda> never waits for the host.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../backends/ops.hpp"
#include "concepts.hpp"

namespace medseg::nn {

struct BatchNorm3dOptions {
  std::int64_t num_features = 1;
  double eps = 1e-5;
  double momentum = 0.1;  // running = (1 - momentum) running + momentum batch
  bool affine = true;
  bool track_running_stats = true;
};

/// x [N, C, D, H, W] -> y, same shape. Parameters "weight", "bias" [C] (ones, zeros);
/// buffers "running_mean", "running_var" [C] and "num_batches_tracked" [] (int64 on disk).
template <class B = Cpu>
class BatchNorm3d : public LayerBase<B> {
 public:
  using Options = BatchNorm3dOptions;
  BatchNorm3d(const Options& o);  // NOLINT: implicit, as every layer

  Tensor<float, B> forward(const Tensor<float, B>& x);
  /// dy by value: a gradient handed over (moved in) is overwritten with dx.
  Tensor<float, B> backward(Tensor<float, B> dy);

  /// The per-channel map y = x * scale[c] + shift[c] that forward(x) applies, with all of
  /// forward's bookkeeping (batch statistics and running averages in training, and what
  /// backward needs) but without writing y: for a caller that fuses the map into the next
  /// point-wise op (models::NormActivation). backward then takes dL/dy as usual. CPU only.
  struct ChannelAffine {
    std::vector<float> scale, shift;
  };
  ChannelAffine channel_affine_of(const Tensor<float, B>& x)
    requires B::is_host;
  /// The input the latest training forward kept for backward (undefined if none).
  const Tensor<float, B>& kept_input() const {
    this->require_forward("BatchNorm3d", x_.defined());
    return x_;
  }

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
  Buffer<B>& running_mean() { return running_mean_; }
  Buffer<B>& running_var() { return running_var_; }

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
BatchNorm3d<B>::BatchNorm3d(const Options& o) : o_(o) {
  require(o.num_features >= 1 && o.eps > 0.0, [&] {
    return ErrorInfo{.where = "BatchNorm3d", .field = "num_features/eps", .expected = "num_features >= 1 and eps > 0",
                     .actual = str(o.num_features, ", ", o.eps)};
  });
  const Shape c{o.num_features};
  weight_ = make_parameter<B>("weight", Tensor<float, B>::ones(c));
  bias_ = make_parameter<B>("bias", Tensor<float, B>::zeros(c));
  running_mean_ = {"running_mean", Tensor<float, B>::zeros(c)};
  running_var_ = {"running_var", Tensor<float, B>::ones(c)};
  batches_ = {"num_batches_tracked", Tensor<float, B>::zeros({}), DType::int64};
}

template <class B>
Tensor<float, B> BatchNorm3d<B>::forward(const Tensor<float, B>& x) {
  this->require_input("BatchNorm3d", x, 5, o_.num_features);
  const Tensor<float, B> xc = x.contiguous();
  const std::int64_t n = x.size(0), c = x.size(1), s = x.numel() / std::max<std::int64_t>(n * c, 1);
  auto y = this->output_buffer(x.shape());
  // Device pointers on the GPU: the ops read them where they run.
  const float* gamma = o_.affine ? weight_.value.data() : nullptr;
  const float* beta = o_.affine ? bias_.value.data() : nullptr;
  const bool use_batch = this->training_ || !o_.track_running_stats;
  if (!use_batch) {
    ops::normalize_with_running_stats(xc, running_mean_.value, running_var_.value, gamma, beta, o_.eps, y);
    return y;
  }
  require(n * s > 1, [&] {
    return ErrorInfo{.where = this->where("BatchNorm3d"), .field = "input", .expected = "more than one value per channel in training",
                     .actual = x.shape().to_string()};
  });
  sets_ = ops::NormSets::batch(n, c, s);
  auto stats = ops::normalize_forward(sets_, xc, y, gamma, beta, o_.eps);
  if (this->training_ && o_.track_running_stats) {
    const double count = static_cast<double>(n * s);  // the running variance is unbiased
    ops::update_running_stats(stats, o_.momentum, count / (count - 1.0), running_mean_.value, running_var_.value,
                              &batches_.value);
  }
  if (this->training_) {
    x_ = xc;
    stats_ = std::move(stats);
  }
  return y;
}

template <class B>
typename BatchNorm3d<B>::ChannelAffine BatchNorm3d<B>::channel_affine_of(const Tensor<float, B>& x)
  requires B::is_host
{
  this->require_input("BatchNorm3d", x, 5, o_.num_features);
  const Tensor<float, B> xc = x.contiguous();
  const std::int64_t n = x.size(0), c = x.size(1), s = x.numel() / std::max<std::int64_t>(n * c, 1);
  const float* gamma = o_.affine ? weight_.value.data() : nullptr;
  const float* beta = o_.affine ? bias_.value.data() : nullptr;
  ChannelAffine m{std::vector<float>(static_cast<std::size_t>(c)), std::vector<float>(static_cast<std::size_t>(c))};
  if (!(this->training_ || !o_.track_running_stats)) {
    // normalize_with_running_stats's scale and shift.
    const float* rm = running_mean_.value.data();
    const float* rv = running_var_.value.data();
    for (std::int64_t k = 0; k < c; ++k) {
      const double a = (gamma ? gamma[k] : 1.0f) / std::sqrt(static_cast<double>(rv[k]) + o_.eps);
      m.scale[static_cast<std::size_t>(k)] = static_cast<float>(a);
      m.shift[static_cast<std::size_t>(k)] = static_cast<float>((beta ? beta[k] : 0.0f) - rm[k] * a);
    }
    return m;
  }
  require(n * s > 1, [&] {
    return ErrorInfo{.where = this->where("BatchNorm3d"), .field = "input", .expected = "more than one value per channel in training",
                     .actual = x.shape().to_string()};
  });
  sets_ = ops::NormSets::batch(n, c, s);
  auto stats = ops::normalize_forward(sets_, xc, Tensor<float, B>(), gamma, beta, o_.eps);  // statistics only
  // normalize_forward's own scale and shift (one channel per set): the fused op is bit for bit.
  for (std::int64_t k = 0; k < c; ++k) {
    const auto i = static_cast<std::size_t>(k);
    m.scale[i] = stats.rstd[i] * (gamma ? gamma[k] : 1.0f);
    m.shift[i] = (beta ? beta[k] : 0.0f) - stats.mean[i] * m.scale[i];
  }
  if (this->training_ && o_.track_running_stats) {
    const double count = static_cast<double>(n * s);
    ops::update_running_stats(stats, o_.momentum, count / (count - 1.0), running_mean_.value, running_var_.value,
                              &batches_.value);
  }
  if (this->training_) {
    x_ = xc;
    stats_ = std::move(stats);
  }
  return m;
}

template <class B>
Tensor<float, B> BatchNorm3d<B>::backward(Tensor<float, B> dy) {
  this->require_forward("BatchNorm3d", x_.defined());
  this->require_grad_shape("BatchNorm3d", dy, x_.shape());
  const Tensor<float, B> g = dy.contiguous();
  dy = Tensor<float, B>();
  auto dx = this->gradient_buffer(g);
  ops::normalize_backward(sets_, stats_, o_.eps, x_, g, dx, o_.affine ? weight_.value.data() : nullptr,
                          o_.affine ? weight_.grad.data() : nullptr, o_.affine ? bias_.grad.data() : nullptr);
  x_ = Tensor<float, B>();
  return dx;
}

}  // namespace medseg::nn
