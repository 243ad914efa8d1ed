// DICOM: one file, or a folder of CT/MR slices read into one volume. medseg parses DICOM
// itself (header, sequences, geometry, the modality LUT), so the library stays header-only and
// the parser is fuzzed like the other formats. It reads the uncompressed transfer syntaxes
// (implicit and explicit VR little endian, explicit big endian, deflated), RLE, and 1/8/16/32-
// bit pixels; colour (RGB, YBR_FULL and YBR_FULL_422 converted to RGB) reads as [3, frames,
// rows, columns]. The JPEG family (JPEG, JPEG-LS, JPEG 2000) is decoded through GDCM when
// medseg::dicom_codecs is linked (MEDSEG_WITH_GDCM, dicom_codecs.hpp) and refused with an Error
// saying so otherwise. GDCM rather than DCMTK: Debian's libgdcm ships every one of these codecs
// (IJG 8/12/16-bit, CharLS, OpenJPEG), while DCMTK's JPEG 2000 codec is a commercial add-on
// missing from its free build. Slices are sorted by ImagePositionPatient along the slice
// normal, must be uniformly spaced, and get RescaleSlope/RescaleIntercept applied. DICOM's
// patient coordinates are LPS, medseg's own: ImageOrientationPatient gives direction columns
// i, j.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <libdeflate.h>

#include "../core/error.hpp"
#include "dicom_codecs.hpp"
#include "file.hpp"
#include "gzip.hpp"
#include "image.hpp"
#include "voxels.hpp"

namespace medseg::io {

/// What medseg uses of one DICOM file.
struct DicomSlice {
  std::string transfer_syntax;
  std::string series_uid;
  int rows = 0, columns = 0, frames = 1;
  int bits_allocated = 0, bits_stored = 0, pixel_representation = 0, samples_per_pixel = 1;
  std::optional<Vec3> position;                  // ImagePositionPatient
  std::optional<std::array<double, 6>> orientation;  // ImageOrientationPatient
  std::array<double, 2> pixel_spacing{1, 1};    // row spacing (between rows), column spacing
  double slice_thickness = 0;
  double slope = 1, intercept = 0;
  std::string photometric;                       // PhotometricInterpretation
  int planar_configuration = 0;                  // colour: 0 interleaved, 1 planar
  bool has_pixels = false;
  Bytes pixels;                                  // as stored; after load_dicom: decoded (see there)
  std::vector<Bytes> fragments;                  // encapsulated pixel data, without the offset table
};

/// Parses one DICOM file; throws Error naming `where` and the element for malformed data.
DicomSlice parse_dicom(ByteSpan bytes, const std::string& where);

/// One file as [frames, rows, columns] (a single-frame file is [1, rows, columns]); a colour
/// file as [3, frames, rows, columns] in RGB.
AnyImage read_dicom_file(const std::filesystem::path& path, const ReadOptions& options = {});

/// Every DICOM file of `folder` (one series) as one [D, H, W] volume. Files without the
/// DICM signature and files without pixel data (a DICOMDIR) are skipped.
AnyImage read_dicom_series(const std::filesystem::path& folder, const ReadOptions& options = {});

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

class DicomParser {
 public:
  DicomParser(ByteSpan b, std::string where) : b_(b), where_(std::move(where)) {}

  DicomSlice parse() {
    std::size_t pos = 0;
    bool explicit_vr = false, big = false;
    if (b_.size() >= 132 && std::equal(b_.begin() + 128, b_.begin() + 132, "DICM")) {
      pos = 132;
      while (pos + 8 <= b_.size() && load<std::uint16_t>(&b_[pos], !host_is_little_endian) == 0x0002)
        pos = element(pos, true, false, 0);  // the file meta group: explicit VR little endian
      const std::string& ts = slice_.transfer_syntax;
      explicit_vr = ts != "1.2.840.10008.1.2";
      big = ts == "1.2.840.10008.1.2.2";
      if (ts == "1.2.840.10008.1.2.1.99") return parse_deflated(pos);
      // Some writers store an implicit VR data set under an explicit syntax (or the reverse):
      // as pydicom, the first element's bytes 4-5 decide.
      if (!big && pos + 6 <= b_.size()) explicit_vr = is_vr(&b_[pos + 4]);
    } else {
      slice_.transfer_syntax = "1.2.840.10008.1.2";  // no preamble: implicit VR little endian
    }
    while (pos < b_.size()) pos = element(pos, explicit_vr, big, 0);
    return std::move(slice_);
  }

 private:
  [[noreturn]] void fail(const std::string& field, const std::string& expected, const std::string& actual) const {
    throw Error{{.where = where_, .field = field, .expected = expected, .actual = actual}};
  }
  void need(std::size_t pos, std::uint64_t n, const char* what) const {
    if (pos > b_.size() || n > b_.size() - pos)
      fail(what, std::to_string(n) + " bytes at offset " + std::to_string(pos),
           std::to_string(b_.size() > pos ? b_.size() - pos : 0) + " bytes left (a truncated file)");
  }
  std::uint16_t u16(std::size_t pos, bool big) const { return load<std::uint16_t>(&b_[pos], big == host_is_little_endian); }
  std::uint32_t u32(std::size_t pos, bool big) const { return load<std::uint32_t>(&b_[pos], big == host_is_little_endian); }

  DicomSlice parse_deflated(std::size_t pos) {
    // The data set after the meta group is one raw deflate stream.
    const ByteSpan rest = b_.subspan(pos);
    const std::size_t limit = rest.size() * 1032 + 1024;
    Bytes out(std::min<std::size_t>(limit, rest.size() * 4 + 4096));
    auto d = make_decompressor();
    for (;;) {
      std::size_t got = 0;
      const auto r = libdeflate_deflate_decompress(d.get(), rest.data(), rest.size(), out.data(), out.size(), &got);
      if (r == LIBDEFLATE_SUCCESS) {
        out.resize(got);
        break;
      }
      if (r != LIBDEFLATE_INSUFFICIENT_SPACE || out.size() >= limit)
        fail("deflated data set", "a complete deflate stream", "a truncated or corrupt one");
      out.resize(std::min(limit, out.size() * 2));
    }
    DicomParser inner(out, where_);
    inner.slice_.transfer_syntax = slice_.transfer_syntax;
    for (std::size_t p = 0; p < out.size();) p = inner.element(p, true, false, 0);
    return std::move(inner.slice_);
  }

  /// Reads the element at `pos`, records it when medseg uses it, returns the next offset.
  std::size_t element(std::size_t pos, bool explicit_vr, bool big, int depth) {
    need(pos, 8, "element header");
    const std::uint16_t group = u16(pos, big), elem = u16(pos + 2, big);
    std::string vr;
    std::uint64_t length;
    std::size_t value;
    const bool item_tag = group == 0xFFFE;
    if (explicit_vr && !item_tag) {
      vr.assign(reinterpret_cast<const char*>(&b_[pos + 4]), 2);
      static constexpr const char* long_vrs[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"};
      if (std::find(std::begin(long_vrs), std::end(long_vrs), vr) != std::end(long_vrs)) {
        need(pos, 12, "element header");
        length = u32(pos + 8, big);
        value = pos + 12;
      } else {
        length = u16(pos + 6, big);
        value = pos + 8;
      }
    } else {
      length = u32(pos + 4, big);
      value = pos + 8;
    }
    if (length == 0xFFFFFFFFu) {  // a sequence, or encapsulated (compressed) pixel data
      if (group == 0x7FE0 && elem == 0x0010 && depth == 0) return fragments(value, big);
      return skip_items(value, explicit_vr, big, depth + 1);
    }
    need(value, length, "element value");
    // Sequences of defined length are skipped whole: medseg reads top-level elements only.
    if (depth == 0) record(group, elem, value, static_cast<std::size_t>(length), big);
    return value + static_cast<std::size_t>(length);
  }

  std::size_t item(std::size_t pos, bool explicit_vr, bool big, int depth) {
    need(pos, 8, "sequence item");
    if (u16(pos, big) != 0xFFFE) fail("sequence item", "an item tag (FFFE,E000)", "another tag");
    const std::uint32_t length = u32(pos + 4, big);
    if (length != 0xFFFFFFFFu) {
      need(pos + 8, length, "sequence item");
      return pos + 8 + length;
    }
    std::size_t p = pos + 8;
    for (;;) {  // an item of undefined length ends with (FFFE,E00D)
      need(p, 8, "sequence item");
      if (u16(p, big) == 0xFFFE && u16(p + 2, big) == 0xE00D) return p + 8;
      p = element(p, explicit_vr, big, depth);
    }
  }

  /// Encapsulated pixel data: items of defined length up to the sequence delimiter; the
  /// first is the basic offset table, which medseg does not need.
  /// `end` bounds pixel data of defined length that still holds items (some writers do that).
  std::size_t fragments(std::size_t pos, bool big, std::size_t end = SIZE_MAX) {
    slice_.has_pixels = true;
    slice_.fragments.clear();
    for (std::size_t p = pos, k = 0;; ++k) {
      if (p == end) return p;
      need(p, 8, "pixel data fragment");
      if (u16(p, big) != 0xFFFE) fail("pixel data fragment", "an item tag (FFFE,E000)", "another tag");
      if (u16(p + 2, big) == 0xE0DD) return p + 8;
      const std::uint32_t length = u32(p + 4, big);
      if (length == 0xFFFFFFFFu) fail("pixel data fragment", "a defined length", "undefined");
      need(p + 8, length, "pixel data fragment");
      if (end != SIZE_MAX && p + 8 + length > end)
        fail("pixel data fragment", "items inside the PixelData value", "an item past its end");
      if (k > 0) slice_.fragments.emplace_back(b_.begin() + static_cast<std::ptrdiff_t>(p + 8),
                                               b_.begin() + static_cast<std::ptrdiff_t>(p + 8 + length));
      p += 8 + length;
    }
  }

  std::size_t skip_items(std::size_t pos, bool explicit_vr, bool big, int depth) {
    if (depth > 64) fail("sequence", "nesting of at most 64 levels", "deeper");
    for (std::size_t p = pos;;) {
      need(p, 8, "sequence");
      if (u16(p, big) == 0xFFFE && u16(p + 2, big) == 0xE0DD) return p + 8;  // sequence delimiter
      p = item(p, explicit_vr, big, depth);
    }
  }

  static bool is_vr(const std::uint8_t* p) {
    static constexpr const char* vrs[] = {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT",
                                          "OB", "OD", "OF", "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST",
                                          "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US", "UT", "UV"};
    return std::any_of(std::begin(vrs), std::end(vrs), [&](const char* v) { return p[0] == v[0] && p[1] == v[1]; });
  }

  std::string text(std::size_t pos, std::size_t n) const {
    std::string s(reinterpret_cast<const char*>(&b_[pos]), n);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
    return s;
  }
  std::vector<double> numbers(std::size_t pos, std::size_t n, const char* field) const {
    std::vector<double> v;
    const std::string s = text(pos, n);
    std::size_t at = 0;
    while (at <= s.size()) {
      const auto end = std::min(s.find('\\', at), s.size());
      const std::string part = s.substr(at, end - at);
      char* stop = nullptr;
      const double x = std::strtod(part.c_str(), &stop);
      while (stop && *stop == ' ') ++stop;
      if (part.find_first_not_of(' ') == std::string::npos || !std::isfinite(x) || (stop && *stop != '\0'))
        fail(field, "decimal numbers", "\"" + s.substr(0, 60) + "\"");
      v.push_back(x);
      at = end + 1;
    }
    return v;
  }

  void record(std::uint16_t group, std::uint16_t elem, std::size_t pos, std::size_t n, bool big) {
    const std::uint32_t tag = (static_cast<std::uint32_t>(group) << 16) | elem;
    auto us = [&](const char* field) {
      if (n < 2) fail(field, "a 2-byte value", std::to_string(n) + " bytes");
      return static_cast<int>(u16(pos, big));
    };
    auto count = [&](const char* field, std::size_t k) {
      if (text(pos, n).empty()) return std::vector<double>(k, std::nan(""));  // an empty (type 2) value: unknown
      auto v = numbers(pos, n, field);
      if (v.size() != k) fail(field, std::to_string(k) + " values", std::to_string(v.size()));
      return v;
    };
    switch (tag) {
      case 0x00020010: slice_.transfer_syntax = text(pos, n); break;
      case 0x0020000E: slice_.series_uid = text(pos, n); break;
      case 0x00280010: slice_.rows = us("Rows (0028,0010)"); break;
      case 0x00280011: slice_.columns = us("Columns (0028,0011)"); break;
      case 0x00280100: slice_.bits_allocated = us("BitsAllocated (0028,0100)"); break;
      case 0x00280101: slice_.bits_stored = us("BitsStored (0028,0101)"); break;
      case 0x00280103: slice_.pixel_representation = us("PixelRepresentation (0028,0103)"); break;
      case 0x00280002: slice_.samples_per_pixel = us("SamplesPerPixel (0028,0002)"); break;
      case 0x00280006: slice_.planar_configuration = us("PlanarConfiguration (0028,0006)"); break;
      case 0x00280004: slice_.photometric = text(pos, n); break;
      case 0x00280008: {
        const double f = count("NumberOfFrames (0028,0008)", 1)[0];
        if (std::isnan(f)) break;
        if (f < 1 || f > 1e6 || f != std::floor(f)) fail("NumberOfFrames (0028,0008)", "a positive integer", str(f));
        slice_.frames = static_cast<int>(f);
        break;
      }
      case 0x00200032: {
        const auto v = count("ImagePositionPatient (0020,0032)", 3);
        if (!std::isnan(v[0])) slice_.position = Vec3{v[0], v[1], v[2]};
        break;
      }
      case 0x00200037: {
        const auto v = count("ImageOrientationPatient (0020,0037)", 6);
        if (!std::isnan(v[0])) slice_.orientation = std::array<double, 6>{v[0], v[1], v[2], v[3], v[4], v[5]};
        break;
      }
      case 0x00280030: {
        const auto v = count("PixelSpacing (0028,0030)", 2);
        if (!std::isnan(v[0])) slice_.pixel_spacing = {v[0], v[1]};
        break;
      }
      case 0x00180050: {
        const double t = count("SliceThickness (0018,0050)", 1)[0];
        if (!std::isnan(t)) slice_.slice_thickness = t;
        break;
      }
      case 0x00281053: {
        const double v = count("RescaleSlope (0028,1053)", 1)[0];
        if (!std::isnan(v)) slice_.slope = v;
        break;
      }
      case 0x00281052: {
        const double v = count("RescaleIntercept (0028,1052)", 1)[0];
        if (!std::isnan(v)) slice_.intercept = v;
        break;
      }
      case 0x7FE00010:
        if (slice_.transfer_syntax == "1.2.840.10008.1.2.5" || dicom_jpeg_family_name(slice_.transfer_syntax)) {
          fragments(pos, big, pos + n);  // encapsulated, but given a defined length
          break;
        }
        slice_.has_pixels = true;
        slice_.pixels.assign(b_.begin() + static_cast<std::ptrdiff_t>(pos), b_.begin() + static_cast<std::ptrdiff_t>(pos + n));
        pixels_big_endian_ = big;
        break;
      default: break;
    }
  }

 public:
  bool pixels_big_endian_ = false;

 private:
  ByteSpan b_;
  std::string where_;
  DicomSlice slice_;
};

/// The element type of a slice's decoded pixels, after checking medseg can read them.
inline DType dicom_dtype(const DicomSlice& s, const std::string& where) {
  static const std::map<std::string, std::string> native = {
      {"1.2.840.10008.1.2", "implicit VR little endian"},
      {"1.2.840.10008.1.2.1", "explicit VR little endian"},
      {"1.2.840.10008.1.2.2", "explicit VR big endian"},
      {"1.2.840.10008.1.2.1.99", "deflated explicit VR little endian"},
      {"1.2.840.10008.1.2.5", "RLE lossless"}};
  const char* jpeg = dicom_jpeg_family_name(s.transfer_syntax);
  if (jpeg && !dicom_has_gdcm)
    throw Error{{.where = where, .field = "TransferSyntaxUID (0002,0010)",
                 .expected = "uncompressed or RLE pixel data (medseg must be built with GDCM, linking "
                             "medseg::dicom_codecs, to read JPEG, JPEG-LS and JPEG 2000)",
                 .actual = s.transfer_syntax + " (" + jpeg + ")"}};
  require(jpeg || native.count(s.transfer_syntax) > 0, [&] {
    return ErrorInfo{.where = where, .field = "TransferSyntaxUID (0002,0010)",
                     .expected = "uncompressed, RLE, JPEG, JPEG-LS or JPEG 2000 pixel data",
                     .actual = s.transfer_syntax.empty() ? "none" : s.transfer_syntax + " (a syntax medseg does not decode)"};
  });
  const bool encapsulated = jpeg || s.transfer_syntax == "1.2.840.10008.1.2.5";
  require(s.has_pixels && (encapsulated ? !s.fragments.empty() : !s.pixels.empty()), [&] {
    return ErrorInfo{.where = where, .field = "PixelData (7FE0,0010)",
                     .expected = encapsulated ? "encapsulated frames" : "present", .actual = "missing"};
  });
  require(s.samples_per_pixel == 1 || s.samples_per_pixel == 3, [&] {
    return ErrorInfo{.where = where, .field = "SamplesPerPixel (0028,0002)", .expected = "1 (grayscale) or 3 (colour)",
                     .actual = std::to_string(s.samples_per_pixel)};
  });
  require(s.bits_allocated == 8 || s.bits_allocated == 16 || s.bits_allocated == 32 ||
              (s.bits_allocated == 1 && s.samples_per_pixel == 1 && !encapsulated),
          [&] {
            return ErrorInfo{.where = where, .field = "BitsAllocated (0028,0100)",
                             .expected = "8, 16 or 32 (or 1, uncompressed grayscale)",
                             .actual = std::to_string(s.bits_allocated)};
          });
  require(s.rows > 0 && s.columns > 0, [&] {
    return ErrorInfo{.where = where, .field = "Rows/Columns (0028,0010/0011)", .expected = "positive sizes",
                     .actual = std::to_string(s.rows) + " x " + std::to_string(s.columns)};
  });
  if (s.samples_per_pixel == 3) {
    static const std::map<std::string, bool> colour = {  // whether it needs converting to RGB
        {"RGB", false}, {"YBR_RCT", false}, {"YBR_ICT", false}, {"YBR_FULL", true}, {"YBR_FULL_422", true}};
    const auto it = colour.find(s.photometric);
    require(it != colour.end() && (!it->second || s.bits_allocated == 8), [&] {
      return ErrorInfo{.where = where, .field = "PhotometricInterpretation (0028,0004)",
                       .expected = "RGB, YBR_RCT, YBR_ICT, or 8-bit YBR_FULL/YBR_FULL_422 for colour",
                       .actual = s.photometric + " with " + std::to_string(s.bits_allocated) + " bits"};
    });
  }
  const bool sign = s.pixel_representation == 1;
  return s.bits_allocated <= 8 ? (sign && s.bits_allocated == 8 ? DType::int8 : DType::uint8)
         : s.bits_allocated == 16 ? (sign ? DType::int16 : DType::uint16)
                                  : (sign ? DType::int32 : DType::uint32);
}

/// Native-order samples with the bits above BitsStored cleared (unsigned) or sign-extended.
/// This also undoes a JPEG 2000 codestream that is unsigned while PixelRepresentation says
/// signed (pydicom's J2K correction), as the codestream's precision is BitsStored.
template <class T>
void apply_bits_stored(Bytes& pixels, bool big, int bits_stored) {
  const std::size_t n = pixels.size() / sizeof(T);
  if (big == host_is_little_endian && sizeof(T) > 1) swap_bytes(pixels.data(), n, sizeof(T));
  const int bits = static_cast<int>(sizeof(T) * 8);
  if (bits_stored <= 0 || bits_stored >= bits) return;
  const int shift = bits - bits_stored;
  for (std::size_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, &pixels[i * sizeof(T)], sizeof(T));
    using U = std::make_unsigned_t<T>;
    const U u = static_cast<U>(static_cast<U>(v) << shift);
    v = std::is_signed_v<T> ? static_cast<T>(static_cast<T>(u) >> shift) : static_cast<T>(u >> shift);
    std::memcpy(&pixels[i * sizeof(T)], &v, sizeof(T));
  }
}

/// Parses one file and decodes its pixels: afterwards `pixels` holds native-order samples of
/// `*type`, [frames, rows, columns] for grayscale and [3, frames, rows, columns] RGB for colour.
inline DicomSlice load_dicom(ByteSpan bytes, const std::string& where, DType* type) {
  DicomParser parser(bytes, where);
  DicomSlice s = parser.parse();
  *type = dicom_dtype(s, where);
  const std::uint64_t plane = static_cast<std::uint64_t>(s.rows) * static_cast<std::uint64_t>(s.columns);
  const std::uint64_t count = plane * static_cast<std::uint64_t>(s.frames);  // pixels of all frames
  const std::uint64_t samples = count * static_cast<std::uint64_t>(s.samples_per_pixel);
  const std::uint64_t needed = samples * size_of(*type);
  auto frag_spans = [&] {
    std::vector<ByteSpan> spans;
    for (const auto& f : s.fragments) spans.emplace_back(f);
    return spans;
  };
  bool big = parser.pixels_big_endian_, planar = s.planar_configuration == 1;
  const bool ybr_422 = s.photometric == "YBR_FULL_422";
  if (s.transfer_syntax == "1.2.840.10008.1.2.5") {
    s.pixels = rle_decode(frag_spans(), s.frames, s.rows, s.columns, s.samples_per_pixel, s.bits_allocated, where);
    big = !host_is_little_endian;
    planar = true;  // RLE keeps each sample in its own segments
  } else if (dicom_jpeg_family_name(s.transfer_syntax)) {
#if defined(MEDSEG_WITH_GDCM) && MEDSEG_WITH_GDCM
    s.pixels = gdcm_decode(frag_spans(), s.transfer_syntax, s.photometric, s.frames, s.rows, s.columns,
                           s.samples_per_pixel, s.bits_allocated, s.bits_stored, s.pixel_representation,
                           s.planar_configuration, where);
    big = !host_is_little_endian;
#endif  // without GDCM, dicom_dtype has refused it
  } else if (s.bits_allocated == 1) {
    require(s.pixels.size() * 8 >= count, [&] {
      return ErrorInfo{.where = where, .field = "PixelData (7FE0,0010)",
                       .expected = std::to_string((count + 7) / 8) + " bytes of 1-bit pixels",
                       .actual = std::to_string(s.pixels.size()) + " bytes"};
    });
    s.pixels = unpack_bits(s.pixels, static_cast<std::size_t>(count));
    s.bits_allocated = s.bits_stored = 8;
  } else if (ybr_422) {  // stored subsampled: 2 bytes a pixel
    s.pixels = expand_ybr_422(s.pixels, s.frames, s.rows, s.columns, where);
    planar = false;
  }
  s.fragments.clear();
  require(s.pixels.size() >= needed, [&] {
    return ErrorInfo{.where = where, .field = "PixelData (7FE0,0010)",
                     .expected = std::to_string(needed) + " bytes for " + std::to_string(s.frames) + " x " +
                                 std::to_string(s.rows) + " x " + std::to_string(s.columns) +
                                 (s.samples_per_pixel == 3 ? " x 3 " : " ") + std::string(name(*type)),
                     .actual = std::to_string(s.pixels.size()) + " bytes", .detail = "the header's sizes exceed the data"};
  });
  s.pixels.resize(static_cast<std::size_t>(needed));
  visit_dtype(*type, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_integral_v<T>) apply_bits_stored<T>(s.pixels, big, s.bits_stored);
  });
  if (s.samples_per_pixel == 3) {
    const std::size_t width = size_of(*type), n = static_cast<std::size_t>(plane);
    const std::size_t frames = static_cast<std::size_t>(s.frames);
    if (s.photometric == "YBR_FULL" || ybr_422)
      for (std::size_t f = 0; f < frames; ++f)
        ybr_full_to_rgb(s.pixels.data() + f * 3 * n, n, planar ? 1 : 3, planar ? n : 1);
    // [frames][rows][columns][3] or [frames][3][rows][columns] to [3][frames][rows][columns].
    Bytes out(s.pixels.size());
    for (std::size_t f = 0; f < frames; ++f)
      for (std::size_t c = 0; c < 3; ++c)
        for (std::size_t i = 0; i < n; ++i)
          std::memcpy(&out[((c * frames + f) * n + i) * width],
                      &s.pixels[(planar ? (f * 3 + c) * n + i : (f * n + i) * 3 + c) * width], width);
    s.pixels = std::move(out);
  }
  return s;
}

inline Vec3 cross(const Vec3& a, const Vec3& b) {
  return {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
}

}  // namespace detail

inline DicomSlice parse_dicom(ByteSpan bytes, const std::string& where) {
  return detail::DicomParser(bytes, where).parse();
}

inline AnyImage read_dicom_file(const std::filesystem::path& path, const ReadOptions& options) {
  const Bytes bytes = read_file(path);
  DType type{};
  const DicomSlice s = detail::load_dicom(bytes, path.string(), &type);
  Geometry g;
  g.spacing = {s.pixel_spacing[1], s.pixel_spacing[0], s.slice_thickness > 0 ? s.slice_thickness : 1.0};
  if (s.position) g.origin = *s.position;
  if (s.orientation) {
    const auto& o = *s.orientation;
    const Vec3 row{o[0], o[1], o[2]}, col{o[3], o[4], o[5]}, normal = detail::cross(row, col);
    for (int r = 0; r < 3; ++r) {
      g.direction[3 * r] = row[r];
      g.direction[3 * r + 1] = col[r];
      g.direction[3 * r + 2] = normal[r];
    }
  }
  validate(g, path.string());
  const Shape shape = s.samples_per_pixel == 3 ? Shape{3, s.frames, s.rows, s.columns} : Shape{s.frames, s.rows, s.columns};
  return decode_voxels(s.pixels, type, false, shape, g, {s.slope, s.intercept}, options);
}

inline AnyImage read_dicom_series(const std::filesystem::path& folder, const ReadOptions& options) {
  require(std::filesystem::is_directory(folder), [&] {
    return ErrorInfo{.where = folder.string(), .field = "folder", .expected = "a folder of DICOM files", .actual = "missing"};
  });
  struct Loaded {
    std::filesystem::path file;
    DicomSlice slice;
    DType type;
    double along = 0;
  };
  std::vector<Loaded> slices;
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(folder))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    const Bytes bytes = read_file(f);
    if (bytes.size() < 132 || !std::equal(bytes.begin() + 128, bytes.begin() + 132, "DICM")) continue;
    const DicomSlice header = parse_dicom(bytes, f.string());
    if (!header.has_pixels) continue;  // DICOMDIR, structured reports
    Loaded l{f, {}, DType::uint8};
    l.slice = detail::load_dicom(bytes, f.string(), &l.type);
    slices.push_back(std::move(l));
  }
  require(!slices.empty(), [&] {
    return ErrorInfo{.where = folder.string(), .field = "files", .expected = "DICOM files with pixel data", .actual = "none"};
  });
  const Loaded& first = slices.front();
  for (const auto& l : slices) {
    const std::string where = l.file.string();
    require(l.slice.series_uid == first.slice.series_uid, [&] {
      return ErrorInfo{.where = where, .field = "SeriesInstanceUID (0020,000E)",
                       .expected = first.slice.series_uid + " (one series per folder, as " + first.file.filename().string() + ")",
                       .actual = l.slice.series_uid};
    });
    require(l.slice.rows == first.slice.rows && l.slice.columns == first.slice.columns && l.type == first.type &&
                l.slice.frames == 1 && (l.slice.samples_per_pixel == 1 || slices.size() == 1),
            [&] {
              return ErrorInfo{.where = where, .field = "Rows/Columns/BitsAllocated/NumberOfFrames/SamplesPerPixel",
                               .expected = std::to_string(first.slice.rows) + " x " + std::to_string(first.slice.columns) +
                                           " single-frame grayscale " + std::string(name(first.type)) + " as " +
                                           first.file.filename().string(),
                               .actual = std::to_string(l.slice.rows) + " x " + std::to_string(l.slice.columns) + " " +
                                         std::to_string(l.slice.frames) + "-frame " +
                                         (l.slice.samples_per_pixel == 3 ? "colour " : "") + std::string(name(l.type))};
            });
    require(slices.size() == 1 || (l.slice.position && l.slice.orientation), [&] {
      return ErrorInfo{.where = where, .field = "ImagePositionPatient/ImageOrientationPatient",
                       .expected = "present in every slice of a series", .actual = "missing"};
    });
  }
  if (slices.size() == 1) return read_dicom_file(first.file, options);

  const auto& o = *first.slice.orientation;
  const Vec3 row{o[0], o[1], o[2]}, col{o[3], o[4], o[5]}, normal = detail::cross(row, col);
  for (auto& l : slices) {
    const Vec3& p = *l.slice.position;
    l.along = p[0] * normal[0] + p[1] * normal[1] + p[2] * normal[2];
  }
  std::stable_sort(slices.begin(), slices.end(), [](const Loaded& a, const Loaded& b) { return a.along < b.along; });
  const double dz = (slices.back().along - slices.front().along) / static_cast<double>(slices.size() - 1);
  for (std::size_t k = 1; k < slices.size(); ++k) {
    const double step = slices[k].along - slices[k - 1].along;
    require(dz > 0 && std::abs(step - dz) <= 1e-3 * dz + 1e-4, [&] {
      return ErrorInfo{.where = folder.string(), .field = "ImagePositionPatient (0020,0032)",
                       .expected = "uniformly spaced slices (" + str(dz) + " mm apart)",
                       .actual = str(step) + " mm between " + slices[k - 1].file.filename().string() + " and " +
                                 slices[k].file.filename().string()};
    });
  }
  Geometry g;
  g.spacing = {first.slice.pixel_spacing[1], first.slice.pixel_spacing[0], dz};
  g.origin = *slices.front().slice.position;
  for (int r = 0; r < 3; ++r) {
    g.direction[3 * r] = row[r];
    g.direction[3 * r + 1] = col[r];
    g.direction[3 * r + 2] = normal[r];
  }
  validate(g, folder.string());

  bool scaled = false;
  for (const auto& l : slices) scaled = scaled || l.slice.slope != 1 || l.slice.intercept != 0;
  const DType target = result_dtype(first.type, scaled ? Scaling{2, 0} : Scaling{}, options);
  const std::int64_t plane = static_cast<std::int64_t>(first.slice.rows) * first.slice.columns;
  AnyImage out = make_image(target, {static_cast<std::int64_t>(slices.size()), first.slice.rows, first.slice.columns}, g);
  std::visit(
      [&](auto& im) {
        using T = typename std::remove_cvref_t<decltype(im.voxels)>::value_type;
        for (std::size_t k = 0; k < slices.size(); ++k) {
          const auto& s = slices[k].slice;
          // Each slice keeps its own rescale; explicit target so every slice converts alike.
          const AnyImage one = decode_voxels(s.pixels, first.type, false, {1, s.rows, s.columns}, g, {s.slope, s.intercept},
                                             {.dtype = target});
          const T* src = std::get<Image<T>>(one).voxels.data();
          std::copy(src, src + plane, im.voxels.data() + static_cast<std::int64_t>(k) * plane);
        }
      },
      out);
  return out;
}

}  // namespace medseg::io
