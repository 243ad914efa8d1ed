// LayerNorm (torch.nn.LayerNorm over the last axis of token tensors [..., C], as in UNETR and
// nnFormer), and the same normalisation over the channel axis of NCDHW volumes (ConvNeXt's
// "channels_first" LayerNorm, MedNeXt), which avoids permuting a volume to channels-last.
#pragma once

#include <cstdint>
#include <string>

#include "../backends/ops.hpp"
#include "normalization.hpp"

namespace medseg::nn {

/// Which axis holds the normalised features.
enum class LayerNormAxis { last, channels };

struct LayerNormOptions {
  std::int64_t normalized_shape = 1;  // the feature count C
  double eps = 1e-5;
  bool elementwise_affine = true;
  LayerNormAxis axis = LayerNormAxis::last;
};

/// last: x [..., C]; channels: x [N, C, ...]. Same shape out. Parameters "weight", "bias" [C].
///   LayerNorm<Cpu> ln{{.normalized_shape = 768}};
///   LayerNorm<Cpu> ln3d{{.normalized_shape = 32, .axis = LayerNormAxis::channels}};
template <class B = Cpu>
class LayerNorm : public detail::Normalization<LayerNorm<B>, B> {
 public:
  using Options = LayerNormOptions;
  static constexpr std::string_view kind = "LayerNorm";
  LayerNorm(const Options& o);  // NOLINT: implicit, as every layer

  Tensor<float, B> forward(const Tensor<float, B>& x);
  /// dy by reference: dx is always a fresh tensor.
  Tensor<float, B> backward(const Tensor<float, B>& dy) {
    this->check_backward(dy);
    return this->backward_into(dy.contiguous(), Tensor<float, B>::empty(dy.shape()));
  }

 private:
  Options o_;
};

// ----------------------------------------------------------------------------------------
// Implementation

template <class B>
LayerNorm<B>::LayerNorm(const Options& o)
    : detail::Normalization<LayerNorm<B>, B>("normalized_shape", o.normalized_shape, o.eps, o.elementwise_affine), o_(o) {}

template <class B>
Tensor<float, B> LayerNorm<B>::forward(const Tensor<float, B>& x) {
  const bool last = o_.axis == LayerNormAxis::last;
  const std::int64_t c = o_.normalized_shape;
  require(x.defined() && x.rank() >= (last ? 1 : 2) && x.size(last ? -1 : 1) == c, [&] {
    return ErrorInfo{.where = this->where("LayerNorm"), .field = last ? "input (last axis)" : "input channels (axis 1)",
                     .expected = std::to_string(c) + " features",
                     .actual = x.defined() ? x.shape().to_string() : "an undefined tensor"};
  });
  const Tensor<float, B> xc = x.contiguous();
  auto y = this->output_buffer(x.shape());
  const ops::NormSets sets =
      last ? ops::NormSets::last_axis(x.numel() / c, c) : ops::NormSets::channels(x.size(0), c, x.numel() / (x.size(0) * c));
  this->keep(xc, this->normalize(sets, xc, y));
  return y;
}

}  // namespace medseg::nn
