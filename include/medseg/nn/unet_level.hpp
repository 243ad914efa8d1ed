// UNetLevel: one level of a U-Net as a type, nesting to any depth through its Inner layer:
//   e = encoder(x);  y = decoder(cat(up(inner(down(e))), e))
// A whole U-Net is UNetLevel<..., UNetLevel<..., UNetLevel<..., Bottleneck, ...>, ...>, ...>.
// Backward runs the same path in reverse and sums e's two gradients (skip and down path).
#pragma once

#include <string>
#include <utility>

#include "../backends/ops.hpp"
#include "concepts.hpp"
#include "members.hpp"

namespace medseg::nn {

/// Order of the skip concatenation. nnU-Net concatenates (upsampled, skip); MONAI's
/// SkipConnection concatenates (skip, upsampled).
enum class SkipOrder { upsampled_first, skip_first };

/// Children are named "encoder", "down", "inner", "up", "decoder" unless Named.
/// Shapes: up(inner(down(e))) must have e's batch and spatial sizes; the decoder takes the
/// sum of both channel counts.
template <Layer Encoder, Layer Down, Layer Inner, Layer Up, Layer Decoder>
class UNetLevel : public Module<UNetLevel<Encoder, Down, Inner, Up, Decoder>, typename Encoder::backend> {
 public:
  using B = typename Encoder::backend;

  UNetLevel(Encoder encoder, Down down, Inner inner, Up up, Decoder decoder,
            SkipOrder order = SkipOrder::upsampled_first)
      : encoder_(std::move(encoder)), down_(std::move(down)), inner_(std::move(inner)), up_(std::move(up)),
        decoder_(std::move(decoder)), order_(order) {
    this->set_path("");
  }

  Tensor<float, B> forward(const Tensor<float, B>& x) {
    const Tensor<float, B> e = encoder_.forward(x);
    Tensor<float, B> u = down_.forward(e);
    u = inner_.forward(std::move(u));
    release_child_outputs(down_);  // each consumed: see Sequential
    u = up_.forward(std::move(u));
    release_child_outputs(inner_);
    bool ok = u.rank() == e.rank() && u.size(0) == e.size(0);
    for (int i = 2; ok && i < e.rank(); ++i) ok = u.size(i) == e.size(i);
    require(ok, [&] {
      return ErrorInfo{.where = this->where("UNetLevel"), .field = "upsampled path",
                       .expected = "the skip's batch and spatial sizes, as in " + e.shape().to_string(),
                       .actual = u.shape().to_string(),
                       .detail = "input sizes must be divisible by the product of the down-sampling strides"};
    });
    skip_channels_ = e.size(1);
    up_channels_ = u.size(1);
    auto c = order_ == SkipOrder::skip_first ? ops::concat_channels(e, u) : ops::concat_channels(u, e);
    u = Tensor<float, B>();
    release_child_outputs(up_);
    return decoder_.forward(std::move(c));  // a decoder that takes it by value frees it when read
  }

  Tensor<float, B> backward(Tensor<float, B> dy) {
    const Tensor<float, B> dc = decoder_.backward(std::move(dy));
    const std::int64_t total = skip_channels_ + up_channels_;
    const bool skip_first = order_ == SkipOrder::skip_first;
    const auto de = skip_first ? ops::channel_range(dc, 0, skip_channels_) : ops::channel_range(dc, up_channels_, total);
    const auto du = skip_first ? ops::channel_range(dc, skip_channels_, total) : ops::channel_range(dc, 0, up_channels_);
    ops::accumulate(de, down_.backward(inner_.backward(up_.backward(du))).contiguous());
    return encoder_.backward(de);  // de is a view of dc: a copy is made where a layer needs one
  }

  auto members() {
    return nn::members(child("encoder", encoder_), child("down", down_), child("inner", inner_), child("up", up_),
                       child("decoder", decoder_));
  }

  Encoder& encoder() { return encoder_; }
  Inner& inner() { return inner_; }
  Decoder& decoder() { return decoder_; }

 private:
  Encoder encoder_;
  Down down_;
  Inner inner_;
  Up up_;
  Decoder decoder_;
  SkipOrder order_;
  std::int64_t skip_channels_ = 0, up_channels_ = 0;
};

}  // namespace medseg::nn
