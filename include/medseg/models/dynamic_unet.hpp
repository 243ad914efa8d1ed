// nnU-Net's dynamic U-Net (PlainConvUNet of dynamic-network-architectures, and its ResEnc
// variant ResidualEncoderUNet): the number of stages, features, kernels and strides are runtime
// values from a plan, so stages are vectors of library blocks rather than nested types.
// Parameter paths equal nnU-Net's state dicts (encoder.stages.0.0.convs.0.conv.weight,
// encoder.stages.1.blocks.0.conv1.conv.weight, decoder.transpconvs.0.weight, decoder.seg_layers.0.weight).
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../nn.hpp"
#include "blocks.hpp"

namespace medseg::models {

/// PlainConvUNet's arguments, as an nnU-Net plan gives them. Stage i has features[i]
/// channels, kernels[i] (padding (k - 1) / 2) and strides[i] on its first conv (stage 0's
/// stride is normally 1); decoder stage j (0 = deepest) mirrors encoder stage n - 2 - j.
struct DynamicUNetOptions {
  std::int64_t in_channels = 1;
  std::int64_t num_classes = 2;
  std::vector<std::int64_t> features{32, 64, 128, 256};
  std::vector<Dhw> kernels{{3, 3, 3}, {3, 3, 3}, {3, 3, 3}, {3, 3, 3}};
  std::vector<Dhw> strides{{1, 1, 1}, {2, 2, 2}, {2, 2, 2}, {2, 2, 2}};
  std::vector<std::int64_t> convs_per_stage{2, 2, 2, 2};  // nnU-Net: 2 everywhere; ResEnc: blocks per stage

  std::vector<std::int64_t> convs_per_stage_decoder{2, 2, 2};
  /// Heads at every decoder level, returned by forward_all in training (nnU-Net's default).
  bool deep_supervision = true;
  float negative_slope = 0.01f;  // nnU-Net's LeakyReLU
  bool conv_bias = true;         // nnU-Net passes conv_bias=True
  /// ResEnc (nnU-Net's ResidualEncoderUNet): a one-conv stem, then convs_per_stage[i]
  /// BasicBlockD residual blocks per encoder stage; the decoder is unchanged.
  bool residual_encoder = false;
};

/// nnU-Net's features per stage: base * 2^i capped at `cap` (32, 64, ..., 320).
std::vector<std::int64_t> nnunet_features(std::size_t stages, std::int64_t base = 32, std::int64_t cap = 320);

namespace dynamic_unet {
/// ConvDropoutNormReLU without dropout: conv, InstanceNorm3d (affine), LeakyReLU.
template <class B>
using ConvNormAct = nn::Sequential<nn::Named<"conv", nn::Conv3d<B>>, nn::Named<"norm", nn::InstanceNorm3d<B>>,
                                   nn::Named<"nonlin", nn::LeakyReLU<B>>>;
/// StackedConvBlocks' `convs`: the first conv carries the stage's stride.
template <class B>
using StackedConvs = nn::Repeated<ConvNormAct<B>>;

/// ConvDropoutNormReLU with nonlin=None: the second conv of a residual block, the skip's projection.
template <class B>
using ConvNorm = nn::Sequential<nn::Named<"conv", nn::Conv3d<B>>, nn::Named<"norm", nn::InstanceNorm3d<B>>>;
/// BasicBlockD's skip: identity, or (ResNet-D) an average pool where the block strides and a
/// 1x1x1 conv + norm where it changes channels, numbered as the PyTorch nn.Sequential does.
template <class B>
using ResidualSkip = OneOf<nn::Identity<B>, nn::Sequential<nn::AvgPool3d<B>>, nn::Sequential<ConvNorm<B>>,
                           nn::Sequential<nn::AvgPool3d<B>, ConvNorm<B>>>;
/// BasicBlockD: nonlin2(conv2(conv1(x)) + skip(x)).
template <class B>
using BasicBlock =
    nn::Sequential<nn::Named<"", nn::Residual<nn::Named<"", nn::Sequential<nn::Named<"conv1", ConvNormAct<B>>,
                                                                          nn::Named<"conv2", ConvNorm<B>>>>,
                                              nn::Named<"skip", ResidualSkip<B>>>>,
                   nn::Named<"nonlin2", nn::LeakyReLU<B>>>;
/// StackedResidualBlocks' `blocks`: the first block carries the stage's stride.
template <class B>
using StackedBlocks = nn::Repeated<BasicBlock<B>>;
/// An encoder stage of either kind.
template <class B>
using EncoderStage = OneOf<StackedConvs<B>, StackedBlocks<B>>;
}  // namespace dynamic_unet

/// x [N, in_channels, D, H, W] -> class scores [N, num_classes, D, H, W]; each spatial size
/// must be divisible by the product of the strides on that axis.
///   models::DynamicUNet<Cpu> net{{.features = nnunet_features(5), .kernels = ..., .strides = ...}};
/// forward(x) returns the full-resolution scores; forward_all(x) returns every head, full
/// resolution first, when deep supervision is on and the net is training (else the first alone).
/// backward_all takes one gradient per returned output. nnU-Net checkpoints also hold
/// `...all_modules.*` aliases of every conv block's tensors: load them with
/// LoadOptions{.strict = false}.
template <class B = Cpu>
class DynamicUNet : public nn::Module<DynamicUNet<B>, B> {
 public:
  using Options = DynamicUNetOptions;
  explicit DynamicUNet(const Options& o = {});

  Tensor<float, B> forward(const Tensor<float, B>& x) { return run(x, false).front(); }
  Tensor<float, B> backward(const Tensor<float, B>& dy) { return backward_all({dy}); }
  std::vector<Tensor<float, B>> forward_all(const Tensor<float, B>& x) {
    return run(x, o_.deep_supervision && this->training_);
  }
  Tensor<float, B> backward_all(const std::vector<Tensor<float, B>>& dys);

  /// nnU-Net's module names, in its named_parameters() order: encoder (stem, stages), then
  /// decoder stages, transpconvs, seg_layers.
  auto members() {
    const bool blocks = o_.residual_encoder;
    auto indexed = [](const char* prefix, const char* suffix) {
      return [prefix, suffix](std::size_t i) { return prefix + std::to_string(i) + suffix; };
    };
    return nn::members(nn::child("encoder.stem.convs", stem_),
                       nn::children(encoder_, indexed("encoder.stages.", blocks ? ".blocks" : ".0.convs")),
                       nn::children(decoder_, indexed("decoder.stages.", ".convs")),
                       nn::children(transpconvs_, indexed("decoder.transpconvs.", "")),
                       nn::children(seg_layers_, indexed("decoder.seg_layers.", "")));
  }

  const Options& options() const { return o_; }
  std::size_t stages() const { return encoder_.size(); }
  /// Whether backward computes the gradient of the input (default on). Training does not
  /// need it: off, backward returns an undefined tensor and the first conv skips that pass.
  void set_input_gradient(bool on);

 private:
  std::vector<Tensor<float, B>> run(const Tensor<float, B>& x, bool all_heads);

  Options o_;
  std::optional<dynamic_unet::StackedConvs<B>> stem_;  // ResEnc's one-conv stem
  std::vector<dynamic_unet::EncoderStage<B>> encoder_;
  std::vector<dynamic_unet::StackedConvs<B>> decoder_;
  std::vector<nn::ConvTranspose3d<B>> transpconvs_;
  std::vector<nn::Conv3d<B>> seg_layers_;
  // What backward needs from the latest training forward: which heads ran, channel splits.
  std::vector<bool> head_ran_;
  std::vector<std::int64_t> up_channels_;
};

// ----------------------------------------------------------------------------------------
// Implementation

inline std::vector<std::int64_t> nnunet_features(std::size_t stages, std::int64_t base, std::int64_t cap) {
  std::vector<std::int64_t> f;
  for (std::size_t i = 0; i < stages; ++i) f.push_back(std::min(base << i, cap));
  return f;
}

namespace dynamic_unet {
template <class B>
StackedConvs<B> stacked(const DynamicUNetOptions& o, std::int64_t convs, std::int64_t in, std::int64_t out, const Dhw& k,
                        const Dhw& stride) {
  return nn::repeat(static_cast<std::size_t>(convs), [&](std::size_t i) {
    return ConvNormAct<B>{nn::Conv3d<B>{{.in_channels = i == 0 ? in : out, .out_channels = out, .kernel = k,
                                         .stride = i == 0 ? stride : Dhw{1, 1, 1},
                                         .padding = {(k[0] - 1) / 2, (k[1] - 1) / 2, (k[2] - 1) / 2}, .bias = o.conv_bias}},
                          nn::InstanceNorm3d<B>{{.num_features = out, .eps = 1e-5, .affine = true}},
                          nn::LeakyReLU<B>{{.negative_slope = o.negative_slope}}};
  });
}

template <class B>
ConvNorm<B> conv_norm(const DynamicUNetOptions& o, std::int64_t in, std::int64_t out, const Dhw& k, bool bias) {
  return {nn::Conv3d<B>{{.in_channels = in, .out_channels = out, .kernel = k,
                         .padding = {(k[0] - 1) / 2, (k[1] - 1) / 2, (k[2] - 1) / 2}, .bias = bias && o.conv_bias}},
          nn::InstanceNorm3d<B>{{.num_features = out, .eps = 1e-5, .affine = true}}};
}

template <class B>
StackedBlocks<B> residual_blocks(const DynamicUNetOptions& o, std::int64_t blocks, std::int64_t in, std::int64_t out,
                                 const Dhw& k, const Dhw& stride) {
  return nn::repeat(static_cast<std::size_t>(blocks), [&](std::size_t i) {
    const std::int64_t cin = i == 0 ? in : out;
    const Dhw s = i == 0 ? stride : Dhw{1, 1, 1};
    const bool strided = s != Dhw{1, 1, 1}, project = cin != out;
    // The skip's projection never has a bias (BasicBlockD passes conv_bias=False).
    auto skip = [&]() -> ResidualSkip<B> {
      const nn::Pool3dOptions pool{.kernel = s, .stride = s};
      if (strided && project) return nn::Sequential<nn::AvgPool3d<B>, ConvNorm<B>>{pool, conv_norm<B>(o, cin, out, {1, 1, 1}, false)};
      if (strided) return nn::Sequential<nn::AvgPool3d<B>>{pool};
      if (project) return nn::Sequential<ConvNorm<B>>{conv_norm<B>(o, cin, out, {1, 1, 1}, false)};
      return nn::Identity<B>{};
    };
    using Body = nn::Sequential<nn::Named<"conv1", ConvNormAct<B>>, nn::Named<"conv2", ConvNorm<B>>>;
    Body body{stacked<B>(o, 1, cin, out, k, s)[0], conv_norm<B>(o, out, out, k, true)};
    return BasicBlock<B>{nn::Residual{nn::Named<"", Body>{std::move(body)}, nn::Named<"skip", ResidualSkip<B>>{skip()}},
                         nn::LeakyReLU<B>{{.negative_slope = o.negative_slope}}};
  });
}
}  // namespace dynamic_unet

template <class B>
DynamicUNet<B>::DynamicUNet(const Options& o) : o_(o) {
  const std::size_t n = o.features.size();
  auto check_size = [&](std::size_t got, std::size_t want, const char* field) {
    require(got == want, [&] {
      return ErrorInfo{.where = "DynamicUNet", .field = field,
                       .expected = std::to_string(want) + " entries (one per " + (want == n ? "stage" : "decoder stage") + ")",
                       .actual = std::to_string(got)};
    });
  };
  require(n >= 2, [&] {
    return ErrorInfo{.where = "DynamicUNet", .field = "features", .expected = "at least 2 stages", .actual = std::to_string(n)};
  });
  check_size(o.kernels.size(), n, "kernels");
  check_size(o.strides.size(), n, "strides");
  check_size(o.convs_per_stage.size(), n, "convs_per_stage");
  check_size(o.convs_per_stage_decoder.size(), n - 1, "convs_per_stage_decoder");
  for (std::size_t s = 0; s < n; ++s)
    require(o.convs_per_stage[s] >= 1 && (s + 1 == n || o.convs_per_stage_decoder[s] >= 1), [&] {
      return ErrorInfo{.where = "DynamicUNet", .field = "convs_per_stage", .expected = ">= 1 conv per stage",
                       .actual = "0 at stage " + std::to_string(s)};
    });
  std::int64_t in = o.in_channels;
  if (o.residual_encoder) {
    stem_ = dynamic_unet::stacked<B>(o, 1, in, o.features[0], o.kernels[0], {1, 1, 1});
    in = o.features[0];
  }
  for (std::size_t s = 0; s < n; ++s) {
    if (o.residual_encoder)
      encoder_.push_back(dynamic_unet::residual_blocks<B>(o, o.convs_per_stage[s], in, o.features[s], o.kernels[s], o.strides[s]));
    else
      encoder_.push_back(dynamic_unet::stacked<B>(o, o.convs_per_stage[s], in, o.features[s], o.kernels[s], o.strides[s]));
    in = o.features[s];
  }
  for (std::size_t j = 0; j + 1 < n; ++j) {
    const std::size_t below = n - 1 - j, skip = n - 2 - j;
    const std::int64_t cs = o.features[skip];
    transpconvs_.push_back(nn::ConvTranspose3d<B>{{.in_channels = o.features[below], .out_channels = cs,
                                                   .kernel = o.strides[below], .stride = o.strides[below], .bias = o.conv_bias}});
    decoder_.push_back(dynamic_unet::stacked<B>(o, o.convs_per_stage_decoder[j], 2 * cs, cs, o.kernels[skip], {1, 1, 1}));
    seg_layers_.push_back(nn::Conv3d<B>{{.in_channels = cs, .out_channels = o.num_classes, .kernel = {1, 1, 1}}});
  }
  this->set_path("");
}

template <class B>
std::vector<Tensor<float, B>> DynamicUNet<B>::run(const Tensor<float, B>& x, bool all_heads) {
  this->require_input("DynamicUNet", x, 5, o_.in_channels);
  const std::size_t n = encoder_.size();
  // In eval mode every layer keeps its output buffer for the next call; each is released here
  // once consumed, so a call holds only the tensors still live (as PyTorch under no_grad).
  std::vector<Tensor<float, B>> skips;
  Tensor<float, B> h = x;
  if (stem_) h = stem_->forward(std::move(h));
  for (std::size_t s = 0; s < n; ++s) {
    skips.push_back(h = encoder_[s].forward(std::move(h)));
    if (s == 0 && stem_) stem_->release_outputs();
  }
  std::vector<Tensor<float, B>> heads;  // deepest first; reversed at the end as nnU-Net does
  head_ran_.assign(n - 1, false);
  up_channels_.assign(n - 1, 0);
  for (std::size_t j = 0; j + 1 < n; ++j) {
    Tensor<float, B> u = transpconvs_[j].forward(h);
    if (j == 0) {
      skips[n - 1] = Tensor<float, B>();  // the bottleneck's output: read by the first transpconv alone
      encoder_[n - 1].release_outputs();
    } else {
      decoder_[j - 1].release_outputs();  // its output h: read by its head (above) and this transpconv
    }
    const Tensor<float, B>& skip = skips[n - 2 - j];
    require(u.shape() == skip.shape(), [&] {
      return ErrorInfo{.where = this->where("DynamicUNet"), .field = "decoder stage " + std::to_string(j) + " up-sampled size",
                       .expected = "the skip's " + skip.shape().to_string(), .actual = u.shape().to_string(),
                       .detail = "the input " + x.shape().to_string() +
                                 " must be divisible by the product of the strides on each axis"};
    });
    up_channels_[j] = u.size(1);
    Tensor<float, B> c = ops::concat_channels(u, skip);
    u = Tensor<float, B>();
    transpconvs_[j].release_outputs();
    skips[n - 2 - j] = Tensor<float, B>();
    encoder_[n - 2 - j].release_outputs();
    h = decoder_[j].forward(std::move(c));  // the concatenation goes once the first conv has read it
    if (all_heads || j + 2 == n) {
      heads.push_back(seg_layers_[j].forward(h));
      head_ran_[j] = true;
    }
  }
  decoder_[n - 2].release_outputs();
  std::reverse(heads.begin(), heads.end());
  return heads;
}

template <class B>
Tensor<float, B> DynamicUNet<B>::backward_all(const std::vector<Tensor<float, B>>& dys) {
  const std::size_t n = encoder_.size();
  const auto ran = static_cast<std::size_t>(std::count(head_ran_.begin(), head_ran_.end(), true));
  require(ran > 0 && dys.size() == ran, [&] {
    return ErrorInfo{.where = this->where("DynamicUNet"), .field = "output gradients",
                     .expected = ran == 0 ? "a training-mode forward first" : std::to_string(ran) + " (one per returned output)",
                     .actual = std::to_string(dys.size())};
  });
  // dys[0] is the full-resolution head, that of decoder stage n - 2.
  std::vector<Tensor<float, B>> skip_grads(n);
  // Walk the decoder from the top (stage n - 2) down to the deepest stage.
  Tensor<float, B> from_above;  // dL/d(output of decoder stage j), through stage j + 1's transpconv
  std::size_t next = 0;
  for (std::size_t j = n - 1; j-- > 0;) {
    Tensor<float, B> gj;
    if (head_ran_[j]) gj = seg_layers_[j].backward(dys[next++]);
    if (from_above.defined()) {
      if (gj.defined())
        ops::accumulate(gj, from_above);
      else
        gj = from_above;
    }
    const Tensor<float, B> dc = decoder_[j].backward(std::move(gj));
    const std::int64_t up = up_channels_[j], total = dc.size(1);
    skip_grads[n - 2 - j] = ops::channel_range(dc, up, total);
    from_above = transpconvs_[j].backward(ops::channel_range(dc, 0, up));
  }
  head_ran_.assign(n - 1, false);
  // from_above is now dL/d(deepest encoder output).
  Tensor<float, B> gx = from_above;
  for (std::size_t s = n; s-- > 0;) {
    if (s + 1 < n) ops::accumulate(skip_grads[s], gx), gx = skip_grads[s];
    gx = encoder_[s].backward(std::move(gx));
  }
  if (stem_) gx = stem_->backward(std::move(gx));
  return gx;
}

template <class B>
void DynamicUNet<B>::set_input_gradient(bool on) {
  // The stem's conv (ResEnc), else the first conv of the first stage (plain encoder).
  if (stem_) {
    (*stem_)[0].template get<0>().set_input_gradient(on);
    return;
  }
  auto* plain = encoder_.front().template get_if<dynamic_unet::StackedConvs<B>>();
  if (plain) (*plain)[0].template get<0>().set_input_gradient(on);
}

}  // namespace medseg::models
