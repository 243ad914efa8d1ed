// VNetDeepSup: MedicalSeg's VNet with deep supervision. A 1x1x1 conv to class scores on each
// of the up_tr256, up_tr128 and up_tr64 outputs, trilinearly up-sampled to full resolution,
// returned with the main output in training. It is VNet's own graph (vnet::Graph with its
// three inner levels wrapped in vnet::Tapped), so VNet's weights and names carry over as they are.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "../nn.hpp"
#include "vnet.hpp"

namespace medseg::models {

namespace vnet {
/// L itself, whose output can be observed and whose backward can take an extra gradient for
/// that output: the junction where a deep-supervision head branches off a level.
/// Copying shares weights, as every layer does (the captured output is a handle too).
template <nn::Layer L>
class Tapped : public L {
 public:
  using B = typename L::backend;

  Tapped(L layer) : L(std::move(layer)) {}  // NOLINT: implicit, so build() can wrap a level

  /// L's forward; the output is kept (as a handle) while capture is on.
  Tensor<float, B> forward(const Tensor<float, B>& x);
  /// L's backward of dy plus the gradient given to add_output_gradient since the forward.
  Tensor<float, B> backward(const Tensor<float, B>& dy);

  /// Keep the next forwards' outputs (training with heads) or not (eval reuses buffers).
  void capture(bool on) {
    capture_ = on;
    if (!on) output_ = Tensor<float, B>();
  }
  /// The latest captured output (undefined without capture).
  const Tensor<float, B>& output() const { return output_; }
  /// dL/d(output) from a head; the next backward adds it to the gradient from above.
  void add_output_gradient(const Tensor<float, B>& g);

 private:
  bool capture_ = false;
  Tensor<float, B> output_, extra_;
};
}  // namespace vnet

/// x [N, in_channels, D, H, W] -> class scores [N, num_classes, D, H, W], as VNet.
/// forward(x) returns the main output alone. forward_all(x) in training returns four full-
/// resolution outputs: main, then the heads on up_tr64, up_tr128 and up_tr256 (finest origin
/// first, as nnU-Net orders its heads, so loss::DeepSupervision's 1, 1/2, 1/4, 1/8 weights
/// fall off with the head's depth); in eval mode it returns main alone. backward_all takes one
/// gradient per returned output. Parameters: VNet's names plus the heads "deep_sup64.weight",
/// "deep_sup64.bias", "deep_sup128.*" and "deep_sup256.*" (1x1x1 convs with bias, named after
/// the level they read as MedicalSeg names its levels).
///   models::VNetDeepSup<Cpu> net{{.in_channels = 1, .num_classes = 3}};
template <class B = Cpu>
class VNetDeepSup : public nn::Module<VNetDeepSup<B>, B> {
 public:
  using Options = VNetOptions;
  /// The levels the heads read, in output order (up_tr64, up_tr128, up_tr256).
  static constexpr std::array<int, 3> head_levels{64, 128, 256};

  explicit VNetDeepSup(const Options& o = {});

  Tensor<float, B> forward(const Tensor<float, B>& x) { return run(x, false).front(); }
  Tensor<float, B> backward(const Tensor<float, B>& dy) { return backward_all({dy}); }
  std::vector<Tensor<float, B>> forward_all(const Tensor<float, B>& x) { return run(x, this->training_); }
  Tensor<float, B> backward_all(const std::vector<Tensor<float, B>>& dys);

  /// PyTorch's order: VNet's modules (at this layer's path), then the heads.
  auto members() {
    auto head = [](std::size_t i) { return "deep_sup" + std::to_string(head_levels[i]); };
    return nn::members(nn::child("", graph_), nn::children(heads_, head),
                       nn::children(upsample_, [head](std::size_t i) { return head(i) + "_upsample"; }));
  }

  const Options& options() const { return o_; }
  /// Whether backward computes the gradient of the input (default on), as VNet's.
  void set_input_gradient(bool on) { vnet::first_conv(graph_).set_input_gradient(on); }

 private:
  using Graph = vnet::Graph<B, vnet::Tapped>;
  std::vector<Tensor<float, B>> run(const Tensor<float, B>& x, bool with_heads);
  /// f(tap, i) for the tapped level whose output head i reads (0: up_tr64, 1: up_tr128, 2: up_tr256).
  template <class F>
  void for_each_tap(F&& f);

  Options o_;
  Graph graph_;
  std::vector<nn::Conv3d<B>> heads_;
  std::vector<nn::Upsample<B>> upsample_;
  bool heads_ran_ = false, forward_ran_ = false;
};

// ----------------------------------------------------------------------------------------
// Implementation

namespace vnet {
template <nn::Layer L>
Tensor<float, typename L::backend> Tapped<L>::forward(const Tensor<float, B>& x) {
  extra_ = Tensor<float, B>();
  Tensor<float, B> y = L::forward(x);
  if (capture_) output_ = y;
  return y;
}

template <nn::Layer L>
Tensor<float, typename L::backend> Tapped<L>::backward(const Tensor<float, B>& dy) {
  output_ = Tensor<float, B>();
  if (!extra_.defined()) return L::backward(dy);
  // A fresh sum: backward must not write into dy, which its caller may still hold.
  auto g = Tensor<float, B>::empty(dy.shape());
  ops::add(dy.contiguous(), extra_, g);
  extra_ = Tensor<float, B>();
  return L::backward(g);
}

template <nn::Layer L>
void Tapped<L>::add_output_gradient(const Tensor<float, B>& g) {
  if (extra_.defined())
    ops::accumulate(extra_, g.contiguous());
  else
    extra_ = g.contiguous().clone();
}
}  // namespace vnet

template <class B>
VNetDeepSup<B>::VNetDeepSup(const Options& o) : o_(o), graph_(vnet::build<B, vnet::Tapped>(o)) {
  // Head i reads up_tr{64,128,256}: 4, 8 and 16 times `width` channels, at the resolution
  // after the first 1, 2 and 3 down-samplings.
  const std::array<std::int64_t, 3> channels{4 * o.width, 8 * o.width, 16 * o.width};
  for (std::size_t i = 0; i < 3; ++i) {
    heads_.push_back(nn::Conv3d<B>{{.in_channels = channels[i], .out_channels = o.num_classes, .kernel = {1, 1, 1}}});
    upsample_.push_back(nn::Upsample<B>{});  // sized to each input in run()
  }
  this->set_path("");
}

template <class B>
template <class F>
void VNetDeepSup<B>::for_each_tap(F&& f) {
  auto& tap64 = graph_.template get<1>().inner();  // up_tr32's inner part: level 64, output up_tr64's
  auto& tap128 = tap64.inner();
  auto& tap256 = tap128.inner();
  f(tap64, 0), f(tap128, 1), f(tap256, 2);
}

template <class B>
std::vector<Tensor<float, B>> VNetDeepSup<B>::run(const Tensor<float, B>& x, bool with_heads) {
  for_each_tap([&](auto& tap, std::size_t) { tap.capture(with_heads); });
  std::vector<Tensor<float, B>> out{graph_.forward(x)};
  forward_ran_ = this->training_;
  heads_ran_ = with_heads;
  if (!with_heads) return out;
  out.resize(4);
  // To the input's size rather than by the strides: where a down kernel exceeds its stride
  // (MedicalSeg's 2x2x4 / 2x2x1) a level's size is not the input's divided by the strides.
  const nn::UpsampleOptions full{.size = {x.size(2), x.size(3), x.size(4)}, .align_corners = false};
  for_each_tap([&](auto& tap, std::size_t i) {
    upsample_[i] = nn::Upsample<B>{full};
    upsample_[i].set_path(nn::join_path(this->path_, "deep_sup" + std::to_string(head_levels[i]) + "_upsample"));
    out[i + 1] = upsample_[i].forward(heads_[i].forward(tap.output()));
    tap.capture(false);  // the heads keep what their backward needs
  });
  return out;
}

template <class B>
Tensor<float, B> VNetDeepSup<B>::backward_all(const std::vector<Tensor<float, B>>& dys) {
  const std::size_t expected = heads_ran_ ? 4 : 1;
  require(forward_ran_ && dys.size() == expected, [&] {
    return ErrorInfo{.where = this->where("VNetDeepSup"), .field = "output gradients",
                     .expected = forward_ran_ ? std::to_string(expected) + " (one per returned output)"
                                              : "a training-mode forward first",
                     .actual = std::to_string(dys.size())};
  });
  if (heads_ran_)
    for_each_tap([&](auto& tap, std::size_t i) { tap.add_output_gradient(heads_[i].backward(upsample_[i].backward(dys[i + 1]))); });
  forward_ran_ = heads_ran_ = false;
  return graph_.backward(dys[0]);
}

}  // namespace medseg::models
