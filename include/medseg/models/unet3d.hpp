// UNet3D: MONAI's configurable UNet (monai.networks.nets.UNet, spatial_dims=3, adn_ordering
// "NDA") composed from library layers: strided conv or residual-unit down layers, a bottom
// layer, transposed-conv up layers (plus a residual unit), skip concatenation (skip first).
// The depth is a runtime value, so levels are vectors; paths equal MONAI's state-dict keys.
#pragma once

#include <cstdint>
#include <ranges>
#include <string>
#include <utility>
#include <vector>

#include "../nn.hpp"
#include "blocks.hpp"

namespace medseg::models {

/// MONAI's UNet activations: PReLU (one shared slope, MONAI's default), ReLU, LeakyReLU.
enum class UNetActivation { prelu, relu, leaky_relu };

/// monai.networks.nets.UNet's arguments (MONAI's defaults). Level i has channels[i] and
/// strides[i] on its down layer; the last channel count is the bottom layer's. MONAI's
/// out_channels is num_classes here, as in every medseg model.
struct UNet3DOptions {
  std::int64_t in_channels = 1;
  std::int64_t num_classes = 2;
  std::vector<std::int64_t> channels{16, 32, 64, 128, 256};
  std::vector<Dhw> strides{{2, 2, 2}, {2, 2, 2}, {2, 2, 2}, {2, 2, 2}};  // channels.size() - 1 entries
  Dhw kernel{3, 3, 3};     // odd: padding (k - 1) / 2 keeps the size
  Dhw up_kernel{3, 3, 3};  // of the transposed convs (output_padding stride - 1 doubles the size)
  std::int64_t num_res_units = 0;  // 0: Convolution layers; n: ResidualUnits of n subunits
  Norm norm = Norm::instance;      // MONAI: InstanceNorm3d without affine parameters
  std::int64_t num_groups = 8;     // GroupNorm's groups when norm is group
  UNetActivation activation = UNetActivation::prelu;
  float negative_slope = 0.01f;  // LeakyReLU's, PyTorch's default
  float dropout = 0.0f;          // nn.Dropout (element-wise) in every ADN
  bool bias = true;
  std::uint64_t seed = 0;  // dropout masks
};

namespace unet3d {
template <class B>
using Act = OneOf<nn::PReLU<B>, nn::ReLU<B>, nn::LeakyReLU<B>>;
/// MONAI's ADN in "NDA" order: norm, dropout, activation.
template <class B>
using ADN = nn::Sequential<nn::Named<"N", NormLayer<B>>, nn::Named<"D", nn::Dropout<B>>, nn::Named<"A", Act<B>>>;
/// MONAI's Convolution: conv then ADN, or the conv alone (conv_only).
template <class B, class ConvLayer>
using Convolution =
    OneOf<nn::Sequential<nn::Named<"conv", ConvLayer>, nn::Named<"adn", ADN<B>>>, nn::Sequential<nn::Named<"conv", ConvLayer>>>;
template <class B>
using Conv = Convolution<B, nn::Conv3d<B>>;
template <class B>
using UpConv = Convolution<B, nn::ConvTranspose3d<B>>;

/// Repeated layers named "unit0", "unit1", ... (ResidualUnit's `conv` sequence).
template <nn::Layer L>
class Units : public nn::Repeated<L> {
 public:
  explicit Units(nn::Repeated<L> layers) : nn::Repeated<L>(std::move(layers), "unit") {}
};

/// MONAI's ResidualUnit: conv(x) + residual(x); the residual is the identity, or a conv where
/// the unit strides (the units' kernel and padding) or changes channels (1x1x1).
template <class B>
using ResidualUnit = nn::Residual<nn::Named<"conv", Units<Conv<B>>>, nn::Named<"residual", OneOf<nn::Identity<B>, nn::Conv3d<B>>>>;
/// A down (or bottom) layer: a Convolution, or a ResidualUnit when num_res_units > 0.
template <class B>
using DownLayer = OneOf<Conv<B>, ResidualUnit<B>>;
/// An up layer: the transposed Convolution, followed by a one-subunit ResidualUnit when
/// num_res_units > 0 (children "0" and "1").
template <class B>
using UpLayer = OneOf<UpConv<B>, nn::Sequential<UpConv<B>, ResidualUnit<B>>>;
}  // namespace unet3d

/// x [N, in_channels, D, H, W] -> class scores [N, num_classes, D, H, W]; D, H, W must be
/// multiples of the product of the strides on that axis (size_divisor()).
///   models::UNet3D<Cpu> net{{.in_channels = 1, .num_classes = 3, .channels = {16, 32, 64, 128},
///                            .strides = {{2, 2, 2}, {2, 2, 2}, {2, 2, 2}}, .num_res_units = 2}};
/// Parameter paths are MONAI's: model.0.conv.unit0.conv.weight, model.0.residual.weight,
/// model.1.submodule.0.conv.unit0.adn.A.weight, ..., model.2.1.conv.unit0.conv.weight.
template <class B = Cpu>
class UNet3D : public nn::Module<UNet3D<B>, B> {
 public:
  using Options = UNet3DOptions;
  explicit UNet3D(const Options& o = {});

  Tensor<float, B> forward(const Tensor<float, B>& x);
  Tensor<float, B> backward(const Tensor<float, B>& dy);

  /// MONAI's module order: down layers from the top, the bottom, up layers from the bottom.
  /// Level i sits at model(.1.submodule)^i: its down layer at .0, its up layer at .2.
  auto members() {
    return nn::members(
        nn::children(down_, [this](std::size_t i) { return level_path(i) + (i + 1 < down_.size() ? ".0" : ""); }),
        nn::children(std::views::reverse(up_), [this](std::size_t k) { return level_path(up_.size() - 1 - k) + ".2"; }));
  }

  const Options& options() const { return o_; }
  /// The product of the strides per axis.
  Dhw size_divisor() const;

 private:
  static std::string level_path(std::size_t i) {
    std::string p = "model";
    while (i-- > 0) p += ".1.submodule";
    return p;
  }

  Options o_;
  std::vector<unet3d::DownLayer<B>> down_;  // one per level, then the bottom layer
  std::vector<unet3d::UpLayer<B>> up_;      // one per level, top first
  std::vector<std::int64_t> skip_channels_;  // from the latest forward, for backward
};

// ----------------------------------------------------------------------------------------
// Implementation

namespace unet3d {
inline Dhw same_padding(const Dhw& k) { return {(k[0] - 1) / 2, (k[1] - 1) / 2, (k[2] - 1) / 2}; }

template <class B>
ADN<B> adn(const UNet3DOptions& o, std::int64_t channels) {
  auto norm = [&]() -> NormLayer<B> {
    switch (o.norm) {
      case Norm::batch: return nn::BatchNorm3d<B>{{.num_features = channels}};
      case Norm::group: return nn::GroupNorm<B>{{.num_groups = o.num_groups, .num_channels = channels}};
      case Norm::instance: break;
    }
    return nn::InstanceNorm3d<B>{{.num_features = channels}};
  };
  auto act = [&]() -> Act<B> {
    switch (o.activation) {
      case UNetActivation::relu: return nn::ReLU<B>{};
      case UNetActivation::leaky_relu: return nn::LeakyReLU<B>{{.negative_slope = o.negative_slope}};
      case UNetActivation::prelu: break;
    }
    return nn::PReLU<B>{};
  };
  return {norm(), nn::Dropout<B>{{.p = o.dropout, .seed = o.seed}}, act()};
}

template <class B>
Conv<B> conv(const UNet3DOptions& o, std::int64_t in, std::int64_t out, const Dhw& stride, bool conv_only) {
  nn::Conv3d<B> c{{.in_channels = in, .out_channels = out, .kernel = o.kernel, .stride = stride,
                   .padding = same_padding(o.kernel), .bias = o.bias}};
  if (conv_only) return nn::Sequential<nn::Named<"conv", nn::Conv3d<B>>>{std::move(c)};
  return nn::Sequential<nn::Named<"conv", nn::Conv3d<B>>, nn::Named<"adn", ADN<B>>>{std::move(c), adn<B>(o, out)};
}

template <class B>
UpConv<B> up_conv(const UNet3DOptions& o, std::int64_t in, std::int64_t out, const Dhw& stride, bool conv_only) {
  nn::ConvTranspose3d<B> c{{.in_channels = in, .out_channels = out, .kernel = o.up_kernel, .stride = stride,
                            .padding = same_padding(o.up_kernel),
                            .output_padding = {stride[0] - 1, stride[1] - 1, stride[2] - 1}, .bias = o.bias}};
  if (conv_only) return nn::Sequential<nn::Named<"conv", nn::ConvTranspose3d<B>>>{std::move(c)};
  return nn::Sequential<nn::Named<"conv", nn::ConvTranspose3d<B>>, nn::Named<"adn", ADN<B>>>{std::move(c), adn<B>(o, out)};
}

template <class B>
ResidualUnit<B> residual_unit(const UNet3DOptions& o, std::int64_t in, std::int64_t out, const Dhw& stride,
                              std::int64_t subunits, bool last_conv_only) {
  const auto n = static_cast<std::size_t>(std::max<std::int64_t>(1, subunits));
  auto units = nn::repeat(n, [&](std::size_t i) {
    return conv<B>(o, i == 0 ? in : out, out, i == 0 ? stride : Dhw{1, 1, 1}, last_conv_only && i + 1 == n);
  });
  const bool strided = stride != Dhw{1, 1, 1};
  auto residual = [&]() -> OneOf<nn::Identity<B>, nn::Conv3d<B>> {
    if (!strided && in == out) return nn::Identity<B>{};
    const Dhw k = strided ? o.kernel : Dhw{1, 1, 1};
    return nn::Conv3d<B>{{.in_channels = in, .out_channels = out, .kernel = k, .stride = stride,
                          .padding = strided ? same_padding(o.kernel) : Dhw{0, 0, 0}, .bias = o.bias}};
  };
  return ResidualUnit<B>{Units<Conv<B>>{std::move(units)}, residual()};
}

template <class B>
DownLayer<B> down_layer(const UNet3DOptions& o, std::int64_t in, std::int64_t out, const Dhw& stride) {
  if (o.num_res_units > 0) return residual_unit<B>(o, in, out, stride, o.num_res_units, false);
  return conv<B>(o, in, out, stride, false);
}

template <class B>
UpLayer<B> up_layer(const UNet3DOptions& o, std::int64_t in, std::int64_t out, const Dhw& stride, bool top) {
  if (o.num_res_units == 0) return up_conv<B>(o, in, out, stride, top);
  return nn::Sequential<UpConv<B>, ResidualUnit<B>>{up_conv<B>(o, in, out, stride, false),
                                                    residual_unit<B>(o, out, out, {1, 1, 1}, 1, top)};
}
}  // namespace unet3d

template <class B>
UNet3D<B>::UNet3D(const Options& o) : o_(o) {
  const std::size_t n = o.channels.size();
  auto fail = [](const std::string& field, const std::string& expected, const std::string& actual) {
    return ErrorInfo{.where = "UNet3D", .field = field, .expected = expected, .actual = actual};
  };
  require(n >= 2, [&] { return fail("channels", "at least 2 entries", std::to_string(n)); });
  require(o.strides.size() == n - 1, [&] {
    return fail("strides", std::to_string(n - 1) + " entries (one per channel count but the bottom's)",
                std::to_string(o.strides.size()));
  });
  require(o.in_channels >= 1 && o.num_classes >= 1, [&] {
    return fail("in_channels/num_classes", ">= 1", str(o.in_channels, "/", o.num_classes));
  });
  for (std::size_t i = 0; i < n; ++i)
    require(o.channels[i] >= 1, [&] { return fail("channels[" + std::to_string(i) + "]", ">= 1", std::to_string(o.channels[i])); });
  for (std::size_t i = 0; i + 1 < n; ++i)
    for (const std::int64_t s : o.strides[i])
      require(s >= 1, [&] { return fail("strides[" + std::to_string(i) + "]", "entries >= 1", medseg::detail::dhw_string(o.strides[i])); });
  auto odd = [&](const Dhw& k, const char* field) {
    for (const std::int64_t v : k)
      require(v >= 1 && v % 2 == 1, [&] {
        return fail(field, "odd sizes >= 1 (MONAI's same padding)", medseg::detail::dhw_string(k));
      });
  };
  odd(o.kernel, "kernel");
  odd(o.up_kernel, "up_kernel");
  require(o.num_res_units >= 0, [&] { return fail("num_res_units", ">= 0", std::to_string(o.num_res_units)); });
  if (o.norm == Norm::group) {
    // Every ADN normalises its conv's output: each level's channels, and with residual units
    // also the class scores of the top up conv.
    std::vector<std::int64_t> normalised = o.channels;
    if (o.num_res_units > 0) normalised.push_back(o.num_classes);
    for (const std::int64_t c : normalised)
      require(o.num_groups >= 1 && c % o.num_groups == 0, [&] {
        return fail("num_groups", "a divisor of every normalised channel count", str(o.num_groups, " for ", c, " channels"));
      });
  }
  const std::size_t levels = n - 1;
  for (std::size_t i = 0; i < levels; ++i)
    down_.push_back(unet3d::down_layer<B>(o, i == 0 ? o.in_channels : o.channels[i - 1], o.channels[i], o.strides[i]));
  down_.push_back(unet3d::down_layer<B>(o, o.channels[levels - 1], o.channels[levels], {1, 1, 1}));  // the bottom
  for (std::size_t i = 0; i < levels; ++i) {
    // MONAI's upc: the skip's channels plus those coming up (the level below's, or the bottom's).
    const std::int64_t up_in = o.channels[i] + (i + 1 == levels ? o.channels[levels] : o.channels[i]);
    up_.push_back(unet3d::up_layer<B>(o, up_in, i == 0 ? o.num_classes : o.channels[i - 1], o.strides[i], i == 0));
  }
  this->set_path("");
}

template <class B>
Tensor<float, B> UNet3D<B>::forward(const Tensor<float, B>& x) {
  this->require_input("UNet3D", x, 5, o_.in_channels);
  const std::size_t levels = up_.size();
  std::vector<Tensor<float, B>> skips;
  Tensor<float, B> h = x;
  for (std::size_t i = 0; i < levels; ++i) skips.push_back(h = down_[i].forward(h));
  h = down_[levels].forward(h);
  skip_channels_.assign(levels, 0);
  for (std::size_t i = levels; i-- > 0;) {
    const Tensor<float, B>& skip = skips[i];
    require(h.size(2) == skip.size(2) && h.size(3) == skip.size(3) && h.size(4) == skip.size(4), [&] {
      return ErrorInfo{.where = this->where("UNet3D"), .field = "level " + std::to_string(i) + " up-sampled size",
                       .expected = "the skip's " + skip.shape().to_string(), .actual = h.shape().to_string(),
                       .detail = "the input " + x.shape().to_string() + " must be divisible by " +
                                 medseg::detail::dhw_string(size_divisor()) + " (the product of the strides)"};
    });
    skip_channels_[i] = skip.size(1);
    const Tensor<float, B> c = ops::concat_channels(skip, h);  // MONAI's SkipConnection: cat([x, submodule(x)])
    // Both halves are consumed: in eval mode their producers may let go of their buffers.
    h = Tensor<float, B>();
    skips[i] = Tensor<float, B>();
    if (i + 1 == levels)
      nn::release_child_outputs(down_[levels]);
    else
      nn::release_child_outputs(up_[i + 1]);
    nn::release_child_outputs(down_[i]);
    h = up_[i].forward(c);
  }
  return h;
}

template <class B>
Tensor<float, B> UNet3D<B>::backward(const Tensor<float, B>& dy) {
  const std::size_t levels = up_.size();
  require(skip_channels_.size() == levels, [&] {
    return ErrorInfo{.where = this->where("UNet3D"), .field = "backward", .expected = "a training-mode forward first",
                     .actual = "no forward"};
  });
  std::vector<Tensor<float, B>> skip_grads(levels);
  Tensor<float, B> g = dy;  // dL/d(output of level i)
  for (std::size_t i = 0; i < levels; ++i) {
    const Tensor<float, B> dc = up_[i].backward(g);
    skip_grads[i] = ops::channel_range(dc, 0, skip_channels_[i]);
    g = ops::channel_range(dc, skip_channels_[i], dc.size(1));
  }
  skip_channels_.clear();
  g = down_[levels].backward(g);  // dL/d(down layer i's output) through what lies below it
  for (std::size_t i = levels; i-- > 0;) {
    ops::accumulate(skip_grads[i], g);
    g = down_[i].backward(skip_grads[i]);
  }
  return g;
}

template <class B>
Dhw UNet3D<B>::size_divisor() const {
  Dhw d{1, 1, 1};
  for (const Dhw& s : o_.strides)
    for (std::size_t a = 0; a < 3; ++a) d[a] *= s[a];
  return d;
}

}  // namespace medseg::models
