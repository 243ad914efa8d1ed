// gzip and zlib streams: medseg's parallel members, streams written by other tools (one
// member, several members, zero padding), and truncated or corrupt input.
#include <catch2/catch.hpp>

#include <numeric>
#include <zlib.h>

#include "medseg/io/gzip.hpp"

using namespace medseg;
using namespace medseg::io;

namespace {

Bytes sample(std::size_t n) {
  Bytes b(n);
  std::uint32_t x = 12345;
  for (auto& v : b) {
    x = x * 1103515245u + 12345u;
    v = static_cast<std::uint8_t>((x >> 16) % 7);  // compressible but not trivial
  }
  return b;
}

/// A single-member gzip stream as zlib's gzip writer (and Python's gzip) makes it.
Bytes zlib_gzip(ByteSpan raw) {
  z_stream z{};
  REQUIRE(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  Bytes out(deflateBound(&z, raw.size()) + 64);
  z.next_in = const_cast<Bytef*>(raw.data());
  z.avail_in = static_cast<uInt>(raw.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("gzip: medseg's multi-member streams round-trip and zlib reads them") {
  for (std::size_t n : {std::size_t{0}, std::size_t{1000}, (std::size_t{9} << 20) + 17}) {
    const Bytes raw = sample(n);
    const Bytes gz = gzip(raw, 1);
    CHECK(gunzip(gz, "x.gz") == raw);
    // zlib's inflate with gzip framing reads member after member as one stream.
    Bytes via_zlib(n + 1);
    z_stream z{};
    REQUIRE(inflateInit2(&z, 15 + 32) == Z_OK);
    z.next_in = const_cast<Bytef*>(gz.data());
    z.avail_in = static_cast<uInt>(gz.size());
    std::size_t produced = 0;
    for (;;) {
      z.next_out = via_zlib.data() + produced;
      z.avail_out = static_cast<uInt>(via_zlib.size() - produced);
      const int r = inflate(&z, Z_NO_FLUSH);
      produced = via_zlib.size() - z.avail_out;
      if (r == Z_STREAM_END && z.avail_in > 0) {
        REQUIRE(inflateReset(&z) == Z_OK);
        continue;
      }
      REQUIRE((r == Z_STREAM_END || r == Z_OK || r == Z_BUF_ERROR));
      if (r == Z_STREAM_END || z.avail_in == 0) break;
    }
    inflateEnd(&z);
    via_zlib.resize(produced);
    CHECK(via_zlib == raw);
  }
}

TEST_CASE("gzip: streams from other writers, several members and zero padding read") {
  const Bytes a = sample(300000), b = sample(5000);
  Bytes two = zlib_gzip(a);
  const Bytes second = zlib_gzip(b);
  CHECK(gunzip(two, "one.gz") == a);
  two.insert(two.end(), second.begin(), second.end());
  Bytes ab = a;
  ab.insert(ab.end(), b.begin(), b.end());
  CHECK(gunzip(two, "two.gz") == ab);
  two.insert(two.end(), 512, 0);
  CHECK(gunzip(two, "padded.gz") == ab);
}

TEST_CASE("gzip: truncated corrupt and foreign data fail naming the file") {
  const Bytes raw = sample(200000);
  for (const Bytes& gz : {zlib_gzip(raw), gzip(raw, 6)}) {
    CHECK_THAT(error_of([&] { gunzip(ByteSpan(gz).first(gz.size() - 3), "cut.nii.gz"); }),
               Catch::Contains("cut.nii.gz") && Catch::Contains("gzip stream"));
    CHECK_THAT(error_of([&] { gunzip(ByteSpan(gz).first(gz.size() / 3), "cut.nii.gz"); }), Catch::Contains("cut.nii.gz"));
    Bytes bad = gz;
    for (std::size_t i = 40; i < 60; ++i) bad[i] ^= 0xff;
    CHECK_THAT(error_of([&] { gunzip(bad, "bad.gz"); }), Catch::Contains("bad.gz"));
    Bytes tail = gz;
    tail.push_back('x');
    CHECK_THAT(error_of([&] { gunzip(tail, "tail.gz"); }), Catch::Contains("tail.gz"));
  }
  CHECK_THAT(error_of([&] { gunzip(raw, "plain.nii.gz"); }), Catch::Contains("magic"));
  Bytes crc = gzip(raw, 1);
  crc[crc.size() - 6] ^= 1;  // CRC32 of the only member
  CHECK_THAT(error_of([&] { gunzip(crc, "crc.gz"); }), Catch::Contains("CRC"));
}

TEST_CASE("gzip: zlib streams inflate to exactly the expected size") {
  const Bytes raw = sample(10000);
  const Bytes z = zlib_deflate(raw, 1);
  CHECK(zlib_inflate(z, raw.size(), "x.zraw") == raw);
  CHECK_THAT(error_of([&] { zlib_inflate(z, raw.size() + 1, "x.zraw"); }), Catch::Contains("zlib stream"));
  CHECK_THAT(error_of([&] { zlib_inflate(z, raw.size() - 1, "x.zraw"); }), Catch::Contains("more data"));
  CHECK_THAT(error_of([&] { zlib_inflate(ByteSpan(z).first(z.size() / 2), raw.size(), "x.zraw"); }),
             Catch::Contains("x.zraw"));
}
