// NumPy .npy files (format 1.0, 2.0 and 3.0): MedicalSeg's preprocessed layout stores each
// volume and label this way, as arrays in SimpleITK's [D, H, W] order. An .npy holds no
// geometry, so a read image has the default one (unit spacing, zero origin, identity) and
// the array's own shape, whatever its rank; Fortran-ordered arrays are transposed on read.
// Written files are format 1.0 (2.0 when the header needs it), little-endian, C order.
#pragma once

#include <cctype>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "../core/error.hpp"
#include "file.hpp"
#include "image.hpp"
#include "voxels.hpp"

namespace medseg::io {

struct NpyHeader {
  int major_version = 1;
  DType dtype = DType::float32;
  bool swapped = false;       // stored in the other byte order than this machine's
  bool fortran_order = false;
  Shape shape;
  std::size_t data_offset = 0;
};

/// The header at the start of `bytes`; throws Error naming `where` for anything but a
/// well-formed header of a supported dtype (bool, int8..64, uint8..64, float16/32/64).
NpyHeader parse_npy_header(ByteSpan bytes, const std::string& where);

/// An image (default geometry) of the array in `bytes`.
AnyImage decode_npy(ByteSpan bytes, const std::string& where, const ReadOptions& options = {});
AnyImage read_npy(const std::filesystem::path& path, const ReadOptions& options = {});

/// The .npy file of `image`'s voxels (geometry is not stored: keep it beside, as
/// MedicalSeg's dataset.json does). bfloat16, which NumPy lacks, is stored as float32.
Bytes encode_npy(const AnyImage& image);
void write_npy(const AnyImage& image, const std::filesystem::path& path);

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

inline const char* npy_descr(DType t) {
  switch (t) {
    case DType::float32: return "<f4";
    case DType::float64: return "<f8";
    case DType::float16: return "<f2";
    case DType::int8: return "|i1";
    case DType::int16: return "<i2";
    case DType::int32: return "<i4";
    case DType::int64: return "<i8";
    case DType::uint8: return "|u1";
    case DType::uint16: return "<u2";
    case DType::uint32: return "<u4";
    case DType::uint64: return "<u8";
    case DType::bfloat16: return "<f4";
  }
  return "<f4";
}

/// The text after `'key':` in a header dict, or throws naming the key.
inline std::string_view npy_value(std::string_view dict, std::string_view key, const std::string& where) {
  const std::string quoted = "'" + std::string(key) + "'";
  auto at = dict.find(quoted);
  if (at == std::string_view::npos) at = dict.find("\"" + std::string(key) + "\"");
  if (at != std::string_view::npos) at = dict.find(':', at + quoted.size());
  require(at != std::string_view::npos, [&] {
    return ErrorInfo{.where = where, .field = "header", .expected = "a '" + std::string(key) + "' entry",
                     .actual = std::string(dict.substr(0, 120))};
  });
  std::string_view v = dict.substr(at + 1);
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  return v;
}

}  // namespace detail

inline NpyHeader parse_npy_header(ByteSpan b, const std::string& where) {
  static constexpr std::uint8_t magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  require(b.size() >= 10 && std::equal(magic, magic + 6, b.begin()), [&] {
    return ErrorInfo{.where = where, .field = "magic", .expected = "\\x93NUMPY (a .npy file)",
                     .actual = b.size() < 10 ? std::to_string(b.size()) + " bytes" : "other bytes"};
  });
  NpyHeader h;
  h.major_version = b[6];
  require(h.major_version >= 1 && h.major_version <= 3, [&] {
    return ErrorInfo{.where = where, .field = "version", .expected = "1.0, 2.0 or 3.0",
                     .actual = std::to_string(b[6]) + "." + std::to_string(b[7])};
  });
  const std::size_t prefix = h.major_version == 1 ? 10 : 12;
  require(b.size() >= prefix, [&] {
    return ErrorInfo{.where = where, .field = "header", .expected = std::to_string(prefix) + " bytes",
                     .actual = std::to_string(b.size())};
  });
  const std::size_t length = h.major_version == 1 ? load<std::uint16_t>(&b[8], !host_is_little_endian)
                                                  : load<std::uint32_t>(&b[8], !host_is_little_endian);
  require(length <= b.size() - prefix, [&] {
    return ErrorInfo{.where = where, .field = "header length", .expected = "<= " + std::to_string(b.size() - prefix),
                     .actual = std::to_string(length)};
  });
  h.data_offset = prefix + length;
  const std::string_view dict(reinterpret_cast<const char*>(&b[prefix]), length);

  std::string_view descr = detail::npy_value(dict, "descr", where);
  const char quote = descr.empty() ? '\'' : descr.front();
  const auto end = descr.find(quote, 1);
  require((quote == '\'' || quote == '"') && end != std::string_view::npos && end >= 3, [&] {
    return ErrorInfo{.where = where, .field = "descr", .expected = "a simple dtype string such as '<f4'",
                     .actual = std::string(descr.substr(0, 40))};
  });
  descr = descr.substr(1, end - 1);
  const char order = descr[0];
  const std::string_view code = descr.substr(1);
  struct Known {
    std::string_view code;
    DType type;
  };
  static constexpr Known known[] = {{"b1", DType::uint8},  {"u1", DType::uint8},   {"i1", DType::int8},
                                    {"i2", DType::int16},  {"u2", DType::uint16},  {"i4", DType::int32},
                                    {"u4", DType::uint32}, {"i8", DType::int64},   {"u8", DType::uint64},
                                    {"f2", DType::float16}, {"f4", DType::float32}, {"f8", DType::float64}};
  const Known* k = std::find_if(std::begin(known), std::end(known), [&](const Known& x) { return x.code == code; });
  require(k != std::end(known) && (order == '<' || order == '>' || order == '|' || order == '='), [&] {
    return ErrorInfo{.where = where, .field = "descr",
                     .expected = "bool, int8..64, uint8..64 or float16/32/64 in either byte order",
                     .actual = "'" + std::string(descr) + "'"};
  });
  h.dtype = k->type;
  h.swapped = size_of(h.dtype) > 1 && ((order == '<' && !host_is_little_endian) || (order == '>' && host_is_little_endian));

  const std::string_view fortran = detail::npy_value(dict, "fortran_order", where);
  require(fortran.starts_with("True") || fortran.starts_with("False"), [&] {
    return ErrorInfo{.where = where, .field = "fortran_order", .expected = "True or False",
                     .actual = std::string(fortran.substr(0, 20))};
  });
  h.fortran_order = fortran.starts_with("True");

  std::string_view shape = detail::npy_value(dict, "shape", where);
  const auto close = shape.find(')');
  require(shape.starts_with("(") && close != std::string_view::npos, [&] {
    return ErrorInfo{.where = where, .field = "shape", .expected = "a tuple", .actual = std::string(shape.substr(0, 40))};
  });
  shape = shape.substr(1, close - 1);
  std::uint64_t total = 1;
  while (!shape.empty()) {
    while (!shape.empty() && (shape.front() == ' ' || shape.front() == ',')) shape.remove_prefix(1);
    if (shape.empty()) break;
    std::size_t digits = 0;
    while (digits < shape.size() && std::isdigit(static_cast<unsigned char>(shape[digits]))) ++digits;
    require(digits > 0 && digits <= 15 && h.shape.rank() < max_rank, [&] {
      return ErrorInfo{.where = where, .field = "shape", .expected = "up to 8 non-negative extents",
                       .actual = "(" + std::string(dict.substr(dict.find('(') + 1, 40))};
    });
    const auto n = static_cast<std::int64_t>(std::stoll(std::string(shape.substr(0, digits))));
    require(n > 0, [&] {
      return ErrorInfo{.where = where, .field = "shape", .expected = "positive extents (an image has voxels)",
                       .actual = "an extent of 0"};
    });
    total *= static_cast<std::uint64_t>(n);
    require(total <= (std::uint64_t{1} << 50), [&] {
      return ErrorInfo{.where = where, .field = "shape", .expected = "at most 2^50 elements", .actual = "more"};
    });
    h.shape.push_back(n);
    shape.remove_prefix(digits);
  }
  return h;
}

inline AnyImage decode_npy(ByteSpan b, const std::string& where, const ReadOptions& options) {
  const NpyHeader h = parse_npy_header(b, where);
  const auto needed = static_cast<std::uint64_t>(h.shape.product()) * size_of(h.dtype);
  require(needed <= b.size() - h.data_offset, [&] {
    return ErrorInfo{.where = where, .field = "data",
                     .expected = std::to_string(needed) + " bytes for shape " + h.shape.to_string() + " of " +
                                 std::string(name(h.dtype)),
                     .actual = std::to_string(b.size() - h.data_offset) + " bytes in the file",
                     .detail = "the header's sizes exceed the file"};
  });
  const ByteSpan data = b.subspan(h.data_offset);
  if (!h.fortran_order || h.shape.rank() < 2)
    return decode_voxels(data, h.dtype, h.swapped, h.shape, Geometry{}, {}, options);
  // Fortran order: decode with the reversed shape (that is the memory order), then transpose.
  Shape reversed;
  for (int a = h.shape.rank() - 1; a >= 0; --a) reversed.push_back(h.shape[a]);
  const AnyImage f = decode_voxels(data, h.dtype, h.swapped, reversed, Geometry{}, {}, options);
  AnyImage out = make_image(dtype(f), h.shape, Geometry{});
  std::visit(
      [&](auto& dst) {
        using T = typename std::remove_cvref_t<decltype(dst.voxels)>::value_type;
        const T* src = std::get<Image<T>>(f).voxels.data();
        T* o = dst.voxels.data();
        const int rank = h.shape.rank();
        const Strides fs = contiguous_strides(reversed);  // element strides of the source, reversed axes
        std::array<std::int64_t, max_rank> index{};
        std::int64_t src_off = 0;
        const std::int64_t n = h.shape.product();
        for (std::int64_t i = 0; i < n; ++i) {
          o[i] = src[src_off];
          for (int a = rank - 1; a >= 0; --a) {  // C-order increment; axis a has source stride fs[rank-1-a]
            const std::int64_t stride = fs[rank - 1 - a];
            if (++index[static_cast<std::size_t>(a)] < h.shape[a]) {
              src_off += stride;
              break;
            }
            src_off -= stride * (h.shape[a] - 1);
            index[static_cast<std::size_t>(a)] = 0;
          }
        }
      },
      out);
  return out;
}

inline AnyImage read_npy(const std::filesystem::path& path, const ReadOptions& options) {
  const Bytes b = read_file(path);
  return decode_npy(b, path.string(), options);
}

inline Bytes encode_npy(const AnyImage& image) {
  const AnyImage stored = dtype(image) == DType::bfloat16 ? AnyImage(image_cast<float>(image)) : image;
  const Shape s = shape(stored);
  std::string dict = "{'descr': '" + std::string(detail::npy_descr(dtype(stored))) + "', 'fortran_order': False, 'shape': (";
  for (int a = 0; a < s.rank(); ++a) dict += (a ? ", " : "") + std::to_string(s[a]);
  if (s.rank() == 1) dict += ",";  // Python's one-tuple
  dict += "), }";
  // Pad with spaces and a newline so the data starts at a multiple of 64 bytes (NumPy's rule).
  const bool v2 = dict.size() + 11 > 65535;
  const std::size_t prefix = v2 ? 12 : 10;
  const std::size_t total = (prefix + dict.size() + 1 + 63) / 64 * 64;
  dict.append(total - prefix - dict.size() - 1, ' ');
  dict += '\n';
  Bytes out = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<std::uint8_t>(v2 ? 2 : 1), 0};
  out.resize(prefix);
  if (v2)
    store_le<std::uint32_t>(&out[8], static_cast<std::uint32_t>(dict.size()));
  else
    store_le<std::uint16_t>(&out[8], static_cast<std::uint16_t>(dict.size()));
  out.insert(out.end(), dict.begin(), dict.end());
  const Bytes data = voxel_bytes(stored);
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

inline void write_npy(const AnyImage& image, const std::filesystem::path& path) {
  write_file_atomic(path, {encode_npy(image)});
}

}  // namespace medseg::io
