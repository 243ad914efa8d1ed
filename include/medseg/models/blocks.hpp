// Small layers the models share: OneOf (a layer chosen at run time among a few types, so a
// model's norm or activation is an option rather than a template argument), the norm and
// activation choices built on it, ChannelRepeat (VNet's `x.repeat(1, r, 1, 1, 1)` shortcut)
// and TailDropout3d (channel dropout on the skip half of a concatenation only).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "../nn.hpp"

namespace medseg::models {

/// A per-axis triple in D, H, W order (kernel sizes, strides).
using Dhw = std::array<std::int64_t, 3>;

/// The normalisations the models offer (torch.nn.BatchNorm3d, GroupNorm, InstanceNorm3d).
enum class Norm { batch, group, instance };
/// The activations VNet offers: PReLU (one slope per channel, MedicalSeg's default) or ELU.
enum class Activation { prelu, elu };

/// One of the layer types L..., fixed at construction. Forward, backward, paths and
/// parameters go to the held layer, which sits directly at this layer's path (a PyTorch
/// attribute that holds whichever module the options chose).
template <nn::Layer First, nn::Layer... Rest>
class OneOf : public nn::Module<OneOf<First, Rest...>, typename First::backend> {
 public:
  using B = typename First::backend;

  template <class L>
    requires(std::same_as<L, First> || (std::same_as<L, Rest> || ...))
  OneOf(L layer) : layer_(std::move(layer)) {  // NOLINT: implicit, so a chosen layer converts
    this->set_path("");
  }

  Tensor<float, B> forward(Tensor<float, B> x) {
    return std::visit([&](auto& l) { return l.forward(std::move(x)); }, layer_);
  }
  Tensor<float, B> backward(Tensor<float, B> dy) {
    return std::visit([&](auto& l) { return l.backward(std::move(dy)); }, layer_);
  }
  /// The held layer, at this layer's own path.
  auto members() { return nn::members(nn::child("", layer_)); }

  /// The held layer if it is an L, else nullptr.
  template <class L>
  L* get_if() {
    return std::get_if<L>(&layer_);
  }

 private:
  std::variant<First, Rest...> layer_;
};

template <class B>
using NormLayer = OneOf<nn::BatchNorm3d<B>, nn::GroupNorm<B>, nn::InstanceNorm3d<B>>;
template <class B>
using ActivationLayer = OneOf<nn::PReLU<B>, nn::ELU<B>>;

/// The norm of `channels` channels: BatchNorm3d, GroupNorm with min(8, channels) groups (as
/// MedicalSeg's configs use), or affine InstanceNorm3d without running statistics.
template <class B>
NormLayer<B> make_norm(Norm kind, std::int64_t channels);
/// PReLU with one slope per channel, or ELU(alpha = 1).
template <class B>
ActivationLayer<B> make_activation(Activation kind, std::int64_t channels);

/// act(norm(x)): a NormLayer and an ActivationLayer in a row, named `norm_name` and
/// `act_name` under this layer's path (VNet's "bn1" and "relu1"). BatchNorm followed by PReLU
/// runs fused on every backend: one pass computes prelu(x * scale + shift) with BatchNorm's
/// statistics, and training keeps only the norm's input, recomputing the PReLU's input in
/// backward, where the layers in a row keep both tensors. Other pairs run as the two layers.
template <class B>
class NormActivation : public nn::Module<NormActivation<B>, B> {
 public:
  NormActivation(NormLayer<B> norm, ActivationLayer<B> act, std::string norm_name = "bn1", std::string act_name = "relu1")
      : norm_(std::move(norm)), act_(std::move(act)), norm_name_(std::move(norm_name)), act_name_(std::move(act_name)) {
    this->set_path("");
  }

  Tensor<float, B> forward(const Tensor<float, B>& x);
  Tensor<float, B> backward(Tensor<float, B> dy);

  auto members() { return nn::members(nn::child(norm_name_, norm_), nn::child(act_name_, act_)); }

  NormLayer<B>& norm() { return norm_; }
  ActivationLayer<B>& activation() { return act_; }
  /// Whether the latest training forward ran fused (and backward will recompute).
  bool fused() const { return fused_; }

 private:
  NormLayer<B> norm_;
  ActivationLayer<B> act_;
  std::string norm_name_, act_name_;
  // The fused pair's map and what backward needs; the norm keeps its input and statistics.
  Tensor<float, B> scale_, shift_;
  bool fused_ = false;
};

/// y = cat(x, x, ..., x) along channels, `times` copies (torch's x.repeat(1, times, 1, 1, 1));
/// backward sums the copies' gradients. No parameters.
template <class B = Cpu>
class ChannelRepeat : public nn::LayerBase<B> {
 public:
  explicit ChannelRepeat(std::int64_t times);
  Tensor<float, B> forward(const Tensor<float, B>& x);
  Tensor<float, B> backward(const Tensor<float, B>& dy);

 private:
  std::int64_t times_;
  Shape in_shape_;
};

/// Dropout3d on channels [keep, C) only: a concatenation cat(up, skip) whose skip alone is
/// dropped, as VNet's up blocks drop their skip input before concatenating it. Dropping after
/// the concat is the same function and lets the level stay one UNetLevel.
template <class B = Cpu>
class TailDropout3d : public nn::Module<TailDropout3d<B>, B> {
 public:
  /// Channels [0, keep) pass unchanged.
  TailDropout3d(std::int64_t keep, nn::DropoutOptions o);
  Tensor<float, B> forward(const Tensor<float, B>& x);
  Tensor<float, B> backward(const Tensor<float, B>& dy);

  /// The dropout at this layer's path: its mask counter (nn::RandomCounter) is visited as a
  /// buffer, so checkpoints resume its draws exactly.
  auto members() { return nn::members(nn::child("", dropout_)); }

 private:
  std::int64_t keep_;
  nn::Dropout3d<B> dropout_;
  bool active_ = false;
};

// ----------------------------------------------------------------------------------------
// Implementation

template <class B>
NormLayer<B> make_norm(Norm kind, std::int64_t channels) {
  switch (kind) {
    case Norm::batch: return nn::BatchNorm3d<B>{{.num_features = channels}};
    case Norm::group: return nn::GroupNorm<B>{{.num_groups = std::min<std::int64_t>(8, channels), .num_channels = channels}};
    case Norm::instance: return nn::InstanceNorm3d<B>{{.num_features = channels, .affine = true}};
  }
  throw Error(ErrorInfo{.where = "models::make_norm", .field = "kind", .expected = "batch, group or instance",
                        .actual = std::to_string(static_cast<int>(kind))});
}

template <class B>
ActivationLayer<B> make_activation(Activation kind, std::int64_t channels) {
  if (kind == Activation::elu) return nn::ELU<B>{};
  return nn::PReLU<B>{{.num_parameters = channels}};
}

template <class B>
Tensor<float, B> NormActivation<B>::forward(const Tensor<float, B>& x) {
  fused_ = false;
  auto* bn = norm_.template get_if<nn::BatchNorm3d<B>>();
  auto* prelu = act_.template get_if<nn::PReLU<B>>();
  if (bn && prelu && x.defined() && x.rank() == 5 &&
      (prelu->weight().value.numel() == 1 || prelu->weight().value.numel() == x.size(1))) {
    auto m = bn->channel_affine_of(x);  // checks x; in training keeps it and the statistics
    auto y = this->output_buffer(x.shape());
    ops::prelu_affine_forward(x.contiguous(), m.scale, m.shift, prelu->weight().value, y);
    if (this->training_) {
      scale_ = std::move(m.scale);
      shift_ = std::move(m.shift);
      fused_ = true;
    }
    return y;
  }
  Tensor<float, B> y = act_.forward(norm_.forward(x));
  norm_.release_outputs();  // consumed (eval mode)
  return y;
}

template <class B>
Tensor<float, B> NormActivation<B>::backward(Tensor<float, B> dy) {
  if (!fused_) return norm_.backward(act_.backward(std::move(dy)));
  fused_ = false;
  auto& bn = *norm_.template get_if<nn::BatchNorm3d<B>>();
  auto& prelu = *act_.template get_if<nn::PReLU<B>>();
  const Tensor<float, B>& x = bn.kept_input();
  this->require_grad_shape("NormActivation", dy, x.shape());
  Tensor<float, B> g = dy.contiguous();
  dy = Tensor<float, B>();
  auto dn = this->gradient_buffer(g);  // in place when handed over
  ops::prelu_affine_backward(x, scale_, shift_, prelu.weight().value, g, dn, prelu.weight().grad);
  g = Tensor<float, B>();
  scale_ = shift_ = Tensor<float, B>();
  return bn.backward(std::move(dn));  // and the norm writes its gradient over dn
}

template <class B>
ChannelRepeat<B>::ChannelRepeat(std::int64_t times) : times_(times) {
  require(times >= 1, [&] {
    return ErrorInfo{.where = "ChannelRepeat", .field = "times", .expected = ">= 1", .actual = std::to_string(times)};
  });
}

template <class B>
Tensor<float, B> ChannelRepeat<B>::forward(const Tensor<float, B>& x) {
  this->require_input("ChannelRepeat", x, 5, -1);
  const std::int64_t c = x.size(1);
  Shape s = x.shape();
  s[1] = c * times_;
  auto y = this->output_buffer(s);
  for (std::int64_t r = 0; r < times_; ++r) y.slice(1, r * c, (r + 1) * c).copy_from(x);
  in_shape_ = x.shape();
  return y;
}

template <class B>
Tensor<float, B> ChannelRepeat<B>::backward(const Tensor<float, B>& dy) {
  Shape s = in_shape_;
  s[1] *= times_;
  this->require_grad_shape("ChannelRepeat", dy, s);
  const std::int64_t c = in_shape_[1];
  auto dx = dy.slice(1, 0, c).clone();
  for (std::int64_t r = 1; r < times_; ++r) ops::accumulate(dx, dy.slice(1, r * c, (r + 1) * c).contiguous());
  return dx;
}

template <class B>
TailDropout3d<B>::TailDropout3d(std::int64_t keep, nn::DropoutOptions o) : keep_(keep), dropout_(o) {
  require(keep >= 0, [&] {
    return ErrorInfo{.where = "TailDropout3d", .field = "keep", .expected = ">= 0", .actual = std::to_string(keep)};
  });
}

template <class B>
Tensor<float, B> TailDropout3d<B>::forward(const Tensor<float, B>& x) {
  this->require_input("TailDropout3d", x, 5, -1);
  require(x.size(1) > keep_, [&] {
    return ErrorInfo{.where = this->where("TailDropout3d"), .field = "input channels",
                     .expected = "> " + std::to_string(keep_), .actual = x.shape().to_string()};
  });
  active_ = this->training_;
  if (!this->training_ || dropout_.options().p == 0.0f) return x;  // nothing dropped: no copy
  auto y = x.contiguous().clone();
  y.slice(1, keep_, x.size(1)).copy_from(dropout_.forward(x.slice(1, keep_, x.size(1)).contiguous()));
  return y;
}

template <class B>
Tensor<float, B> TailDropout3d<B>::backward(const Tensor<float, B>& dy) {
  this->require_forward("TailDropout3d", active_);
  active_ = false;
  if (dropout_.options().p == 0.0f) return dy;
  auto dx = dy.contiguous().clone();
  dx.slice(1, keep_, dy.size(1)).copy_from(dropout_.backward(dy.slice(1, keep_, dy.size(1)).contiguous()));
  return dx;
}

}  // namespace medseg::models
