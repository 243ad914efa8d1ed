// Resampling label maps: nearest neighbour, or nnU-Net's per-label one-hot interpolation
// (each label's mask interpolated and thresholded at 0.5, labels in ascending order, later
// ones winning), with nnU-Net's anisotropic rule: when the spacing ratio exceeds 3, the coarse
// axis is resampled with order 0 and the other two in-plane (resample_data_or_seg). The label
// loop and the resampling are the kernels of the tensor's backend (backends/ops.hpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "../backends/ops.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../io/image.hpp"
#include "resample.hpp"

namespace medseg::preprocess {

/// Defaults follow nnU-Net (skimage.resize with mode='edge' under resize_segmentation).
struct SegmentationResampleOptions {
  int order = 1;                        // 0: nearest; 1 or 3: per-label one-hot interpolation
  GridMode grid = GridMode::extent;     // skimage's geometry: the physical extent is kept
  Boundary boundary = Boundary::nearest;
  double anisotropy_threshold = 3.0;    // nnU-Net's ANISO_THRESHOLD
  int separate_order = 0;               // order along the coarse axis (nnU-Net's order_z)
};

/// nnU-Net's do_separate_z / get_lowres_axis: the tensor axis (0, 1, 2 = D, H, W) of the one
/// largest spacing when max / min spacing > threshold, else -1. `spacing` is (x, y, z).
int separate_axis(const io::Vec3& spacing, double threshold = 3.0);
/// The axis a resampling from spacing `from` to spacing `to` treats apart: `from`'s, else
/// `to`'s (nnU-Net asks the current spacing first, then the new one).
int separate_axis(const io::Vec3& from, const io::Vec3& to, double threshold);

/// The distinct values of a label map, ascending.
template <class L, class B>
std::vector<L> unique_labels(const Tensor<L, B>& seg);

/// `seg` ([D,H,W] or [C,D,H,W]) resampled to `shape` (D, H, W). `axis` (0, 1, 2 or -1) is
/// resampled with options.separate_order instead of options.order.
template <class L, class B>
Tensor<L, B> resample_segmentation(const Tensor<L, B>& seg, const Extent3& shape,
                                   const SegmentationResampleOptions& options = {}, int axis = -1);

/// The image version picks the separate axis from the current spacing, else from the new one,
/// as nnU-Net does, and updates the geometry.
template <class L>
io::Image<L> resample_segmentation(const io::Image<L>& seg, const Extent3& shape,
                                   const SegmentationResampleOptions& options = {});

// ----------------------------------------------------------------------------------------
// Implementation

inline int separate_axis(const io::Vec3& spacing, double threshold) {
  const double hi = *std::max_element(spacing.begin(), spacing.end());
  const double lo = *std::min_element(spacing.begin(), spacing.end());
  if (!(lo > 0) || hi / lo <= threshold) return -1;
  int axis = -1, count = 0;
  for (int c = 0; c < 3; ++c)
    if (spacing[static_cast<std::size_t>(c)] == hi) {
      axis = 2 - c;  // x is W (axis 2), z is D (axis 0)
      ++count;
    }
  return count == 1 ? axis : -1;
}

inline int separate_axis(const io::Vec3& from, const io::Vec3& to, double threshold) {
  const int axis = separate_axis(from, threshold);
  return axis >= 0 ? axis : separate_axis(to, threshold);
}

template <class L, class B>
std::vector<L> unique_labels(const Tensor<L, B>& seg) {
  detail::require_defined(seg, "unique_labels");
  return ops::unique_labels(seg.contiguous());
}

template <class L, class B>
Tensor<L, B> resample_segmentation(const Tensor<L, B>& seg, const Extent3& shape,
                                   const SegmentationResampleOptions& options, int axis) {
  require(options.order == 0 || options.order == 1 || options.order == 3, [&] {
    return ErrorInfo{.where = "preprocess::resample_segmentation", .field = "order",
                     .expected = "0 (nearest), 1 or 3 (per-label interpolation)", .actual = std::to_string(options.order)};
  });
  const ResampleOptions r{.order = options.order, .grid = options.grid, .boundary = options.boundary,
                          .separate_axis = axis, .separate_order = options.separate_order};
  if (options.order == 0 && (axis < 0 || options.separate_order == 0)) return resize<L>(seg, shape, r);

  // Each label's one-hot mask is interpolated as a float resize would be: its checks, one plan.
  const ops::ResampleTaps taps = detail::plan_resize(seg, shape, r, DType::float32);
  const auto labels = unique_labels(seg);
  if (labels.empty()) return resize<L>(seg, shape, {.order = 0, .grid = options.grid, .boundary = options.boundary});
  auto out = Tensor<L, B>::zeros(seg.rank() == 4 ? Shape{seg.size(0), shape[0], shape[1], shape[2]}
                                                 : Shape{shape[0], shape[1], shape[2]});
  ops::resample_labels(seg.contiguous(), out, taps, labels);
  return out;
}

template <class L>
io::Image<L> resample_segmentation(const io::Image<L>& seg, const Extent3& shape,
                                   const SegmentationResampleOptions& options) {
  const int r = seg.voxels.rank();
  require(r == 3 || r == 4, [&] {
    return ErrorInfo{.where = "preprocess::resample_segmentation", .field = "voxels",
                     .expected = "[D,H,W] or [C,D,H,W]", .actual = seg.voxels.shape().to_string()};
  });
  const Extent3 in{seg.voxels.size(r - 3), seg.voxels.size(r - 2), seg.voxels.size(r - 1)};
  const io::Geometry g = resized_geometry(seg.geometry, in, shape, options.grid);
  return {resample_segmentation(seg.voxels, shape, options,
                                separate_axis(seg.geometry.spacing, g.spacing, options.anisotropy_threshold)),
          g};
}

}  // namespace medseg::preprocess
