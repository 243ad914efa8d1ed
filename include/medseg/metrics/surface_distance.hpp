// Surface distances in millimetres between a prediction and a reference, per class: the
// percentile Hausdorff distance (HD95) and the average symmetric surface distance, as MONAI's
// compute_hausdorff_distance(percentile=95) and compute_average_surface_distance(symmetric=True)
// compute them: surfaces are the voxels that binary erosion removes, distances come from the
// exact anisotropic distance transform of distance_transform.hpp.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <mutex>
#include <vector>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor.hpp"
#include "../preprocess/labels.hpp"
#include "distance_transform.hpp"
#include "overlap.hpp"

namespace medseg::metrics {

using preprocess::Connectivity;

struct SurfaceDistanceOptions {
  Spacing spacing{1, 1, 1};  // mm per voxel along (D, H, W)
  /// Erosion neighbourhood that defines a surface voxel. MONAI erodes with SciPy's default
  /// structure, the 6-neighbourhood (faces); full (26) makes thinner surfaces.
  Connectivity connectivity = Connectivity::faces;
  /// Percentile of the directed distances taken for the Hausdorff distance (MONAI
  /// percentile=95; 100 is the classic maximum). Linear interpolation as numpy.percentile.
  double percentile = 95;
};

/// Symmetric distances between two surfaces, in mm.
/// Both masks empty: both NaN (MONAI: no distances to aggregate). Exactly one empty: both
/// +inf (MONAI's distance to a missing surface). Summary's means skip NaN but keep inf.
struct SurfaceDistance {
  double hausdorff = std::numeric_limits<double>::quiet_NaN();  // max of the two directed percentiles
  double average = std::numeric_limits<double>::quiet_NaN();    // mean over both directions' distances
};

/// Surface voxels (1) of the nonzero voxels of a [D,H,W] mask: those with a neighbour
/// (per `connectivity`) that is zero or outside the volume, i.e. mask XOR erosion(mask) with
/// SciPy's border_value=0.
template <class T>
Tensor<std::uint8_t, Cpu> surface_voxels(const Tensor<T, Cpu>& mask, Connectivity connectivity = Connectivity::faces);

/// Distances between the nonzero voxels of two [D,H,W] masks of the same shape.
template <class P, class R>
SurfaceDistance surface_distance(const Tensor<P, Cpu>& prediction, const Tensor<R, Cpu>& reference,
                                 const SurfaceDistanceOptions& options = {});

/// Per class c in [first_class, num_classes) of two [D,H,W] label maps; entries below
/// first_class are NaN. MONAI's include_background=False is first_class = 1.
///   auto sd = metrics::surface_distance_per_class(pred, ref, 3, {.spacing = {2.5, 0.8, 0.8}});
///   double hd95_of_class_2 = sd[2].hausdorff;
template <std::integral L, std::integral R>
std::vector<SurfaceDistance> surface_distance_per_class(const Tensor<L, Cpu>& prediction,
                                                        const Tensor<R, Cpu>& reference, int num_classes,
                                                        const SurfaceDistanceOptions& options = {},
                                                        int first_class = 1);

/// numpy.percentile(values, q) with linear interpolation; reorders `values`. NaN when empty.
double percentile(std::vector<double>& values, double q);

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

/// A half-open box [lo, hi) of a [D,H,W] grid; empty when any hi <= lo.
struct Box {
  std::array<std::int64_t, 3> lo{}, hi{};
  bool empty() const { return hi[0] <= lo[0] || hi[1] <= lo[1] || hi[2] <= lo[2]; }
  std::int64_t extent(int a) const { return hi[static_cast<std::size_t>(a)] - lo[static_cast<std::size_t>(a)]; }
  std::int64_t numel() const { return empty() ? 0 : extent(0) * extent(1) * extent(2); }
  void add(std::int64_t d, std::int64_t h, std::int64_t w) {
    if (empty()) {
      lo = {d, h, w};
      hi = {d + 1, h + 1, w + 1};
      return;
    }
    const std::array<std::int64_t, 3> p{d, h, w};
    for (std::size_t a = 0; a < 3; ++a) {
      lo[a] = std::min(lo[a], p[a]);
      hi[a] = std::max(hi[a], p[a] + 1);
    }
  }
  void merge(const Box& o) {
    if (o.empty()) return;
    add(o.lo[0], o.lo[1], o.lo[2]);
    add(o.hi[0] - 1, o.hi[1] - 1, o.hi[2] - 1);
  }
};

/// Neighbour offsets (dd, dh, dw) of the erosion structure, without the centre.
inline std::vector<std::array<std::int64_t, 3>> neighbourhood(Connectivity c) {
  std::vector<std::array<std::int64_t, 3>> out;
  for (std::int64_t dd = -1; dd <= 1; ++dd)
    for (std::int64_t dh = -1; dh <= 1; ++dh)
      for (std::int64_t dw = -1; dw <= 1; ++dw) {
        const std::int64_t m = std::abs(dd) + std::abs(dh) + std::abs(dw);
        if (m == 0 || (c == Connectivity::faces && m != 1)) continue;
        out.push_back({dd, dh, dw});
      }
  return out;
}

/// Surface voxels, in `box` coordinates, of the set where inside(flat index) holds; the set
/// must lie within `box`, so a neighbour outside the box is background.
template <class Inside>
std::vector<std::uint8_t> box_surface(const Box& box, std::int64_t H, std::int64_t W, Connectivity connectivity,
                                      Inside&& inside) {
  const std::int64_t bd = box.extent(0), bh = box.extent(1), bw = box.extent(2);
  std::vector<std::uint8_t> out(static_cast<std::size_t>(box.numel()), 0);
  const auto nb = neighbourhood(connectivity);
  parallel_for(0, bd * bh, std::max<std::int64_t>(1, 4096 / std::max<std::int64_t>(bw, 1)),
               [&](std::int64_t b, std::int64_t e) {
                 for (std::int64_t row = b; row < e; ++row) {
                   const std::int64_t d = row / bh, h = row % bh;
                   for (std::int64_t w = 0; w < bw; ++w) {
                     const std::int64_t gd = box.lo[0] + d, gh = box.lo[1] + h, gw = box.lo[2] + w;
                     if (!inside((gd * H + gh) * W + gw)) continue;
                     bool surface = false;
                     for (const auto& o : nb) {
                       const std::int64_t nd = d + o[0], nh = h + o[1], nw = w + o[2];
                       if (nd < 0 || nd >= bd || nh < 0 || nh >= bh || nw < 0 || nw >= bw ||
                           !inside(((box.lo[0] + nd) * H + box.lo[1] + nh) * W + box.lo[2] + nw)) {
                         surface = true;
                         break;
                       }
                     }
                     out[static_cast<std::size_t>((d * bh + h) * bw + w)] = surface;
                   }
                 }
               });
  return out;
}

/// Distances (mm) from each voxel of surface `from` to the nearest voxel of surface `to`,
/// both in `box` coordinates; `to` must not be empty.
inline std::vector<double> directed_distances(const std::vector<std::uint8_t>& from, const std::vector<std::uint8_t>& to,
                                              const Box& box, const Spacing& spacing) {
  std::vector<double> f(to.size());
  for (std::size_t i = 0; i < to.size(); ++i) f[i] = to[i] ? 0.0 : std::numeric_limits<double>::infinity();
  squared_distance_to_features(f.data(), box.extent(0), box.extent(1), box.extent(2), spacing);
  std::vector<double> out;
  for (std::size_t i = 0; i < from.size(); ++i)
    if (from[i]) out.push_back(std::sqrt(f[i]));
  return out;
}

/// The two-sided distances of the sets in_pred and in_ref, both within `box` (their union's
/// bounding box, or empty when both sets are).
template <class InPred, class InRef>
SurfaceDistance surface_distance_in_box(const Box& box, std::int64_t H, std::int64_t W, bool pred_empty,
                                        bool ref_empty, const SurfaceDistanceOptions& o, InPred&& in_pred,
                                        InRef&& in_ref) {
  constexpr double inf = std::numeric_limits<double>::infinity();
  if (pred_empty && ref_empty) return {};
  if (pred_empty || ref_empty) return {inf, inf};
  const auto pred_surface = box_surface(box, H, W, o.connectivity, in_pred);
  const auto ref_surface = box_surface(box, H, W, o.connectivity, in_ref);
  auto pred_to_ref = directed_distances(pred_surface, ref_surface, box, o.spacing);
  auto ref_to_pred = directed_distances(ref_surface, pred_surface, box, o.spacing);
  double sum = 0;
  for (double d : pred_to_ref) sum += d;
  for (double d : ref_to_pred) sum += d;
  const double average = sum / static_cast<double>(pred_to_ref.size() + ref_to_pred.size());
  const double hausdorff = std::max(percentile(pred_to_ref, o.percentile), percentile(ref_to_pred, o.percentile));
  return {hausdorff, average};
}

inline void check_surface_inputs(const Shape& p, const Shape& r, const SurfaceDistanceOptions& o, const char* where) {
  require(p.rank() == 3, [&] {
    return ErrorInfo{.where = where, .field = "prediction", .expected = "a [D,H,W] map", .actual = p.to_string()};
  });
  require(p == r, [&] {
    return ErrorInfo{.where = where, .field = "reference shape", .expected = "the prediction's shape " + p.to_string(),
                     .actual = r.to_string()};
  });
  check_spacing(o.spacing, where);
  require(o.percentile >= 0 && o.percentile <= 100, [&] {
    return ErrorInfo{.where = where, .field = "percentile", .expected = "in [0, 100]", .actual = str(o.percentile)};
  });
}

}  // namespace detail

inline double percentile(std::vector<double>& values, double q) {
  if (values.empty()) return std::numeric_limits<double>::quiet_NaN();
  const double pos = q / 100.0 * static_cast<double>(values.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  const std::size_t hi = std::min(lo + 1, values.size() - 1);
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(lo), values.end());
  const double a = values[lo];
  // The next order statistic is the minimum of the part above lo.
  const double b = hi == lo ? a : *std::min_element(values.begin() + static_cast<std::ptrdiff_t>(hi), values.end());
  return a + (b - a) * (pos - static_cast<double>(lo));
}

template <class T>
Tensor<std::uint8_t, Cpu> surface_voxels(const Tensor<T, Cpu>& mask, Connectivity connectivity) {
  require(mask.defined() && mask.rank() == 3, [&] {
    return ErrorInfo{.where = "metrics::surface_voxels", .field = "mask", .expected = "a [D,H,W] tensor",
                     .actual = detail::shape_text(mask)};
  });
  const Tensor<T, Cpu> m = mask.contiguous();
  const std::int64_t D = m.size(0), H = m.size(1), W = m.size(2);
  detail::Box all{{0, 0, 0}, {D, H, W}};
  const auto s = detail::box_surface(all, H, W, connectivity, [&](std::int64_t i) { return m.data()[i] != T(0); });
  return Tensor<std::uint8_t, Cpu>::from(std::span<const std::uint8_t>(s), m.shape());
}

template <class P, class R>
SurfaceDistance surface_distance(const Tensor<P, Cpu>& prediction, const Tensor<R, Cpu>& reference,
                                 const SurfaceDistanceOptions& options) {
  constexpr const char* where = "metrics::surface_distance";
  require(prediction.defined() && reference.defined(), [&] {
    return ErrorInfo{.where = where, .field = "masks", .expected = "defined tensors", .actual = "an undefined tensor"};
  });
  detail::check_surface_inputs(prediction.shape(), reference.shape(), options, where);
  const Tensor<P, Cpu> p = prediction.contiguous();
  const Tensor<R, Cpu> r = reference.contiguous();
  const std::int64_t H = p.size(1), W = p.size(2);
  detail::Box pb, rb;
  for (std::int64_t d = 0; d < p.size(0); ++d)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t w = 0; w < W; ++w) {
        const std::int64_t i = (d * H + h) * W + w;
        if (p.data()[i] != P(0)) pb.add(d, h, w);
        if (r.data()[i] != R(0)) rb.add(d, h, w);
      }
  detail::Box box = pb;
  box.merge(rb);
  return detail::surface_distance_in_box(
      box, H, W, pb.empty(), rb.empty(), options, [&](std::int64_t i) { return p.data()[i] != P(0); },
      [&](std::int64_t i) { return r.data()[i] != R(0); });
}

template <std::integral L, std::integral R>
std::vector<SurfaceDistance> surface_distance_per_class(const Tensor<L, Cpu>& prediction,
                                                        const Tensor<R, Cpu>& reference, int num_classes,
                                                        const SurfaceDistanceOptions& options, int first_class) {
  constexpr const char* where = "metrics::surface_distance_per_class";
  detail::check_num_classes(num_classes, where);
  require(prediction.defined() && reference.defined(), [&] {
    return ErrorInfo{.where = where, .field = "label maps", .expected = "defined tensors", .actual = "an undefined tensor"};
  });
  detail::check_surface_inputs(prediction.shape(), reference.shape(), options, where);
  require(first_class >= 0, [&] {
    return ErrorInfo{.where = where, .field = "first_class", .expected = ">= 0", .actual = str(first_class)};
  });
  const Tensor<L, Cpu> p = prediction.contiguous();
  const Tensor<R, Cpu> r = reference.contiguous();
  detail::check_label_range(p, num_classes, where, "prediction");
  detail::check_label_range(r, num_classes, where, "reference");
  const std::int64_t D = p.size(0), H = p.size(1), W = p.size(2);
  const auto K = static_cast<std::size_t>(num_classes);

  // Every class's bounding boxes in one threaded pass over D-planes.
  std::vector<detail::Box> pred_box(K), ref_box(K);
  std::mutex m;
  parallel_for(0, D, 1, [&](std::int64_t b, std::int64_t e) {
    std::vector<detail::Box> pb(K), rb(K);
    for (std::int64_t d = b; d < e; ++d)
      for (std::int64_t h = 0; h < H; ++h)
        for (std::int64_t w = 0; w < W; ++w) {
          const std::int64_t i = (d * H + h) * W + w;
          pb[static_cast<std::size_t>(p.data()[i])].add(d, h, w);
          rb[static_cast<std::size_t>(r.data()[i])].add(d, h, w);
        }
    std::lock_guard lock(m);
    for (std::size_t c = 0; c < K; ++c) {
      pred_box[c].merge(pb[c]);
      ref_box[c].merge(rb[c]);
    }
  });

  std::vector<SurfaceDistance> out(K);
  for (std::size_t c = static_cast<std::size_t>(first_class); c < K; ++c) {
    detail::Box box = pred_box[c];
    box.merge(ref_box[c]);
    const auto label = static_cast<std::int64_t>(c);
    out[c] = detail::surface_distance_in_box(
        box, H, W, pred_box[c].empty(), ref_box[c].empty(), options,
        [&](std::int64_t i) { return static_cast<std::int64_t>(p.data()[i]) == label; },
        [&](std::int64_t i) { return static_cast<std::int64_t>(r.data()[i]) == label; });
  }
  return out;
}

}  // namespace medseg::metrics
