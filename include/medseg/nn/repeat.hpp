// Repeated<L>: one layer type repeated a number of times chosen at run time (a VNet stage's
// n convolutions, nnU-Net's per-stage conv count). The count is data, the block is a type;
// children are named "0", "1", ... like a torch.nn.Sequential of identical blocks.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "concepts.hpp"
#include "members.hpp"

namespace medseg::nn {

/// A run of layers of one type: forward applies them in order, backward in reverse.
template <Layer L>
class Repeated : public Module<Repeated<L>, typename L::backend> {
 public:
  using B = typename L::backend;

  explicit Repeated(std::vector<L> layers) : layers_(std::move(layers)) { this->set_path(""); }
  /// other's layers, named prefix + index ("unit0", "unit1", ... as MONAI's ResidualUnit).
  Repeated(Repeated other, std::string prefix) : layers_(std::move(other.layers_)), prefix_(std::move(prefix)) {
    this->set_path("");
  }

  /// x by value, as Sequential's: a moved-in input is freed once the first layer has read it.
  Tensor<float, B> forward(Tensor<float, B> x) {
    Tensor<float, B> y = std::move(x);
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      y = layers_[i].forward(std::move(y));
      if (i > 0) release_child_outputs(layers_[i - 1]);  // consumed: see Sequential
    }
    return y;
  }
  Tensor<float, B> backward(Tensor<float, B> dy) {
    Tensor<float, B> g = std::move(dy);
    for (auto it = layers_.rbegin(); it != layers_.rend(); ++it) g = it->backward(std::move(g));
    return g;
  }

  auto members() {
    return nn::members(children(layers_, [this](std::size_t i) { return prefix_ + std::to_string(i); }));
  }

  std::size_t size() const { return layers_.size(); }
  L& operator[](std::size_t i) { return layers_[i]; }

 private:
  std::vector<L> layers_;
  std::string prefix_;
};

/// n layers made by factory(), or factory(i) when it takes the index:
///   auto stage = repeat(3, [&] { return ConvNormAct<Cpu>{...}; });
/// n = 0 gives the identity.
template <class Factory>
auto repeat(std::size_t n, Factory&& factory) {
  if constexpr (std::is_invocable_v<Factory&, std::size_t>) {
    using L = std::remove_cvref_t<std::invoke_result_t<Factory&, std::size_t>>;
    std::vector<L> v;
    v.reserve(n);
    for (std::size_t i = 0; i < n; ++i) v.push_back(factory(i));
    return Repeated<L>(std::move(v));
  } else {
    using L = std::remove_cvref_t<std::invoke_result_t<Factory&>>;
    std::vector<L> v;
    v.reserve(n);
    for (std::size_t i = 0; i < n; ++i) v.push_back(factory());
    return Repeated<L>(std::move(v));
  }
}

}  // namespace medseg::nn
