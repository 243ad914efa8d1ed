// Image resampling with the coordinate convention of scipy.ndimage.zoom (what MedicalSeg's
// prepare scripts and nnU-Net's CPU path call), orders 0, 1 and 3, plus the geometry-aware
// variants that resample an Image to a shape or a spacing and keep its world placement right.
// The kernels (backends/cpu/preprocess.hpp, and the Cuda ones for device tensors) are separable
// (W, then H, then D, with taps planned here on the host), which is what makes them many times
// faster than SciPy's per-voxel loop while giving the same numbers.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "../backends/ops.hpp"
#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../io/image.hpp"

namespace medseg::preprocess {

// The resampling vocabulary is the kernels' (backends/preprocess.hpp): extents (D, H, W),
// GridMode (corners = scipy.ndimage.zoom's default, extent = grid_mode=True), Boundary and
// ResampleOptions (order 0, 1 or 3; nnU-Net's separate axis).
using ops::Boundary;
using ops::Extent3;
using ops::GridMode;
using ops::HuWindow;
using ops::ResampleOptions;

/// The output shape scipy.ndimage.zoom gives: round(n * factor) with Python's round (half
/// to even), per axis.
Extent3 zoom_shape(const Extent3& in, const std::array<double, 3>& factors);

/// x resampled to `shape` (D, H, W): x is [D, H, W] or [C, D, H, W] (channels resampled
/// independently). Equals scipy.ndimage.zoom(x, shape / x.shape, order, mode='constant',
/// grid_mode=False) for GridMode::corners (its mirror-extended B-spline coefficients),
/// and zoom(..., grid_mode=True, mode='mirror') for GridMode::extent.
///   auto small = resize(ct, {128, 128, 128});                    // float, order 1
///   auto labels = resize<std::uint8_t>(seg, {128, 128, 128}, {.order = 0});
/// Order 0 gives any element type; orders 1 and 3 need a floating Out.
template <Element Out = float, Element T, class B>
Tensor<Out, B> resize(const Tensor<T, B>& x, const Extent3& shape, const ResampleOptions& options = {});

/// resize with each input value passed through `load` (float -> float) as it is read: a
/// pointwise op before interpolation (an HU window) fused into the same pass. A HuWindow, an
/// Affine or an ops::VoxelMap works on every backend; any other functor on the CPU only.
template <Element Out = float, Element T, class B, class Load>
Tensor<Out, B> resize(const Tensor<T, B>& x, const Extent3& shape, const ResampleOptions& options, Load load);

/// scipy.ndimage.zoom(x, factors): resize to zoom_shape(x's shape, factors).
template <Element Out = float, Element T, class B>
Tensor<Out, B> zoom(const Tensor<T, B>& x, const std::array<double, 3>& factors, const ResampleOptions& options = {});

/// The geometry of a grid of `in` voxels (D, H, W) resized to `out` under `grid`: spacing
/// scaled, origin moved to where output voxel 0's centre lies, direction kept.
io::Geometry resized_geometry(const io::Geometry& g, const Extent3& in, const Extent3& out, GridMode grid);

/// The image resampled to `shape` (D, H, W), with its geometry updated.
template <Element Out = float, Element T>
io::Image<Out> resample_to_shape(const io::Image<T>& image, const Extent3& shape, const ResampleOptions& options = {});

/// The shape a target spacing (x, y, z) gives, as nnU-Net computes it:
/// round(size * spacing / target) per axis, at least 1.
Extent3 shape_for_spacing(const io::Geometry& g, const Extent3& shape, const io::Vec3& target_spacing);

/// The image resampled to `target_spacing` (x, y, z, millimetres). The shape is
/// shape_for_spacing's; GridMode::extent (the default here) keeps the physical extent, so the
/// resulting spacing is the target up to the rounding of the shape.
template <Element Out = float, Element T>
io::Image<Out> resample_to_spacing(const io::Image<T>& image, const io::Vec3& target_spacing,
                                   const ResampleOptions& options = {.order = 1, .grid = GridMode::extent});

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

template <class T, class B>
void require_defined(const Tensor<T, B>& x, const char* op) {
  require(x.defined(), [&] {
    return ErrorInfo{.where = std::string("preprocess::") + op, .field = "input", .expected = "a defined tensor",
                     .actual = "an undefined tensor"};
  });
}

/// A load (or pointwise op) as the kernels take it: HuWindow and Affine become the VoxelMap
/// every backend reads; any other functor is passed on as it is, which only the CPU kernels
/// take (a device tensor with one does not compile).
inline ops::VoxelMap as_load(std::nullptr_t) { return {}; }
inline ops::VoxelMap as_load(const HuWindow& w) { return ops::VoxelMap::window(w); }
inline ops::VoxelMap as_load(const ops::Affine& a) { return ops::VoxelMap::affine(a); }
template <class F>
const F& as_load(const F& f) {
  return f;
}

/// resize's checks of x and the options, then the taps of x's spatial extent to `shape`.
template <class T, class B>
ops::ResampleTaps plan_resize(const Tensor<T, B>& x, const Extent3& shape, const ResampleOptions& options, DType out) {
  const std::string where = "preprocess::resize";
  require(x.defined() && (x.rank() == 3 || x.rank() == 4), [&] {
    return ErrorInfo{.where = where, .field = "input shape", .expected = "[D,H,W] or [C,D,H,W]",
                     .actual = x.defined() ? x.shape().to_string() : "an undefined tensor"};
  });
  const std::array<int, 3> orders = ops::checked_orders(options, where);
  ops::check_output_type(orders, out, options.order, where);
  ops::check_output_shape(shape, where);
  const int r = x.rank();
  const Extent3 in{x.size(r - 3), x.size(r - 2), x.size(r - 1)};
  require(in[0] >= 1 && in[1] >= 1 && in[2] >= 1, [&] {
    return ErrorInfo{.where = where, .field = "input shape", .expected = "non-empty spatial axes",
                     .actual = x.shape().to_string()};
  });
  return ops::plan_resample(in, shape, orders, options);
}

template <class Out, class T, class B, class Load>
Tensor<Out, B> resize_impl(const Tensor<T, B>& x, const Extent3& shape, const ResampleOptions& options, const Load& load) {
  const ops::ResampleTaps taps = plan_resize(x, shape, options, dtype_of<Out>);
  const int r = x.rank();
  auto out = Tensor<Out, B>::empty(r == 4 ? Shape{x.size(0), shape[0], shape[1], shape[2]}
                                          : Shape{shape[0], shape[1], shape[2]});
  ops::resample(x.contiguous(), out, taps, as_load(load));
  return out;
}

inline const char* axis_name(int a) { return a == 0 ? "D" : a == 1 ? "H" : "W"; }

}  // namespace detail

inline Extent3 zoom_shape(const Extent3& in, const std::array<double, 3>& factors) {
  Extent3 out{};
  for (int a = 0; a < 3; ++a) {
    const auto i = static_cast<std::size_t>(a);
    require(std::isfinite(factors[i]) && factors[i] > 0, [&] {
      return ErrorInfo{.where = "preprocess::zoom", .field = std::string("factor of axis ") + detail::axis_name(a),
                       .expected = "a finite positive factor", .actual = str(factors[i])};
    });
    // Python's round(): half to even, which nearbyint gives in the default rounding mode.
    out[i] = static_cast<std::int64_t>(std::nearbyint(static_cast<double>(in[i]) * factors[i]));
  }
  return out;
}

template <Element Out, Element T, class B>
Tensor<Out, B> resize(const Tensor<T, B>& x, const Extent3& shape, const ResampleOptions& options) {
  return detail::resize_impl<Out>(x, shape, options, nullptr);
}

template <Element Out, Element T, class B, class Load>
Tensor<Out, B> resize(const Tensor<T, B>& x, const Extent3& shape, const ResampleOptions& options, Load load) {
  return detail::resize_impl<Out>(x, shape, options, load);
}

template <Element Out, Element T, class B>
Tensor<Out, B> zoom(const Tensor<T, B>& x, const std::array<double, 3>& factors, const ResampleOptions& options) {
  require(x.defined() && x.rank() >= 3, [&] {
    return ErrorInfo{.where = "preprocess::zoom", .field = "input shape", .expected = "[D,H,W] or [C,D,H,W]",
                     .actual = x.defined() ? x.shape().to_string() : "an undefined tensor"};
  });
  const int r = x.rank();
  return resize<Out>(x, zoom_shape({x.size(r - 3), x.size(r - 2), x.size(r - 1)}, factors), options);
}

inline io::Geometry resized_geometry(const io::Geometry& g, const Extent3& in, const Extent3& out, GridMode grid) {
  io::Geometry r = g;
  io::Vec3 first{};  // the continuous input index (i, j, k) of output voxel 0
  for (int c = 0; c < 3; ++c) {
    const auto n = static_cast<double>(in[static_cast<std::size_t>(2 - c)]);
    const auto m = static_cast<double>(out[static_cast<std::size_t>(2 - c)]);
    const auto cs = static_cast<std::size_t>(c);
    if (grid == GridMode::corners) {
      r.spacing[cs] = m > 1 ? g.spacing[cs] * (n - 1) / (m - 1) : g.spacing[cs] * n;
      first[cs] = 0;
    } else {
      r.spacing[cs] = g.spacing[cs] * n / m;
      first[cs] = 0.5 * n / m - 0.5;
    }
  }
  r.origin = g.index_to_world(first);
  return r;
}

template <Element Out, Element T>
io::Image<Out> resample_to_shape(const io::Image<T>& image, const Extent3& shape, const ResampleOptions& options) {
  const int r = image.voxels.rank();
  require(r == 3 || r == 4, [&] {
    return ErrorInfo{.where = "preprocess::resample_to_shape", .field = "voxels",
                     .expected = "[D,H,W] or [C,D,H,W]", .actual = image.voxels.shape().to_string()};
  });
  const Extent3 in{image.voxels.size(r - 3), image.voxels.size(r - 2), image.voxels.size(r - 1)};
  return {resize<Out>(image.voxels, shape, options), resized_geometry(image.geometry, in, shape, options.grid)};
}

inline Extent3 shape_for_spacing(const io::Geometry& g, const Extent3& shape, const io::Vec3& target) {
  Extent3 out{};
  for (int c = 0; c < 3; ++c) {
    const auto cs = static_cast<std::size_t>(c);
    require(std::isfinite(target[cs]) && target[cs] > 0, [&] {
      return ErrorInfo{.where = "preprocess::resample_to_spacing", .field = std::string("target spacing ") + "xyz"[c],
                       .expected = "a finite positive spacing", .actual = str(target[cs])};
    });
    const auto a = static_cast<std::size_t>(2 - c);
    out[a] = std::max<std::int64_t>(
        1, static_cast<std::int64_t>(std::nearbyint(static_cast<double>(shape[a]) * g.spacing[cs] / target[cs])));
  }
  return out;
}

template <Element Out, Element T>
io::Image<Out> resample_to_spacing(const io::Image<T>& image, const io::Vec3& target, const ResampleOptions& options) {
  const int r = image.voxels.rank();
  require(r == 3 || r == 4, [&] {
    return ErrorInfo{.where = "preprocess::resample_to_spacing", .field = "voxels",
                     .expected = "[D,H,W] or [C,D,H,W]", .actual = image.voxels.shape().to_string()};
  });
  const Extent3 in{image.voxels.size(r - 3), image.voxels.size(r - 2), image.voxels.size(r - 1)};
  return resample_to_shape<Out>(image, shape_for_spacing(image.geometry, in, target), options);
}

}  // namespace medseg::preprocess
