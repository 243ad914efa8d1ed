// Sequential<L...>: layers applied one after another, the structure fixed in the type. Forward
// and backward are folds over a std::tuple, so there is no tape and no virtual call. Children
// are named "0", "1", ... as in torch.nn.Sequential, or by Named<"name", L>.
#pragma once

#include <cstddef>
#include <string>
#include <tuple>
#include <utility>

#include "concepts.hpp"
#include "members.hpp"

namespace medseg::nn {

/// Layers in a row:  Sequential<Conv3d<Cpu>, GroupNorm<Cpu>, PReLU<Cpu>> block{conv_opts, norm_opts, act_opts};
/// block.forward(x) == act(norm(conv(x))); block.backward(dy) runs them in reverse.
/// Every child has the same backend; get<I>() reaches a child.
/// Pitfall: `Sequential s{other_sequential}` deduces a copy of other_sequential (class
/// template argument deduction prefers the copy); spell the type to wrap a lone Sequential.
template <Layer First, Layer... Rest>
class Sequential : public Module<Sequential<First, Rest...>, typename First::backend> {
  static_assert((std::same_as<typename First::backend, typename Rest::backend> && ...),
                "medseg: every layer of a Sequential must use the same backend");

 public:
  using B = typename First::backend;
  static constexpr std::size_t size = 1 + sizeof...(Rest);

  Sequential(First first, Rest... rest) : layers_(std::move(first), std::move(rest)...) { this->set_path(""); }

  /// x by value: a caller that moves its tensor in lets it go once the first child is done
  /// with it (in eval mode, a temporary such as a skip concatenation is freed there).
  Tensor<float, B> forward(Tensor<float, B> x) {
    return forward_all(std::move(x), std::make_index_sequence<size>{});
  }
  /// dy by value too: each gradient is moved into the child that consumes it.
  Tensor<float, B> backward(Tensor<float, B> dy) {
    return backward_all(std::move(dy), std::make_index_sequence<size>{});
  }

  /// Child I is named "I" unless Named.
  auto members() {
    return [&]<std::size_t... I>(std::index_sequence<I...>) {
      return nn::members(child(std::to_string(I), std::get<I>(layers_))...);
    }(std::make_index_sequence<size>{});
  }

  template <std::size_t I>
  auto& get() {
    return std::get<I>(layers_);
  }

 private:
  // One running tensor, reassigned child by child: each intermediate is freed as soon as the
  // next child has consumed it (unless that child keeps it for backward), and in eval mode
  // the child that produced it lets go of its buffer too. A recursive chain of calls would
  // keep every intermediate alive until the last child returned.
  template <std::size_t... I>
  Tensor<float, B> forward_all(Tensor<float, B> h, std::index_sequence<I...>) {
    // Moved into children that take their input by value (compositions), so they can drop it.
    ((h = std::get<I>(layers_).forward(std::move(h)), release_before<I>()), ...);
    return h;
  }
  template <std::size_t I>
  void release_before() {
    if constexpr (I > 0) release_child_outputs(std::get<I - 1>(layers_));
  }
  template <std::size_t... I>
  Tensor<float, B> backward_all(Tensor<float, B> g, std::index_sequence<I...>) {
    ((g = std::get<size - 1 - I>(layers_).backward(std::move(g))), ...);
    return g;
  }
  std::tuple<First, Rest...> layers_;
};

}  // namespace medseg::nn
