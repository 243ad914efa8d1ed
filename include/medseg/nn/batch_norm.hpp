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
#include "normalization.hpp"

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
class BatchNorm3d : public detail::Normalization<BatchNorm3d<B>, B> {
 public:
  using Options = BatchNorm3dOptions;
  static constexpr std::string_view kind = "BatchNorm3d";
  BatchNorm3d(const Options& o);  // NOLINT: implicit, as every layer

  Tensor<float, B> forward(const Tensor<float, B>& x);

  /// The per-channel map y = x * scale[c] + shift[c] that forward(x) applies, with all of
  /// forward's bookkeeping (batch statistics and running averages in training, and what
  /// backward needs) but without writing y: for a caller that fuses the map into the next
  /// point-wise op (models::NormActivation). backward then takes dL/dy as usual. The factors
  /// stay in the backend's memory (ops::norm_factors, ops::running_norm_factors).
  struct ChannelAffine {
    Tensor<float, B> scale, shift;  // [C] each
  };
  ChannelAffine channel_affine_of(const Tensor<float, B>& x);
  /// The input the latest training forward kept for backward (undefined if none).
  const Tensor<float, B>& kept_input() const {
    this->require_forward("BatchNorm3d", this->x_.defined());
    return this->x_;
  }

  auto members() { return nn::members(detail::Normalization<BatchNorm3d<B>, B>::members(), running_.members()); }

  Buffer<B>& running_mean() { return running_.mean; }
  Buffer<B>& running_var() { return running_.var; }

 private:
  Options o_;
  RunningStats<B> running_;
};

// ----------------------------------------------------------------------------------------
// Implementation

template <class B>
BatchNorm3d<B>::BatchNorm3d(const Options& o)
    : detail::Normalization<BatchNorm3d<B>, B>("num_features", o.num_features, o.eps, o.affine),
      o_(o),
      running_(o.num_features, o.track_running_stats) {}

template <class B>
Tensor<float, B> BatchNorm3d<B>::forward(const Tensor<float, B>& x) {
  this->require_input("BatchNorm3d", x, 5, o_.num_features);
  const Tensor<float, B> xc = x.contiguous();
  const std::int64_t n = x.size(0), c = x.size(1), s = x.numel() / std::max<std::int64_t>(n * c, 1);
  auto y = this->output_buffer(x.shape());
  const bool use_batch = this->training_ || !o_.track_running_stats;
  if (!use_batch) {
    ops::normalize_with_running_stats(xc, running_.mean.value, running_.var.value, this->gamma(), this->beta(), o_.eps, y);
    return y;
  }
  require(n * s > 1, [&] {
    return ErrorInfo{.where = this->where("BatchNorm3d"), .field = "input", .expected = "more than one value per channel in training",
                     .actual = x.shape().to_string()};
  });
  auto stats = this->normalize(ops::NormSets::batch(n, c, s), xc, y);
  if (this->training_ && o_.track_running_stats) {
    const double count = static_cast<double>(n * s);  // the running variance is unbiased
    ops::update_running_stats(stats, o_.momentum, count / (count - 1.0), running_.mean.value, running_.var.value,
                              &running_.batches.value);
  }
  this->keep(xc, std::move(stats));
  return y;
}

template <class B>
typename BatchNorm3d<B>::ChannelAffine BatchNorm3d<B>::channel_affine_of(const Tensor<float, B>& x) {
  this->require_input("BatchNorm3d", x, 5, o_.num_features);
  const Tensor<float, B> xc = x.contiguous();
  const std::int64_t n = x.size(0), c = x.size(1), s = x.numel() / std::max<std::int64_t>(n * c, 1);
  ChannelAffine m{Tensor<float, B>::empty({c}), Tensor<float, B>::empty({c})};
  if (!(this->training_ || !o_.track_running_stats)) {
    ops::running_norm_factors(running_.mean.value, running_.var.value, this->gamma(), this->beta(), o_.eps, m.scale,
                              m.shift);
    return m;
  }
  require(n * s > 1, [&] {
    return ErrorInfo{.where = this->where("BatchNorm3d"), .field = "input", .expected = "more than one value per channel in training",
                     .actual = x.shape().to_string()};
  });
  this->sets_ = ops::NormSets::batch(n, c, s);
  auto stats = ops::normalize_forward(this->sets_, xc, Tensor<float, B>(), this->gamma(), this->beta(), o_.eps);  // statistics only
  ops::norm_factors(stats, this->gamma(), this->beta(), o_.eps, m.scale, m.shift);
  if (this->training_ && o_.track_running_stats) {
    const double count = static_cast<double>(n * s);
    ops::update_running_stats(stats, o_.momentum, count / (count - 1.0), running_.mean.value, running_.var.value,
                              &running_.batches.value);
  }
  if (this->training_) {
    this->x_ = xc;
    this->stats_ = std::move(stats);
  }
  return m;
}

}  // namespace medseg::nn
