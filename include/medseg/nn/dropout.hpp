// Dropout (element-wise), Dropout3d (whole channels of NCDHW) and DropPath (whole samples,
// "stochastic depth" of transformer blocks), seeded from the counter-based RNG: a mask is a
// pure function of (seed, the layer's path, the forward count), so runs repeat exactly and
// backward recomputes the mask instead of storing it. Eval mode is the identity.
#pragma once

#include <concepts>
#include <cstdint>
#include <string>

#include "../backends/ops.hpp"
#include "../core/rng.hpp"
#include "concepts.hpp"

namespace medseg::nn {

/// What a dropped unit is.
enum class DropUnit { element, channel, sample };

struct DropoutOptions {
  float p = 0.5f;          // probability of dropping a unit
  std::uint64_t seed = 0;  // with the layer path and the step, names the mask
};

/// A random layer's draw counter, offered by visit_buffers to visitors that accept it (the
/// trainer's checkpoints persist it so a resumed run draws the same masks). Visitors that
/// take only Buffer<B>& (state dicts, nn::buffers) never see it, so weights files are unchanged.
struct RandomCounter {
  std::string path;
  std::uint64_t* value;
};

namespace detail {
template <class B, DropUnit U>
class DropoutLayer : public LayerBase<B> {
 public:
  using Options = DropoutOptions;
  DropoutLayer(const Options& o) : o_(o) {  // NOLINT: implicit, as every layer
    require(o.p >= 0.0f && o.p < 1.0f, [&] {
      return ErrorInfo{.where = kind(), .field = "p", .expected = "in [0, 1)", .actual = std::to_string(o.p)};
    });
  }

  Tensor<float, B> forward(const Tensor<float, B>& x) {
    require(x.defined() && x.rank() >= (U == DropUnit::element ? 1 : 2), [&] {
      return ErrorInfo{.where = this->where(kind()), .field = "input", .expected = U == DropUnit::element ? "rank >= 1" : "[N, C, ...]",
                       .actual = x.defined() ? x.shape().to_string() : "an undefined tensor"};
    });
    if (!this->training_ || o_.p == 0.0f) {
      shape_ = x.shape();
      active_ = false;
      return x;
    }
    std::int64_t unit = 1;
    if (U == DropUnit::channel) unit = x.numel() / std::max<std::int64_t>(x.size(0) * x.size(1), 1);
    if (U == DropUnit::sample) unit = x.numel() / std::max<std::int64_t>(x.size(0), 1);
    mask_ = {o_.p, o_.seed, RandomStream(o_.seed, path_hash()).substream(step_++).stream(), std::max<std::int64_t>(unit, 1)};
    auto y = Tensor<float, B>::empty(x.shape());
    ops::apply_dropout(mask_, x.contiguous(), y);
    shape_ = x.shape();
    active_ = true;
    kept_ = true;
    return y;
  }
  Tensor<float, B> backward(const Tensor<float, B>& dy) {
    this->require_forward(kind(), kept_ || !active_);
    this->require_grad_shape(kind(), dy, shape_);
    kept_ = false;
    if (!active_) return dy;
    auto dx = Tensor<float, B>::empty(shape_);
    ops::apply_dropout(mask_, dy.contiguous(), dx);
    return dx;
  }

  const Options& options() const { return o_; }
  /// Forward calls so far in training mode; the next mask is drawn for this step. Set it to
  /// replay a mask (gradient checks) or to resume a run.
  std::uint64_t step() const { return step_; }
  void set_step(std::uint64_t s) { step_ = s; }
  template <class F>
  void visit_buffers(F&& f) {
    if constexpr (std::invocable<F&, RandomCounter&>) {
      RandomCounter counter{this->path_, &step_};
      f(counter);
    }
  }

 private:
  static constexpr const char* kind() {
    return U == DropUnit::element ? "Dropout" : U == DropUnit::channel ? "Dropout3d" : "DropPath";
  }
  std::uint64_t path_hash() const {
    std::uint64_t h = 1469598103934665603ull;  // FNV-1a: layers at different paths draw different masks
    for (const char ch : this->path_) h = (h ^ static_cast<unsigned char>(ch)) * 1099511628211ull;
    return h;
  }

  Options o_;
  std::uint64_t step_ = 0;
  ops::DropoutMask mask_;
  Shape shape_;
  bool active_ = false, kept_ = false;
};
}  // namespace detail

/// Zeroes each element with probability p and scales the rest by 1 / (1 - p).
template <class B = Cpu>
using Dropout = detail::DropoutLayer<B, DropUnit::element>;
/// Zeroes whole channels of [N, C, D, H, W] (torch.nn.Dropout3d).
template <class B = Cpu>
using Dropout3d = detail::DropoutLayer<B, DropUnit::channel>;
/// Zeroes whole samples (timm's DropPath / stochastic depth), meant inside a Residual body.
template <class B = Cpu>
using DropPath = detail::DropoutLayer<B, DropUnit::sample>;

}  // namespace medseg::nn
