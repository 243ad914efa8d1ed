// Resampling label maps: nearest neighbour, or nnU-Net's per-label one-hot interpolation
// (each label's mask interpolated and thresholded at 0.5, labels in ascending order, later
// ones winning), with nnU-Net's anisotropic rule: when the spacing ratio exceeds 3, the coarse
// axis is resampled with order 0 and the other two in-plane (resample_data_or_seg).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
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

namespace detail {
/// Where a label's interpolated mask counts as inside. An exact tie (0.5 in exact arithmetic,
/// common where weights are halves) is inside, as nnU-Net's float64 computation finds it; float
/// rounding must not flip it.
inline constexpr float label_mask_threshold = 0.5f - 1e-5f;
}  // namespace detail

template <class L, class B>
std::vector<L> unique_labels(const Tensor<L, B>& seg) {
  static_assert(B::is_host, "medseg::preprocess::unique_labels has no implementation for this backend: for Cuda "
                            "tensors include medseg/cuda.hpp and link medseg::cuda");
  const Tensor<L, B> c = seg.contiguous();
  const std::int64_t n = c.numel();
  const std::int64_t blocks = (n + (1 << 16) - 1) >> 16;
  std::vector<std::vector<L>> found(static_cast<std::size_t>(blocks));
  parallel_for(0, blocks, 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t k = b; k < e; ++k) {
      auto& f = found[static_cast<std::size_t>(k)];
      L last{};
      bool any = false;
      for (std::int64_t i = k << 16; i < std::min(n, (k + 1) << 16); ++i) {
        const L v = c.data()[i];
        if (any && v == last) continue;  // label maps are runs of one value
        if (std::find(f.begin(), f.end(), v) == f.end()) f.push_back(v);
        last = v;
        any = true;
      }
    }
  });
  std::vector<L> all;
  for (const auto& f : found) all.insert(all.end(), f.begin(), f.end());
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  return all;
}

template <class L, class B>
Tensor<L, B> resample_segmentation(const Tensor<L, B>& seg, const Extent3& shape,
                                   const SegmentationResampleOptions& options, int axis) {
  static_assert(B::is_host, "medseg::preprocess::resample_segmentation has no implementation for this backend: for Cuda "
                            "tensors include medseg/cuda.hpp and link medseg::cuda");
  require(options.order == 0 || options.order == 1 || options.order == 3, [&] {
    return ErrorInfo{.where = "preprocess::resample_segmentation", .field = "order",
                     .expected = "0 (nearest), 1 or 3 (per-label interpolation)", .actual = std::to_string(options.order)};
  });
  const ResampleOptions r{.order = options.order, .grid = options.grid, .boundary = options.boundary,
                          .separate_axis = axis, .separate_order = options.separate_order};
  if (options.order == 0 && (axis < 0 || options.separate_order == 0)) return resize<L>(seg, shape, r);

  const auto labels = unique_labels(seg);
  Tensor<L, B> out;
  for (std::size_t li = 0; li < labels.size(); ++li) {
    const L label = labels[li];
    const auto target = static_cast<float>(label);
    const auto mask = resize<float>(seg, shape, r, [target](float v) { return v == target ? 1.0f : 0.0f; });
    if (!out.defined()) out = Tensor<L, B>::zeros(mask.shape());
    // Zeros are already in place when 0 is the smallest label.
    if (li == 0 && label == L(0)) continue;
    constexpr float threshold = detail::label_mask_threshold;
    const float* m = mask.data();
    L* o = out.data();
    parallel_for(0, mask.numel(), 1 << 15, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i)
        if (m[i] >= threshold) o[i] = label;
    });
  }
  if (!out.defined()) out = resize<L>(seg, shape, {.order = 0, .grid = options.grid, .boundary = options.boundary});
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
