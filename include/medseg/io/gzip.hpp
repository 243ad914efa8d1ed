// gzip and zlib streams for .nii.gz and compressed MetaImage, through libdeflate (whole
// buffers, 2-4x faster than zlib's streaming inflate).
// medseg writes .gz files as a series of gzip members of 4 MiB of input each, every member
// carrying its own compressed size in an extra field ("MS"), the way BGZF (samtools) does:
// any gzip reader (nibabel, ITK, gunzip) reads them as one stream, and medseg compresses and
// inflates the members on all threads. Other gzip files are inflated member by member.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <libdeflate.h>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "file.hpp"

namespace medseg::io {

/// True when `bytes` start with the gzip magic (1f 8b).
inline bool is_gzip(ByteSpan bytes) { return bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b; }

/// Every member of a gzip stream, inflated and concatenated. Trailing zero padding is
/// allowed (some writers pad); anything else that is not a complete gzip member throws an
/// Error naming `where`, so a truncated download is never read as a short volume.
Bytes gunzip(ByteSpan compressed, const std::string& where);

/// A gzip stream of `raw` at libdeflate `level` (1 fastest .. 12 smallest; 1 is nibabel's
/// default), in independently compressed members (see the header comment).
Bytes gzip(ByteSpan raw, int level = 1);

/// A zlib (RFC 1950) stream that must inflate to exactly `expected_size` bytes.
Bytes zlib_inflate(ByteSpan compressed, std::size_t expected_size, const std::string& where);
/// A zlib (RFC 1950) stream of `raw`.
Bytes zlib_deflate(ByteSpan raw, int level = 1);

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

inline constexpr std::size_t gzip_member_input = std::size_t{4} << 20;

struct DecompressorDeleter {
  void operator()(libdeflate_decompressor* d) const { libdeflate_free_decompressor(d); }
};
struct CompressorDeleter {
  void operator()(libdeflate_compressor* c) const { libdeflate_free_compressor(c); }
};
using Decompressor = std::unique_ptr<libdeflate_decompressor, DecompressorDeleter>;
using Compressor = std::unique_ptr<libdeflate_compressor, CompressorDeleter>;

inline Decompressor make_decompressor() {
  Decompressor d(libdeflate_alloc_decompressor());
  if (!d) throw Error{{.where = "gzip", .field = "memory", .expected = "a libdeflate decompressor", .actual = "none"}};
  return d;
}
inline Compressor make_compressor(int level, const char* where) {
  require(level >= 1 && level <= 12, [&] {
    return ErrorInfo{.where = where, .field = "compression level", .expected = "1..12", .actual = std::to_string(level)};
  });
  Compressor c(libdeflate_alloc_compressor(level));
  if (!c) throw Error{{.where = where, .field = "memory", .expected = "a libdeflate compressor", .actual = "none"}};
  return c;
}

/// A member written by medseg: where its deflate data lies and how much it inflates to.
struct Member {
  std::size_t begin = 0, size = 0;  // the whole member in the stream
  std::size_t body = 0;             // offset of the deflate data
  std::uint32_t crc = 0, isize = 0;
};

/// The members of a stream medseg wrote, or an empty list when any member lacks the "MS"
/// size field (then the stream is inflated serially).
inline std::vector<Member> sized_members(ByteSpan s) {
  std::vector<Member> members;
  std::size_t pos = 0;
  while (pos < s.size()) {
    if (std::all_of(s.begin() + static_cast<std::ptrdiff_t>(pos), s.end(), [](std::uint8_t b) { return b == 0; }))
      break;
    // 10-byte header, FEXTRA only, XLEN 8, subfield 'M' 'S' of length 4.
    if (s.size() - pos < 26 || s[pos] != 0x1f || s[pos + 1] != 0x8b || s[pos + 2] != 8 || s[pos + 3] != 4 ||
        load<std::uint16_t>(&s[pos + 10], !host_is_little_endian) != 8 || s[pos + 12] != 'M' || s[pos + 13] != 'S' ||
        load<std::uint16_t>(&s[pos + 14], !host_is_little_endian) != 4)
      return {};
    Member m;
    m.begin = pos;
    m.size = load<std::uint32_t>(&s[pos + 16], !host_is_little_endian);
    m.body = pos + 20;
    if (m.size < 28 || m.size > s.size() - pos) return {};
    m.crc = load<std::uint32_t>(&s[pos + m.size - 8], !host_is_little_endian);
    m.isize = load<std::uint32_t>(&s[pos + m.size - 4], !host_is_little_endian);
    if (m.isize > m.size * 1032 + 1024) return {};  // beyond deflate's ratio: not ours, or corrupt
    members.push_back(m);
    pos += m.size;
  }
  return members;
}

[[noreturn]] inline void corrupt_gzip(const std::string& where, const std::string& what) {
  throw Error{{.where = where, .field = "gzip stream", .expected = "a complete gzip stream", .actual = what,
               .detail = "the file is truncated or corrupt"}};
}

inline Bytes gunzip_members(ByteSpan s, const std::vector<Member>& members, const std::string& where) {
  std::vector<std::size_t> out_at(members.size() + 1, 0);
  for (std::size_t i = 0; i < members.size(); ++i) out_at[i + 1] = out_at[i] + members[i].isize;
  Bytes out(out_at.back());
  parallel_for(0, static_cast<std::int64_t>(members.size()), 1, [&](std::int64_t b, std::int64_t e) {
    auto d = make_decompressor();
    for (auto i = static_cast<std::size_t>(b); i < static_cast<std::size_t>(e); ++i) {
      const Member& m = members[i];
      std::size_t got = 0;
      const auto r = libdeflate_deflate_decompress(d.get(), &s[m.body], m.size - 8 - (m.body - m.begin),
                                                   out.data() + out_at[i], m.isize, &got);
      if (r != LIBDEFLATE_SUCCESS || got != m.isize)
        corrupt_gzip(where, "member " + std::to_string(i) + " does not inflate to its recorded size");
      if (libdeflate_crc32(0, out.data() + out_at[i], got) != m.crc)
        corrupt_gzip(where, "a CRC mismatch in member " + std::to_string(i));
    }
  });
  return out;
}

}  // namespace detail

inline Bytes gunzip(ByteSpan s, const std::string& where) {
  if (!is_gzip(s)) detail::corrupt_gzip(where, "no gzip magic (1f 8b)");
  if (auto members = detail::sized_members(s); !members.empty()) return detail::gunzip_members(s, members, where);

  // Deflate expands at most 1032:1, which bounds the buffer a corrupt size field can ask for.
  const std::size_t limit = s.size() * 1032 + (1 << 20);
  std::size_t guess = s.size() >= 4 ? load<std::uint32_t>(&s[s.size() - 4], !host_is_little_endian) : 0;
  guess = std::clamp<std::size_t>(guess, std::min<std::size_t>(limit, 4 * s.size() + 4096), limit);
  Bytes out(guess);
  auto d = detail::make_decompressor();
  std::size_t in_pos = 0, out_pos = 0;
  while (in_pos < s.size()) {
    if (std::all_of(s.begin() + static_cast<std::ptrdiff_t>(in_pos), s.end(), [](std::uint8_t b) { return b == 0; }))
      break;
    if (!is_gzip(s.subspan(in_pos))) detail::corrupt_gzip(where, "data that is not a gzip member after the end of the stream");
    std::size_t used_in = 0, used_out = 0;
    const auto r = libdeflate_gzip_decompress_ex(d.get(), &s[in_pos], s.size() - in_pos, out.data() + out_pos,
                                                 out.size() - out_pos, &used_in, &used_out);
    if (r == LIBDEFLATE_INSUFFICIENT_SPACE) {
      if (out.size() >= limit) detail::corrupt_gzip(where, "a member that inflates past the deflate ratio bound");
      out.resize(std::min(limit, out.size() * 2));
      continue;
    }
    if (r != LIBDEFLATE_SUCCESS) detail::corrupt_gzip(where, "an incomplete or corrupt deflate stream");
    in_pos += used_in;
    out_pos += used_out;
  }
  out.resize(out_pos);
  return out;
}

inline Bytes gzip(ByteSpan raw, int level) {
  const std::size_t block = detail::gzip_member_input;
  const std::size_t members = std::max<std::size_t>(1, (raw.size() + block - 1) / block);
  std::vector<Bytes> parts(members);
  parallel_for(0, static_cast<std::int64_t>(members), 1, [&](std::int64_t b, std::int64_t e) {
    auto c = detail::make_compressor(level, "gzip");
    for (auto i = static_cast<std::size_t>(b); i < static_cast<std::size_t>(e); ++i) {
      const auto in = raw.subspan(i * block, std::min(block, raw.size() - i * block));
      Bytes& p = parts[i];
      p.resize(20 + libdeflate_deflate_compress_bound(c.get(), in.size()) + 8);
      const std::uint8_t head[20] = {0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 255, 8, 0, 'M', 'S', 4, 0, 0, 0, 0, 0};
      std::copy(head, head + 20, p.begin());
      const std::size_t n = libdeflate_deflate_compress(c.get(), in.data(), in.size(), p.data() + 20, p.size() - 28);
      if (n == 0) throw Error{{.where = "gzip", .field = "deflate", .expected = "compressed output", .actual = "none"}};
      p.resize(20 + n + 8);
      store_le<std::uint32_t>(&p[16], static_cast<std::uint32_t>(p.size()));
      store_le<std::uint32_t>(&p[20 + n], libdeflate_crc32(0, in.data(), in.size()));
      store_le<std::uint32_t>(&p[24 + n], static_cast<std::uint32_t>(in.size()));
    }
  });
  std::size_t total = 0;
  for (const auto& p : parts) total += p.size();
  Bytes out;
  out.reserve(total);
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

inline Bytes zlib_inflate(ByteSpan s, std::size_t expected_size, const std::string& where) {
  // Checked before allocating: a header's sizes must not buy more memory than the data can fill.
  require(expected_size <= s.size() * 1032 + 1024, [&] {
    return ErrorInfo{.where = where, .field = "zlib stream",
                     .expected = "at most " + std::to_string(s.size() * 1032 + 1024) + " bytes from " +
                                 std::to_string(s.size()) + " compressed (deflate's bound)",
                     .actual = std::to_string(expected_size) + " bytes for the header's sizes"};
  });
  Bytes out(expected_size);
  auto d = detail::make_decompressor();
  std::size_t got = 0;
  const auto r = libdeflate_zlib_decompress(d.get(), s.data(), s.size(), out.data(), out.size(), &got);
  require(r == LIBDEFLATE_SUCCESS && got == expected_size, [&] {
    return ErrorInfo{.where = where, .field = "zlib stream",
                     .expected = "a complete stream of " + std::to_string(expected_size) + " bytes",
                     .actual = r == LIBDEFLATE_SUCCESS ? std::to_string(got) + " bytes"
                               : r == LIBDEFLATE_INSUFFICIENT_SPACE ? "more data than the header's sizes"
                                                                    : "a truncated or corrupt stream"};
  });
  return out;
}

inline Bytes zlib_deflate(ByteSpan raw, int level) {
  auto c = detail::make_compressor(level, "zlib");
  Bytes out(libdeflate_zlib_compress_bound(c.get(), raw.size()));
  out.resize(libdeflate_zlib_compress(c.get(), raw.data(), raw.size(), out.data(), out.size()));
  return out;
}

}  // namespace medseg::io
