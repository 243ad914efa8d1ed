// The Transform concept and its composition. A transform changes a training sample (an image
// [C,D,H,W] and its label map [1,D,H,W]) in place, drawing every random number from the
// RandomStream it is handed; `a | b | c` is one type, Compose<A, B, C>, applied with no
// virtual call, and each member draws from its own substream so adding one leaves the others' draws alone.
#pragma once

#include <array>
#include <concepts>
#include <cstdint>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "../core/tensor.hpp"

namespace medseg::transforms {

/// Spatial extents or indices in tensor order (D, H, W).
using Index3 = std::array<std::int64_t, 3>;

/// One training sample. `image` is float [C,D,H,W], contiguous; `label` is an integral map
/// [1,D,H,W] of the same spatial size, or undefined for unlabelled data. Transforms replace
/// the tensors (they never write into storage another sample may share, such as a cache).
/// BasicSample<L, Cuda> is a sample on the GPU: every transform of this folder takes it (in
/// a program that links medseg::cuda) and draws the same random numbers as on the CPU.
template <class L = std::uint8_t, class B = Cpu>
struct BasicSample {
  static_assert(std::is_integral_v<L>, "medseg: a sample's label map holds class ids: use an integral type (uint8, int16)");
  using label_type = L;
  using backend = B;
  Tensor<float, B> image;
  Tensor<L, B> label;

  std::int64_t channels() const { return image.size(0); }
  Index3 spatial() const { return {image.size(1), image.size(2), image.size(3)}; }
};
using Sample = BasicSample<std::uint8_t>;

/// A transform: `t.apply(sample, rng)` changes the sample in place. What the compiler cannot
/// check: a spatial transform moves image and label together, and never interpolates label
/// ids linearly (nearest, or per-class one-hot); random choices come only from `rng`.
template <class T, class L = std::uint8_t, class B = Cpu>
concept Transform = requires(const T& t, BasicSample<L, B>& s, RandomStream& rng) {
  { t.apply(s, rng) } -> std::same_as<void>;
};

/// Transforms applied in order, the i-th with rng.substream(i). Built with `|`. Works on CPU
/// and on GPU samples alike.
template <class... Ts>
struct Compose {
  std::tuple<Ts...> parts;

  template <class L, class B>
  void apply(BasicSample<L, B>& s, RandomStream& rng) const {
    apply_from<0>(s, rng);
  }

 private:
  template <std::size_t I, class L, class B>
  void apply_from(BasicSample<L, B>& s, RandomStream& rng) const {
    if constexpr (I < sizeof...(Ts)) {
      RandomStream own = rng.substream(I);
      std::get<I>(parts).apply(s, own);
      apply_from<I + 1>(s, rng);
    }
  }
};

/// `t` applied with probability p, for transforms that have no probability of their own.
template <class T>
struct Maybe {
  float p = 1.0f;
  T transform;

  template <class L, class B>
  void apply(BasicSample<L, B>& s, RandomStream& rng) const {
    if (rng.bernoulli(p)) transform.apply(s, rng);
  }
};
template <class T>
Maybe<T> maybe(float p, T transform) {
  return {p, std::move(transform)};
}

namespace detail {
template <class T>
struct is_compose : std::false_type {};
template <class... Ts>
struct is_compose<Compose<Ts...>> : std::true_type {};

template <class T>
auto as_tuple(T&& t) {
  if constexpr (is_compose<std::remove_cvref_t<T>>::value)
    return std::forward<T>(t).parts;
  else
    return std::tuple<std::remove_cvref_t<T>>{std::forward<T>(t)};
}

/// Marks the transform types of this folder, so `|` never catches unrelated types.
template <class T>
concept TransformLike = Transform<std::remove_cvref_t<T>, std::uint8_t> || Transform<std::remove_cvref_t<T>, std::int16_t>;
}  // namespace detail

/// a | b: one flat Compose (a Compose on either side is spliced in, not nested).
template <class A, class B>
  requires detail::TransformLike<A> && detail::TransformLike<B>
auto operator|(A&& a, B&& b) {
  auto t = std::tuple_cat(detail::as_tuple(std::forward<A>(a)), detail::as_tuple(std::forward<B>(b)));
  return std::apply([](auto&&... x) { return Compose<std::remove_cvref_t<decltype(x)>...>{{std::move(x)...}}; }, t);
}

/// A range [low, high] to draw a parameter from.
struct Range {
  float low = 0, high = 0;
  float draw(RandomStream& rng) const { return rng.uniform(low, high); }
};

// ----------------------------------------------------------------------------------------
// Checks every transform runs first.

/// Throws unless `s` is a float [C,D,H,W] contiguous image with a [1,D,H,W] label (or none).
template <class L, class B>
void check_sample(const BasicSample<L, B>& s, const char* where) {
  require(s.image.defined() && s.image.rank() == 4 && s.image.is_contiguous(), [&] {
    return ErrorInfo{.where = where, .field = "sample.image", .expected = "a contiguous float tensor [C,D,H,W]",
                     .actual = s.image.defined() ? s.image.layout().to_string() : "an undefined tensor"};
  });
  if (!s.label.defined()) return;
  require(s.label.rank() == 4 && s.label.size(0) == 1 && s.label.size(1) == s.image.size(1) &&
              s.label.size(2) == s.image.size(2) && s.label.size(3) == s.image.size(3) && s.label.is_contiguous(),
          [&] {
            return ErrorInfo{.where = where, .field = "sample.label",
                             .expected = "a contiguous [1,D,H,W] map with the image's D,H,W (image " +
                                         s.image.shape().to_string() + ")",
                             .actual = s.label.layout().to_string()};
          });
}

inline std::string index3_text(const Index3& v) {
  return "[" + std::to_string(v[0]) + "," + std::to_string(v[1]) + "," + std::to_string(v[2]) + "]";
}

}  // namespace medseg::transforms
