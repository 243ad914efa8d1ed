// Image<T>: voxels plus the geometry that places them in the patient. Geometry is the part
// a segmentation tool must never get wrong silently, so it is a value with its own checks,
// and every reader and writer in io/ goes through it.
//
// Conventions (the same as ITK / SimpleITK, and as nnU-Net sees arrays):
// - voxels: Tensor [D, H, W] = [k, j, i] (i, the file's fastest axis, last), or
//   [C, D, H, W] for several channels or time points. No transpose on read.
// - geometry in physical (x, y, z) order, world coordinates in LPS (+x left, +y posterior,
//   +z superior), like ITK and DICOM. NIfTI's RAS affine is converted by negating x and y.
// - world = origin + direction * diag(spacing) * (i, j, k); column c of `direction` is the
//   unit vector of index axis c.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <variant>

#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"

namespace medseg::io {

using Vec3 = std::array<double, 3>;
/// A 3x3 matrix, row-major: m[3 * row + column].
using Mat3 = std::array<double, 9>;
/// A 4x4 homogeneous matrix, row-major.
using Mat4 = std::array<double, 16>;

inline constexpr Mat3 identity3 = {1, 0, 0, 0, 1, 0, 0, 0, 1};

/// Where the voxel grid lies in the world (LPS, millimetres).
struct Geometry {
  Vec3 spacing{1, 1, 1};
  Vec3 origin{0, 0, 0};
  Mat3 direction = identity3;  // columns: the world direction of index axes i, j, k

  /// World (LPS) coordinates of a (possibly fractional) index (i, j, k).
  Vec3 index_to_world(const Vec3& ijk) const;
  /// The continuous index (i, j, k) of a world point: the inverse of index_to_world.
  Vec3 world_to_index(const Vec3& xyz) const;

  /// The 4x4 index-to-world matrix in LPS.
  Mat4 affine_lps() const;
  /// The 4x4 index-to-world matrix in RAS, as NIfTI and nibabel write it.
  Mat4 affine_ras() const;
  /// The geometry of an index-to-world matrix (LPS). Spacing is the length of each column,
  /// so a sheared matrix keeps its exact transform with non-orthogonal directions.
  static Geometry from_affine_lps(const Mat4& affine);
  static Geometry from_affine_ras(const Mat4& affine);

  friend bool operator==(const Geometry&, const Geometry&) = default;
};

/// Throws Error naming `where` unless every spacing is finite and positive, the origin is
/// finite and the direction is finite and invertible.
void validate(const Geometry& g, const std::string& where);

/// The inverse of a 3x3 matrix; throws Error naming `where` when it is singular.
Mat3 inverse(const Mat3& m, const std::string& where);

/// Voxels and geometry. `voxels` is [D, H, W] or [C, D, H, W] (see the header comment).
template <Element T>
struct Image {
  Tensor<T, Cpu> voxels;
  Geometry geometry;

  /// Channels (or time points): 1 for a 3-D image, the first extent of a 4-D one.
  std::int64_t channels() const { return voxels.rank() == 4 ? voxels.size(0) : 1; }
  /// The grid size in index order (i, j, k) = (W, H, D).
  std::array<std::int64_t, 3> size() const {
    const int r = voxels.rank();
    return {voxels.size(r - 1), voxels.size(r - 2), voxels.size(r - 3)};
  }
};

/// An image whose element type is known only at run time: what a reader returns before the
/// caller picks a type. Alternatives follow DType's order.
using AnyImage = std::variant<Image<float>, Image<double>, Image<float16>, Image<bfloat16>, Image<std::int8_t>,
                              Image<std::int16_t>, Image<std::int32_t>, Image<std::int64_t>, Image<std::uint8_t>,
                              Image<std::uint16_t>, Image<std::uint32_t>, Image<std::uint64_t>>;

/// The element type an AnyImage holds.
inline DType dtype(const AnyImage& image) {
  return std::visit([](const auto& im) { return std::remove_cvref_t<decltype(im.voxels)>::dtype(); }, image);
}

/// The geometry of an AnyImage, whatever its element type.
inline const Geometry& geometry(const AnyImage& image) {
  return std::visit([](const auto& im) -> const Geometry& { return im.geometry; }, image);
}

/// The tensor's shape of an AnyImage.
inline Shape shape(const AnyImage& image) {
  return std::visit([](const auto& im) { return im.voxels.shape(); }, image);
}

/// The image with elements converted to T (static_cast, as Tensor::astype); shares the
/// voxels when they already are T.
template <Element T>
Image<T> image_cast(const AnyImage& image);

/// An uninitialised AnyImage of element type `type` and tensor shape `shape`.
AnyImage make_image(DType type, const Shape& shape, const Geometry& geometry);

// ----------------------------------------------------------------------------------------
// Implementation

inline Vec3 Geometry::index_to_world(const Vec3& ijk) const {
  Vec3 w = origin;
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) w[r] += direction[3 * r + c] * spacing[c] * ijk[c];
  return w;
}

inline Vec3 Geometry::world_to_index(const Vec3& xyz) const {
  const Mat3 inv = inverse(direction, "Geometry::world_to_index");
  Vec3 ijk{};
  for (int r = 0; r < 3; ++r) {
    double s = 0;
    for (int c = 0; c < 3; ++c) s += inv[3 * r + c] * (xyz[c] - origin[c]);
    ijk[r] = s / spacing[r];
  }
  return ijk;
}

inline Mat4 Geometry::affine_lps() const {
  Mat4 a{};
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) a[4 * r + c] = direction[3 * r + c] * spacing[c];
    a[4 * r + 3] = origin[r];
  }
  a[15] = 1;
  return a;
}

inline Mat4 Geometry::affine_ras() const {
  Mat4 a = affine_lps();
  for (int c = 0; c < 4; ++c) {  // RAS = diag(-1, -1, 1) * LPS
    a[c] = -a[c];
    a[4 + c] = -a[4 + c];
  }
  for (auto& v : a) v = v == 0 ? 0.0 : v;  // no negative zeros in printed matrices
  return a;
}

inline Geometry Geometry::from_affine_lps(const Mat4& a) {
  Geometry g;
  for (int c = 0; c < 3; ++c) {
    const double n = std::sqrt(a[c] * a[c] + a[4 + c] * a[4 + c] + a[8 + c] * a[8 + c]);
    g.spacing[c] = n;
    for (int r = 0; r < 3; ++r) g.direction[3 * r + c] = n > 0 ? a[4 * r + c] / n : (r == c ? 1.0 : 0.0);
  }
  for (int r = 0; r < 3; ++r) g.origin[r] = a[4 * r + 3];
  return g;
}

inline Geometry Geometry::from_affine_ras(const Mat4& ras) {
  Mat4 a = ras;
  for (int c = 0; c < 4; ++c) {
    a[c] = -a[c];
    a[4 + c] = -a[4 + c];
  }
  return from_affine_lps(a);
}

inline Mat3 inverse(const Mat3& m, const std::string& where) {
  const double det = m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) +
                     m[2] * (m[3] * m[7] - m[4] * m[6]);
  require(std::isfinite(det) && std::abs(det) > 1e-12, [&] {
    return ErrorInfo{.where = where, .field = "direction", .expected = "an invertible 3x3 matrix",
                     .actual = "determinant " + str(det)};
  });
  const double k = 1.0 / det;
  return {(m[4] * m[8] - m[5] * m[7]) * k, (m[2] * m[7] - m[1] * m[8]) * k, (m[1] * m[5] - m[2] * m[4]) * k,
          (m[5] * m[6] - m[3] * m[8]) * k, (m[0] * m[8] - m[2] * m[6]) * k, (m[2] * m[3] - m[0] * m[5]) * k,
          (m[3] * m[7] - m[4] * m[6]) * k, (m[1] * m[6] - m[0] * m[7]) * k, (m[0] * m[4] - m[1] * m[3]) * k};
}

inline void validate(const Geometry& g, const std::string& where) {
  static constexpr const char* axis = "ijk";
  for (int c = 0; c < 3; ++c) {
    require(std::isfinite(g.spacing[c]) && g.spacing[c] > 0, [&] {
      return ErrorInfo{.where = where, .field = std::string("spacing of axis ") + axis[c],
                       .expected = "a finite positive spacing", .actual = str(g.spacing[c])};
    });
    require(std::isfinite(g.origin[c]), [&] {
      return ErrorInfo{.where = where, .field = std::string("origin ") + "xyz"[c], .expected = "a finite value",
                       .actual = str(g.origin[c])};
    });
  }
  for (double d : g.direction)
    require(std::isfinite(d), [&] {
      return ErrorInfo{.where = where, .field = "direction", .expected = "finite entries", .actual = str(d)};
    });
  inverse(g.direction, where);
}

template <Element T>
Image<T> image_cast(const AnyImage& image) {
  return std::visit(
      [](const auto& im) -> Image<T> {
        using U = typename std::remove_cvref_t<decltype(im.voxels)>::value_type;
        if constexpr (std::is_same_v<U, T>)
          return im;
        else
          return Image<T>{im.voxels.template astype<T>(), im.geometry};
      },
      image);
}

inline AnyImage make_image(DType type, const Shape& shape, const Geometry& geometry) {
  return visit_dtype(type, [&](auto tag) -> AnyImage {
    using T = decltype(tag);
    return Image<T>{Tensor<T, Cpu>::empty(shape), geometry};
  });
}

}  // namespace medseg::io
