// Residual<Body, Projection>: y = f(x) + x, or f(x) + P(x) when a projection (a 1x1x1 conv,
// say) matches channels or resolution. The add's backward is a fork: dy flows into both
// branches unchanged and their input gradients are summed. Identity lives here as well.
#pragma once

#include <string>
#include <utility>

#include "../backends/ops.hpp"
#include "concepts.hpp"
#include "members.hpp"

namespace medseg::nn {

/// y = x; backward passes dy through. The default projection of Residual.
template <class B = Cpu>
class Identity : public LayerBase<B> {
 public:
  Tensor<float, B> forward(const Tensor<float, B>& x) { return x; }
  Tensor<float, B> backward(const Tensor<float, B>& dy) { return dy; }
};

/// y = body(x) + projection(x). Children are named "body" and "projection" unless Named
/// (Named<"", Body> puts the body's parameters directly under the residual's path, as a
/// PyTorch block that computes `x + self.ops(x)` names them "ops....": use Named<"ops", Body>).
///   Residual res{repeat(3, [] { return ConvNormAct<Cpu>{...}; })};     // x + f(x)
///   Residual proj{body, Conv3d<Cpu>{{.in_channels = 16, .out_channels = 32, .kernel = {1, 1, 1}}}};
template <Layer Body, Layer Projection = Identity<typename Body::backend>>
class Residual : public Module<Residual<Body, Projection>, typename Body::backend> {
 public:
  using B = typename Body::backend;
  static constexpr bool has_projection = !std::same_as<Projection, Identity<B>>;

  explicit Residual(Body body, Projection projection = Projection())
      : body_(std::move(body)), projection_(std::move(projection)) {
    this->set_path("");
  }

  Tensor<float, B> forward(const Tensor<float, B>& x) {
    const Tensor<float, B> f = body_.forward(x);
    const Tensor<float, B> s = projection_.forward(x);
    require(f.shape() == s.shape(), [&] {
      return ErrorInfo{.where = this->where("Residual"), .field = "branch shapes",
                       .expected = "body output equal to the " + std::string(has_projection ? "projection" : "input"),
                       .actual = f.shape().to_string() + " vs " + s.shape().to_string(),
                       .detail = has_projection ? "" : "add a projection when the body changes channels or size"};
    });
    out_shape_ = f.shape();
    auto y = this->output_buffer(f.shape());
    ops::add(f.contiguous(), s.contiguous(), y);
    release_child_outputs(body_);  // f and s are consumed: see Sequential
    release_child_outputs(projection_);
    return y;
  }
  Tensor<float, B> backward(const Tensor<float, B>& dy) {
    this->require_grad_shape("Residual", dy, out_shape_);
    const Tensor<float, B> g = dy.contiguous();
    Tensor<float, B> dx = body_.backward(g);
    if (!dx.defined()) {
      // The body computes no input gradient (it starts with a network's first layer, see
      // Conv3d::set_input_gradient): neither does the residual; the projection still
      // accumulates its parameters' gradients.
      (void)projection_.backward(g);
      return dx;
    }
    // A gradient nobody else holds takes the sum in place; the body may instead have passed
    // dy itself through (an identity) or a view of a larger tensor.
    if (dx.use_count() > 1 || !dx.is_contiguous() || dx.data() == g.data()) dx = dx.clone();
    ops::accumulate(dx, projection_.backward(g).contiguous());
    return dx;
  }

  auto members() { return nn::members(child("body", body_), child("projection", projection_)); }

  Body& body() { return body_; }
  Projection& projection() { return projection_; }

 private:
  Body body_;
  Projection projection_;
  Shape out_shape_;
};

template <Layer Body>
Residual(Body) -> Residual<Body, Identity<typename Body::backend>>;

}  // namespace medseg::nn
