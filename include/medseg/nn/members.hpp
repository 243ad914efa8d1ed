// Members: a layer names its children, parameters and buffers once, in members(), and
// nn::Module derives set_path, visit_parameters, visit_buffers, train and release_outputs from
// that one list (as PyTorch's nn.Module derives named_parameters() from its attributes, or
// Boost.Describe a struct's member list). The list's order is the order of visiting: PyTorch's
// registration order, which state dicts, checkpoints and optimizers see.
//   auto members() {
//     return nn::members(nn::child("conv", conv_), nn::child(norm_name_, norm_),   // layers
//                        nn::param("weight", weight_), nn::param("bias", bias_, has_bias_),
//                        nn::buffer("running_mean", mean_, tracking_),             // when tracking
//                        nn::children(stages_));                                   // "0", "1", ...
//   }
#pragma once

#include <cstddef>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>

#include "concepts.hpp"

namespace medseg::nn {

namespace detail {
/// f(l) for the layer a child member holds: the layer itself, the alternative a std::variant
/// holds (a layer chosen at run time), or the value of an engaged std::optional.
template <class T>
inline constexpr bool is_optional = false;
template <class T>
inline constexpr bool is_optional<std::optional<T>> = true;
template <class T>
inline constexpr bool is_variant = false;
template <class... T>
inline constexpr bool is_variant<std::variant<T...>> = true;

template <class M, class F>
void for_held(M& m, F&& f) {
  if constexpr (is_variant<M>) {
    std::visit([&](auto& l) { f(l); }, m);
  } else if constexpr (is_optional<M>) {
    if (m.has_value()) f(*m);
  } else {
    f(m);
  }
}

/// A name the entry owns (built at run time: "0", "unit1") or refers to (a literal, or a
/// string member of the layer).
template <class N>
using name_t = std::conditional_t<std::is_same_v<std::remove_cvref_t<N>, std::string> && !std::is_lvalue_reference_v<N>,
                                  std::string, std::string_view>;
}  // namespace detail

/// A child layer at `name` under the parent's path ("" puts its parameters directly under the
/// parent's), unless its type is Named, whose own name wins (see child_name). M is a layer, a
/// std::variant of layers or a std::optional layer; `present` false leaves it out entirely.
template <class Name, class M>
struct ChildMember {
  Name name;
  M* layer;
  bool present;

  void set_path(const std::string& parent) {
    if (!present) return;
    const std::string p = join_path(parent, child_name<M>(name));
    detail::for_held(*layer, [&](auto& l) { l.set_path(p); });
  }
  template <class F>
  void visit_parameters(F& f) {
    if (present) detail::for_held(*layer, [&](auto& l) { l.visit_parameters(f); });
  }
  template <class F>
  void visit_buffers(F& f) {
    if (present) detail::for_held(*layer, [&](auto& l) { l.visit_buffers(f); });
  }
  void train(bool on) {
    if (present) detail::for_held(*layer, [&](auto& l) { l.train(on); });
  }
  void release_outputs() {
    if (present) detail::for_held(*layer, [&](auto& l) { release_child_outputs(l); });
  }
};

/// A run of child layers (a std::vector, or a view of one such as std::views::reverse(v)),
/// the i-th (in the range's order) named name_of(i).
template <class R, class NameOf>
struct ChildrenMember {
  R range;
  NameOf name_of;

  template <class F>
  void each(F&& f) {
    for (auto& l : range) f(l);
  }
  void set_path(const std::string& parent) {
    std::size_t i = 0;
    for (auto& l : range) l.set_path(join_path(parent, name_of(i++)));
  }
  template <class F>
  void visit_parameters(F& f) {
    each([&](auto& l) { l.visit_parameters(f); });
  }
  template <class F>
  void visit_buffers(F& f) {
    each([&](auto& l) { l.visit_buffers(f); });
  }
  void train(bool on) {
    each([&](auto& l) { l.train(on); });
  }
  void release_outputs() {
    each([](auto& l) { release_child_outputs(l); });
  }
};

/// A trainable parameter at `name`; visited only while `present` (a bias that exists only
/// when enabled), though always named.
template <class B>
struct ParameterMember {
  std::string_view name;
  Parameter<B>* parameter;
  bool present;

  void set_path(const std::string& parent) { parameter->path = join_path(parent, name); }
  template <class F>
  void visit_parameters(F& f) {
    if (present) f(*parameter);
  }
  template <class F>
  void visit_buffers(F&) {}
  void train(bool) {}
  void release_outputs() {}
};

/// A buffer at `name` (running statistics); visited only while `present`, always named.
template <class B>
struct BufferMember {
  std::string_view name;
  Buffer<B>* buffer;
  bool present;

  void set_path(const std::string& parent) { buffer->path = join_path(parent, name); }
  template <class F>
  void visit_parameters(F&) {}
  template <class F>
  void visit_buffers(F& f) {
    if (present) f(*buffer);
  }
  void train(bool) {}
  void release_outputs() {}
};

/// The child layer (or variant, or optional) `layer` at `name`.
template <class N, class M>
auto child(N&& name, M& layer, bool present = true) {
  return ChildMember<detail::name_t<N>, M>{detail::name_t<N>(std::forward<N>(name)), &layer, present};
}
/// Every layer of `range`, named "0", "1", ... (torch.nn.Sequential, ModuleList).
template <class R>
auto children(R&& range) {
  auto index = [](std::size_t i) { return std::to_string(i); };
  return ChildrenMember<std::views::all_t<R>, decltype(index)>{std::views::all(std::forward<R>(range)), index};
}
/// Every layer of `range`, the i-th named name_of(i) ("unit" + i, "decoder.stages.<i>.convs").
template <class R, class NameOf>
auto children(R&& range, NameOf name_of) {
  return ChildrenMember<std::views::all_t<R>, NameOf>{std::views::all(std::forward<R>(range)), std::move(name_of)};
}
template <class B>
ParameterMember<B> param(std::string_view name, Parameter<B>& p, bool present = true) {
  return {name, &p, present};
}
template <class B>
BufferMember<B> buffer(std::string_view name, Buffer<B>& b, bool present = true) {
  return {name, &b, present};
}

namespace detail {
template <class T>
auto as_member_tuple(T&& t) {
  if constexpr (requires { std::tuple_size<std::remove_cvref_t<T>>::value; })
    return std::forward<T>(t);
  else
    return std::tuple<std::remove_cvref_t<T>>(std::forward<T>(t));
}
}  // namespace detail

/// The member list, in visiting order. An argument that is itself a member list (a base
/// class's members(), say) is spliced in place.
template <class... E>
auto members(E&&... entries) {
  return std::tuple_cat(detail::as_member_tuple(std::forward<E>(entries))...);
}

/// f(entry) for every entry of `layer.members()`.
template <class L, class F>
void for_each_member(L& layer, F&& f) {
  auto list = layer.members();
  std::apply([&](auto&... entry) { (f(entry), ...); }, list);
}

/// LayerBase plus what the member list of Self (a public `members()`) gives: set_path names
/// each member, visit_parameters and visit_buffers visit them in the list's order, train and
/// release_outputs reach every child. A layer derives from Module<Itself, B> and writes
/// members(); none of the five functions is written by hand.
template <class Self, class B>
class Module : public LayerBase<B> {
 public:
  void set_path(const std::string& p) {
    this->path_ = p;
    for_each_member(self(), [&](auto& m) { m.set_path(p); });
  }
  void train(bool on = true) {
    this->training_ = on;
    for_each_member(self(), [&](auto& m) { m.train(on); });
  }
  void eval() { train(false); }
  void release_outputs() {
    LayerBase<B>::release_outputs();
    for_each_member(self(), [](auto& m) { m.release_outputs(); });
  }
  template <class F>
  void visit_parameters(F&& f) {
    for_each_member(self(), [&](auto& m) { m.visit_parameters(f); });
  }
  template <class F>
  void visit_buffers(F&& f) {
    for_each_member(self(), [&](auto& m) { m.visit_buffers(f); });
  }

 private:
  Self& self() { return static_cast<Self&>(*this); }
};

}  // namespace medseg::nn
