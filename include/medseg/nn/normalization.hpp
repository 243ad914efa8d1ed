// What the normalisation layers (BatchNorm3d, GroupNorm, InstanceNorm3d, LayerNorm) share:
// the option checks, the C-channel affine "weight" (ones) and "bias" (zeros) that exist when
// affine, the normalisation pass that keeps its input and statistics for backward, and that
// backward. A norm layer adds only its NormSets layout and, where it has them, RunningStats.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "../backends/ops.hpp"
#include "concepts.hpp"
#include "members.hpp"

namespace medseg::nn {

/// BatchNorm3d's and InstanceNorm3d's running averages: buffers "running_mean" (zeros) and
/// "running_var" (ones) [C], and "num_batches_tracked" [] (int64 on disk), visited when tracked.
template <class B>
struct RunningStats {
  Buffer<B> mean, var, batches;
  bool tracked = false;

  RunningStats(std::int64_t channels, bool track)
      : mean{"running_mean", Tensor<float, B>::zeros({channels})},
        var{"running_var", Tensor<float, B>::ones({channels})},
        batches{"num_batches_tracked", Tensor<float, B>::zeros({}), DType::int64},
        tracked(track) {}

  auto members() {
    return nn::members(buffer("running_mean", mean, tracked), buffer("running_var", var, tracked),
                       buffer("num_batches_tracked", batches, tracked));
  }
};

namespace detail {
/// The common part of a norm layer Self (which names itself in static constexpr `kind`).
template <class Self, class B>
class Normalization : public Module<Self, B> {
 public:
  /// dy by value: a gradient handed over (moved in) is overwritten with dx.
  Tensor<float, B> backward(Tensor<float, B> dy) {
    check_backward(dy);
    const Tensor<float, B> g = dy.contiguous();
    dy = Tensor<float, B>();
    return backward_into(g, this->gradient_buffer(g));
  }

  /// "weight" and "bias", visited when affine. A norm with more members splices these in.
  auto members() { return nn::members(param("weight", weight_, affine_), param("bias", bias_, affine_)); }

  Parameter<B>& weight() { return weight_; }
  Parameter<B>& bias() { return bias_; }

 protected:
  /// Checks channels >= 1 and eps > 0 (`field` is the option that counts the channels, for
  /// errors) and makes the affine parameters.
  Normalization(std::string_view field, std::int64_t channels, double eps, bool affine) : eps_(eps), affine_(affine) {
    require(channels >= 1 && eps > 0.0, [&] {
      return ErrorInfo{.where = std::string(Self::kind), .field = std::string(field) + "/eps",
                       .expected = std::string(field) + " >= 1 and eps > 0", .actual = str(channels, ", ", eps)};
    });
    weight_ = make_parameter<B>("weight", Tensor<float, B>::ones({channels}));
    bias_ = make_parameter<B>("bias", Tensor<float, B>::zeros({channels}));
  }

  /// The affine map's pointers (device pointers on the GPU), null without affine.
  const float* gamma() const { return affine_ ? weight_.value.data() : nullptr; }
  const float* beta() const { return affine_ ? bias_.value.data() : nullptr; }

  /// y = normalize(xc) over `sets` with batch statistics, which it returns; training keeps xc
  /// and (see keep) the statistics for backward.
  ops::norm_stats_t<B> normalize(const ops::NormSets& sets, const Tensor<float, B>& xc, const Tensor<float, B>& y) {
    sets_ = sets;
    return ops::normalize_forward(sets_, xc, y, gamma(), beta(), eps_);
  }
  /// In training, what backward needs: the input and its statistics.
  void keep(const Tensor<float, B>& xc, ops::norm_stats_t<B>&& stats) {
    if (this->training_) {
      x_ = xc;
      stats_ = std::move(stats);
    }
  }

  void check_backward(const Tensor<float, B>& dy) const {
    this->require_forward(Self::kind, x_.defined());
    this->require_grad_shape(Self::kind, dy, x_.shape());
  }
  /// dx (which may be g itself) from the contiguous gradient g; accumulates the affine
  /// gradients and drops what forward kept.
  Tensor<float, B> backward_into(const Tensor<float, B>& g, Tensor<float, B> dx) {
    ops::normalize_backward(sets_, stats_, eps_, x_, g, dx, gamma(), affine_ ? weight_.grad.data() : nullptr,
                            affine_ ? bias_.grad.data() : nullptr);
    x_ = Tensor<float, B>();
    return dx;
  }

  double eps_;
  bool affine_;
  Parameter<B> weight_, bias_;
  Tensor<float, B> x_;
  ops::NormSets sets_;
  ops::norm_stats_t<B> stats_;  // host vectors on the CPU, device tensors on the GPU
};
}  // namespace detail

}  // namespace medseg::nn
