// InstanceNorm3d (torch.nn.InstanceNorm3d): each sample's channel normalised by its own
// statistics, nnU-Net's default norm (with affine = true). Optional running statistics follow
// PyTorch: averages over the batch of per-instance means and unbiased variances, used in eval,
// kept and updated in the backend's memory.
#pragma once

#include <cstdint>
#include <string>

#include "../backends/ops.hpp"
#include "normalization.hpp"

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
class InstanceNorm3d : public detail::Normalization<InstanceNorm3d<B>, B> {
 public:
  using Options = InstanceNorm3dOptions;
  static constexpr std::string_view kind = "InstanceNorm3d";
  InstanceNorm3d(const Options& o);  // NOLINT: implicit, as every layer

  Tensor<float, B> forward(const Tensor<float, B>& x);

  auto members() { return nn::members(detail::Normalization<InstanceNorm3d<B>, B>::members(), running_.members()); }

 private:
  Options o_;
  RunningStats<B> running_;
};

// ----------------------------------------------------------------------------------------
// Implementation

template <class B>
InstanceNorm3d<B>::InstanceNorm3d(const Options& o)
    : detail::Normalization<InstanceNorm3d<B>, B>("num_features", o.num_features, o.eps, o.affine),
      o_(o),
      running_(o.num_features, o.track_running_stats) {}

template <class B>
Tensor<float, B> InstanceNorm3d<B>::forward(const Tensor<float, B>& x) {
  this->require_input("InstanceNorm3d", x, 5, o_.num_features);
  const Tensor<float, B> xc = x.contiguous();
  const std::int64_t n = x.size(0), c = x.size(1), s = x.numel() / std::max<std::int64_t>(n * c, 1);
  auto y = this->output_buffer(x.shape());
  if (!this->training_ && o_.track_running_stats) {
    ops::normalize_with_running_stats(xc, running_.mean.value, running_.var.value, this->gamma(), this->beta(), o_.eps, y);
    return y;
  }
  auto stats = this->normalize(ops::NormSets::group(n, c, s, c), xc, y);
  if (this->training_ && o_.track_running_stats) {
    // Averages over the batch of per-instance statistics; torch's instance_norm leaves
    // num_batches_tracked at 0 (only _BatchNorm counts).
    const double unbias = s > 1 ? static_cast<double>(s) / static_cast<double>(s - 1) : 1.0;
    ops::update_running_stats(stats, o_.momentum, unbias, running_.mean.value, running_.var.value, nullptr);
  }
  this->keep(xc, std::move(stats));
  return y;
}

}  // namespace medseg::nn
