// Concat<Body>: a concat skip, y = cat(x, f(x)) along channels (MONAI's SkipConnection,
// DenseNet-style blocks). Backward splits dy by channels: the first part flows straight to
// x, the second through f, and the two input gradients are summed.
#pragma once

#include <string>
#include <utility>

#include "../backends/ops.hpp"
#include "concepts.hpp"
#include "members.hpp"

namespace medseg::nn {

/// y = cat([x, body(x)], 1), or cat([body(x), x], 1) with body_first. The body keeps N and
/// D, H, W; its channels add to x's. The child is named "body" unless Named (MONAI calls it
/// "submodule": use Named<"submodule", Body>).
template <Layer Body>
class Concat : public Module<Concat<Body>, typename Body::backend> {
 public:
  using B = typename Body::backend;

  explicit Concat(Body body, bool body_first = false) : body_(std::move(body)), body_first_(body_first) {
    this->set_path("");
  }

  Tensor<float, B> forward(const Tensor<float, B>& x) {
    this->require_input("Concat", x, x.rank() >= 2 ? x.rank() : 2, -1, "N, C, ...");
    const Tensor<float, B> f = body_.forward(x);
    bool ok = f.rank() == x.rank() && f.size(0) == x.size(0);
    for (int i = 2; ok && i < x.rank(); ++i) ok = f.size(i) == x.size(i);
    require(ok, [&] {
      return ErrorInfo{.where = this->where("Concat"), .field = "body output",
                       .expected = "the input's batch and spatial sizes, as in " + x.shape().to_string(),
                       .actual = f.shape().to_string()};
    });
    x_channels_ = x.size(1);
    out_shape_ = f.shape();
    out_shape_[1] += x_channels_;
    auto y = body_first_ ? ops::concat_channels(f, x) : ops::concat_channels(x, f);
    release_child_outputs(body_);  // f is consumed: see Sequential
    return y;
  }
  Tensor<float, B> backward(const Tensor<float, B>& dy) {
    this->require_grad_shape("Concat", dy, out_shape_);
    const std::int64_t c = out_shape_[1], fc = c - x_channels_;
    const auto dx_direct = body_first_ ? ops::channel_range(dy, fc, c) : ops::channel_range(dy, 0, x_channels_);
    const auto df = body_first_ ? ops::channel_range(dy, 0, fc) : ops::channel_range(dy, x_channels_, c);
    ops::accumulate(dx_direct, body_.backward(df).contiguous());
    return dx_direct;
  }

  auto members() { return nn::members(child("body", body_)); }

  Body& body() { return body_; }

 private:
  Body body_;
  bool body_first_;
  std::int64_t x_channels_ = 0;
  Shape out_shape_;
};

}  // namespace medseg::nn
