// NIfTI-1, NIfTI-2 and Analyze 7.5 (SPM flavour): .nii, .nii.gz, .hdr/.img (optionally
// gzipped). Reading follows nibabel exactly, because that is what users compare against:
// the affine is sform if sform_code > 0, else qform if qform_code > 0, else the centred
// pixdim affine (Analyze: SPM's origin field); the qform quaternion is expanded in extended
// precision as nibabel does; scl_slope 0 or non-finite means "no scaling". Writing stores
// NIfTI-1 (NIfTI-2 when a dimension exceeds 32767) little-endian, with sform and qform both
// set (code 1, scanner) to the same transform, so every reader agrees on the geometry.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>

#include "../core/error.hpp"
#include "file.hpp"
#include "gzip.hpp"
#include "image.hpp"
#include "voxels.hpp"

namespace medseg::io {

/// A parsed NIfTI-1/2 or Analyze header, fields widened to NIfTI-2's types.
struct NiftiHeader {
  int version = 1;           // 0 Analyze 7.5, 1 NIfTI-1, 2 NIfTI-2
  bool swapped = false;      // stored in the other byte order than this machine's
  bool single_file = true;   // magic n+1/n+2 (.nii); ni1/ni2 and Analyze are .hdr + .img
  std::array<std::int64_t, 8> dim{};
  int datatype = 0;
  std::array<double, 8> pixdim{};
  std::int64_t vox_offset = 0;
  double scl_slope = 0, scl_inter = 0;
  double cal_max = 0, cal_min = 0;   // with glmax/glmin: Analyze (SPM2) scaling
  std::int64_t glmax = 0, glmin = 0;
  int qform_code = 0, sform_code = 0;
  Vec3 quatern{}, qoffset{};
  std::array<double, 12> srow{};     // srow_x, srow_y, srow_z
  int xyzt_units = 0, intent_code = 0;
  std::array<std::int16_t, 3> spm_origin{};  // Analyze "originator", 1-based voxel of the origin
  std::string descrip;

  std::size_t header_size() const { return version == 2 ? 540 : 348; }
};

/// The header at the start of `bytes`; throws Error naming `where` when it is none.
NiftiHeader parse_nifti_header(ByteSpan bytes, const std::string& where);
/// The element type of the header's datatype code (complex, RGB and float128 are refused).
DType nifti_dtype(const NiftiHeader& h, const std::string& where);
/// Tensor shape: dims reversed ([k, j, i], [t, k, j, i], ...), at least rank 3.
Shape nifti_shape(const NiftiHeader& h, const std::string& where);
/// The scaling nibabel applies (NIfTI: scl_slope/scl_inter; Analyze: SPM2's rules).
Scaling nifti_scaling(const NiftiHeader& h, const std::string& where);
/// nibabel's best affine (RAS, index to world).
Mat4 nifti_affine(const NiftiHeader& h, const std::string& where);

/// An image from an in-memory file: `header_file` holds the header (and the voxels when
/// single-file); `image_file` holds the voxels of a pair (empty for .nii).
AnyImage decode_nifti(ByteSpan header_file, ByteSpan image_file, const std::string& where,
                      const ReadOptions& options = {});

/// Reads .nii, .nii.gz, .hdr/.img (and .hdr.gz/.img.gz); either file of a pair may be named.
AnyImage read_nifti(const std::filesystem::path& path, const ReadOptions& options = {});

struct NiftiWriteOptions {
  int version = 0;            // 1 or 2; 0 picks NIfTI-1 unless a dimension exceeds 32767
  int compression_level = 1;  // for .gz names: libdeflate level 1..12 (nibabel writes 1)
};

/// The header (with the 4-byte empty extension block) of `image` as a .nii or as a pair.
Bytes encode_nifti_header(const AnyImage& image, bool single_file, const NiftiWriteOptions& options = {});

/// Writes .nii, .nii.gz, or a .hdr/.img pair (named by either file; .gz compresses both).
/// float16/bfloat16 voxels are stored as float32 (NIfTI has no half types); values are exact.
void write_nifti(const AnyImage& image, const std::filesystem::path& path, const NiftiWriteOptions& options = {});

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

inline int nifti_code(DType t) {
  switch (t) {
    case DType::uint8: return 2;
    case DType::int16: return 4;
    case DType::int32: return 8;
    case DType::float32: return 16;
    case DType::float64: return 64;
    case DType::int8: return 256;
    case DType::uint16: return 512;
    case DType::uint32: return 768;
    case DType::int64: return 1024;
    case DType::uint64: return 1280;
    default: return 16;  // halves are written as float32
  }
}

/// The other file of a pair: x.hdr <-> x.img, keeping a .gz suffix and the letters' case.
inline std::filesystem::path nifti_pair_partner(const std::filesystem::path& path) {
  std::string s = path.string();
  const bool gz = lower_extensions(path).ends_with(".gz");
  const std::size_t at = s.size() - (gz ? 7 : 4);
  const std::string ext = s.substr(at, 4);
  const bool upper = ext[1] == 'H' || ext[1] == 'I';
  const bool is_hdr = ext[1] == 'h' || ext[1] == 'H';
  s.replace(at, 4, is_hdr ? (upper ? ".IMG" : ".img") : (upper ? ".HDR" : ".hdr"));
  return s;
}

inline Bytes read_maybe_gzipped(const std::filesystem::path& path) {
  Bytes b = read_file(path);
  return is_gzip(b) ? gunzip(b, path.string()) : b;
}

}  // namespace detail

inline NiftiHeader parse_nifti_header(ByteSpan b, const std::string& where) {
  require(b.size() >= 348, [&] {
    return ErrorInfo{.where = where, .field = "header", .expected = "at least 348 bytes (NIfTI-1/Analyze)",
                     .actual = std::to_string(b.size()) + " bytes"};
  });
  NiftiHeader h;
  const auto size_native = load<std::int32_t>(b.data(), false);
  const auto size_swapped = load<std::int32_t>(b.data(), true);
  if (size_native == 348 || size_swapped == 348) {
    h.version = 1;
    h.swapped = size_native != 348;
  } else if (size_native == 540 || size_swapped == 540) {
    h.version = 2;
    h.swapped = size_native != 540;
  } else {
    throw Error{{.where = where, .field = "sizeof_hdr", .expected = "348 (NIfTI-1, Analyze) or 540 (NIfTI-2)",
                 .actual = std::to_string(size_native), .detail = "not a NIfTI or Analyze file"}};
  }
  const bool sw = h.swapped;
  auto text = [&](std::size_t at, std::size_t n) {
    std::string s(reinterpret_cast<const char*>(&b[at]), n);
    return s.substr(0, s.find('\0'));
  };
  if (h.version == 1) {
    const std::string magic = text(344, 4);
    if (magic == "n+1" || magic == "ni1") {
      h.single_file = magic == "n+1";
    } else {
      h.version = 0;  // Analyze 7.5: no magic
      h.single_file = false;
    }
    for (int i = 0; i < 8; ++i) h.dim[i] = load<std::int16_t>(&b[40 + 2 * i], sw);
    h.datatype = load<std::int16_t>(&b[70], sw);
    for (int i = 0; i < 8; ++i) h.pixdim[i] = load<float>(&b[76 + 4 * i], sw);
    const float offset = load<float>(&b[108], sw);
    require(std::isfinite(offset) && offset >= 0 && offset < 9.2e18f, [&] {
      return ErrorInfo{.where = where, .field = "vox_offset", .expected = "a finite non-negative offset",
                       .actual = str(offset)};
    });
    h.vox_offset = static_cast<std::int64_t>(offset);
    h.scl_slope = load<float>(&b[112], sw);
    h.scl_inter = load<float>(&b[116], sw);
    h.cal_max = load<float>(&b[124], sw);
    h.cal_min = load<float>(&b[128], sw);
    h.glmax = load<std::int32_t>(&b[140], sw);
    h.glmin = load<std::int32_t>(&b[144], sw);
    h.descrip = text(148, 80);
    if (h.version == 0) {
      for (int i = 0; i < 3; ++i) h.spm_origin[i] = load<std::int16_t>(&b[253 + 2 * i], sw);
    } else {
      h.intent_code = load<std::int16_t>(&b[68], sw);
      h.xyzt_units = b[123];
      h.qform_code = load<std::int16_t>(&b[252], sw);
      h.sform_code = load<std::int16_t>(&b[254], sw);
      for (int i = 0; i < 3; ++i) h.quatern[i] = load<float>(&b[256 + 4 * i], sw);
      for (int i = 0; i < 3; ++i) h.qoffset[i] = load<float>(&b[268 + 4 * i], sw);
      for (int i = 0; i < 12; ++i) h.srow[i] = load<float>(&b[280 + 4 * i], sw);
    }
  } else {
    require(b.size() >= 540, [&] {
      return ErrorInfo{.where = where, .field = "header", .expected = "540 bytes (NIfTI-2)",
                       .actual = std::to_string(b.size()) + " bytes"};
    });
    const std::string magic = text(4, 4);
    require(magic == "n+2" || magic == "ni2", [&] {
      return ErrorInfo{.where = where, .field = "magic", .expected = "\"n+2\" or \"ni2\" (NIfTI-2)",
                       .actual = "\"" + magic + "\""};
    });
    h.single_file = magic == "n+2";
    h.datatype = load<std::int16_t>(&b[12], sw);
    for (int i = 0; i < 8; ++i) h.dim[i] = load<std::int64_t>(&b[16 + 8 * i], sw);
    for (int i = 0; i < 8; ++i) h.pixdim[i] = load<double>(&b[104 + 8 * i], sw);
    h.vox_offset = load<std::int64_t>(&b[168], sw);
    h.scl_slope = load<double>(&b[176], sw);
    h.scl_inter = load<double>(&b[184], sw);
    h.cal_max = load<double>(&b[192], sw);
    h.cal_min = load<double>(&b[200], sw);
    h.descrip = text(240, 80);
    h.qform_code = load<std::int32_t>(&b[344], sw);
    h.sform_code = load<std::int32_t>(&b[348], sw);
    for (int i = 0; i < 3; ++i) h.quatern[i] = load<double>(&b[352 + 8 * i], sw);
    for (int i = 0; i < 3; ++i) h.qoffset[i] = load<double>(&b[376 + 8 * i], sw);
    for (int i = 0; i < 12; ++i) h.srow[i] = load<double>(&b[400 + 8 * i], sw);
    h.xyzt_units = load<std::int32_t>(&b[500], sw);
    h.intent_code = load<std::int32_t>(&b[504], sw);
  }
  return h;
}

inline DType nifti_dtype(const NiftiHeader& h, const std::string& where) {
  switch (h.datatype) {
    case 2: return DType::uint8;
    case 4: return DType::int16;
    case 8: return DType::int32;
    case 16: return DType::float32;
    case 64: return DType::float64;
    case 256: return DType::int8;
    case 512: return DType::uint16;
    case 768: return DType::uint32;
    case 1024: return DType::int64;
    case 1280: return DType::uint64;
    default: break;
  }
  const char* what = h.datatype == 1 ? "binary (1 bit)" : h.datatype == 32 ? "complex64" : h.datatype == 128 ? "RGB24"
                   : h.datatype == 1536 ? "float128" : h.datatype == 1792 ? "complex128"
                   : h.datatype == 2048 ? "complex256" : h.datatype == 2304 ? "RGBA32" : "an unknown code";
  throw Error{{.where = where, .field = "datatype",
               .expected = "a real scalar type (2 uint8, 4 int16, 8 int32, 16 float32, 64 float64, 256 int8, "
                           "512 uint16, 768 uint32, 1024 int64, 1280 uint64)",
               .actual = std::to_string(h.datatype) + " (" + what + ")"}};
}

inline Shape nifti_shape(const NiftiHeader& h, const std::string& where) {
  const std::int64_t ndim = h.dim[0];
  require(ndim >= 1 && ndim <= 7, [&] {
    return ErrorInfo{.where = where, .field = "dim[0]", .expected = "1..7 dimensions", .actual = std::to_string(ndim)};
  });
  const int rank = static_cast<int>(std::max<std::int64_t>(ndim, 3));
  Shape s;
  for (int a = rank - 1; a >= 0; --a) s.push_back(a < ndim ? h.dim[a + 1] : 1);
  std::int64_t total = 1;
  for (int a = 1; a <= ndim; ++a) {
    require(h.dim[a] > 0, [&] {
      return ErrorInfo{.where = where, .field = "dim[" + std::to_string(a) + "]", .expected = "a positive size",
                       .actual = std::to_string(h.dim[a])};
    });
    require(total <= (std::int64_t{1} << 50) / h.dim[a], [&] {
      return ErrorInfo{.where = where, .field = "dim", .expected = "at most 2^50 voxels",
                       .actual = "dims " + s.to_string()};
    });
    total *= h.dim[a];
  }
  return s;
}

inline Scaling nifti_scaling(const NiftiHeader& h, const std::string& where) {
  if (h.version == 0) {  // SPM2's spm_vol_ana.m, as nibabel's Spm2AnalyzeHeader
    if (std::isfinite(h.scl_slope) && h.scl_slope != 0)
      return {h.scl_slope, std::isfinite(h.scl_inter) ? h.scl_inter : 0.0};
    const double unscaled = static_cast<double>(h.glmax - h.glmin);
    const double scaled = static_cast<double>(static_cast<float>(h.cal_max) - static_cast<float>(h.cal_min));
    if (unscaled != 0 && scaled != 0) {
      const double slope = scaled / unscaled;
      return {slope, h.cal_min - slope * static_cast<double>(h.glmin)};
    }
    return {};
  }
  if (h.scl_slope == 0 || !std::isfinite(h.scl_slope)) return {};
  require(std::isfinite(h.scl_inter), [&] {
    return ErrorInfo{.where = where, .field = "scl_inter", .expected = "a finite intercept with a valid scl_slope",
                     .actual = str(h.scl_inter)};
  });
  return {h.scl_slope, h.scl_inter};
}

inline Mat4 nifti_affine(const NiftiHeader& h, const std::string& where) {
  Mat4 a{};
  a[15] = 1;
  // pixdim as nibabel's header check leaves it: negative spacings made positive, a qfac
  // other than -1 made 1. Values stay in the header's precision (float32 for NIfTI-1).
  auto zoom = [&](int i) { return std::abs(h.pixdim[i]); };
  if (h.version != 0 && h.sform_code != 0) {
    for (int i = 0; i < 12; ++i) a[i] = h.srow[i];
  } else if (h.version != 0 && h.qform_code != 0) {
    // nibabel's fillpositive + quat2mat, in numpy's longdouble (x87 extended on x86-64).
    using L = long double;
    const L x = h.quatern[0], y = h.quatern[1], z = h.quatern[2];
    const L w2 = 1.0L - (x * x + y * y + z * z);
    const double threshold = h.version == 1 ? -3.5762786865234375e-07 : -6.661338147750939e-16;
    require(w2 >= threshold, [&] {
      return ErrorInfo{.where = where, .field = "quatern_b/c/d", .expected = "b^2 + c^2 + d^2 <= 1",
                       .actual = str(static_cast<double>(x * x + y * y + z * z))};
    });
    const L w = w2 < 0 ? 0.0L : std::sqrt(w2);
    L R[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    const L nq = w * w + x * x + y * y + z * z;
    if (nq >= 2.220446049250313e-16L) {
      const L s = 2.0L / nq, X = x * s, Y = y * s, Z = z * s;
      const L wX = w * X, wY = w * Y, wZ = w * Z, xX = x * X, xY = x * Y, xZ = x * Z, yY = y * Y, yZ = y * Z,
              zZ = z * Z;
      const L m[9] = {1.0L - (yY + zZ), xY - wZ, xZ + wY, xY + wZ, 1.0L - (xX + zZ), yZ - wX,
                      xZ - wY, yZ + wX, 1.0L - (xX + yY)};
      std::copy(m, m + 9, R);
    }
    const double qfac = h.pixdim[0] == -1 ? -1.0 : 1.0;
    const double vox[3] = {zoom(1), zoom(2), h.version == 1 ? static_cast<double>(static_cast<float>(zoom(3) * qfac))
                                                            : zoom(3) * qfac};
    for (int r = 0; r < 3; ++r) {
      for (int c = 0; c < 3; ++c) a[4 * r + c] = static_cast<double>(R[3 * r + c] * static_cast<L>(vox[c]));
      a[4 * r + 3] = h.qoffset[r];
    }
  } else {
    // Centred pixdim affine with x flipped (nibabel's shape_zoom_affine), or for Analyze the
    // SPM origin field when it lies within (-dim, 2 dim) (Spm99AnalyzeHeader.get_origin_affine).
    const std::int64_t ndim = std::clamp<std::int64_t>(h.dim[0], 0, 7);
    double n[3], zooms[3];
    for (int i = 0; i < 3; ++i) {
      n[i] = i < ndim ? static_cast<double>(h.dim[i + 1]) : 1.0;
      zooms[i] = i < ndim ? zoom(i + 1) : 1.0;
    }
    zooms[0] = -zooms[0];
    bool spm = false;
    if (h.version == 0) {
      bool any = false, inside = true;
      for (int i = 0; i < 3; ++i) {
        any = any || h.spm_origin[i] != 0;
        inside = inside && h.spm_origin[i] > -n[i] && h.spm_origin[i] < 2 * n[i];
      }
      spm = any && inside;
    }
    for (int i = 0; i < 3; ++i) {
      a[5 * i] = zooms[i];
      // int16 * float32 stays float32 in NumPy, so the SPM origin translation is rounded to float.
      a[4 * i + 3] = spm ? static_cast<double>(-static_cast<float>(h.spm_origin[i] - 1) * static_cast<float>(zooms[i]))
                         : -((n[i] - 1) / 2.0) * zooms[i];
    }
  }
  for (double v : a)
    require(std::isfinite(v), [&] {
      return ErrorInfo{.where = where, .field = h.sform_code ? "srow" : "qform", .expected = "a finite affine",
                       .actual = str(v)};
    });
  return a;
}

inline AnyImage decode_nifti(ByteSpan header_file, ByteSpan image_file, const std::string& where,
                             const ReadOptions& options) {
  const NiftiHeader h = parse_nifti_header(header_file, where);
  const DType stored = nifti_dtype(h, where);
  const Shape shape = nifti_shape(h, where);
  const Scaling scaling = nifti_scaling(h, where);
  Geometry g = Geometry::from_affine_ras(nifti_affine(h, where));
  validate(g, where);

  ByteSpan data = image_file;
  std::int64_t offset = h.vox_offset;
  if (h.single_file) {
    const std::int64_t minimum = static_cast<std::int64_t>(h.header_size()) + 4;
    if (offset == 0) offset = minimum;  // "unset": the data follows the extension flag
    require(offset >= minimum, [&] {
      return ErrorInfo{.where = where, .field = "vox_offset", .expected = ">= " + std::to_string(minimum) +
                                                                          " for a single-file NIfTI",
                       .actual = std::to_string(h.vox_offset)};
    });
    data = header_file;
  } else {
    require(!image_file.empty() || shape.product() == 0, [&] {
      return ErrorInfo{.where = where, .field = "image file", .expected = "the .img of the pair",
                       .actual = "none"};
    });
  }
  const auto needed = static_cast<std::uint64_t>(shape.product()) * size_of(stored);
  require(static_cast<std::uint64_t>(offset) <= data.size() && needed <= data.size() - static_cast<std::uint64_t>(offset),
          [&] {
            return ErrorInfo{.where = where, .field = "voxel data",
                             .expected = std::to_string(needed) + " bytes at offset " + std::to_string(offset) +
                                         " for dims " + shape.to_string() + " of " + std::string(name(stored)),
                             .actual = std::to_string(data.size()) + " bytes in the file",
                             .detail = "the header's sizes exceed the file"};
          });
  return decode_voxels(data.subspan(static_cast<std::size_t>(offset)), stored, h.swapped, shape, g, scaling, options);
}

inline AnyImage read_nifti(const std::filesystem::path& path, const ReadOptions& options) {
  const std::string ext = lower_extensions(path);
  const bool pair = ext.ends_with(".hdr") || ext.ends_with(".img") || ext.ends_with(".hdr.gz") ||
                    ext.ends_with(".img.gz");
  if (!pair) {
    const Bytes file = detail::read_maybe_gzipped(path);
    return decode_nifti(file, {}, path.string(), options);
  }
  const bool named_img = ext.ends_with(".img") || ext.ends_with(".img.gz");
  const auto hdr_path = named_img ? detail::nifti_pair_partner(path) : path;
  const auto img_path = named_img ? path : detail::nifti_pair_partner(path);
  const Bytes hdr = detail::read_maybe_gzipped(hdr_path);
  const NiftiHeader h = parse_nifti_header(hdr, hdr_path.string());
  if (h.single_file) return decode_nifti(hdr, {}, hdr_path.string(), options);
  require(std::filesystem::exists(img_path), [&] {
    return ErrorInfo{.where = hdr_path.string(), .field = "image file", .expected = img_path.string(),
                     .actual = "missing"};
  });
  const Bytes img = detail::read_maybe_gzipped(img_path);
  return decode_nifti(hdr, img, hdr_path.string() + " + " + img_path.filename().string(), options);
}

namespace detail {

/// nifti_mat44_to_quatern for a rotation R (RAS) that may include a reflection in k.
inline void rotation_to_quatern(Mat3 r, double& qfac, Vec3& bcd) {
  const double det = r[0] * (r[4] * r[8] - r[5] * r[7]) - r[1] * (r[3] * r[8] - r[5] * r[6]) +
                     r[2] * (r[3] * r[7] - r[4] * r[6]);
  qfac = det < 0 ? -1.0 : 1.0;
  if (det < 0)
    for (int row = 0; row < 3; ++row) r[3 * row + 2] = -r[3 * row + 2];
  double a = r[0] + r[4] + r[8] + 1, b, c, d;
  if (a > 0.5) {
    a = 0.5 * std::sqrt(a);
    b = 0.25 * (r[7] - r[5]) / a;
    c = 0.25 * (r[2] - r[6]) / a;
    d = 0.25 * (r[3] - r[1]) / a;
  } else {
    const double xd = 1 + r[0] - (r[4] + r[8]), yd = 1 + r[4] - (r[0] + r[8]), zd = 1 + r[8] - (r[0] + r[4]);
    if (xd > 1) {
      b = 0.5 * std::sqrt(xd);
      c = 0.25 * (r[1] + r[3]) / b;
      d = 0.25 * (r[2] + r[6]) / b;
      a = 0.25 * (r[7] - r[5]) / b;
    } else if (yd > 1) {
      c = 0.5 * std::sqrt(yd);
      b = 0.25 * (r[1] + r[3]) / c;
      d = 0.25 * (r[5] + r[7]) / c;
      a = 0.25 * (r[2] - r[6]) / c;
    } else {
      d = 0.5 * std::sqrt(zd);
      b = 0.25 * (r[2] + r[6]) / d;
      c = 0.25 * (r[5] + r[7]) / d;
      a = 0.25 * (r[3] - r[1]) / d;
    }
    if (a < 0) {
      b = -b;
      c = -c;
      d = -d;
    }
  }
  bcd = {b, c, d};
}

}  // namespace detail

inline Bytes encode_nifti_header(const AnyImage& image, bool single_file, const NiftiWriteOptions& options) {
  const Shape shape = io::shape(image);
  const Geometry& g = geometry(image);
  require(shape.rank() >= 3 && shape.rank() <= 7, [&] {
    return ErrorInfo{.where = "write_nifti", .field = "voxels", .expected = "rank 3..7 ([D,H,W], [C,D,H,W], ...)",
                     .actual = shape.to_string()};
  });
  validate(g, "write_nifti");
  int version = options.version;
  if (version == 0) {
    version = 1;
    for (auto n : shape)
      if (n > 32767) version = 2;
  }
  require(version == 1 || version == 2, [&] {
    return ErrorInfo{.where = "write_nifti", .field = "version", .expected = "1 or 2", .actual = std::to_string(version)};
  });
  const DType stored = dtype(image) == DType::float16 || dtype(image) == DType::bfloat16 ? DType::float32 : dtype(image);
  const Mat4 a = g.affine_ras();
  Mat3 rot{};  // the affine's directions in RAS
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) rot[3 * r + c] = a[4 * r + c] / g.spacing[c];
  double qfac = 1;
  Vec3 bcd{};
  detail::rotation_to_quatern(rot, qfac, bcd);

  const int ndim = shape.rank();
  std::array<std::int64_t, 8> dim{ndim, 1, 1, 1, 1, 1, 1, 1};
  for (int i = 0; i < ndim; ++i) dim[i + 1] = shape[ndim - 1 - i];
  std::array<double, 8> pixdim{qfac, g.spacing[0], g.spacing[1], g.spacing[2], 1, 1, 1, 1};
  const int bitpix = static_cast<int>(size_of(stored) * 8);

  Bytes h(version == 1 ? 352 : 544, 0);
  auto put_text = [&](std::size_t at, const std::string& s, std::size_t n) {
    std::copy_n(s.begin(), std::min(s.size(), n), h.begin() + static_cast<std::ptrdiff_t>(at));
  };
  if (version == 1) {
    for (int i = 0; i < 8; ++i)
      require(dim[i] <= 32767, [&] {
        return ErrorInfo{.where = "write_nifti", .field = "dim[" + std::to_string(i) + "]",
                         .expected = "<= 32767 for NIfTI-1 (write NIfTI-2 instead)", .actual = std::to_string(dim[i])};
      });
    store_le<std::int32_t>(&h[0], 348);
    h[38] = 'r';  // "regular", as Analyze readers expect
    for (int i = 0; i < 8; ++i) store_le<std::int16_t>(&h[40 + 2 * i], static_cast<std::int16_t>(dim[i]));
    store_le<std::int16_t>(&h[70], static_cast<std::int16_t>(detail::nifti_code(stored)));
    store_le<std::int16_t>(&h[72], static_cast<std::int16_t>(bitpix));
    for (int i = 0; i < 8; ++i) store_le<float>(&h[76 + 4 * i], static_cast<float>(pixdim[i]));
    store_le<float>(&h[108], single_file ? 352.0f : 0.0f);
    store_le<float>(&h[112], 1.0f);
    h[123] = 10;  // mm and seconds
    put_text(148, "medseg", 80);
    store_le<std::int16_t>(&h[252], 1);
    store_le<std::int16_t>(&h[254], 1);
    for (int i = 0; i < 3; ++i) store_le<float>(&h[256 + 4 * i], static_cast<float>(bcd[i]));
    for (int i = 0; i < 3; ++i) store_le<float>(&h[268 + 4 * i], static_cast<float>(a[4 * i + 3]));
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 4; ++c) store_le<float>(&h[280 + 16 * r + 4 * c], static_cast<float>(a[4 * r + c]));
    put_text(344, single_file ? "n+1" : "ni1", 4);
  } else {
    store_le<std::int32_t>(&h[0], 540);
    const char magic[8] = {'n', single_file ? '+' : 'i', '2', '\0', '\r', '\n', '\032', '\n'};
    std::copy(magic, magic + 8, h.begin() + 4);
    store_le<std::int16_t>(&h[12], static_cast<std::int16_t>(detail::nifti_code(stored)));
    store_le<std::int16_t>(&h[14], static_cast<std::int16_t>(bitpix));
    for (int i = 0; i < 8; ++i) store_le<std::int64_t>(&h[16 + 8 * i], dim[i]);
    for (int i = 0; i < 8; ++i) store_le<double>(&h[104 + 8 * i], pixdim[i]);
    store_le<std::int64_t>(&h[168], single_file ? 544 : 0);
    store_le<double>(&h[176], 1.0);
    put_text(240, "medseg", 80);
    store_le<std::int32_t>(&h[344], 1);
    store_le<std::int32_t>(&h[348], 1);
    for (int i = 0; i < 3; ++i) store_le<double>(&h[352 + 8 * i], bcd[i]);
    for (int i = 0; i < 3; ++i) store_le<double>(&h[376 + 8 * i], a[4 * i + 3]);
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 4; ++c) store_le<double>(&h[400 + 32 * r + 8 * c], a[4 * r + c]);
    store_le<std::int32_t>(&h[500], 10);
  }
  return h;
}

inline void write_nifti(const AnyImage& image, const std::filesystem::path& path, const NiftiWriteOptions& options) {
  const std::string ext = lower_extensions(path);
  const bool gz = ext.ends_with(".gz");
  const bool pair = ext.ends_with(".hdr") || ext.ends_with(".img") || ext.ends_with(".hdr.gz") ||
                    ext.ends_with(".img.gz");
  require(pair || ext.ends_with(".nii") || ext.ends_with(".nii.gz"), [&] {
    return ErrorInfo{.where = path.string(), .field = "extension", .expected = ".nii, .nii.gz, .hdr or .img",
                     .actual = "\"" + ext + "\""};
  });
  const DType t = dtype(image);
  const AnyImage stored = t == DType::float16 || t == DType::bfloat16 ? AnyImage(image_cast<float>(image)) : image;
  const Bytes header = encode_nifti_header(stored, !pair, options);
  const Bytes voxels = voxel_bytes(stored);
  auto put = [&](const std::filesystem::path& p, ByteSpan first, ByteSpan second) {
    if (!gz) return write_file_atomic(p, {first, second});
    Bytes joined(first.begin(), first.end());
    joined.insert(joined.end(), second.begin(), second.end());
    write_file_atomic(p, {gzip(joined, options.compression_level)});
  };
  if (!pair) return put(path, header, voxels);
  const bool named_img = ext.ends_with(".img") || ext.ends_with(".img.gz");
  const auto hdr_path = named_img ? detail::nifti_pair_partner(path) : path;
  put(hdr_path, header, {});
  put(named_img ? path : detail::nifti_pair_partner(path), voxels, {});
}

}  // namespace medseg::io
