// MetaImage (ITK's .mha, and .mhd with its .raw/.zraw): a text header of "Key = Value"
// lines, then the voxels (LOCAL) or the name of the file holding them, optionally zlib
// compressed. PROMISE12 and many ITK pipelines use it. Geometry is ITK's own: Offset is the
// origin, ElementSpacing the spacing and TransformMatrix lists the direction's columns one
// after another (as ITK's MetaImageIO reads it). 2-D images read as [1, H, W] with the
// third axis a unit step along z; interleaved channels (ElementNumberOfChannels) are
// transposed to medseg's [C, D, H, W]; 4-D images read as [T, D, H, W].
#pragma once

#include <cctype>
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "file.hpp"
#include "gzip.hpp"
#include "image.hpp"
#include "voxels.hpp"

namespace medseg::io {

/// The fields of a MetaImage header that medseg uses.
struct MetaImageHeader {
  int ndims = 0;
  std::vector<std::int64_t> dim_size;      // fastest axis first
  std::vector<double> spacing, offset, transform;  // transform: ndims x ndims, column after column
  DType dtype = DType::uint8;
  int channels = 1;
  bool big_endian = false;
  bool compressed = false;
  std::int64_t compressed_size = -1;       // -1: up to the end of the data file
  std::int64_t header_size = 0;            // bytes to skip in an external data file; -1: data at its end
  std::string data_file;                   // "LOCAL" or a file name relative to the header
  std::size_t data_offset = 0;             // for LOCAL: where the voxels start in the header's file
};

/// Parses the header at the start of `bytes`; throws Error naming `where` and the field.
MetaImageHeader parse_metaimage_header(ByteSpan bytes, const std::string& where);

/// An image from an in-memory .mha (ElementDataFile = LOCAL), or with the voxels of an
/// .mhd's data file given in `data_file` (its whole content).
AnyImage decode_metaimage(ByteSpan header_file, ByteSpan data_file, const std::string& where,
                          const ReadOptions& options = {});
AnyImage read_metaimage(const std::filesystem::path& path, const ReadOptions& options = {});

struct MetaImageWriteOptions {
  bool compress = true;       // CompressedData = True (zlib)
  int compression_level = 1;  // libdeflate level 1..12
};

/// Writes .mha (voxels inside) or .mhd + .raw/.zraw beside it. [C, D, H, W] is written as a
/// 4-D image; float16/bfloat16 as float32 (MetaImage has no half types).
void write_metaimage(const AnyImage& image, const std::filesystem::path& path, const MetaImageWriteOptions& options = {});

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

inline std::string trim(std::string s) {
  const auto b = s.find_first_not_of(" \t\r");
  const auto e = s.find_last_not_of(" \t\r");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

inline std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

inline std::vector<double> meta_numbers(const std::string& value, const std::string& key, std::size_t count,
                                        const std::string& where) {
  std::vector<double> v;
  const char* p = value.data();
  const char* end = value.data() + value.size();
  while (p < end) {
    while (p < end && (*p == ' ' || *p == '\t')) ++p;
    if (p == end) break;
    double x = 0;
    const auto r = std::from_chars(p, end, x);
    require(r.ec == std::errc(), [&] {
      return ErrorInfo{.where = where, .field = key, .expected = "numbers", .actual = "\"" + value + "\""};
    });
    v.push_back(x);
    p = r.ptr;
  }
  require(v.size() == count, [&] {
    return ErrorInfo{.where = where, .field = key, .expected = std::to_string(count) + " numbers",
                     .actual = std::to_string(v.size()) + " (\"" + value + "\")"};
  });
  return v;
}

inline bool meta_bool(const std::string& value) {
  const std::string u = upper(value);
  return u == "TRUE" || u == "T" || u == "1";
}

inline const char* meta_type_name(DType t) {
  switch (t) {
    case DType::int8: return "MET_CHAR";
    case DType::uint8: return "MET_UCHAR";
    case DType::int16: return "MET_SHORT";
    case DType::uint16: return "MET_USHORT";
    case DType::int32: return "MET_INT";
    case DType::uint32: return "MET_UINT";
    case DType::int64: return "MET_LONG_LONG";
    case DType::uint64: return "MET_ULONG_LONG";
    case DType::float64: return "MET_DOUBLE";
    default: return "MET_FLOAT";
  }
}

}  // namespace detail

inline MetaImageHeader parse_metaimage_header(ByteSpan b, const std::string& where) {
  MetaImageHeader h;
  std::map<std::string, std::string> fields;
  std::size_t pos = 0;
  bool found_data_file = false;
  while (pos < b.size() && !found_data_file) {
    std::size_t eol = pos;
    while (eol < b.size() && b[eol] != '\n') ++eol;
    const std::string line(reinterpret_cast<const char*>(&b[pos]), eol - pos);
    pos = eol + 1;
    const auto eq = line.find('=');
    if (eq == std::string::npos) {
      require(detail::trim(line).empty(), [&] {
        return ErrorInfo{.where = where, .field = "header line", .expected = "Key = Value",
                         .actual = "\"" + line.substr(0, 60) + "\"", .detail = "not a MetaImage header"};
      });
      continue;
    }
    const std::string key = detail::upper(detail::trim(line.substr(0, eq)));
    fields[key] = detail::trim(line.substr(eq + 1));
    found_data_file = key == "ELEMENTDATAFILE";  // always the last field
  }
  require(found_data_file, [&] {
    return ErrorInfo{.where = where, .field = "ElementDataFile", .expected = "a header ending in ElementDataFile",
                     .actual = "none", .detail = "not a MetaImage header, or a truncated one"};
  });
  h.data_offset = std::min(pos, b.size());
  auto field = [&](const char* key) -> const std::string* {
    const auto it = fields.find(key);
    return it == fields.end() ? nullptr : &it->second;
  };
  auto required = [&](const char* key, const char* shown) -> const std::string& {
    const std::string* v = field(key);
    require(v != nullptr, [&] {
      return ErrorInfo{.where = where, .field = shown, .expected = "present", .actual = "missing"};
    });
    return *v;
  };
  const auto nd = detail::meta_numbers(required("NDIMS", "NDims"), "NDims", 1, where);
  require(nd[0] >= 1 && nd[0] <= 4, [&] {
    return ErrorInfo{.where = where, .field = "NDims", .expected = "1..4", .actual = str(nd[0])};
  });
  h.ndims = static_cast<int>(nd[0]);
  const auto n = static_cast<std::size_t>(h.ndims);
  for (double d : detail::meta_numbers(required("DIMSIZE", "DimSize"), "DimSize", n, where)) {
    require(d >= 1 && d <= 1e12 && d == std::floor(d), [&] {
      return ErrorInfo{.where = where, .field = "DimSize", .expected = "positive integer sizes", .actual = str(d)};
    });
    h.dim_size.push_back(static_cast<std::int64_t>(d));
  }
  const std::string* spacing = field("ELEMENTSPACING");
  if (!spacing) spacing = field("ELEMENTSIZE");
  h.spacing = spacing ? detail::meta_numbers(*spacing, "ElementSpacing", n, where) : std::vector<double>(n, 1.0);
  const std::string* offset = field("OFFSET");
  if (!offset) offset = field("POSITION");
  if (!offset) offset = field("ORIGIN");
  h.offset = offset ? detail::meta_numbers(*offset, "Offset", n, where) : std::vector<double>(n, 0.0);
  const std::string* matrix = field("TRANSFORMMATRIX");
  if (!matrix) matrix = field("ROTATION");
  if (!matrix) matrix = field("ORIENTATION");
  if (matrix) {
    h.transform = detail::meta_numbers(*matrix, "TransformMatrix", n * n, where);
  } else {
    h.transform.assign(n * n, 0.0);
    for (std::size_t i = 0; i < n; ++i) h.transform[i * n + i] = 1.0;
  }
  const std::string type = detail::upper(required("ELEMENTTYPE", "ElementType"));
  struct Known {
    const char* name;
    DType type;
  };
  static constexpr Known known[] = {{"MET_CHAR", DType::int8},        {"MET_UCHAR", DType::uint8},
                                    {"MET_SHORT", DType::int16},      {"MET_USHORT", DType::uint16},
                                    {"MET_INT", DType::int32},        {"MET_UINT", DType::uint32},
                                    {"MET_LONG", DType::int32},       {"MET_ULONG", DType::uint32},
                                    {"MET_LONG_LONG", DType::int64},  {"MET_ULONG_LONG", DType::uint64},
                                    {"MET_FLOAT", DType::float32},    {"MET_DOUBLE", DType::float64}};
  const Known* k = std::find_if(std::begin(known), std::end(known), [&](const Known& x) { return type == x.name; });
  require(k != std::end(known), [&] {
    return ErrorInfo{.where = where, .field = "ElementType",
                     .expected = "MET_CHAR, MET_UCHAR, MET_SHORT, MET_USHORT, MET_INT, MET_UINT, MET_LONG, MET_ULONG, "
                                 "MET_LONG_LONG, MET_ULONG_LONG, MET_FLOAT or MET_DOUBLE",
                     .actual = type};
  });
  h.dtype = k->type;
  if (const auto* c = field("ELEMENTNUMBEROFCHANNELS")) {
    const auto v = detail::meta_numbers(*c, "ElementNumberOfChannels", 1, where);
    require(v[0] >= 1 && v[0] <= 4096 && v[0] == std::floor(v[0]), [&] {
      return ErrorInfo{.where = where, .field = "ElementNumberOfChannels", .expected = "1..4096", .actual = str(v[0])};
    });
    h.channels = static_cast<int>(v[0]);
  }
  require(h.channels == 1 || h.ndims <= 3, [&] {
    return ErrorInfo{.where = where, .field = "ElementNumberOfChannels",
                     .expected = "1 for a 4-D image (medseg images have one channel axis)", .actual = str(h.channels)};
  });
  const std::string* msb = field("BINARYDATABYTEORDERMSB");
  if (!msb) msb = field("ELEMENTBYTEORDERMSB");
  h.big_endian = msb && detail::meta_bool(*msb);
  if (const auto* c = field("COMPRESSEDDATA")) h.compressed = detail::meta_bool(*c);
  if (const auto* c = field("COMPRESSEDDATASIZE")) {
    const double v = detail::meta_numbers(*c, "CompressedDataSize", 1, where)[0];
    require(v >= 0 && v < 1e15, [&] {
      return ErrorInfo{.where = where, .field = "CompressedDataSize", .expected = ">= 0", .actual = str(v)};
    });
    h.compressed_size = static_cast<std::int64_t>(v);
  }
  if (const auto* c = field("HEADERSIZE")) {
    const double v = detail::meta_numbers(*c, "HeaderSize", 1, where)[0];
    require(v >= -1 && v < 1e15, [&] {
      return ErrorInfo{.where = where, .field = "HeaderSize", .expected = ">= -1", .actual = str(v)};
    });
    h.header_size = static_cast<std::int64_t>(v);
  }
  if (const auto* c = field("BINARYDATA"))
    require(detail::meta_bool(*c), [&] {
      return ErrorInfo{.where = where, .field = "BinaryData", .expected = "True (ASCII voxels are not supported)",
                       .actual = *c};
    });
  h.data_file = *field("ELEMENTDATAFILE");
  require(detail::upper(h.data_file) != "LIST" && h.data_file.find('%') == std::string::npos, [&] {
    return ErrorInfo{.where = where, .field = "ElementDataFile",
                     .expected = "LOCAL or one data file (slice lists are not supported)", .actual = h.data_file};
  });
  return h;
}

inline AnyImage decode_metaimage(ByteSpan header_file, ByteSpan data_file, const std::string& where,
                                 const ReadOptions& options) {
  const MetaImageHeader h = parse_metaimage_header(header_file, where);
  const bool local = detail::upper(h.data_file) == "LOCAL";
  ByteSpan data = local ? header_file.subspan(h.data_offset) : data_file;
  std::uint64_t voxels = 1;
  for (auto d : h.dim_size) {
    voxels *= static_cast<std::uint64_t>(d);
    require(voxels <= (std::uint64_t{1} << 50), [&] {
      return ErrorInfo{.where = where, .field = "DimSize", .expected = "at most 2^50 voxels", .actual = "more"};
    });
  }
  const std::uint64_t needed = voxels * static_cast<std::uint64_t>(h.channels) * size_of(h.dtype);
  Bytes inflated;
  if (h.compressed) {
    if (h.compressed_size >= 0) {
      require(static_cast<std::uint64_t>(h.compressed_size) <= data.size(), [&] {
        return ErrorInfo{.where = where, .field = "CompressedDataSize",
                         .expected = "<= the " + std::to_string(data.size()) + " bytes in the file",
                         .actual = std::to_string(h.compressed_size)};
      });
      data = data.first(static_cast<std::size_t>(h.compressed_size));
    }
    inflated = zlib_inflate(data, static_cast<std::size_t>(needed), where);
    data = inflated;
  } else if (!local) {
    const std::uint64_t skip = h.header_size >= 0 ? static_cast<std::uint64_t>(h.header_size)
                                                  : (data.size() >= needed ? data.size() - needed : 0);
    require(skip <= data.size(), [&] {
      return ErrorInfo{.where = where, .field = "HeaderSize", .expected = "<= the data file's size",
                       .actual = std::to_string(h.header_size)};
    });
    data = data.subspan(static_cast<std::size_t>(skip));
  }
  require(needed <= data.size(), [&] {
    return ErrorInfo{.where = where, .field = "voxel data",
                     .expected = std::to_string(needed) + " bytes for DimSize and " + std::string(name(h.dtype)),
                     .actual = std::to_string(data.size()) + " bytes", .detail = "the header's sizes exceed the file"};
  });

  Geometry g;
  const auto n = static_cast<std::size_t>(h.ndims);
  for (std::size_t i = 0; i < std::min<std::size_t>(n, 3); ++i) {
    g.spacing[i] = h.spacing[i];
    g.origin[i] = h.offset[i];
    for (std::size_t r = 0; r < std::min<std::size_t>(n, 3); ++r) g.direction[3 * r + i] = h.transform[i * n + r];
  }
  validate(g, where);

  Shape shape;  // [T, D, H, W] or [D, H, W]; channels are interleaved in the file
  for (int a = std::max(h.ndims, 3) - 1; a >= 0; --a) shape.push_back(a < h.ndims ? h.dim_size[a] : 1);
  const bool swap = h.big_endian == host_is_little_endian && size_of(h.dtype) > 1;
  if (h.channels == 1) return decode_voxels(data, h.dtype, swap, shape, g, {}, options);
  Shape interleaved = shape;
  interleaved.push_back(h.channels);
  const AnyImage packed = decode_voxels(data, h.dtype, swap, interleaved, g, {}, options);
  Shape planar{h.channels};
  for (auto e : shape) planar.push_back(e);
  AnyImage out = make_image(dtype(packed), planar, g);
  std::visit(
      [&](auto& dst) {
        using T = typename std::remove_cvref_t<decltype(dst.voxels)>::value_type;
        const T* src = std::get<Image<T>>(packed).voxels.data();
        const std::int64_t plane = shape.product(), c = h.channels;
        for (std::int64_t ch = 0; ch < c; ++ch)
          for (std::int64_t i = 0; i < plane; ++i) dst.voxels.data()[ch * plane + i] = src[i * c + ch];
      },
      out);
  return out;
}

inline AnyImage read_metaimage(const std::filesystem::path& path, const ReadOptions& options) {
  const Bytes header = read_file(path);
  const MetaImageHeader h = parse_metaimage_header(header, path.string());
  if (detail::upper(h.data_file) == "LOCAL") return decode_metaimage(header, {}, path.string(), options);
  const auto data_path = path.parent_path() / h.data_file;
  require(std::filesystem::exists(data_path), [&] {
    return ErrorInfo{.where = path.string(), .field = "ElementDataFile", .expected = data_path.string(),
                     .actual = "missing"};
  });
  const Bytes data = read_file(data_path);
  return decode_metaimage(header, data, path.string() + " + " + h.data_file, options);
}

inline void write_metaimage(const AnyImage& image, const std::filesystem::path& path,
                            const MetaImageWriteOptions& options) {
  const std::string ext = lower_extensions(path);
  require(ext.ends_with(".mha") || ext.ends_with(".mhd"), [&] {
    return ErrorInfo{.where = path.string(), .field = "extension", .expected = ".mha or .mhd", .actual = "\"" + ext + "\""};
  });
  const DType t = dtype(image);
  const AnyImage stored = t == DType::float16 || t == DType::bfloat16 ? AnyImage(image_cast<float>(image)) : image;
  const Shape s = shape(stored);
  require(s.rank() == 3 || s.rank() == 4, [&] {
    return ErrorInfo{.where = path.string(), .field = "voxels", .expected = "[D,H,W] or [C,D,H,W]",
                     .actual = s.to_string()};
  });
  const Geometry& g = geometry(stored);
  validate(g, path.string());
  const int nd = s.rank();
  std::ostringstream h;
  h.precision(17);
  auto list = [&](auto f) {
    for (int i = 0; i < nd; ++i) h << (i ? " " : "") << f(i);
    h << "\n";
  };
  h << "ObjectType = Image\nNDims = " << nd << "\nBinaryData = True\nBinaryDataByteOrderMSB = False\n";
  Bytes voxels = voxel_bytes(stored);
  if (options.compress) {
    voxels = zlib_deflate(voxels, options.compression_level);
    h << "CompressedData = True\nCompressedDataSize = " << voxels.size() << "\n";
  } else {
    h << "CompressedData = False\n";
  }
  h << "TransformMatrix =";
  for (int c = 0; c < nd; ++c)
    for (int r = 0; r < nd; ++r) h << " " << (c < 3 && r < 3 ? g.direction[3 * r + c] : (r == c ? 1.0 : 0.0));
  h << "\nOffset = ";
  list([&](int i) { return i < 3 ? g.origin[i] : 0.0; });
  h << "CenterOfRotation = ";
  list([](int) { return 0; });
  h << "ElementSpacing = ";
  list([&](int i) { return i < 3 ? g.spacing[i] : 1.0; });
  h << "DimSize = ";
  list([&](int i) { return s[nd - 1 - i]; });
  h << "ElementType = " << detail::meta_type_name(dtype(stored)) << "\n";
  if (ext.ends_with(".mha")) {
    h << "ElementDataFile = LOCAL\n";
    const std::string text = h.str();
    write_file_atomic(path, {ByteSpan(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()), voxels});
    return;
  }
  auto data_path = path;
  data_path.replace_extension(options.compress ? ".zraw" : ".raw");
  h << "ElementDataFile = " << data_path.filename().string() << "\n";
  const std::string text = h.str();
  write_file_atomic(data_path, {voxels});
  write_file_atomic(path, {ByteSpan(reinterpret_cast<const std::uint8_t*>(text.data()), text.size())});
}

}  // namespace medseg::io
