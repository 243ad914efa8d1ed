// The contract every layer keeps (dlib's layers_abstract.h as C++20 concepts), and LayerBase,
// the small state every layer shares: its parameter path (for names and error messages) and
// its train/eval mode. Composition types (Sequential, Residual, ...) rely on nothing else.
#pragma once

#include <concepts>
#include <string>
#include <string_view>
#include <utility>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "parameter.hpp"

namespace medseg::nn {

/// What the compiler cannot check, every layer promises:
/// - forward(x) returns a new tensor (or, in eval mode, the layer's reused output buffer)
///   and never writes into x. In training mode it keeps what backward needs (a handle to x,
///   statistics, indices); in eval mode it keeps nothing but that reusable output buffer.
/// - backward(dy) follows the latest training-mode forward: it returns dL/dx, adds
///   (never assigns) into every parameter's grad, never writes into dy, and drops what
///   forward kept. Calling it without such a forward throws Error.
/// - The eval-mode output buffer is reused only while nobody else holds it (its use_count is
///   1), so a caller that keeps an output never sees it overwritten.
/// - set_path(p) names the layer and its parameters ("encoder.0" gives "encoder.0.weight");
///   errors name the layer by that path and the offending shapes. Composition types name
///   their children when constructed, so a finished model needs no further call.
/// - Layers hold their tensors as handles: a copied layer shares its weights with the
///   original (as a Python reference to a module would). Build each layer where it is used,
///   or move it in; repeat() calls its factory once per copy for that reason.
template <class L>
concept Parametric = requires(L& l, const L& cl, const std::string& p) {
  typename L::backend;
  l.set_path(p);
  { cl.path() } -> std::convertible_to<std::string>;
  l.visit_parameters([](Parameter<typename L::backend>&) {});
  l.visit_buffers([](Buffer<typename L::backend>&) {});
};

template <class L>
concept Layer = Parametric<L> && requires(L& l, const L& cl, const Tensor<float, typename L::backend>& x, bool on) {
  { l.forward(x) } -> std::same_as<Tensor<float, typename L::backend>>;
  { l.backward(x) } -> std::same_as<Tensor<float, typename L::backend>>;
  l.train(on);
  { cl.training() } -> std::convertible_to<bool>;
};

/// "encoder" + "0" -> "encoder.0"; an empty prefix or name adds no dot.
inline std::string join_path(std::string_view prefix, std::string_view name) {
  if (prefix.empty()) return std::string(name);
  if (name.empty()) return std::string(prefix);
  return std::string(prefix) + "." + std::string(name);
}

/// The state every layer has. A layer with parameters, buffers or children derives from
/// nn::Module instead (members.hpp), which derives set_path, the visitors, train and
/// release_outputs from the one members() list the layer declares.
template <class B>
class LayerBase {
 public:
  using backend = B;

  const std::string& path() const { return path_; }
  void set_path(const std::string& path) { path_ = path; }
  bool training() const { return training_; }
  void train(bool on = true) { training_ = on; }
  void eval() { train(false); }
  template <class F>
  void visit_parameters(F&&) {}
  template <class F>
  void visit_buffers(F&&) {}
  /// Drops the eval-mode output buffer. A composition calls it on a child once the next child
  /// has consumed that output, so inference holds only the tensors still live (as PyTorch
  /// under no_grad) instead of one buffer per layer; compositions forward it to children.
  void release_outputs() { cached_output_ = Tensor<float, B>(); }

 protected:
  /// "Conv3d 'encoder.0'" (or just "Conv3d" for an unnamed root), for ErrorInfo::where.
  std::string where(std::string_view kind) const {
    return path_.empty() ? std::string(kind) : std::string(kind) + " '" + path_ + "'";
  }
  /// Throws unless x has `rank` axes and `channels` entries on axis 1 (-1: any).
  void require_input(std::string_view kind, const Tensor<float, B>& x, int rank, std::int64_t channels,
                     const char* layout = "NCDHW") const {
    require(x.defined() && x.rank() == rank, [&] {
      return ErrorInfo{.where = where(kind), .field = "input rank",
                       .expected = std::to_string(rank) + " (" + layout + ")",
                       .actual = x.defined() ? std::to_string(x.rank()) + " in " + x.shape().to_string() : "undefined"};
    });
    require(channels < 0 || x.size(1) == channels, [&] {
      return ErrorInfo{.where = where(kind), .field = "input channels",
                       .expected = std::to_string(channels), .actual = std::to_string(x.size(1)) + " in " + x.shape().to_string()};
    });
  }
  /// Throws unless a training-mode forward left `kept` for this backward.
  void require_forward(std::string_view kind, bool kept) const {
    require(kept, [&] {
      return ErrorInfo{.where = where(kind), .field = "backward",
                       .expected = "a training-mode forward first", .actual = training_ ? "no forward" : "eval mode",
                       .detail = "eval mode keeps nothing for backward; call train(true) before forward"};
    });
  }
  /// Throws unless dy has the shape forward produced.
  void require_grad_shape(std::string_view kind, const Tensor<float, B>& dy, const Shape& expected) const {
    require(dy.defined() && dy.shape() == expected, [&] {
      return ErrorInfo{.where = where(kind), .field = "grad_output", .expected = expected.to_string(),
                       .actual = dy.defined() ? dy.shape().to_string() : "undefined"};
    });
  }
  /// A fresh output tensor in training mode; in eval mode the cached one when nobody else
  /// holds it and the shape matches (inference reuses its buffers).
  Tensor<float, B> output_buffer(const Shape& shape) {
    if (training_) {
      cached_output_ = Tensor<float, B>();
      return Tensor<float, B>::empty(shape);
    }
    if (!(cached_output_.defined() && cached_output_.use_count() == 1 && cached_output_.shape() == shape))
      cached_output_ = Tensor<float, B>::empty(shape);
    return cached_output_;
  }
  /// dy as a contiguous tensor (a channel view from a concat is copied once).
  static Tensor<float, B> dense(const Tensor<float, B>& t) { return t.contiguous(); }
  /// Where a point-wise or per-set backward writes dx: into g itself when nobody else holds
  /// it (a gradient moved in by a composition) and the backend's kernels allow dx == dy
  /// (B::gradients_in_place), else fresh.
  static Tensor<float, B> gradient_buffer(const Tensor<float, B>& g) {
    if (B::gradients_in_place && g.use_count() == 1 && g.is_contiguous()) return g;
    return Tensor<float, B>::empty(g.shape());
  }

  std::string path_;
  bool training_ = true;
  Tensor<float, B> cached_output_;
};

/// l.release_outputs() where the layer has it (every LayerBase does); a no-op for a layer
/// written without LayerBase, which then simply keeps its buffers.
template <class L>
void release_child_outputs(L& l) {
  if constexpr (requires { l.release_outputs(); }) l.release_outputs();
}

/// A string usable as a template argument, for Named's child names.
template <std::size_t N>
struct FixedString {
  char text[N]{};
  constexpr FixedString(const char (&s)[N]) {  // NOLINT: implicit, so Named<"conv", L> reads well
    for (std::size_t i = 0; i < N; ++i) text[i] = s[i];
  }
  constexpr std::string_view view() const { return {text, N - 1}; }
};

/// L under a fixed child name, where the PyTorch module names its children rather than
/// numbering them: Sequential<Named<"conv", Conv3d<B>>, Named<"norm", GroupNorm<B>>> has
/// "conv.weight" and "norm.weight". An empty name ("") puts L's parameters directly under the
/// parent's path (PyTorch modules that call a child's layers inline).
template <FixedString Name, class L>
struct Named : L {
  static constexpr std::string_view child_name = Name.view();
  using L::L;
  Named(L layer) : L(std::move(layer)) {}  // NOLINT: implicit, so a plain L converts
};

/// The name a composition gives its child of type L: Named's own, else `fallback`.
template <class L>
std::string child_name(std::string_view fallback) {
  if constexpr (requires { L::child_name; })
    return std::string(L::child_name);
  else
    return std::string(fallback);
}

/// Every trainable parameter of `layer`, named by path (PyTorch's model.named_parameters()).
template <Parametric L>
ParameterList<typename L::backend> parameters(L& layer) {
  ParameterList<typename L::backend> out;
  layer.visit_parameters([&](Parameter<typename L::backend>& p) { out.push_back(p); });
  return out;
}

/// Every buffer of `layer` (running statistics), named by path.
template <Parametric L>
std::vector<Buffer<typename L::backend>> buffers(L& layer) {
  std::vector<Buffer<typename L::backend>> out;
  layer.visit_buffers([&](Buffer<typename L::backend>& b) { out.push_back(b); });
  return out;
}

/// Zeroes every parameter gradient of `layer`.
template <Parametric L>
void zero_grad(L& layer) {
  layer.visit_parameters([](Parameter<typename L::backend>& p) { p.grad.fill(0.0f); });
}

/// Names the layer as the root of a model (its paths start without a prefix) and returns it.
template <Parametric L>
L& name_root(L& layer, const std::string& prefix = "") {
  layer.set_path(prefix);
  return layer;
}

}  // namespace medseg::nn
