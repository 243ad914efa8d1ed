// What the preprocessing kernels of every backend share: the plain data their signatures take
// (extents, boxes, resampling options and the per-axis taps planned from them, the pointwise
// VoxelMap, label mappings, partial sums) and the host arithmetic both the CPU kernels
// (backends/cpu/preprocess.hpp) and the Cuda ones (backends/cuda/preprocess.hpp,
// src/backends/cuda/preprocess.cu) start from, so the two compute the same numbers: the taps
// of an axis, the spline prefilter's constants, which kernel a resampling uses. The decisions
// (checks of the inputs, messages, defaults) stay in preprocess/, which names these types
// under its own namespace.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/host_device.hpp"
#include "../core/tensor.hpp"

namespace medseg::ops {

/// Extents of the three spatial axes in tensor order (D, H, W) = (k, j, i).
using Extent3 = std::array<std::int64_t, 3>;

/// Where output voxel k samples the input along an axis of n inputs and m outputs.
enum class GridMode {
  /// scipy.ndimage.zoom's default (grid_mode=False): first and last voxel centres coincide,
  /// source = k * (n - 1) / (m - 1). Spacing becomes s * (n - 1) / (m - 1).
  corners,
  /// grid_mode=True: the voxel edges of the whole grid coincide, so the physical extent
  /// n * s is kept: source = (k + 0.5) * n / m - 0.5. Boundaries mirror (scipy mode='mirror').
  extent,
};

/// What a source coordinate outside [0, n - 1] reads (GridMode::extent reaches half a voxel
/// past the centres; corners never leaves the grid).
enum class Boundary {
  mirror,   // whole-sample mirror of the spline coefficients (scipy 'mirror'; zoom's prefilter)
  nearest,  // the coordinate clamped into [0, n - 1] (scipy 'nearest' for orders 0 and 1,
            // skimage mode='edge' as nnU-Net resizes)
};

struct ResampleOptions {
  int order = 1;                      // 0 nearest, 1 linear, 3 cubic B-spline (SciPy's prefilter)
  GridMode grid = GridMode::corners;  // corners = scipy.ndimage.zoom's default
  Boundary boundary = Boundary::mirror;
  /// Anisotropic data (nnU-Net's do_separate_z): axis 0, 1 or 2 (D, H, W) is resampled with
  /// `separate_order` instead of `order`; -1 for none.
  int separate_axis = -1;
  int separate_order = 0;
};

/// A box of voxels [begin, end) per spatial axis, in tensor order (D, H, W).
struct Box {
  Extent3 begin{}, end{};
  Extent3 shape() const { return {end[0] - begin[0], end[1] - begin[1], end[2] - begin[2]}; }
  friend bool operator==(const Box&, const Box&) = default;
};

/// (from, to) pairs; the element type comes from the label map, not from the braces.
template <class L>
using LabelMapping = std::vector<std::pair<std::type_identity_t<L>, std::type_identity_t<L>>>;

/// MedicalSeg's HUnorm: NaN -> nan_value, then (v - lo) / (hi - lo) clipped to [0, 1],
/// times 255 when scale_255. A functor so it can run inside resize's load:
///   auto x = resize(ct, {128, 128, 128}, {.order = 1}, HuWindow{-1250, 250});
struct HuWindow {
  float lo = -1200, hi = 600;  // MedicalSeg's defaults (HUnorm)
  bool scale_255 = false;
  std::optional<float> nan_value{};  // default: lo (MedicalSeg uses -2000, which clips to lo)

  float operator()(float v) const {
    if (std::isnan(v)) v = nan_value.value_or(lo);
    const float scale = (scale_255 ? 255.0f : 1.0f) / (hi - lo);
    return std::clamp((v - lo) * scale, 0.0f, scale_255 ? 255.0f : 1.0f);
  }
};

/// v -> (v - shift) * scale: z-score with known statistics, and any other affine.
struct Affine {
  float shift = 0, scale = 1;
  float operator()(float v) const { return (v - shift) * scale; }
};

/// nnU-Net's CT statistics of a dataset's foreground: mean, std and the 0.5 / 99.5
/// percentiles (numpy's linear interpolation).
struct CtStats {
  double mean = 0, std = 1, lower = 0, upper = 0;
};

/// The element types the Cuda preprocessing kernels read: what scans and label maps are stored
/// as (the CPU kernels read any element type).
template <class T>
concept PreprocessVoxel = std::same_as<T, std::uint8_t> || std::same_as<T, std::int8_t> ||
                          std::same_as<T, std::uint16_t> || std::same_as<T, std::int16_t> ||
                          std::same_as<T, std::int32_t> || std::same_as<T, float>;
/// Label maps: the integral ones of those.
template <class L>
concept PreprocessLabel = PreprocessVoxel<L> && std::integral<L>;

/// A pointwise op on a voxel's float value, as plain data a kernel of any backend can take:
/// what HuWindow, Affine, the clip + affine of clip_minmax and ct_normalize, the masked affine
/// of zscore and the one-hot load of per-label resampling compute. The factories fill it from
/// those functors with their own float arithmetic, so each backend repeats it bit for bit.
struct VoxelMap {
  enum class Kind : std::uint8_t {
    identity,
    window,          // HuWindow: NaN -> nan_value, clamp((v - shift) * scale, 0, top)
    affine,          // (v - shift) * scale
    clip_affine,     // (clamp(v, lo, hi) - shift) * scale
    affine_nonzero,  // v != 0 ? (v - shift) * scale : 0
    equals,          // v == lo ? 1 : 0
  };
  Kind kind = Kind::identity;
  float lo = 0, hi = 0;
  float shift = 0, scale = 1;
  float top = 1, nan_value = 0;

  static VoxelMap window(const HuWindow& w) {
    // HuWindow::operator()'s scale, computed the same way.
    return {.kind = Kind::window, .shift = w.lo, .scale = (w.scale_255 ? 255.0f : 1.0f) / (w.hi - w.lo),
            .top = w.scale_255 ? 255.0f : 1.0f, .nan_value = w.nan_value.value_or(w.lo)};
  }
  static VoxelMap affine(const Affine& a) { return {.kind = Kind::affine, .shift = a.shift, .scale = a.scale}; }
  static VoxelMap clip_affine(float lo, float hi, const Affine& a) {
    return {.kind = Kind::clip_affine, .lo = lo, .hi = hi, .shift = a.shift, .scale = a.scale};
  }
  static VoxelMap affine_nonzero(const Affine& a) {
    return {.kind = Kind::affine_nonzero, .shift = a.shift, .scale = a.scale};
  }
  static VoxelMap equals(float label) { return {.kind = Kind::equals, .lo = label}; }
};

// -- Resampling plans -------------------------------------------------------------------------

/// The taps of one axis: output k reads inputs index[k * taps + t] with weight[...].
struct AxisPlan {
  std::int64_t in = 0, out = 0;
  int taps = 1;
  std::vector<std::int64_t> index;
  std::vector<float> weight;
};

/// A resampling from one grid to another, planned on the host: each axis's order and taps.
/// Every backend's resample kernel takes it; Cuda's copies the taps to the device.
struct ResampleTaps {
  Extent3 in{}, out{};
  std::array<int, 3> orders{};
  std::array<AxisPlan, 3> axes{};
  bool all_nearest() const { return orders == std::array<int, 3>{0, 0, 0}; }
};

/// SciPy's whole-sample mirror of an index into [0, n): -1 -> 1, n -> n - 2.
MEDSEG_HOST_DEVICE std::int64_t mirror_index(std::int64_t idx, std::int64_t n) {
  if (n <= 1) return 0;
  const std::int64_t period = 2 * n - 2;
  idx %= period;
  if (idx < 0) idx += period;
  return idx >= n ? period - idx : idx;
}

/// The taps of an axis of n inputs and m outputs.
inline AxisPlan plan_axis(std::int64_t n, std::int64_t m, int order, GridMode grid, Boundary boundary) {
  AxisPlan p;
  p.in = n;
  p.out = m;
  p.taps = order == 0 ? 1 : order + 1;
  p.index.resize(static_cast<std::size_t>(m * p.taps));
  p.weight.resize(p.index.size());
  // The same double arithmetic as scipy (zoom factor first, then k * zoom), so that order
  // 0's rounding of exact halves picks the same voxel.
  const double factor = grid == GridMode::corners ? (m > 1 ? static_cast<double>(n - 1) / static_cast<double>(m - 1) : 1.0)
                                                  : static_cast<double>(n) / static_cast<double>(m);
  for (std::int64_t k = 0; k < m; ++k) {
    double cc = static_cast<double>(k);
    if (grid == GridMode::extent)
      cc = (cc + 0.5) * factor - 0.5;
    else
      cc *= factor;
    if (boundary == Boundary::nearest) cc = std::clamp(cc, 0.0, static_cast<double>(n - 1));
    const auto base = static_cast<std::size_t>(k * p.taps);
    double w[4] = {1, 0, 0, 0};
    std::int64_t start = 0;
    if (order == 0) {
      start = static_cast<std::int64_t>(std::floor(cc + 0.5));
    } else {
      const double fl = std::floor(cc);
      const double t = cc - fl;
      if (order == 1) {
        start = static_cast<std::int64_t>(fl);
        w[0] = 1 - t;
        w[1] = t;
      } else {
        start = static_cast<std::int64_t>(fl) - 1;
        const double u = 1 - t;
        w[0] = u * u * u / 6;
        w[1] = (4 - 6 * t * t + 3 * t * t * t) / 6;
        w[2] = (1 + 3 * t + 3 * t * t - 3 * t * t * t) / 6;
        w[3] = t * t * t / 6;
      }
    }
    for (int t = 0; t < p.taps; ++t) {
      p.index[base + static_cast<std::size_t>(t)] = mirror_index(start + t, n);
      p.weight[base + static_cast<std::size_t>(t)] = static_cast<float>(w[t]);
    }
  }
  return p;
}

/// The options' order of each axis (D, H, W), after checking them; `where` names the caller.
inline std::array<int, 3> checked_orders(const ResampleOptions& options, const std::string& where) {
  require(options.order == 0 || options.order == 1 || options.order == 3, [&] {
    return ErrorInfo{.where = where, .field = "order", .expected = "0 (nearest), 1 (linear) or 3 (cubic)",
                     .actual = std::to_string(options.order)};
  });
  require(options.separate_axis >= -1 && options.separate_axis <= 2 &&
              (options.separate_axis < 0 || options.separate_order == 0 || options.separate_order == 1 ||
               options.separate_order == 3),
          [&] {
            return ErrorInfo{.where = where, .field = "separate_axis / separate_order",
                             .expected = "axis -1, 0, 1 or 2 with order 0, 1 or 3",
                             .actual = "axis " + std::to_string(options.separate_axis) + ", order " +
                                       std::to_string(options.separate_order)};
          });
  std::array<int, 3> orders{options.order, options.order, options.order};
  if (options.separate_axis >= 0) orders[static_cast<std::size_t>(options.separate_axis)] = options.separate_order;
  return orders;
}

/// Orders 1 and 3 interpolate, so they write a floating type; label maps resample with order 0.
inline void check_output_type(const std::array<int, 3>& orders, DType out, int order, const std::string& where) {
  const bool all_nearest = orders == std::array<int, 3>{0, 0, 0};
  require(all_nearest || is_floating(out), [&] {
    return ErrorInfo{.where = where, .field = "output type",
                     .expected = "a floating type for order " + std::to_string(order),
                     .actual = std::string(name(out)), .detail = "label maps resample with order 0"};
  });
}

inline void check_output_shape(const Extent3& shape, const std::string& where) {
  for (int a = 0; a < 3; ++a)
    require(shape[static_cast<std::size_t>(a)] >= 1, [&] {
      return ErrorInfo{.where = where, .field = "output shape", .expected = "extents >= 1",
                       .actual = "[" + std::to_string(shape[0]) + "," + std::to_string(shape[1]) + "," +
                                 std::to_string(shape[2]) + "]"};
    });
}

/// The taps of a resampling from `in` to `out` with per-axis `orders` (checked ones).
inline ResampleTaps plan_resample(const Extent3& in, const Extent3& out, const std::array<int, 3>& orders,
                                  const ResampleOptions& options) {
  ResampleTaps t{.in = in, .out = out, .orders = orders};
  for (std::size_t a = 0; a < 3; ++a) t.axes[a] = plan_axis(in[a], out[a], orders[a], options.grid, options.boundary);
  return t;
}

/// Which kernel computes orders 0 and 1 when W shrinks: the D/H blend at full width first, then
/// the W gather; otherwise W, H, D in turn (the separable passes). The two round differently,
/// so every backend asks the same question to give the same numbers.
inline bool blends_rows_first(const std::array<int, 3>& orders, const Extent3& in, const Extent3& out) {
  return orders[0] <= 1 && orders[1] <= 1 && orders[2] <= 1 && out[2] < in[2];
}

/// The constants of SciPy's cubic B-spline prefilter (pole sqrt(3) - 2, mirror boundaries)
/// along an axis of n samples, computed in one place so both backends use the same numbers.
struct SplineConstants {
  /// Lines up to this long start the causal pass with the exact mirrored sum; longer ones sum
  /// the first `horizon` terms (|z|^k falls below float precision after ~30).
  static constexpr std::int64_t horizon = 32;
  double z = std::sqrt(3.0) - 2.0;                               // the pole
  float zf = static_cast<float>(z);
  float gain = static_cast<float>((1 - z) * (1 - 1 / z));
  float k = static_cast<float>(z / (z * z - 1));                 // the anti-causal start
  double zn1 = 0, norm = 0;                                      // z^(n-1), 1 / (1 - z^(2n-2)); short lines

  explicit SplineConstants(std::int64_t n) {
    if (n <= horizon) {
      zn1 = std::pow(z, static_cast<double>(n - 1));
      norm = 1.0 / (1 - zn1 * zn1);
    }
  }
};

/// Where a label's interpolated mask counts as inside. An exact tie (0.5 in exact arithmetic,
/// common where weights are halves) is inside, as nnU-Net's float64 computation finds it; float
/// rounding must not flip it.
inline constexpr float label_mask_threshold = 0.5f - 1e-5f;

// -- Reductions -------------------------------------------------------------------------------

/// Elements per block of a reduction. Blocks are fixed by index, never by thread, so sums
/// come out bit-identical at any thread count (and the GPU repeats the CPU's blocking).
inline constexpr std::int64_t reduce_block = 1 << 16;

/// Sums of (v - shift) and (v - shift)^2, and how many values they hold.
struct SumSq {
  double sum = 0, sq = 0;
  std::int64_t count = 0;
  friend SumSq operator+(const SumSq& a, const SumSq& b) { return {a.sum + b.sum, a.sq + b.sq, a.count + b.count}; }
};

struct MinMax {
  float lo = std::numeric_limits<float>::infinity(), hi = -std::numeric_limits<float>::infinity();
  friend MinMax operator+(const MinMax& a, const MinMax& b) { return {std::min(a.lo, b.lo), std::max(a.hi, b.hi)}; }
};

/// numpy's linear percentile over `count` sorted values: the position between ranks...
inline double percentile_position(std::size_t count, double q) { return q / 100.0 * static_cast<double>(count - 1); }
/// ... and the value there, from the values at ranks floor(pos) (a) and floor(pos) + 1 (b).
inline double percentile_between(double a, double b, double pos, std::size_t lo) {
  return a + (b - a) * (pos - static_cast<double>(lo));
}

/// What a percentile says when there is nothing to take a percentile of.
inline void require_values(std::size_t count) {
  require(count > 0, [] {
    return ErrorInfo{.where = "preprocess::percentile", .field = "values", .expected = "at least one value",
                     .actual = "none (an empty foreground?)"};
  });
}

}  // namespace medseg::ops
