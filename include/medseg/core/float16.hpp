// Storage types for half precision: IEEE binary16 (`float16`) and bfloat16. They hold the
// bits the way CUDA's __half and __nv_bfloat16 do, so device buffers and host tensors share
// one layout; arithmetic happens in float after conversion (round to nearest even).
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>

#include "host_device.hpp"

namespace medseg {

namespace detail {

MEDSEG_HOST_DEVICE std::uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

MEDSEG_HOST_DEVICE float bits_float(std::uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

// binary32 -> binary16, round to nearest even; overflow gives infinity, NaN stays NaN.
MEDSEG_HOST_DEVICE std::uint16_t float_to_half_bits(float f) {
  const std::uint32_t x = float_bits(f);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u)  // inf or NaN
    return static_cast<std::uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
  if (abs >= 0x477ff000u)  // rounds to >= 65520: overflow
    return static_cast<std::uint16_t>(sign | 0x7c00u);
  if (abs < 0x38800000u) {  // below the smallest normal half: subnormal or zero
    if (abs < 0x33000000u) return static_cast<std::uint16_t>(sign);  // < half of min subnormal
    const std::uint32_t exponent = abs >> 23;
    const std::uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
    const std::uint32_t shift = 126u - exponent;  // 14..24
    std::uint32_t h = mantissa >> shift;
    const std::uint32_t rest = mantissa & ((1u << shift) - 1u);
    const std::uint32_t halfway = 1u << (shift - 1u);
    if (rest > halfway || (rest == halfway && (h & 1u))) ++h;
    return static_cast<std::uint16_t>(sign | h);
  }
  std::uint32_t h = ((abs >> 13) - (112u << 10));  // rebias exponent 127 -> 15
  const std::uint32_t rest = abs & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // may carry into the exponent
  return static_cast<std::uint16_t>(sign | h);
}

MEDSEG_HOST_DEVICE float half_bits_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1fu;
  std::uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1fu) return bits_float(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0) return bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  if (mantissa == 0) return bits_float(sign);
  int e = -1;  // subnormal: normalise
  do {
    ++e;
    mantissa <<= 1;
  } while ((mantissa & 0x400u) == 0);
  return bits_float(sign | ((112u - static_cast<std::uint32_t>(e)) << 23) | ((mantissa & 0x3ffu) << 13));
}

MEDSEG_HOST_DEVICE std::uint16_t float_to_bfloat16_bits(float f) {
  const std::uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);  // quiet NaN
  const std::uint32_t rounding = 0x7fffu + ((x >> 16) & 1u);
  return static_cast<std::uint16_t>((x + rounding) >> 16);
}

}  // namespace detail

/// IEEE 754 binary16. Converts to and from float; compare and compute in float.
struct float16 {
  std::uint16_t bits = 0;

  float16() = default;
  MEDSEG_HOST_DEVICE float16(float f) : bits(detail::float_to_half_bits(f)) {}  // NOLINT: implicit like __half
  MEDSEG_HOST_DEVICE operator float() const { return detail::half_bits_to_float(bits); }

  static MEDSEG_HOST_DEVICE float16 from_bits(std::uint16_t b) {
    float16 h;
    h.bits = b;
    return h;
  }
};

/// bfloat16: the upper half of a binary32, with float's range and 8 bits of mantissa.
struct bfloat16 {
  std::uint16_t bits = 0;

  bfloat16() = default;
  MEDSEG_HOST_DEVICE bfloat16(float f) : bits(detail::float_to_bfloat16_bits(f)) {}  // NOLINT
  MEDSEG_HOST_DEVICE operator float() const { return detail::bits_float(static_cast<std::uint32_t>(bits) << 16); }

  static MEDSEG_HOST_DEVICE bfloat16 from_bits(std::uint16_t b) {
    bfloat16 h;
    h.bits = b;
    return h;
  }
};

static_assert(sizeof(float16) == 2 && sizeof(bfloat16) == 2);

}  // namespace medseg

template <>
class std::numeric_limits<medseg::float16> {
 public:
  static constexpr bool is_specialized = true;
  static constexpr bool is_signed = true;
  static constexpr bool is_integer = false;
  static constexpr bool has_infinity = true;
  static constexpr bool has_quiet_NaN = true;
  static constexpr int digits = 11;
  static medseg::float16 lowest() { return medseg::float16::from_bits(0xfbffu); }
  static medseg::float16 max() { return medseg::float16::from_bits(0x7bffu); }
  static medseg::float16 min() { return medseg::float16::from_bits(0x0400u); }
  static medseg::float16 epsilon() { return medseg::float16::from_bits(0x1400u); }
  static medseg::float16 infinity() { return medseg::float16::from_bits(0x7c00u); }
  static medseg::float16 quiet_NaN() { return medseg::float16::from_bits(0x7e00u); }
};

template <>
class std::numeric_limits<medseg::bfloat16> {
 public:
  static constexpr bool is_specialized = true;
  static constexpr bool is_signed = true;
  static constexpr bool is_integer = false;
  static constexpr bool has_infinity = true;
  static constexpr bool has_quiet_NaN = true;
  static constexpr int digits = 8;
  static medseg::bfloat16 lowest() { return medseg::bfloat16::from_bits(0xff7fu); }
  static medseg::bfloat16 max() { return medseg::bfloat16::from_bits(0x7f7fu); }
  static medseg::bfloat16 min() { return medseg::bfloat16::from_bits(0x0080u); }
  static medseg::bfloat16 epsilon() { return medseg::bfloat16::from_bits(0x3c00u); }
  static medseg::bfloat16 infinity() { return medseg::bfloat16::from_bits(0x7f80u); }
  static medseg::bfloat16 quiet_NaN() { return medseg::bfloat16::from_bits(0x7fc0u); }
};
