// Bytes in and out of files for the image readers: whole-file reads that name the file when
// they fail, atomic writes (a temporary file in the same folder, then a rename, so a crash
// never leaves a half-written volume under the final name), and byte-order helpers for the
// formats that store either endianness (NIfTI, Analyze, MetaImage, .npy).
#pragma once

#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <unistd.h>

#include "../core/error.hpp"

namespace medseg::io {

using Bytes = std::vector<std::uint8_t>;
using ByteSpan = std::span<const std::uint8_t>;

/// The whole content of `path`; throws Error naming the file when it is missing or unreadable.
Bytes read_file(const std::filesystem::path& path);

/// Writes the concatenation of `parts` to `path` atomically: into `path`.tmp.<pid> in the
/// same folder, then renamed over `path`. On failure the temporary file is removed.
void write_file_atomic(const std::filesystem::path& path, std::initializer_list<ByteSpan> parts);
/// write_file_atomic for one text.
inline void write_text_atomic(const std::filesystem::path& path, std::string_view text) {
  write_file_atomic(path, {ByteSpan(reinterpret_cast<const std::uint8_t*>(text.data()), text.size())});
}
/// `to` becomes a copy of `from`, atomically (a reader never sees half a file).
inline void copy_file_atomic(const std::filesystem::path& from, const std::filesystem::path& to) {
  write_file_atomic(to, {read_file(from)});
}

/// The file name in lower case with every extension, ".nii.gz" for "Scan.NII.GZ".
std::string lower_extensions(const std::filesystem::path& path);

/// True when this machine stores numbers least significant byte first.
inline constexpr bool host_is_little_endian = std::endian::native == std::endian::little;

/// Reverses the byte order of `count` elements of `width` bytes (2, 4 or 8) in place.
void swap_bytes(void* data, std::size_t count, std::size_t width);

/// A T read from `p` (no alignment needed), byte-swapped when `swap`.
template <class T>
T load(const std::uint8_t* p, bool swap) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  if (swap && sizeof(T) > 1) swap_bytes(&v, 1, sizeof(T));
  return v;
}

/// Writes `v` at `p` in little-endian order (the order medseg writes every format in).
template <class T>
void store_le(std::uint8_t* p, T v) {
  if constexpr (!host_is_little_endian) swap_bytes(&v, 1, sizeof(T));
  std::memcpy(p, &v, sizeof(T));
}

// ----------------------------------------------------------------------------------------
// Implementation

inline Bytes read_file(const std::filesystem::path& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  require(f != nullptr, [&] {
    return ErrorInfo{.where = path.string(), .field = "file", .expected = "a readable file",
                     .actual = std::strerror(errno)};
  });
  Bytes out;
  std::fseek(f, 0, SEEK_END);
  const long size = std::ftell(f);
  std::fseek(f, 0, SEEK_SET);
  if (size > 0) {
    out.resize(static_cast<std::size_t>(size));
    const std::size_t got = std::fread(out.data(), 1, out.size(), f);
    out.resize(got);
  } else if (size < 0) {  // not seekable (a pipe): read in blocks
    std::uint8_t block[1 << 16];
    for (std::size_t n; (n = std::fread(block, 1, sizeof block, f)) > 0;) out.insert(out.end(), block, block + n);
  }
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  require(!failed, [&] {
    return ErrorInfo{.where = path.string(), .field = "file", .expected = "a readable file", .actual = "a read error"};
  });
  return out;
}

inline void write_file_atomic(const std::filesystem::path& path, std::initializer_list<ByteSpan> parts) {
  const std::filesystem::path tmp = path.string() + ".tmp." + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  require(f != nullptr, [&] {
    return ErrorInfo{.where = path.string(), .field = "file", .expected = "a writable location",
                     .actual = std::strerror(errno)};
  });
  bool ok = true;
  for (const auto& part : parts)
    if (!part.empty()) ok = ok && std::fwrite(part.data(), 1, part.size(), f) == part.size();
  ok = (std::fclose(f) == 0) && ok;
  std::error_code ec;
  if (ok) std::filesystem::rename(tmp, path, ec);
  if (!ok || ec) {
    std::filesystem::remove(tmp, ec);
    throw Error{{.where = path.string(), .field = "file", .expected = "a complete write",
                 .actual = ok ? "rename failed" : "a write error (disk full?)"}};
  }
}

inline std::string lower_extensions(const std::filesystem::path& path) {
  std::string name = path.filename().string();
  for (char& c : name) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  const auto dot = name.find('.', 1);  // a leading dot is a hidden file, not an extension
  return dot == std::string::npos ? std::string() : name.substr(dot);
}

inline void swap_bytes(void* data, std::size_t count, std::size_t width) {
  auto* p = static_cast<std::uint8_t*>(data);
  switch (width) {
    case 2:
      for (std::size_t i = 0; i < count; ++i) {
        std::uint16_t v;
        std::memcpy(&v, p + 2 * i, 2);
        v = static_cast<std::uint16_t>((v >> 8) | (v << 8));
        std::memcpy(p + 2 * i, &v, 2);
      }
      break;
    case 4:
      for (std::size_t i = 0; i < count; ++i) {
        std::uint32_t v;
        std::memcpy(&v, p + 4 * i, 4);
        v = __builtin_bswap32(v);
        std::memcpy(p + 4 * i, &v, 4);
      }
      break;
    case 8:
      for (std::size_t i = 0; i < count; ++i) {
        std::uint64_t v;
        std::memcpy(&v, p + 8 * i, 8);
        v = __builtin_bswap64(v);
        std::memcpy(p + 8 * i, &v, 8);
      }
      break;
    default:
      break;  // single bytes have no order
  }
}

}  // namespace medseg::io
