// From a file's voxel bytes to a typed tensor and back: byte order, linear scaling
// (NIfTI's scl_slope/scl_inter, DICOM's rescale slope/intercept) and the element type the
// caller asked for. Every reader ends here, so scaling follows one rule everywhere.
#pragma once

#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>

#include "../core/dtype.hpp"
#include "../core/parallel.hpp"
#include "file.hpp"
#include "image.hpp"

namespace medseg::io {

/// What a reader returns. Without `dtype`, an unscaled image keeps the file's element type
/// and a scaled one becomes float32 (stored type of 16 bits or less, or float32) or float64
/// (wider stored types): CT in int16 with a rescale slope reads as float32, as SimpleITK and
/// MONAI give it. With `dtype`, values are computed in
/// float64 (stored * slope + intercept, nibabel's get_fdata arithmetic) and converted to it;
/// integer targets round to nearest and saturate.
struct ReadOptions {
  std::optional<DType> dtype{};
};

/// value = stored * slope + intercept; identity when slope is 1 and intercept 0.
struct Scaling {
  double slope = 1, intercept = 0;
  bool active() const { return slope != 1 || intercept != 0; }
};

/// The element type a read produces for `stored` elements under `scaling` and `options`.
DType result_dtype(DType stored, const Scaling& scaling, const ReadOptions& options);

/// An image of `shape` from `data` (at least numel * size_of(stored) bytes, in the file's
/// byte order; `swap` when that is not this machine's).
AnyImage decode_voxels(ByteSpan data, DType stored, bool swap, const Shape& shape, const Geometry& geometry,
                       const Scaling& scaling, const ReadOptions& options);

/// The voxels as contiguous little-endian bytes, the way every medseg writer stores them.
Bytes voxel_bytes(const AnyImage& image);

/// `v` converted to T: static_cast for floating targets, round-to-nearest with saturation
/// (NaN to 0) for integer targets, so no conversion is undefined behaviour.
template <Element T>
T saturate_cast(double v);

// ----------------------------------------------------------------------------------------
// Implementation

template <Element T>
T saturate_cast(double v) {
  if constexpr (FloatingElement<T>) {
    if constexpr (std::is_same_v<T, float16> || std::is_same_v<T, bfloat16>)
      return T(static_cast<float>(v));
    else
      return static_cast<T>(v);
  } else {
    if (std::isnan(v)) return T(0);
    const double r = std::nearbyint(v);
    if (r <= static_cast<double>(std::numeric_limits<T>::lowest())) return std::numeric_limits<T>::lowest();
    if (r >= static_cast<double>(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
    return static_cast<T>(r);
  }
}

inline DType result_dtype(DType stored, const Scaling& scaling, const ReadOptions& options) {
  if (options.dtype) return *options.dtype;
  if (!scaling.active()) return stored;
  return size_of(stored) <= 2 || stored == DType::float32 ? DType::float32 : DType::float64;
}

namespace detail {

template <class S, class T>
void convert_voxels(const std::uint8_t* data, bool swap, T* out, std::int64_t n, const Scaling& scaling,
                    bool through_double) {
  parallel_for(0, n, 1 << 16, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) {
      const S s = load<S>(data + i * static_cast<std::int64_t>(sizeof(S)), swap);
      if (through_double) {
        double v = static_cast<double>(s);
        if (scaling.active()) v = v * scaling.slope + scaling.intercept;
        out[i] = saturate_cast<T>(v);
      } else {
        out[i] = medseg::detail::convert<T>(s);
      }
    }
  });
}

}  // namespace detail

inline AnyImage decode_voxels(ByteSpan data, DType stored, bool swap, const Shape& shape, const Geometry& geometry,
                              const Scaling& scaling, const ReadOptions& options) {
  const DType target = result_dtype(stored, scaling, options);
  AnyImage image = make_image(target, shape, geometry);
  const std::int64_t n = shape.product();
  std::visit(
      [&](auto& im) {
        using T = typename std::remove_cvref_t<decltype(im.voxels)>::value_type;
        T* out = im.voxels.data();
        visit_dtype(stored, [&](auto stored_tag) {
          using S = decltype(stored_tag);
          if constexpr (std::is_same_v<S, T>) {
            if (!scaling.active()) {  // the common case: one copy, then an in-place swap
              std::memcpy(out, data.data(), static_cast<std::size_t>(n) * sizeof(T));
              if (swap) swap_bytes(out, static_cast<std::size_t>(n), sizeof(T));
              return;
            }
          }
          // Scaled values and explicit targets go through float64; plain type changes of
          // unscaled data (no dtype requested) never happen, so astype rules suffice there.
          detail::convert_voxels<S, T>(data.data(), swap, out, n, scaling, scaling.active() || options.dtype);
        });
      },
      image);
  return image;
}

inline Bytes voxel_bytes(const AnyImage& image) {
  return std::visit(
      [](const auto& im) {
        using T = typename std::remove_cvref_t<decltype(im.voxels)>::value_type;
        const auto c = im.voxels.contiguous();
        Bytes out(c.nbytes());
        if (!out.empty()) std::memcpy(out.data(), c.data(), out.size());
        if constexpr (!host_is_little_endian) swap_bytes(out.data(), static_cast<std::size_t>(c.numel()), sizeof(T));
        return out;
      },
      image);
}

}  // namespace medseg::io
