// Element types a Tensor can store, as a compile-time trait (`dtype_of<T>`) and as a run-time
// tag (`DType`) for the places where the type comes from a file: NIfTI, .npy, safetensors.
// Names follow NumPy and PyTorch ("float32", "bfloat16", "uint8").
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include "error.hpp"
#include "float16.hpp"

namespace medseg {

enum class DType : std::uint8_t {
  float32, float64, float16, bfloat16,
  int8, int16, int32, int64,
  uint8, uint16, uint32, uint64,
};

namespace detail {
template <class T> struct dtype_trait;
template <> struct dtype_trait<float> { static constexpr DType value = DType::float32; };
template <> struct dtype_trait<double> { static constexpr DType value = DType::float64; };
template <> struct dtype_trait<float16> { static constexpr DType value = DType::float16; };
template <> struct dtype_trait<bfloat16> { static constexpr DType value = DType::bfloat16; };
template <> struct dtype_trait<std::int8_t> { static constexpr DType value = DType::int8; };
template <> struct dtype_trait<std::int16_t> { static constexpr DType value = DType::int16; };
template <> struct dtype_trait<std::int32_t> { static constexpr DType value = DType::int32; };
template <> struct dtype_trait<std::int64_t> { static constexpr DType value = DType::int64; };
template <> struct dtype_trait<std::uint8_t> { static constexpr DType value = DType::uint8; };
template <> struct dtype_trait<std::uint16_t> { static constexpr DType value = DType::uint16; };
template <> struct dtype_trait<std::uint32_t> { static constexpr DType value = DType::uint32; };
template <> struct dtype_trait<std::uint64_t> { static constexpr DType value = DType::uint64; };
}  // namespace detail

/// The element types a Tensor may hold.
template <class T>
concept Element = requires { detail::dtype_trait<std::remove_cv_t<T>>::value; };

template <Element T>
inline constexpr DType dtype_of = detail::dtype_trait<std::remove_cv_t<T>>::value;

/// Floating-point elements, the half types included.
template <class T>
concept FloatingElement = std::floating_point<T> || std::same_as<T, float16> || std::same_as<T, bfloat16>;

constexpr std::string_view name(DType t) {
  switch (t) {
    case DType::float32: return "float32";
    case DType::float64: return "float64";
    case DType::float16: return "float16";
    case DType::bfloat16: return "bfloat16";
    case DType::int8: return "int8";
    case DType::int16: return "int16";
    case DType::int32: return "int32";
    case DType::int64: return "int64";
    case DType::uint8: return "uint8";
    case DType::uint16: return "uint16";
    case DType::uint32: return "uint32";
    case DType::uint64: return "uint64";
  }
  return "unknown";
}

constexpr std::size_t size_of(DType t) {
  switch (t) {
    case DType::int8: case DType::uint8: return 1;
    case DType::float16: case DType::bfloat16: case DType::int16: case DType::uint16: return 2;
    case DType::float32: case DType::int32: case DType::uint32: return 4;
    case DType::float64: case DType::int64: case DType::uint64: return 8;
  }
  return 0;
}

constexpr bool is_floating(DType t) {
  return t == DType::float32 || t == DType::float64 || t == DType::float16 || t == DType::bfloat16;
}

/// The DType named `text` ("float32", "uint8", ...); throws Error naming the accepted names.
inline DType parse_dtype(std::string_view text) {
  for (int i = 0; i <= static_cast<int>(DType::uint64); ++i)
    if (name(static_cast<DType>(i)) == text) return static_cast<DType>(i);
  throw Error{{.where = "dtype", .field = "name",
               .expected = "one of float32 float64 float16 bfloat16 int8 int16 int32 int64 uint8 uint16 uint32 uint64",
               .actual = "\"" + std::string(text) + "\""}};
}

/// Calls f(T{}) with the C++ type of a run-time DType: the bridge from a file's header to
/// typed code. `visit_dtype(DType::int16, [](auto tag) { using T = decltype(tag); ... })`.
template <class F>
decltype(auto) visit_dtype(DType t, F&& f) {
  switch (t) {
    case DType::float32: return f(float{});
    case DType::float64: return f(double{});
    case DType::float16: return f(float16{});
    case DType::bfloat16: return f(bfloat16{});
    case DType::int8: return f(std::int8_t{});
    case DType::int16: return f(std::int16_t{});
    case DType::int32: return f(std::int32_t{});
    case DType::int64: return f(std::int64_t{});
    case DType::uint8: return f(std::uint8_t{});
    case DType::uint16: return f(std::uint16_t{});
    case DType::uint32: return f(std::uint32_t{});
    case DType::uint64: return f(std::uint64_t{});
  }
  throw Error{{.where = "visit_dtype", .field = "dtype", .expected = "a known DType",
               .actual = std::to_string(static_cast<int>(t))}};
}

}  // namespace medseg
