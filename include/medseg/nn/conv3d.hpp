// Conv3d: a 3-D convolution layer over NCDHW (torch.nn.Conv3d's options, weight layout and
// default initialisation). The arithmetic is the backend's (oneDNN on the CPU, cuDNN on the
// GPU, through backends/conv3d.hpp); the layer owns the weights, keeps its input for the
// weight gradient and accumulates gradients. ConvolutionLayer is shared with ConvTranspose3d.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "../backends/conv3d.hpp"
#include "../backends/ops.hpp"
#include "concepts.hpp"
#include "init.hpp"
#include "members.hpp"

namespace medseg::nn {

/// torch.nn.Conv3d's arguments (padding_mode 'zeros'). Spatial arrays are D, H, W:
/// anisotropic kernels such as {1, 3, 3} or {2, 2, 4} are plain values.
struct Conv3dOptions {
  std::int64_t in_channels = 1, out_channels = 1;
  std::array<std::int64_t, 3> kernel{3, 3, 3}, stride{1, 1, 1}, padding{0, 0, 0}, dilation{1, 1, 1};
  std::int64_t groups = 1;
  bool bias = true;
};

namespace detail {
/// The state and passes common to Conv3d and ConvTranspose3d; `kind` names it in errors.
template <class B, bool Transposed>
class ConvolutionLayer : public Module<ConvolutionLayer<B, Transposed>, B> {
 public:
  /// The problem for an input of spatial size `input` (batch 1).
  Conv3dShape problem(std::int64_t batch, const std::array<std::int64_t, 3>& input) const {
    Conv3dShape s = shape_;
    s.batch = batch;
    s.input = input;
    return s;
  }

  Tensor<float, B> forward(const Tensor<float, B>& x) {
    this->require_input(kind(), x, 5, shape_.in_channels);
    const Conv3dShape s = problem(x.size(0), {x.size(2), x.size(3), x.size(4)});
    s.validate(this->where(kind()));
    const Tensor<float, B> xc = x.contiguous();
    // The op allocates y when it suits the backend (on the CPU, once its copy of x is gone:
    // one activation less at the peak).
    Tensor<float, B> y = ops::conv3d_forward_alloc(s, xc, weight_.value, has_bias_ ? &bias_.value : nullptr);
    if (this->training_) {
      x_ = xc;
      last_ = s;
    }
    return y;
  }

  /// dy by value: a caller that moves it in lets it go as soon as the op has its own copy.
  Tensor<float, B> backward(Tensor<float, B> dy) {
    this->require_forward(kind(), x_.defined());
    this->require_grad_shape(kind(), dy, last_.output_shape());
    Tensor<float, B> g = dy.contiguous();
    dy = Tensor<float, B>();
    // The op overwrites its outputs; parameters accumulate, so go through scratch tensors.
    auto dw = Tensor<float, B>::empty(weight_.value.shape());
    Tensor<float, B> db;
    if (has_bias_) db = Tensor<float, B>::empty(bias_.value.shape());
    // Both gradients in one call: dy is brought into oneDNN's layout once for both.
    Tensor<float, B> dx = ops::conv3d_backward_owned(last_, std::move(x_), weight_.value, std::move(g), input_gradient_,
                                                     dw, has_bias_ ? &db : nullptr);
    x_ = Tensor<float, B>();
    ops::accumulate(weight_.grad, dw);
    if (has_bias_) ops::accumulate(bias_.grad, db);
    return dx;
  }

  /// Whether backward computes dL/dx (the default). A network's first layer, whose input is
  /// the data, can skip it: backward then returns an undefined tensor and only accumulates
  /// the parameter gradients. Models offer this as set_input_gradient(false).
  void set_input_gradient(bool on) { input_gradient_ = on; }
  bool input_gradient() const { return input_gradient_; }

  auto members() { return nn::members(param("weight", weight_), param("bias", bias_, has_bias_)); }

  Parameter<B>& weight() { return weight_; }
  Parameter<B>& bias() { return bias_; }
  bool has_bias() const { return has_bias_; }

 protected:
  static constexpr const char* kind() { return Transposed ? "ConvTranspose3d" : "Conv3d"; }

  void build(Conv3dShape s, bool bias) {
    s.transposed = Transposed;
    s.input = {1, 1, 1};
    shape_ = s;
    // Validate the options alone: an input of size 1 may legitimately be too small.
    const std::string w = this->where(kind());
    auto positive = [&](std::int64_t v, const char* field) {
      require(v >= 1, [&] { return ErrorInfo{.where = w, .field = field, .expected = ">= 1", .actual = std::to_string(v)}; });
    };
    positive(s.in_channels, "in_channels");
    positive(s.out_channels, "out_channels");
    positive(s.groups, "groups");
    require(s.in_channels % s.groups == 0 && s.out_channels % s.groups == 0, [&] {
      return ErrorInfo{.where = w, .field = "groups", .expected = "a divisor of in_channels and out_channels",
                       .actual = str(s.groups, " with ", s.in_channels, " -> ", s.out_channels)};
    });
    has_bias_ = bias;
    weight_ = make_parameter<B>("weight", Tensor<float, B>::empty(s.weight_shape()));
    bias_ = make_parameter<B>("bias", Tensor<float, B>::empty(bias ? s.bias_shape() : Shape{0}));
    init::pytorch_default(weight_.value, bias ? &bias_.value : nullptr);
  }

  Conv3dShape shape_;
  bool has_bias_ = true;
  bool input_gradient_ = true;
  Parameter<B> weight_, bias_;
  Tensor<float, B> x_;
  Conv3dShape last_;
};
}  // namespace detail

/// y = conv3d(x, weight) + bias.  x [N, in, D, H, W] -> y [N, out, D', H', W'] with
/// D' = floor((D + 2p - d(k - 1) - 1) / s) + 1. Parameters "weight" [out, in/groups, kD, kH, kW]
/// and "bias" [out], initialised as PyTorch does (U(+-1/sqrt(fan_in))).
///   Conv3d<Cpu> conv{{.in_channels = 16, .out_channels = 32, .kernel = {1, 3, 3}, .padding = {0, 1, 1}}};
template <class B = Cpu>
class Conv3d : public detail::ConvolutionLayer<B, false> {
 public:
  using Options = Conv3dOptions;
  Conv3d(const Options& o) {  // NOLINT: implicit, so Sequential<Conv3d, ...>{{...}} reads well
    for (std::size_t i = 0; i < 3; ++i)
      require(o.kernel[i] >= 1 && o.stride[i] >= 1 && o.dilation[i] >= 1 && o.padding[i] >= 0, [&] {
        return ErrorInfo{.where = this->where("Conv3d"), .field = "kernel/stride/dilation/padding",
                         .expected = "kernel, stride, dilation >= 1 and padding >= 0",
                         .actual = str("kernel ", medseg::detail::dhw_string(o.kernel), " stride ", medseg::detail::dhw_string(o.stride),
                                       " dilation ", medseg::detail::dhw_string(o.dilation), " padding ",
                                       medseg::detail::dhw_string(o.padding))};
      });
    this->build(Conv3dShape{.in_channels = o.in_channels, .out_channels = o.out_channels, .kernel = o.kernel,
                            .stride = o.stride, .padding = o.padding, .dilation = o.dilation, .groups = o.groups},
                o.bias);
  }
  Options options() const {
    const auto& s = this->shape_;
    return {s.in_channels, s.out_channels, s.kernel, s.stride, s.padding, s.dilation, s.groups, this->has_bias_};
  }
};

}  // namespace medseg::nn
