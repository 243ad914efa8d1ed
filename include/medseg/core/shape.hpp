// Shapes and layouts as values. A Layout is a shape plus strides (in elements), printed the
// one way medseg prints them everywhere, `[2,1,96,96,96]:[884736,884736,9216,96,1]`
// (CuTe's notation). Tensors are NCDHW and row-major unless a view says otherwise.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <span>
#include <string>
#include <vector>

#include "error.hpp"
#include "fwd.hpp"

namespace medseg {

/// Largest rank a Tensor can have. Images are rank 5 (NCDHW); windowed attention reshapes
/// need a little more room.
inline constexpr int max_rank = 8;

/// A short fixed-capacity vector of extents or strides. `Shape{2, 1, 96, 96, 96}`.
class Dims {
 public:
  constexpr Dims() = default;
  constexpr Dims(std::initializer_list<std::int64_t> values) { assign(values.begin(), values.size()); }
  explicit Dims(std::span<const std::int64_t> values) { assign(values.data(), values.size()); }
  template <class Int>
    requires std::integral<Int>
  explicit Dims(const std::vector<Int>& values) {
    require(values.size() <= max_rank, [&] { return too_long(values.size()); });
    rank_ = static_cast<int>(values.size());
    for (int i = 0; i < rank_; ++i) d_[i] = static_cast<std::int64_t>(values[i]);
  }

  constexpr int rank() const { return rank_; }
  constexpr std::size_t size() const { return static_cast<std::size_t>(rank_); }
  constexpr bool empty() const { return rank_ == 0; }
  constexpr std::int64_t& operator[](int i) { return d_[static_cast<std::size_t>(i)]; }
  constexpr std::int64_t operator[](int i) const { return d_[static_cast<std::size_t>(i)]; }
  constexpr std::int64_t* begin() { return d_.data(); }
  constexpr std::int64_t* end() { return d_.data() + rank_; }
  constexpr const std::int64_t* begin() const { return d_.data(); }
  constexpr const std::int64_t* end() const { return d_.data() + rank_; }
  constexpr std::int64_t back() const { return d_[static_cast<std::size_t>(rank_ - 1)]; }

  /// Product of the extents (1 for rank 0).
  constexpr std::int64_t product() const {
    std::int64_t p = 1;
    for (int i = 0; i < rank_; ++i) p *= d_[static_cast<std::size_t>(i)];
    return p;
  }

  void push_back(std::int64_t v) {
    require(rank_ < max_rank, [&] { return too_long(static_cast<std::size_t>(rank_) + 1); });
    d_[static_cast<std::size_t>(rank_++)] = v;
  }
  /// The same dims with axis `axis` removed.
  Dims erase(int axis) const {
    Dims r;
    for (int i = 0; i < rank_; ++i)
      if (i != axis) r.push_back(d_[static_cast<std::size_t>(i)]);
    return r;
  }

  std::vector<std::int64_t> to_vector() const { return {begin(), end()}; }
  std::vector<std::size_t> to_size_vector() const { return {begin(), end()}; }

  friend constexpr bool operator==(const Dims& a, const Dims& b) {
    return a.rank_ == b.rank_ && std::equal(a.begin(), a.end(), b.begin());
  }

  /// "[2,1,96,96,96]"
  std::string to_string() const {
    std::string s = "[";
    for (int i = 0; i < rank_; ++i) s += (i ? "," : "") + std::to_string(d_[static_cast<std::size_t>(i)]);
    return s + "]";
  }

 private:
  template <class It>
  constexpr void assign(It first, std::size_t n) {
    if (n > max_rank) throw Error{too_long(n)};
    rank_ = static_cast<int>(n);
    for (std::size_t i = 0; i < n; ++i) d_[i] = static_cast<std::int64_t>(first[i]);
  }
  static ErrorInfo too_long(std::size_t n) {
    return {.where = "Shape", .field = "rank", .expected = "at most " + std::to_string(max_rank),
            .actual = std::to_string(n)};
  }

  std::array<std::int64_t, max_rank> d_{};
  int rank_ = 0;
};

inline std::ostream& operator<<(std::ostream& os, const Dims& d) { return os << d.to_string(); }

/// Row-major strides of a contiguous tensor of `shape`.
inline Strides contiguous_strides(const Shape& shape) {
  Strides s = shape;
  std::int64_t step = 1;
  for (int i = shape.rank() - 1; i >= 0; --i) {
    s[i] = step;
    step *= shape[i];
  }
  return s;
}

/// A shape and its strides, in elements.
struct Layout {
  Shape shape;
  Strides strides;

  static Layout contiguous(const Shape& shape) { return {shape, contiguous_strides(shape)}; }

  int rank() const { return shape.rank(); }
  std::int64_t numel() const { return shape.product(); }

  /// True when the elements are dense and row-major: the tensor is one block of memory.
  /// Axes of extent 1 may carry any stride.
  bool is_contiguous() const {
    std::int64_t step = 1;
    for (int i = rank() - 1; i >= 0; --i) {
      if (shape[i] != 1 && strides[i] != step) return false;
      step *= shape[i];
    }
    return true;
  }

  friend bool operator==(const Layout&, const Layout&) = default;

  /// "[2,1,96,96,96]:[884736,884736,9216,96,1]"
  std::string to_string() const { return shape.to_string() + ":" + strides.to_string(); }
};

inline std::ostream& operator<<(std::ostream& os, const Layout& l) { return os << l.to_string(); }

/// Turns a possibly negative axis (-1 is the last) into 0..rank-1, or throws naming `where`.
inline int normalize_axis(int axis, int rank, const char* where) {
  const int a = axis < 0 ? axis + rank : axis;
  require(a >= 0 && a < rank, [&] {
    return ErrorInfo{.where = where, .field = "axis",
                     .expected = "in [" + std::to_string(-rank) + ", " + std::to_string(rank) + ")",
                     .actual = std::to_string(axis)};
  });
  return a;
}

}  // namespace medseg
