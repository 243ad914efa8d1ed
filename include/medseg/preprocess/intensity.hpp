// Intensity normalisation: MedicalSeg's HU window (HUnorm) and range normalise, clip +
// min-max, z-score (per image, inside the nonzero mask, or with dataset statistics) and
// nnU-Net's CTNormalization (clip to foreground 0.5/99.5 percentiles, dataset mean/std).
// Each op is also a pointwise functor, so it can be fused into resize's load (one pass). The
// loops and reductions are the kernels of the tensor's backend (backends/ops.hpp), which take
// each op as an ops::VoxelMap; the checks and the statistics' last steps are here.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "../backends/ops.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../io/image.hpp"
#include "resample.hpp"

namespace medseg::preprocess {

/// MedicalSeg's HUnorm (HuWindow: NaN -> nan_value, then (v - lo) / (hi - lo) clipped to
/// [0, 1], times 255 when scale_255) and v -> (v - shift) * scale (Affine) are the kernels'
/// types (backends/preprocess.hpp), functors that can run inside resize's load:
///   auto x = resize(ct, {128, 128, 128}, {.order = 1}, HuWindow{-1250, 250});
using ops::Affine;
using ops::HuWindow;

/// Mean and standard deviation (population, ddof = 0, as numpy's std) in double.
struct Moments {
  double mean = 0, std = 0;
  std::int64_t count = 0;
};

/// nnU-Net's CT statistics of a dataset's foreground: mean, std and the 0.5 / 99.5
/// percentiles (numpy's linear interpolation); what the statistics kernels return.
using ops::CtStats;

/// x with `f` applied to every element, as float: the building block of the ops below. f is a
/// HuWindow, an Affine or an ops::VoxelMap on every backend; any functor on the CPU.
template <class T, class B, class F>
Tensor<float, B> map_to_float(const Tensor<T, B>& x, F f);

/// HuWindow over a tensor or image.
template <class T, class B>
Tensor<float, B> hu_window(const Tensor<T, B>& x, const HuWindow& window);
template <class T>
io::Image<float> hu_window(const io::Image<T>& image, const HuWindow& window);

/// MedicalSeg's normalize: with bounds, (v - lo) / (hi - lo) clipped to [0, 1]; without,
/// (v - min) / (max - min) over the whole image.
template <class T, class B>
Tensor<float, B> normalize_range(const Tensor<T, B>& x, std::optional<float> lo = {}, std::optional<float> hi = {});

/// Clip to [lo, hi], then min-max to [0, 1] with the clipped image's own min and max.
template <class T, class B>
Tensor<float, B> clip_minmax(const Tensor<T, B>& x, float lo, float hi);

/// Moments of x, or of its nonzero elements when `nonzero_only` (nnU-Net's use_mask_for_norm).
template <class T, class B>
Moments moments(const Tensor<T, B>& x, bool nonzero_only = false);

/// (v - mean) / max(std, 1e-8) with x's own moments; with `nonzero_only`, moments over the
/// nonzero elements and zeros left at zero (nnU-Net's ZScoreNormalization with a mask).
template <class T, class B>
Tensor<float, B> zscore(const Tensor<T, B>& x, bool nonzero_only = false);
/// z-score with given (dataset) statistics.
template <class T, class B>
Tensor<float, B> zscore(const Tensor<T, B>& x, const Moments& stats);

/// CT statistics of the elements of x where `foreground` is nonzero (same shape).
template <class T, class M, class B>
CtStats ct_statistics(const Tensor<T, B>& x, const Tensor<M, B>& foreground);
/// nnU-Net's CTNormalization: clip to [lower, upper], then (v - mean) / max(std, 1e-8).
template <class T, class B>
Tensor<float, B> ct_normalize(const Tensor<T, B>& x, const CtStats& stats);

/// numpy.percentile(values, q) with the default linear method; reorders `values`.
double percentile(std::vector<float>& values, double q);
/// numpy.percentile(x, q) over every element of x.
template <class T, class B>
double percentile(const Tensor<T, B>& x, double q);

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

/// Moments from the sums of (v - shift) and its squares: the last step of moments(), on every
/// backend.
inline Moments finish_moments(const ops::SumSq& s, double shift) {
  Moments m;
  m.count = s.count;
  if (s.count == 0) return m;
  const double mean_shifted = s.sum / static_cast<double>(s.count);
  m.mean = shift + mean_shifted;
  m.std = std::sqrt(std::max(0.0, s.sq / static_cast<double>(s.count) - mean_shifted * mean_shifted));
  return m;
}

/// z-score's affine: (v - mean) / max(std, 1e-8).
inline Affine standardize(double mean, double std) {
  return Affine{static_cast<float>(mean), static_cast<float>(1.0 / std::max(std, 1e-8))};
}

}  // namespace detail

template <class T, class B, class F>
Tensor<float, B> map_to_float(const Tensor<T, B>& x, F f) {
  detail::require_defined(x, "map");
  const Tensor<T, B> c = x.contiguous();
  auto out = Tensor<float, B>::empty(c.shape());
  ops::map_voxels(c, out, detail::as_load(f));
  return out;
}

template <class T, class B>
Tensor<float, B> hu_window(const Tensor<T, B>& x, const HuWindow& window) {
  require(window.hi > window.lo, [&] {
    return ErrorInfo{.where = "preprocess::hu_window", .field = "window", .expected = "lo < hi",
                     .actual = "[" + str(window.lo) + ", " + str(window.hi) + "]"};
  });
  return map_to_float(x, window);
}

template <class T>
io::Image<float> hu_window(const io::Image<T>& image, const HuWindow& window) {
  return {hu_window(image.voxels, window), image.geometry};
}

template <class T, class B>
Tensor<float, B> normalize_range(const Tensor<T, B>& x, std::optional<float> lo, std::optional<float> hi) {
  if (lo && hi) {
    require(*hi > *lo, [&] {
      return ErrorInfo{.where = "preprocess::normalize_range", .field = "range", .expected = "min < max",
                       .actual = "[" + str(*lo) + ", " + str(*hi) + "]"};
    });
    return map_to_float(x, HuWindow{.lo = *lo, .hi = *hi});
  }
  detail::require_defined(x, "normalize_range");
  const auto mm = ops::min_max(x.contiguous(), ops::VoxelMap{});
  const float range = mm.hi > mm.lo ? mm.hi - mm.lo : 1.0f;
  return map_to_float(x, Affine{mm.lo, 1.0f / range});
}

template <class T, class B>
Tensor<float, B> clip_minmax(const Tensor<T, B>& x, float lo, float hi) {
  require(hi > lo, [&] {
    return ErrorInfo{.where = "preprocess::clip_minmax", .field = "clip range", .expected = "lo < hi",
                     .actual = "[" + str(lo) + ", " + str(hi) + "]"};
  });
  detail::require_defined(x, "clip_minmax");
  // clamp(v) - 0 and * 1 are exact: the min and max of the clipped values.
  const auto mm = ops::min_max(x.contiguous(), ops::VoxelMap::clip_affine(lo, hi, Affine{}));
  const float range = mm.hi > mm.lo ? mm.hi - mm.lo : 1.0f;
  return map_to_float(x, ops::VoxelMap::clip_affine(lo, hi, Affine{mm.lo, 1.0f / range}));
}

template <class T, class B>
Moments moments(const Tensor<T, B>& x, bool nonzero_only) {
  detail::require_defined(x, "moments");
  // Shifted sums (by the first element, the first nonzero one with nonzero_only) keep the
  // variance exact for data far from zero, such as CT in HU around -1000.
  const Tensor<T, B> c = x.contiguous();
  double shift = 0;
  const std::int64_t first = c.numel() == 0 ? -1 : nonzero_only ? ops::first_nonzero(c) : 0;
  if (first >= 0) shift = static_cast<double>(c.flatten().slice(0, first, first + 1).to_vector()[0]);
  return detail::finish_moments(ops::shifted_sums(c, nonzero_only, static_cast<float>(shift)), shift);
}

template <class T, class B>
Tensor<float, B> zscore(const Tensor<T, B>& x, const Moments& stats) {
  return map_to_float(x, detail::standardize(stats.mean, stats.std));
}

template <class T, class B>
Tensor<float, B> zscore(const Tensor<T, B>& x, bool nonzero_only) {
  const Moments m = moments(x, nonzero_only);
  if (!nonzero_only) return zscore(x, m);
  return map_to_float(x, ops::VoxelMap::affine_nonzero(detail::standardize(m.mean, m.std)));  // zeros stay zero
}

inline double percentile(std::vector<float>& values, double q) { return ops::percentile(values, q); }

template <class T, class B>
double percentile(const Tensor<T, B>& x, double q) {
  detail::require_defined(x, "percentile");
  return ops::percentile(x.contiguous(), q);
}

template <class T, class M, class B>
CtStats ct_statistics(const Tensor<T, B>& x, const Tensor<M, B>& foreground) {
  detail::require_defined(x, "ct_statistics");
  require(foreground.defined() && foreground.shape() == x.shape(), [&] {
    return ErrorInfo{.where = "preprocess::ct_statistics", .field = "foreground mask",
                     .expected = "shape " + x.shape().to_string(),
                     .actual = foreground.defined() ? foreground.shape().to_string() : "an undefined tensor"};
  });
  return ops::foreground_statistics(x.contiguous(), foreground.contiguous());
}

template <class T, class B>
Tensor<float, B> ct_normalize(const Tensor<T, B>& x, const CtStats& stats) {
  require(stats.upper >= stats.lower, [&] {
    return ErrorInfo{.where = "preprocess::ct_normalize", .field = "percentiles", .expected = "lower <= upper",
                     .actual = "[" + str(stats.lower) + ", " + str(stats.upper) + "]"};
  });
  const auto lo = static_cast<float>(stats.lower), hi = static_cast<float>(stats.upper);
  return map_to_float(x, ops::VoxelMap::clip_affine(lo, hi, detail::standardize(stats.mean, stats.std)));
}

}  // namespace medseg::preprocess
