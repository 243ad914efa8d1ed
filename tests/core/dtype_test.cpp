#include "medseg/core/dtype.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

using namespace medseg;

TEST_CASE("dtype traits name types as NumPy does") {
  STATIC_REQUIRE(dtype_of<float> == DType::float32);
  STATIC_REQUIRE(dtype_of<const std::uint16_t> == DType::uint16);
  STATIC_REQUIRE(dtype_of<bfloat16> == DType::bfloat16);
  STATIC_REQUIRE(!Element<bool>);
  STATIC_REQUIRE(!Element<long double>);
  CHECK(name(DType::bfloat16) == "bfloat16");
  CHECK(size_of(DType::int64) == 8);
  CHECK(size_of(DType::float16) == 2);
  CHECK(parse_dtype("uint8") == DType::uint8);
  CHECK_THROWS_WITH(parse_dtype("float128"), Catch::Contains("\"float128\"") && Catch::Contains("float32"));
  for (int i = 0; i <= static_cast<int>(DType::uint64); ++i) {
    const auto t = static_cast<DType>(i);
    CHECK(parse_dtype(name(t)) == t);
    visit_dtype(t, [&](auto tag) { CHECK(dtype_of<decltype(tag)> == t); });
  }
}

TEST_CASE("float16 round trips every finite half exactly") {
  int checked = 0;
  for (std::uint32_t b = 0; b < 0x10000u; ++b) {
    const auto h = float16::from_bits(static_cast<std::uint16_t>(b));
    const float f = h;
    if (std::isnan(f)) {
      CHECK(std::isnan(static_cast<float>(float16(f))));
      continue;
    }
    if (float16(f).bits != h.bits) FAIL("bits " << b);
    ++checked;
  }
  CHECK(checked == 0x10000 - 2 * 1023 + 0);  // 2 * (2^10 - 1) NaN patterns
}

TEST_CASE("float16 rounds to nearest even and saturates to infinity") {
  CHECK(float16(1.0f).bits == 0x3c00u);
  CHECK(float16(-2.0f).bits == 0xc000u);
  CHECK(float16(65504.0f).bits == 0x7bffu);
  CHECK(float16(65520.0f).bits == 0x7c00u);              // halfway to 2^16: rounds up to inf
  CHECK(float16(65519.0f).bits == 0x7bffu);
  CHECK(float16(1.0f + 1.0f / 2048).bits == 0x3c00u);    // halfway between 1 and next: even
  CHECK(float16(1.0f + 3.0f / 2048).bits == 0x3c02u);    // halfway, rounds up to even
  CHECK(float16(5.960464477539063e-08f).bits == 0x0001u);  // smallest subnormal
  CHECK(float16(2.98e-08f).bits == 0x0000u);             // below half of it
  CHECK(float16(3.0e-08f).bits == 0x0001u);              // above half of it
  CHECK(float16(std::numeric_limits<float>::infinity()).bits == 0x7c00u);
  CHECK(std::isnan(static_cast<float>(float16(std::nanf("")))));
  CHECK(static_cast<float>(std::numeric_limits<float16>::max()) == 65504.0f);
}

TEST_CASE("bfloat16 keeps the upper half of a float with rounding") {
  CHECK(bfloat16(1.0f).bits == 0x3f80u);
  CHECK(static_cast<float>(bfloat16(3.140625f)) == 3.140625f);
  CHECK(bfloat16(1.0f + 1.0f / 256).bits == 0x3f80u);   // halfway: even
  CHECK(bfloat16(1.0f + 3.0f / 256).bits == 0x3f82u);   // halfway: up to even
  CHECK(std::isnan(static_cast<float>(bfloat16(std::nanf("")))));
  CHECK(static_cast<float>(bfloat16(1e38f)) == Approx(1e38f).epsilon(0.01));
}
