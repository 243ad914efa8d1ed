// Tensor<T, Backend>: an n-d array (rank 0 to 8; NCDHW for images) over shared storage.
// A Tensor is a handle, like a std::shared_ptr: copying it shares the elements, and views
// (slice, select, reshape) share them too. clone() is the deep copy.
//
//   auto x = Tensor<float>::zeros({2, 1, 96, 96, 96});     // [2,1,96,96,96]:[884736,...]
//   auto first = x[0];                                      // [1,96,96,96], same storage
//   auto ch = y.slice(1, 0, 4);                             // channels 0..3 of every sample
//   auto g = x.to<Cuda>();                                  // a copy on the GPU
//
// Layout rule: axes 2 and up are always dense, so every view is at most a 2-D pitched block
// (rows along axis 0, each row one contiguous run). That is what slicing along the first two
// axes gives, and it lets every backend copy any view with one pitched copy.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "../backends/cpu/backend.hpp"  // Cpu, the default backend
#include "backend.hpp"
#include "dtype.hpp"
#include "error.hpp"
#include "parallel.hpp"
#include "shape.hpp"

namespace medseg {

namespace detail {

/// A block of backend memory, freed when the last Tensor that uses it goes.
template <Backend B>
class Storage {
 public:
  explicit Storage(std::size_t bytes) : data_(B::allocate(bytes)), bytes_(bytes) {}
  /// Zero-filled, through B::allocate_zeroed where the backend has one.
  Storage(std::size_t bytes, std::true_type /*zeroed*/) : data_(nullptr), bytes_(bytes) {
    if constexpr (requires { B::allocate_zeroed(bytes); }) {
      data_ = B::allocate_zeroed(bytes);
    } else {
      data_ = B::allocate(bytes);
      B::zero(data_, bytes);
    }
  }
  ~Storage() { B::deallocate(data_, bytes_); }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }

 private:
  void* data_;
  std::size_t bytes_;
};

/// Element conversion for astype: through float for the half types, static_cast otherwise.
template <class U, class T>
U convert(T x) {
  if constexpr (std::is_same_v<T, float16> || std::is_same_v<T, bfloat16>)
    return convert<U>(static_cast<float>(x));
  else if constexpr (std::is_same_v<U, float16> || std::is_same_v<U, bfloat16>)
    return U(static_cast<float>(x));
  else
    return static_cast<U>(x);
}

}  // namespace detail

template <class T, class B>
class Tensor {
  static_assert(Element<T>, "medseg: Tensor<T, B> needs an element type of core/dtype.hpp "
                            "(float, double, float16, bfloat16, int8..int64, uint8..uint64)");
  static_assert(Backend<B>, "medseg: Tensor<T, B> needs a Backend (Cpu, or Cuda from backends/cuda/backend.hpp)");

 public:
  using value_type = T;
  using backend = B;

  /// An undefined tensor: no storage, rank 0. defined() is false.
  Tensor() = default;

  // -- Factories. Named, so braces always mean a shape. ----------------------------------

  /// Uninitialised elements.
  static Tensor empty(const Shape& shape);
  static Tensor zeros(const Shape& shape);
  static Tensor ones(const Shape& shape) { return full(shape, T(1.0f)); }
  static Tensor full(const Shape& shape, T value);
  /// A copy of host `values` laid out as `shape` (row-major); their count must match.
  static Tensor from(std::span<const T> values, const Shape& shape);
  static Tensor from(std::initializer_list<T> values, const Shape& shape) {
    return from(std::span<const T>(values.begin(), values.size()), shape);
  }

  // -- Properties --------------------------------------------------------------------------

  /// A tensor over memory someone else owns and keeps alive longer than every view made
  /// from it: a NumPy buffer, a memory-mapped file. Row-major, contiguous.
  static Tensor wrap(T* data, const Shape& shape) { return Tensor(nullptr, data, Layout::contiguous(shape)); }

  bool defined() const { return data_ != nullptr; }
  const Shape& shape() const { return layout_.shape; }
  const Strides& strides() const { return layout_.strides; }
  const Layout& layout() const { return layout_; }
  int rank() const { return layout_.rank(); }
  /// Extent of `axis`; negative axes count from the end.
  std::int64_t size(int axis) const { return layout_.shape[normalize_axis(axis, rank(), "Tensor::size")]; }
  std::int64_t numel() const { return layout_.numel(); }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * sizeof(T); }
  static constexpr DType dtype() { return dtype_of<T>; }
  bool is_contiguous() const { return layout_.is_contiguous(); }
  /// The first element. With handle semantics a const Tensor still grants write access to
  /// its elements, as a const std::shared_ptr does.
  T* data() const { return data_; }
  /// True when both tensors use (part of) the same allocation.
  template <class U>
  bool shares_storage_with(const Tensor<U, B>& other) const {
    return storage_ ? storage_ == other.storage_handle() : data_ == other.data();
  }
  long use_count() const { return storage_.use_count(); }
  const std::shared_ptr<detail::Storage<B>>& storage_handle() const { return storage_; }

  // -- Elements (host backends) ------------------------------------------------------------

  /// Unchecked element access, one index per axis.
  template <std::integral... I>
  T& operator()(I... index) const
    requires B::is_host
  {
    static_assert(sizeof...(I) <= max_rank, "medseg: more indices than a Tensor can have axes");
    const std::int64_t idx[] = {static_cast<std::int64_t>(index)...};
    std::int64_t off = 0;
    for (std::size_t i = 0; i < sizeof...(I); ++i) off += idx[i] * layout_.strides[static_cast<int>(i)];
    return data_[off];
  }
  /// Element access that checks the index count and each index against its extent.
  template <std::integral... I>
  T& at(I... index) const
    requires B::is_host;

  // -- Views: share storage ----------------------------------------------------------------

  /// Elements [begin, end) along axis 0 or 1 (negative bounds count from the end).
  Tensor slice(int axis, std::int64_t begin, std::int64_t end) const;
  /// Element `index` of axis 0, with that axis removed: x[0] of NCDHW is CDHW.
  Tensor operator[](std::int64_t index) const;
  /// The same elements as `shape`; one extent may be -1 (inferred). Needs a contiguous
  /// tensor: call contiguous() first on a channel slice.
  Tensor reshape(const Shape& shape) const;
  Tensor flatten() const { return reshape({numel()}); }

  // -- Copies ------------------------------------------------------------------------------

  /// This tensor when contiguous, else a contiguous copy.
  Tensor contiguous() const { return is_contiguous() ? *this : clone(); }
  /// A contiguous deep copy.
  Tensor clone() const { return to<B>(); }
  /// A contiguous copy on backend B2 (a deep copy even when B2 is B).
  template <Backend B2>
  Tensor<T, B2> to() const;
  /// A contiguous copy with elements converted to U (static_cast; through float for halves).
  template <Element U>
  Tensor<U, B> astype() const
    requires B::is_host;
  /// Copies `src` (same shape, any backend, any view) into this tensor's elements.
  template <Backend B2>
  void copy_from(const Tensor<T, B2>& src) const;
  /// Sets every element to `value`.
  void fill(T value) const;
  /// The elements in row-major order, on the host.
  std::vector<T> to_vector() const;

  // -- Internal: assembling a view over existing storage -------------------------------------
  Tensor(std::shared_ptr<detail::Storage<B>> storage, T* data, Layout layout)
      : storage_(std::move(storage)), data_(data), layout_(std::move(layout)) {}

  /// The view as rows: `rows` runs of `width` elements, `pitch` elements apart.
  struct Rows {
    std::int64_t rows, width, pitch;
  };
  Rows rows() const;

 private:
  void check_defined(const char* op) const {
    require(defined(), [&] {
      return ErrorInfo{.where = std::string("Tensor::") + op, .field = "tensor", .expected = "a defined tensor",
                       .actual = "an undefined (default-constructed) tensor"};
    });
  }

  std::shared_ptr<detail::Storage<B>> storage_;
  T* data_ = nullptr;
  Layout layout_;
};

/// Tensors of the same type and backend: the precondition of most binary ops.
template <class A, class C>
concept SameTensorType = std::same_as<typename A::value_type, typename C::value_type> &&
                         std::same_as<typename A::backend, typename C::backend>;

// ----------------------------------------------------------------------------------------
// Implementation

template <class T, class B>
Tensor<T, B> Tensor<T, B>::empty(const Shape& shape) {
  for (int i = 0; i < shape.rank(); ++i)
    require(shape[i] >= 0, [&] {
      return ErrorInfo{.where = "Tensor::empty", .field = "shape " + shape.to_string(),
                       .expected = "non-negative extents", .actual = "extent " + std::to_string(shape[i]) +
                                                                         " on axis " + std::to_string(i)};
    });
  auto storage = std::make_shared<detail::Storage<B>>(static_cast<std::size_t>(shape.product()) * sizeof(T));
  T* data = static_cast<T*>(storage->data());
  return Tensor(std::move(storage), data, Layout::contiguous(shape));
}

template <class T, class B>
Tensor<T, B> Tensor<T, B>::zeros(const Shape& shape) {
  for (int i = 0; i < shape.rank(); ++i)
    if (shape[i] < 0) return empty(shape);  // throws empty()'s error
  auto storage =
      std::make_shared<detail::Storage<B>>(static_cast<std::size_t>(shape.product()) * sizeof(T), std::true_type{});
  T* data = static_cast<T*>(storage->data());
  return Tensor(std::move(storage), data, Layout::contiguous(shape));
}

template <class T, class B>
Tensor<T, B> Tensor<T, B>::full(const Shape& shape, T value) {
  Tensor t = empty(shape);
  t.fill(value);
  return t;
}

template <class T, class B>
Tensor<T, B> Tensor<T, B>::from(std::span<const T> values, const Shape& shape) {
  require(static_cast<std::int64_t>(values.size()) == shape.product(), [&] {
    return ErrorInfo{.where = "Tensor::from", .field = "values",
                     .expected = std::to_string(shape.product()) + " values for shape " + shape.to_string(),
                     .actual = std::to_string(values.size())};
  });
  Tensor t = empty(shape);
  detail::copy_2d_between<B, Cpu>(t.data_, t.nbytes(), values.data(), values.size_bytes(), values.size_bytes(), 1);
  return t;
}

template <class T, class B>
template <std::integral... I>
T& Tensor<T, B>::at(I... index) const
  requires B::is_host
{
  check_defined("at");
  const std::int64_t idx[] = {static_cast<std::int64_t>(index)...};
  require(static_cast<int>(sizeof...(I)) == rank(), [&] {
    return ErrorInfo{.where = "Tensor::at", .field = "index count", .expected = std::to_string(rank()) +
                                                                             " for shape " + shape().to_string(),
                     .actual = std::to_string(sizeof...(I))};
  });
  std::int64_t off = 0;
  for (int i = 0; i < rank(); ++i) {
    require(idx[i] >= 0 && idx[i] < layout_.shape[i], [&] {
      return ErrorInfo{.where = "Tensor::at", .field = "index on axis " + std::to_string(i),
                       .expected = "in [0, " + std::to_string(layout_.shape[i]) + ") for shape " +
                                   shape().to_string(),
                       .actual = std::to_string(idx[i])};
    });
    off += idx[i] * layout_.strides[i];
  }
  return data_[off];
}

template <class T, class B>
Tensor<T, B> Tensor<T, B>::slice(int axis, std::int64_t begin, std::int64_t end) const {
  check_defined("slice");
  const int a = normalize_axis(axis, rank(), "Tensor::slice");
  require(a <= 1, [&] {
    return ErrorInfo{.where = "Tensor::slice", .field = "axis", .expected = "0 or 1 (batch or channel)",
                     .actual = std::to_string(axis), .detail = "spatial crops copy: use contiguous crops in preprocess/"};
  });
  const std::int64_t n = layout_.shape[a];
  const std::int64_t b = begin < 0 ? begin + n : begin;
  const std::int64_t e = end < 0 ? end + n : end;
  require(b >= 0 && e <= n && b <= e, [&] {
    return ErrorInfo{.where = "Tensor::slice", .field = "range on axis " + std::to_string(a),
                     .expected = "0 <= begin <= end <= " + std::to_string(n) + " for shape " + shape().to_string(),
                     .actual = "[" + std::to_string(begin) + ", " + std::to_string(end) + ")"};
  });
  Layout l = layout_;
  l.shape[a] = e - b;
  return Tensor(storage_, data_ + b * layout_.strides[a], l);
}

template <class T, class B>
Tensor<T, B> Tensor<T, B>::operator[](std::int64_t index) const {
  check_defined("operator[]");
  require(rank() >= 1, [&] {
    return ErrorInfo{.where = "Tensor::operator[]", .field = "rank", .expected = ">= 1", .actual = "0"};
  });
  const std::int64_t n = layout_.shape[0];
  const std::int64_t i = index < 0 ? index + n : index;
  require(i >= 0 && i < n, [&] {
    return ErrorInfo{.where = "Tensor::operator[]", .field = "index",
                     .expected = "in [" + std::to_string(-n) + ", " + std::to_string(n) + ") for shape " +
                                 shape().to_string(),
                     .actual = std::to_string(index)};
  });
  return Tensor(storage_, data_ + i * layout_.strides[0], {layout_.shape.erase(0), layout_.strides.erase(0)});
}

template <class T, class B>
Tensor<T, B> Tensor<T, B>::reshape(const Shape& shape) const {
  check_defined("reshape");
  Shape s = shape;
  int inferred = -1;
  std::int64_t known = 1;
  for (int i = 0; i < s.rank(); ++i) {
    if (s[i] == -1) {
      require(inferred < 0, [&] {
        return ErrorInfo{.where = "Tensor::reshape", .field = "shape " + shape.to_string(),
                         .expected = "at most one -1", .actual = "two"};
      });
      inferred = i;
    } else {
      require(s[i] >= 0, [&] {
        return ErrorInfo{.where = "Tensor::reshape", .field = "shape " + shape.to_string(),
                         .expected = "extents >= 0 or one -1", .actual = std::to_string(s[i])};
      });
      known *= s[i];
    }
  }
  if (inferred >= 0 && known > 0 && numel() % known == 0) s[inferred] = numel() / known;
  require(s.product() == numel() && (inferred < 0 || known > 0), [&] {
    return ErrorInfo{.where = "Tensor::reshape", .field = "shape",
                     .expected = std::to_string(numel()) + " elements, as in " + this->shape().to_string(),
                     .actual = shape.to_string()};
  });
  require(is_contiguous(), [&] {
    return ErrorInfo{.where = "Tensor::reshape", .field = "layout", .expected = "a contiguous tensor",
                     .actual = layout_.to_string(), .detail = "call contiguous() first"};
  });
  return Tensor(storage_, data_, Layout::contiguous(s));
}

template <class T, class B>
typename Tensor<T, B>::Rows Tensor<T, B>::rows() const {
  if (is_contiguous() || rank() == 0) return {1, numel(), numel()};
  // Axes 1.. are dense (the layout rule in the header comment), so axis 0 gives the rows.
  return {layout_.shape[0], numel() / std::max<std::int64_t>(layout_.shape[0], 1), layout_.strides[0]};
}

template <class T, class B>
template <Backend B2>
Tensor<T, B2> Tensor<T, B>::to() const {
  check_defined("to");
  auto out = Tensor<T, B2>::empty(shape());
  out.copy_from(*this);
  return out;
}

template <class T, class B>
template <Backend B2>
void Tensor<T, B>::copy_from(const Tensor<T, B2>& src) const {
  check_defined("copy_from");
  require(src.defined() && src.shape() == shape(), [&] {
    return ErrorInfo{.where = "Tensor::copy_from", .field = "source shape", .expected = shape().to_string(),
                     .actual = src.defined() ? src.shape().to_string() : "an undefined tensor"};
  });
  if (numel() == 0) return;
  const auto d = rows();
  const auto s = src.rows();
  constexpr auto e = sizeof(T);
  if (d.rows == s.rows && d.width == s.width) {
    detail::copy_2d_between<B, B2>(data_, d.pitch * e, src.data(), s.pitch * e, d.width * e, d.rows);
  } else if (d.rows == 1) {  // dense destination, pitched source: the destination's pitch is the source's width
    detail::copy_2d_between<B, B2>(data_, s.width * e, src.data(), s.pitch * e, s.width * e, s.rows);
  } else if (s.rows == 1) {  // pitched destination, dense source
    detail::copy_2d_between<B, B2>(data_, d.pitch * e, src.data(), d.width * e, d.width * e, d.rows);
  } else {  // both pitched with different row splits: go through a dense copy
    copy_from(src.contiguous());
  }
}

template <class T, class B>
void Tensor<T, B>::fill(T value) const {
  check_defined("fill");
  if (numel() == 0) return;
  const auto r = rows();
  if constexpr (B::is_host) {
    if (r.rows == 1)
      parallel_for(0, r.width, 1 << 16, [&](std::int64_t b, std::int64_t e) { std::fill(data_ + b, data_ + e, value); });
    else
      parallel_for(0, r.rows, 1, [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t row = b; row < e; ++row) std::fill_n(data_ + row * r.pitch, r.width, value);
      });
  } else {
    // Device fills without a kernel: zero bytes by memset, other values through a host
    // buffer. Backends with kernels (backends/cuda/) give faster fills as ops.
    T zero{};
    if (std::memcmp(&value, &zero, sizeof(T)) == 0 && r.rows == 1) {
      B::zero(data_, nbytes());
      return;
    }
    std::vector<T> host(static_cast<std::size_t>(r.width), value);
    for (std::int64_t row = 0; row < r.rows; ++row)
      B::copy_2d(data_ + row * r.pitch, r.width * sizeof(T), host.data(), r.width * sizeof(T), r.width * sizeof(T),
                 1, CopyKind::host_to_device);
  }
}

template <class T, class B>
template <Element U>
Tensor<U, B> Tensor<T, B>::astype() const
  requires B::is_host
{
  check_defined("astype");
  const Tensor src = contiguous();
  auto out = Tensor<U, B>::empty(shape());
  const T* in = src.data();
  U* o = out.data();
  parallel_for(0, numel(), 1 << 15, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) o[i] = detail::convert<U>(in[i]);
  });
  return out;
}

template <class T, class B>
std::vector<T> Tensor<T, B>::to_vector() const {
  check_defined("to_vector");
  std::vector<T> v(static_cast<std::size_t>(numel()));
  if (v.empty()) return v;
  Tensor<T, Cpu>::wrap(v.data(), shape()).copy_from(*this);
  return v;
}

}  // namespace medseg
