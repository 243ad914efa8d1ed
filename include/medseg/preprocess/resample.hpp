// Image resampling with the coordinate convention of scipy.ndimage.zoom (what MedicalSeg's
// prepare scripts and nnU-Net's CPU path call), orders 0, 1 and 3, plus the geometry-aware
// variants that resample an Image to a shape or a spacing and keep its world placement right.
// The kernel is separable (W, then H, then D, with precomputed taps), which is what makes it
// many times faster than SciPy's per-voxel loop while giving the same numbers.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor.hpp"
#include "../io/image.hpp"

namespace medseg::preprocess {

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
/// pointwise op before interpolation (an HU window) fused into the same pass.
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

/// The taps of one axis: output k reads inputs index[k * taps + t] with weight[...].
struct AxisPlan {
  std::int64_t in = 0, out = 0;
  int taps = 1;
  std::vector<std::int64_t> index;
  std::vector<float> weight;
};

/// SciPy's whole-sample mirror of an index into [0, n): -1 -> 1, n -> n - 2.
inline std::int64_t mirror_index(std::int64_t idx, std::int64_t n) {
  if (n <= 1) return 0;
  const std::int64_t period = 2 * n - 2;
  idx %= period;
  if (idx < 0) idx += period;
  return idx >= n ? period - idx : idx;
}

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

/// SciPy's cubic B-spline prefilter (pole sqrt(3) - 2, mirror boundaries) along an axis of
/// n samples, applied to `len` independent lines at once: sample i of line l is
/// base[i * stride + l]. The inner loops run over l, so they vectorise.
/// The constants of that prefilter along an axis of n samples, computed in one place so the
/// GPU's prefilter (src/backends/cuda/preprocess.cu) uses the very same numbers.
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

inline void spline_prefilter(float* base, std::int64_t n, std::int64_t stride, std::int64_t len) {
  if (n < 2) return;
  const SplineConstants sc(n);
  const double z = sc.z;
  const float zf = sc.zf;
  const float gain = sc.gain;
  auto line = [&](std::int64_t i) { return base + i * stride; };
  for (std::int64_t i = 0; i < n; ++i) {
    float* r = line(i);
    for (std::int64_t l = 0; l < len; ++l) r[l] *= gain;
  }
  // Causal initialisation for mirror boundaries: the sum over the mirrored sequence.
  // |z|^k falls below float precision after ~30 terms, so long lines stop there.
  constexpr std::int64_t horizon = SplineConstants::horizon;
  std::vector<double> acc(static_cast<std::size_t>(len));
  if (n <= horizon) {
    const double zn1 = sc.zn1;
    for (std::int64_t l = 0; l < len; ++l) acc[static_cast<std::size_t>(l)] = line(0)[l] + zn1 * line(n - 1)[l];
    double zi = z;
    for (std::int64_t i = 1; i < n - 1; ++i, zi *= z)
      for (std::int64_t l = 0; l < len; ++l)
        acc[static_cast<std::size_t>(l)] += zi * (line(i)[l] + zn1 * line(n - 1 - i)[l]);
    const double norm = sc.norm;
    for (std::int64_t l = 0; l < len; ++l) line(0)[l] = static_cast<float>(acc[static_cast<std::size_t>(l)] * norm);
  } else {
    for (std::int64_t l = 0; l < len; ++l) acc[static_cast<std::size_t>(l)] = line(0)[l];
    double zi = z;
    for (std::int64_t i = 1; i < horizon; ++i, zi *= z)
      for (std::int64_t l = 0; l < len; ++l) acc[static_cast<std::size_t>(l)] += zi * line(i)[l];
    for (std::int64_t l = 0; l < len; ++l) line(0)[l] = static_cast<float>(acc[static_cast<std::size_t>(l)]);
  }
  for (std::int64_t i = 1; i < n; ++i) {
    float* r = line(i);
    const float* q = line(i - 1);
    for (std::int64_t l = 0; l < len; ++l) r[l] += zf * q[l];
  }
  {
    const float k = sc.k;
    float* r = line(n - 1);
    const float* q = line(n - 2);
    for (std::int64_t l = 0; l < len; ++l) r[l] = k * (zf * q[l] + r[l]);
  }
  for (std::int64_t i = n - 2; i >= 0; --i) {
    float* r = line(i);
    const float* q = line(i + 1);
    for (std::int64_t l = 0; l < len; ++l) r[l] = zf * (q[l] - r[l]);
  }
}

/// dst[0..len) = sum over taps of weight * rows[index]: one output line of an H or D pass.
inline void combine_rows(float* dst, const float* src, std::int64_t row_stride, std::int64_t len,
                         const AxisPlan& p, std::int64_t k) {
  const auto base = static_cast<std::size_t>(k * p.taps);
  const float* r0 = src + p.index[base] * row_stride;
  const float w0 = p.weight[base];
  if (p.taps == 1) {
    for (std::int64_t l = 0; l < len; ++l) dst[l] = r0[l];
  } else if (p.taps == 2) {
    const float* r1 = src + p.index[base + 1] * row_stride;
    const float w1 = p.weight[base + 1];
    for (std::int64_t l = 0; l < len; ++l) dst[l] = w0 * r0[l] + w1 * r1[l];
  } else {
    const float* r1 = src + p.index[base + 1] * row_stride;
    const float* r2 = src + p.index[base + 2] * row_stride;
    const float* r3 = src + p.index[base + 3] * row_stride;
    const float w1 = p.weight[base + 1], w2 = p.weight[base + 2], w3 = p.weight[base + 3];
    for (std::int64_t l = 0; l < len; ++l) dst[l] = w0 * r0[l] + w1 * r1[l] + w2 * r2[l] + w3 * r3[l];
  }
}

template <class Out>
Out store_value(float v) {
  if constexpr (std::is_same_v<Out, float>)
    return v;
  else
    return Out(v);
}

/// Order 0: a pure gather, in the input's own values (no float round trip for labels).
template <class Out, class T, class Load>
void resize_nearest(const T* src, Out* dst, const Extent3& in, const std::array<AxisPlan, 3>& p, Load& load) {
  const std::int64_t out_rows = p[0].out * p[1].out;
  const std::int64_t W = p[2].out;
  parallel_for(0, out_rows, std::max<std::int64_t>(1, 16384 / std::max<std::int64_t>(W, 1)),
               [&](std::int64_t b, std::int64_t e) {
                 for (std::int64_t r = b; r < e; ++r) {
                   const std::int64_t k = r / p[1].out, j = r % p[1].out;
                   const T* row = src + (p[0].index[static_cast<std::size_t>(k)] * in[1] +
                                         p[1].index[static_cast<std::size_t>(j)]) * in[2];
                   Out* o = dst + r * W;
                   const std::int64_t* idx = p[2].index.data();
                   if constexpr (std::is_same_v<Load, std::nullptr_t>) {
                     for (std::int64_t i = 0; i < W; ++i) o[i] = ::medseg::detail::convert<Out>(row[idx[i]]);
                   } else {
                     for (std::int64_t i = 0; i < W; ++i) o[i] = store_value<Out>(load(static_cast<float>(row[idx[i]])));
                   }
                 }
               });
}

/// An input sample as the resampler reads it: converted to float, then through `load` (a
/// window, say) when there is one. The lambda holds a copy of `load`: its fields cannot alias
/// the output, so they stay in registers.
template <class T, class Load>
auto loader(const Load& load) {
  return [f = load](T v) {
    if constexpr (std::is_same_v<Load, std::nullptr_t>)
      return static_cast<float>(v);
    else
      return static_cast<float>(f(static_cast<float>(v)));
  };
}

/// Orders 0 and 1 when W shrinks: for each output row, blend its (at most 2 x 2) input rows
/// along D and H at full width, then gather along W. The W gather is the costly step (an
/// indexed load per tap), and doing it last does it once per output voxel instead of once
/// per needed input row; the D/H blend is contiguous and vectorises. Only the input rows some
/// output reads are touched, so a 4x downsample in H reads about half the volume.
template <class Out, class T, class Load>
void resize_blend_rows_first(const T* src, Out* dst, const Extent3& in, const std::array<AxisPlan, 3>& p,
                             Load& load) {
  const std::int64_t H = in[1], W = in[2];
  const std::int64_t Ho = p[1].out, Wo = p[2].out;
  const auto loaded = loader<T>(load);
  const auto& pw = p[2];
  parallel_for(0, p[0].out * Ho, std::max<std::int64_t>(1, 65536 / std::max<std::int64_t>(W, 1)),
               [&](std::int64_t b, std::int64_t e) {
    std::vector<float> line(static_cast<std::size_t>(W));
    std::vector<float> gathered;
    if constexpr (!std::is_same_v<Out, float>) gathered.resize(static_cast<std::size_t>(Wo));
    for (std::int64_t r = b; r < e; ++r) {
      const std::int64_t k = r / Ho, j = r % Ho;
      // The taps of this output row: its input rows and their D x H weights.
      const T* rows[4];
      float weights[4];
      int n = 0;
      for (int td = 0; td < p[0].taps; ++td)
        for (int th = 0; th < p[1].taps; ++th) {
          const auto id = static_cast<std::size_t>(k * p[0].taps + td), ih = static_cast<std::size_t>(j * p[1].taps + th);
          rows[n] = src + (p[0].index[id] * H + p[1].index[ih]) * W;
          weights[n++] = p[0].weight[id] * p[1].weight[ih];
        }
      float* l = line.data();
      switch (n) {
        case 1:
          for (std::int64_t i = 0; i < W; ++i) l[i] = weights[0] * loaded(rows[0][i]);
          break;
        case 2:
          for (std::int64_t i = 0; i < W; ++i) l[i] = weights[0] * loaded(rows[0][i]) + weights[1] * loaded(rows[1][i]);
          break;
        default:  // 4: linear along both D and H
          for (std::int64_t i = 0; i < W; ++i)
            l[i] = weights[0] * loaded(rows[0][i]) + weights[1] * loaded(rows[1][i]) +
                   weights[2] * loaded(rows[2][i]) + weights[3] * loaded(rows[3][i]);
      }
      float* o = nullptr;
      if constexpr (std::is_same_v<Out, float>)
        o = dst + r * Wo;
      else
        o = gathered.data();
      const std::int64_t* idx = pw.index.data();
      const float* wt = pw.weight.data();
      if (pw.taps == 1) {
        for (std::int64_t i = 0; i < Wo; ++i) o[i] = l[idx[i]];
      } else {
        for (std::int64_t i = 0; i < Wo; ++i) o[i] = wt[2 * i] * l[idx[2 * i]] + wt[2 * i + 1] * l[idx[2 * i + 1]];
      }
      if constexpr (!std::is_same_v<Out, float>)
        for (std::int64_t i = 0; i < Wo; ++i) dst[r * Wo + i] = store_value<Out>(o[i]);
    }
  });
}

/// Any mix of per-axis orders (0, 1, 3), one channel. Stage A, per input slice d that the D
/// pass reads: resample the rows it needs along W (prefiltered along W first for order 3),
/// prefilter along H, combine rows along H; stage B: prefilter along D; stage C: combine
/// slices along D. Spline prefiltering along one axis commutes with resampling along another,
/// which is what lets the W and H work happen per slice, in cache, on shrunken data.
template <class Out, class T, class Load>
void resize_separable(const T* src, Out* dst, const Extent3& in, const std::array<AxisPlan, 3>& p,
                      const std::array<int, 3>& order, Load& load) {
  const std::int64_t D = in[0], H = in[1], W = in[2];
  const std::int64_t Ho = p[1].out, Wo = p[2].out, Do = p[0].out;
  const std::int64_t plane = Ho * Wo;
  const auto loaded = loader<T>(load);
  constexpr bool direct_gather = std::is_same_v<T, float> && std::is_same_v<Load, std::nullptr_t>;
  auto gather_row = [](float* o, const auto* row, const AxisPlan& pw) {
    const std::int64_t Wo = pw.out;
    if (pw.taps == 1) {
      for (std::int64_t i = 0; i < Wo; ++i) o[i] = static_cast<float>(row[pw.index[static_cast<std::size_t>(i)]]);
    } else {
      for (std::int64_t i = 0; i < Wo; ++i) {
        const auto t = static_cast<std::size_t>(2 * i);
        o[i] = pw.weight[t] * static_cast<float>(row[pw.index[t]]) + pw.weight[t + 1] * static_cast<float>(row[pw.index[t + 1]]);
      }
    }
  };

  std::vector<char> need_d(static_cast<std::size_t>(D), order[0] == 3 ? 1 : 0);
  std::vector<char> need_h(static_cast<std::size_t>(H), order[1] == 3 ? 1 : 0);
  for (auto i : p[0].index) need_d[static_cast<std::size_t>(i)] = 1;
  for (auto i : p[1].index) need_h[static_cast<std::size_t>(i)] = 1;
  std::vector<std::int64_t> slices;
  for (std::int64_t d = 0; d < D; ++d)
    if (need_d[static_cast<std::size_t>(d)]) slices.push_back(d);

  auto mid = Tensor<float, Cpu>::empty({D, Ho, Wo});  // slices the D pass does not read stay unset
  float* m = mid.data();
  constexpr std::int64_t lanes = 16;  // rows filtered side by side along W (order 3)

  parallel_for(0, static_cast<std::int64_t>(slices.size()), 1, [&](std::int64_t b, std::int64_t e) {
    std::vector<float> rows(static_cast<std::size_t>(H * Wo));
    std::vector<float> line(static_cast<std::size_t>(W));
    std::vector<float> lane_in, lane_out;
    if (order[2] == 3) {
      lane_in.resize(static_cast<std::size_t>(W * lanes));
      lane_out.resize(static_cast<std::size_t>(Wo * lanes));
    }
    const auto& pw = p[2];
    for (std::int64_t s = b; s < e; ++s) {
      const std::int64_t d = slices[static_cast<std::size_t>(s)];
      const T* slice = src + d * H * W;
      if (order[2] == 3) {
        // Along W the lines are rows: filter `lanes` rows at once, transposed to [W][lanes].
        for (std::int64_t h0 = 0; h0 < H; h0 += lanes) {
          const std::int64_t nl = std::min(lanes, H - h0);
          for (std::int64_t l = 0; l < nl; ++l) {
            const T* row = slice + (h0 + l) * W;
            for (std::int64_t w = 0; w < W; ++w) lane_in[static_cast<std::size_t>(w * lanes + l)] = loaded(row[w]);
          }
          spline_prefilter(lane_in.data(), W, lanes, lanes);
          for (std::int64_t i = 0; i < Wo; ++i) combine_rows(lane_out.data() + i * lanes, lane_in.data(), lanes, lanes, pw, i);
          for (std::int64_t l = 0; l < nl; ++l) {
            float* o = rows.data() + (h0 + l) * Wo;
            for (std::int64_t i = 0; i < Wo; ++i) o[i] = lane_out[static_cast<std::size_t>(i * lanes + l)];
          }
        }
      } else {
        for (std::int64_t h = 0; h < H; ++h) {
          if (!need_h[static_cast<std::size_t>(h)]) continue;
          const T* row = slice + h * W;
          float* o = rows.data() + h * Wo;
          if constexpr (direct_gather) {
            gather_row(o, row, pw);
          } else {
            // Convert (and window) the whole row in one vectorised loop, then gather: cheaper
            // than converting each tap on its own.
            for (std::int64_t w = 0; w < W; ++w) line[static_cast<std::size_t>(w)] = loaded(row[w]);
            gather_row(o, line.data(), pw);
          }
        }
      }
      if (order[1] == 3) spline_prefilter(rows.data(), H, Wo, Wo);
      for (std::int64_t k = 0; k < Ho; ++k) combine_rows(m + d * plane + k * Wo, rows.data(), Wo, Wo, p[1], k);
    }
  });

  if (order[0] == 3) {
    const std::int64_t chunk = 2048;
    parallel_for(0, (plane + chunk - 1) / chunk, 1, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t c = b; c < e; ++c) {
        const std::int64_t off = c * chunk;
        spline_prefilter(m + off, D, plane, std::min(chunk, plane - off));
      }
    });
  }

  parallel_for(0, Do, 1, [&](std::int64_t b, std::int64_t e) {
    std::vector<float> tmp;
    if constexpr (!std::is_same_v<Out, float>) tmp.resize(static_cast<std::size_t>(plane));
    for (std::int64_t k = b; k < e; ++k) {
      if constexpr (std::is_same_v<Out, float>) {
        combine_rows(dst + k * plane, m, plane, plane, p[0], k);
      } else {
        combine_rows(tmp.data(), m, plane, plane, p[0], k);
        Out* o = dst + k * plane;
        for (std::int64_t i = 0; i < plane; ++i) o[i] = store_value<Out>(tmp[static_cast<std::size_t>(i)]);
      }
    }
  });
}

/// resize's checks of its options, shared by every backend: the order of each axis (D, H, W).
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
  require(all_nearest || is_floating(out),
          [&] {
            return ErrorInfo{.where = where, .field = "output type",
                             .expected = "a floating type for order " + std::to_string(order),
                             .actual = std::string(name(out)),
                             .detail = "label maps resample with order 0"};
          });
}

/// Which kernel computes orders 0 and 1 when W shrinks: the D/H blend at full width first, then
/// the W gather (resize_blend_rows_first); otherwise W, H, D in turn (resize_separable). The two
/// round differently, so the GPU asks the same question to give the same numbers.
inline bool blends_rows_first(const std::array<int, 3>& orders, const Extent3& in, const Extent3& out) {
  return orders[0] <= 1 && orders[1] <= 1 && orders[2] <= 1 && out[2] < in[2];
}

inline void check_output_shape(const Extent3& shape, const std::string& where) {
  for (int a = 0; a < 3; ++a)
    require(shape[static_cast<std::size_t>(a)] >= 1, [&] {
      return ErrorInfo{.where = where, .field = "output shape", .expected = "extents >= 1",
                       .actual = "[" + std::to_string(shape[0]) + "," + std::to_string(shape[1]) + "," +
                                 std::to_string(shape[2]) + "]"};
    });
}

template <class Out, class T, class B, class Load>
Tensor<Out, B> resize_impl(const Tensor<T, B>& x, const Extent3& shape, const ResampleOptions& options, Load& load) {
  static_assert(B::is_host, "medseg::preprocess::resize has no implementation for this backend and load: for Cuda "
                            "tensors include medseg/cuda.hpp and link medseg::cuda (its load may be a HuWindow or "
                            "an Affine), or resize a CPU tensor");
  const std::string where = "preprocess::resize";
  require(x.defined() && (x.rank() == 3 || x.rank() == 4), [&] {
    return ErrorInfo{.where = where, .field = "input shape", .expected = "[D,H,W] or [C,D,H,W]",
                     .actual = x.defined() ? x.shape().to_string() : "an undefined tensor"};
  });
  const std::array<int, 3> orders = checked_orders(options, where);
  const bool all_nearest = orders == std::array<int, 3>{0, 0, 0};
  check_output_type(orders, dtype_of<Out>, options.order, where);
  check_output_shape(shape, where);
  const int r = x.rank();
  const std::int64_t C = r == 4 ? x.size(0) : 1;
  const Extent3 in{x.size(r - 3), x.size(r - 2), x.size(r - 1)};
  require(in[0] >= 1 && in[1] >= 1 && in[2] >= 1, [&] {
    return ErrorInfo{.where = where, .field = "input shape", .expected = "non-empty spatial axes",
                     .actual = x.shape().to_string()};
  });
  const std::array<AxisPlan, 3> plans{plan_axis(in[0], shape[0], orders[0], options.grid, options.boundary),
                                      plan_axis(in[1], shape[1], orders[1], options.grid, options.boundary),
                                      plan_axis(in[2], shape[2], orders[2], options.grid, options.boundary)};
  const Tensor<T, B> src = x.contiguous();
  Shape out_shape = r == 4 ? Shape{C, shape[0], shape[1], shape[2]} : Shape{shape[0], shape[1], shape[2]};
  auto out = Tensor<Out, B>::empty(out_shape);
  const std::int64_t in_vol = in[0] * in[1] * in[2], out_vol = shape[0] * shape[1] * shape[2];
  for (std::int64_t c = 0; c < C; ++c) {
    if (all_nearest)
      resize_nearest(src.data() + c * in_vol, out.data() + c * out_vol, in, plans, load);
    else if (blends_rows_first(orders, in, shape))
      resize_blend_rows_first(src.data() + c * in_vol, out.data() + c * out_vol, in, plans, load);
    else
      resize_separable(src.data() + c * in_vol, out.data() + c * out_vol, in, plans, orders, load);
  }
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
  std::nullptr_t none = nullptr;
  return detail::resize_impl<Out>(x, shape, options, none);
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
