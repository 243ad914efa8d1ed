// CPU kernels of preprocess/: resampling (the separable passes W, H, D with precomputed taps,
// SciPy's spline prefilter), the pointwise maps and reductions of the intensity ops, the
// nonzero box and crop, padding, label remapping and per-label resampling. The public functions
// in preprocess/ check their inputs and plan on the host; these loops only compute, with the
// same names and arguments as the Cuda kernels (backends/cuda/preprocess.hpp). Reductions sum
// in fixed blocks in block order, so results do not depend on the thread count.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <type_traits>
#include <vector>

#include "../../core/parallel.hpp"
#include "../../core/tensor.hpp"
#include "../preprocess.hpp"

namespace medseg::ops {

namespace detail {

/// Calls f with the functor VoxelMap `m` stands for, of its kind's own type, so the loops that
/// take it are compiled once per kind and keep vectorising. The arithmetic is HuWindow's,
/// Affine's and the lambdas' that the preprocess ops passed before VoxelMap existed.
template <class F>
decltype(auto) with_map(const VoxelMap& m, F&& f) {
  switch (m.kind) {
    case VoxelMap::Kind::window:
      return f([shift = m.shift, scale = m.scale, top = m.top, nan = m.nan_value](float v) {
        if (std::isnan(v)) v = nan;
        return std::clamp((v - shift) * scale, 0.0f, top);
      });
    case VoxelMap::Kind::affine:
      return f([shift = m.shift, scale = m.scale](float v) { return (v - shift) * scale; });
    case VoxelMap::Kind::clip_affine:
      return f([lo = m.lo, hi = m.hi, shift = m.shift, scale = m.scale](float v) {
        return (std::clamp(v, lo, hi) - shift) * scale;
      });
    case VoxelMap::Kind::affine_nonzero:
      return f([shift = m.shift, scale = m.scale](float v) { return v != 0.0f ? (v - shift) * scale : 0.0f; });
    case VoxelMap::Kind::equals:
      return f([label = m.lo](float v) { return v == label ? 1.0f : 0.0f; });
    case VoxelMap::Kind::identity:
      break;
  }
  return f([](float v) { return v; });
}

// -- Resampling -------------------------------------------------------------------------------

/// SciPy's cubic B-spline prefilter (pole sqrt(3) - 2, mirror boundaries) along an axis of
/// n samples, applied to `len` independent lines at once: sample i of line l is
/// base[i * stride + l]. The inner loops run over l, so they vectorise.
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


/// One channel of a resampling, by the plan's kernel: the gather, the row blend, or the
/// separable passes.
template <class Out, class T, class Load>
void resample_volume(const T* src, Out* dst, const ResampleTaps& taps, Load& load) {
  if (taps.all_nearest())
    resize_nearest(src, dst, taps.in, taps.axes, load);
  else if (blends_rows_first(taps.orders, taps.in, taps.out))
    resize_blend_rows_first(src, dst, taps.in, taps.axes, load);
  else
    resize_separable(src, dst, taps.in, taps.axes, taps.orders, load);
}

/// Per-block partials of f over x (contiguous), combined in block order.
template <class T, class Acc, class F>
Acc reduce_blocks(const Tensor<T, Cpu>& c, Acc init, F block_fn) {
  const std::int64_t n = c.numel();
  const std::int64_t blocks = (n + reduce_block - 1) / reduce_block;
  std::vector<Acc> partial(static_cast<std::size_t>(blocks), init);
  parallel_for(0, blocks, 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t k = b; k < e; ++k) {
      const std::int64_t lo = k * reduce_block, hi = std::min(n, lo + reduce_block);
      partial[static_cast<std::size_t>(k)] = block_fn(c.data() + lo, hi - lo);
    }
  });
  Acc total = init;
  for (const auto& p : partial) total = total + p;
  return total;
}

/// Min and max of f(p[i]) over n elements, in independent lanes so the loop vectorises.
template <class T, class F>
MinMax min_max_lanes(const T* p, std::int64_t n, F f) {
  constexpr std::int64_t lanes = 16;
  float lo[lanes], hi[lanes];
  std::fill(lo, lo + lanes, std::numeric_limits<float>::infinity());
  std::fill(hi, hi + lanes, -std::numeric_limits<float>::infinity());
  std::int64_t i = 0;
  for (; i + lanes <= n; i += lanes)
    for (std::int64_t l = 0; l < lanes; ++l) {
      const float v = f(static_cast<float>(p[i + l]));
      lo[l] = v < lo[l] ? v : lo[l];
      hi[l] = v > hi[l] ? v : hi[l];
    }
  for (; i < n; ++i) {
    const float v = f(static_cast<float>(p[i]));
    lo[0] = v < lo[0] ? v : lo[0];
    hi[0] = v > hi[0] ? v : hi[0];
  }
  MinMax m;
  for (std::int64_t l = 0; l < lanes; ++l) m = m + MinMax{lo[l], hi[l]};
  return m;
}

/// Copies the box `from` of src (spatial extent `src_e`) to the box `to` of dst (extent
/// `dst_e`), every channel; both boxes have the same shape.
template <class T>
void copy_box(const T* src, const Extent3& src_e, const Extent3& from, T* dst, const Extent3& dst_e,
              const Extent3& to, const Extent3& size, std::int64_t channels) {
  const std::int64_t rows = channels * size[0] * size[1];
  parallel_for(0, rows, 64, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t r = b; r < e; ++r) {
      const std::int64_t c = r / (size[0] * size[1]);
      const std::int64_t d = (r / size[1]) % size[0], h = r % size[1];
      const T* s = src + ((c * src_e[0] + from[0] + d) * src_e[1] + from[1] + h) * src_e[2] + from[2];
      T* o = dst + ((c * dst_e[0] + to[0] + d) * dst_e[1] + to[1] + h) * dst_e[2] + to[2];
      std::memcpy(o, s, static_cast<std::size_t>(size[2]) * sizeof(T));
    }
  });
}

/// The spatial extent (last three axes) and channel count of a [D,H,W] or [C,D,H,W] tensor.
inline Extent3 extent_of(const Shape& s) { return {s[s.rank() - 3], s[s.rank() - 2], s[s.rank() - 1]}; }
inline std::int64_t channels_of(const Shape& s) { return s.rank() == 4 ? s[0] : 1; }

}  // namespace detail

// Every kernel takes contiguous tensors, [D,H,W] or [C,D,H,W] where a volume is meant, already
// checked by its caller in preprocess/, and writes into `out` allocated by it.

// -- Resampling -------------------------------------------------------------------------------

/// out = x resampled as `taps` plans, each value passed through `load` as it is read. Out is
/// float, or T when every axis is order 0 (in the input's own values when `load` is identity).
template <class Out, class T>
void resample(const Tensor<T, Cpu>& x, const Tensor<Out, Cpu>& out, const ResampleTaps& taps, const VoxelMap& load);
/// The same with any float -> float functor as the load (a CPU-only extra).
template <class Out, class T, class Load>
void resample(const Tensor<T, Cpu>& x, const Tensor<Out, Cpu>& out, const ResampleTaps& taps, const Load& load);

/// nnU-Net's per-label resampling into `out` (zeros, the output shape): for each of `labels`
/// (ascending, a leading 0 skipped), its one-hot mask resampled as `taps` plans and the label
/// painted where the mask reaches label_mask_threshold; later labels win.
template <class L>
void resample_labels(const Tensor<L, Cpu>& seg, const Tensor<L, Cpu>& out, const ResampleTaps& taps,
                     const std::vector<L>& labels);

// -- Intensity --------------------------------------------------------------------------------

/// out[i] = map(float(x[i])).
template <class T>
void map_voxels(const Tensor<T, Cpu>& x, const Tensor<float, Cpu>& out, const VoxelMap& map);
/// The same with any float -> float functor (a CPU-only extra).
template <class T, class F>
void map_voxels(const Tensor<T, Cpu>& x, const Tensor<float, Cpu>& out, const F& f);
/// Min and max of map(float(x[i])), NaN skipped.
template <class T>
MinMax min_max(const Tensor<T, Cpu>& x, const VoxelMap& map);
/// The index of the first nonzero element, or -1.
template <class T>
std::int64_t first_nonzero(const Tensor<T, Cpu>& x);
/// Sums of (v - shift) and (v - shift)^2 (of nonzero v only when `nonzero_only`) and their
/// count: float lanes per run of 1024, runs folded into double, blocks in order.
template <class T>
SumSq shifted_sums(const Tensor<T, Cpu>& x, bool nonzero_only, float shift);
/// Mean, (population) std and the 0.5 / 99.5 percentiles of x where foreground != 0.
template <class T, class M>
CtStats foreground_statistics(const Tensor<T, Cpu>& x, const Tensor<M, Cpu>& foreground);
/// numpy.percentile(x, q) over every element (linear method).
template <class T>
double percentile(const Tensor<T, Cpu>& x, double q);
/// numpy.percentile(values, q) with the linear method; reorders `values`.
inline double percentile(std::vector<float>& values, double q);

// -- Boxes, crops, padding --------------------------------------------------------------------

/// The smallest box holding every element (any channel) != background; the whole grid when
/// there is none.
template <class T>
Box nonzero_box(const Tensor<T, Cpu>& x, T background);
/// out = the box of x, every channel.
template <class T>
void crop(const Tensor<T, Cpu>& x, const Box& box, const Tensor<T, Cpu>& out);
/// out's box = cropped, every channel (restore's copy; the rest of out is left as it is).
template <class T>
void paste(const Tensor<T, Cpu>& cropped, const Box& box, const Tensor<T, Cpu>& out);
/// out[c, d, h, w] = x[c, src[0][d], src[1][h], src[2][w]], or `value` where an index is -1.
template <class T>
void pad(const Tensor<T, Cpu>& x, const std::array<std::vector<std::int64_t>, 3>& src, T value,
         const Tensor<T, Cpu>& out);

// -- Labels -----------------------------------------------------------------------------------

/// out[i] = the `to` of the first `from` equal to seg[i], else unmapped (when given) or seg[i].
template <class L>
void remap_labels(const Tensor<L, Cpu>& seg, const LabelMapping<L>& mapping, std::optional<L> unmapped,
                  const Tensor<L, Cpu>& out);
/// out[i] = mask[i] != 0 ? seg[i] : ignore.
template <class L, class M>
void set_ignore_label(const Tensor<L, Cpu>& seg, const Tensor<M, Cpu>& mask, L ignore, const Tensor<L, Cpu>& out);
/// The distinct values of seg, ascending.
template <class L>
std::vector<L> unique_labels(const Tensor<L, Cpu>& seg);

// ----------------------------------------------------------------------------------------
// Implementation

template <class Out, class T, class Load>
void resample(const Tensor<T, Cpu>& x, const Tensor<Out, Cpu>& out, const ResampleTaps& taps, const Load& load) {
  const std::int64_t C = detail::channels_of(x.shape());
  const std::int64_t in_vol = taps.in[0] * taps.in[1] * taps.in[2], out_vol = taps.out[0] * taps.out[1] * taps.out[2];
  Load local = load;
  for (std::int64_t c = 0; c < C; ++c) detail::resample_volume(x.data() + c * in_vol, out.data() + c * out_vol, taps, local);
}

template <class Out, class T>
void resample(const Tensor<T, Cpu>& x, const Tensor<Out, Cpu>& out, const ResampleTaps& taps, const VoxelMap& load) {
  // No load at all for identity: order 0 then copies the input's own values.
  if (load.kind == VoxelMap::Kind::identity) return resample(x, out, taps, nullptr);
  detail::with_map(load, [&](const auto& f) { resample(x, out, taps, f); });
}

template <class L>
void resample_labels(const Tensor<L, Cpu>& seg, const Tensor<L, Cpu>& out, const ResampleTaps& taps,
                     const std::vector<L>& labels) {
  Tensor<float, Cpu> mask;
  for (std::size_t li = 0; li < labels.size(); ++li) {
    const L label = labels[li];
    // Zeros are already in place when 0 is the smallest label.
    if (li == 0 && label == L(0)) continue;
    if (!mask.defined()) mask = Tensor<float, Cpu>::empty(out.shape());
    const auto target = static_cast<float>(label);
    resample(seg, mask, taps, [target](float v) { return v == target ? 1.0f : 0.0f; });
    constexpr float threshold = label_mask_threshold;
    const float* m = mask.data();
    L* o = out.data();
    parallel_for(0, mask.numel(), 1 << 15, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i)
        if (m[i] >= threshold) o[i] = label;
    });
  }
}

template <class T, class F>
void map_voxels(const Tensor<T, Cpu>& x, const Tensor<float, Cpu>& out, const F& f) {
  const T* src = x.data();
  float* dst = out.data();
  parallel_for(0, x.numel(), 1 << 15, [&](std::int64_t b, std::int64_t e) {
    const F local = f;  // cannot alias dst, so its constants stay in registers and the loop vectorises
    for (std::int64_t i = b; i < e; ++i) dst[i] = local(static_cast<float>(src[i]));
  });
}

template <class T>
void map_voxels(const Tensor<T, Cpu>& x, const Tensor<float, Cpu>& out, const VoxelMap& map) {
  detail::with_map(map, [&](const auto& f) { map_voxels(x, out, f); });
}

template <class T>
MinMax min_max(const Tensor<T, Cpu>& x, const VoxelMap& map) {
  return detail::with_map(map, [&](const auto& f) {
    return detail::reduce_blocks(x, MinMax{}, [&](const T* p, std::int64_t n) { return detail::min_max_lanes(p, n, f); });
  });
}

template <class T>
std::int64_t first_nonzero(const Tensor<T, Cpu>& x) {
  for (std::int64_t i = 0; i < x.numel(); ++i)
    if (x.data()[i] != T(0)) return i;
  return -1;
}

template <class T>
SumSq shifted_sums(const Tensor<T, Cpu>& x, bool nonzero_only, float fs) {
  return detail::reduce_blocks(x, SumSq{}, [&](const T* p, std::int64_t n) {
    // Independent float lanes vectorise (one running sum would be a serial chain); each run
    // of 1024 elements is folded into double so long sums keep their precision.
    constexpr std::int64_t lanes = 16, run = 1024;
    SumSq a;
    for (std::int64_t r0 = 0; r0 < n; r0 += run) {
      const std::int64_t r1 = std::min(n, r0 + run);
      float sum[lanes] = {}, sq[lanes] = {};
      std::int32_t count[lanes] = {};
      std::int64_t i = r0;
      for (; i + lanes <= r1; i += lanes)
        for (std::int64_t l = 0; l < lanes; ++l) {
          const bool keep = !nonzero_only || p[i + l] != T(0);
          const float v = keep ? static_cast<float>(p[i + l]) - fs : 0.0f;
          sum[l] += v;
          sq[l] += v * v;
          count[l] += keep ? 1 : 0;
        }
      for (; i < r1; ++i) {
        const bool keep = !nonzero_only || p[i] != T(0);
        const float v = keep ? static_cast<float>(p[i]) - fs : 0.0f;
        sum[0] += v;
        sq[0] += v * v;
        count[0] += keep ? 1 : 0;
      }
      for (std::int64_t l = 0; l < lanes; ++l) {
        a.sum += sum[l];
        a.sq += sq[l];
        a.count += count[l];
      }
    }
    return a;
  });
}

inline double percentile(std::vector<float>& values, double q) {
  require_values(values.size());
  const double pos = percentile_position(values.size(), q);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(lo), values.end());
  const double a = values[lo];
  if (lo + 1 >= values.size()) return a;
  const double b = *std::min_element(values.begin() + static_cast<std::ptrdiff_t>(lo) + 1, values.end());
  return percentile_between(a, b, pos, lo);
}

template <class T>
double percentile(const Tensor<T, Cpu>& x, double q) {
  std::vector<float> values(static_cast<std::size_t>(x.numel()));
  for (std::int64_t i = 0; i < x.numel(); ++i) values[static_cast<std::size_t>(i)] = static_cast<float>(x.data()[i]);
  return percentile(values, q);
}

template <class T, class M>
CtStats foreground_statistics(const Tensor<T, Cpu>& x, const Tensor<M, Cpu>& foreground) {
  std::vector<float> values;
  for (std::int64_t i = 0; i < x.numel(); ++i)
    if (foreground.data()[i] != M(0)) values.push_back(static_cast<float>(x.data()[i]));
  CtStats s;
  double sum = 0, sq = 0;
  for (float v : values) sum += v;
  const double n = static_cast<double>(std::max<std::size_t>(values.size(), 1));
  s.mean = sum / n;
  for (float v : values) sq += (v - s.mean) * (v - s.mean);
  s.std = std::sqrt(sq / n);
  s.lower = percentile(values, 0.5);
  s.upper = percentile(values, 99.5);
  return s;
}

template <class T>
Box nonzero_box(const Tensor<T, Cpu>& x, T background) {
  const Extent3 e = detail::extent_of(x.shape());
  const std::int64_t channels = detail::channels_of(x.shape());
  // Per slice d: the extent of the nonzero rows and columns, then combined.
  std::vector<Box> per_slice(static_cast<std::size_t>(e[0]));
  parallel_for(0, e[0], 1, [&](std::int64_t b, std::int64_t end) {
    for (std::int64_t d = b; d < end; ++d) {
      Box s{{d, e[1], e[2]}, {d, -1, -1}};
      for (std::int64_t ch = 0; ch < channels; ++ch)
        for (std::int64_t h = 0; h < e[1]; ++h) {
          const T* row = x.data() + ((ch * e[0] + d) * e[1] + h) * e[2];
          std::int64_t first = e[2], last = -1;
          for (std::int64_t w = 0; w < e[2]; ++w)
            if (row[w] != background) {
              first = w;
              break;
            }
          if (first == e[2]) continue;
          for (std::int64_t w = e[2] - 1; w >= first; --w)
            if (row[w] != background) {
              last = w;
              break;
            }
          s.begin[1] = std::min(s.begin[1], h);
          s.end[1] = std::max(s.end[1], h);
          s.begin[2] = std::min(s.begin[2], first);
          s.end[2] = std::max(s.end[2], last);
          s.end[0] = d + 1;
        }
      per_slice[static_cast<std::size_t>(d)] = s;
    }
  });
  Box box{{e[0], e[1], e[2]}, {-1, -1, -1}};
  for (const auto& s : per_slice) {
    if (s.end[1] < 0) continue;
    box.begin[0] = std::min(box.begin[0], s.begin[0]);
    box.end[0] = std::max(box.end[0], s.end[0]);
    for (int a = 1; a < 3; ++a) {
      const auto i = static_cast<std::size_t>(a);
      box.begin[i] = std::min(box.begin[i], s.begin[i]);
      box.end[i] = std::max(box.end[i], s.end[i] + 1);
    }
  }
  if (box.end[0] < 0) return Box{{0, 0, 0}, e};
  return box;
}

template <class T>
void crop(const Tensor<T, Cpu>& x, const Box& box, const Tensor<T, Cpu>& out) {
  detail::copy_box(x.data(), detail::extent_of(x.shape()), box.begin, out.data(), box.shape(), {0, 0, 0}, box.shape(),
                   detail::channels_of(x.shape()));
}

template <class T>
void paste(const Tensor<T, Cpu>& cropped, const Box& box, const Tensor<T, Cpu>& out) {
  const Extent3 e = detail::extent_of(cropped.shape());
  detail::copy_box(cropped.data(), e, {0, 0, 0}, out.data(), detail::extent_of(out.shape()), box.begin, e,
                   detail::channels_of(cropped.shape()));
}

template <class T>
void pad(const Tensor<T, Cpu>& x, const std::array<std::vector<std::int64_t>, 3>& src, T value,
         const Tensor<T, Cpu>& out) {
  const Extent3 e = detail::extent_of(x.shape()), o = detail::extent_of(out.shape());
  parallel_for(0, detail::channels_of(x.shape()) * o[0] * o[1], 64, [&](std::int64_t b, std::int64_t end) {
    for (std::int64_t r = b; r < end; ++r) {
      const std::int64_t ch = r / (o[0] * o[1]), d = (r / o[1]) % o[0], h = r % o[1];
      T* row = out.data() + r * o[2];
      const std::int64_t sd = src[0][static_cast<std::size_t>(d)], sh = src[1][static_cast<std::size_t>(h)];
      if (sd < 0 || sh < 0) {
        std::fill(row, row + o[2], value);
        continue;
      }
      const T* in = x.data() + ((ch * e[0] + sd) * e[1] + sh) * e[2];
      for (std::int64_t w = 0; w < o[2]; ++w) {
        const std::int64_t sw = src[2][static_cast<std::size_t>(w)];
        row[w] = sw < 0 ? value : in[sw];
      }
    }
  });
}

template <class L>
void remap_labels(const Tensor<L, Cpu>& seg, const LabelMapping<L>& mapping, std::optional<L> unmapped,
                  const Tensor<L, Cpu>& out) {
  parallel_for(0, seg.numel(), 1 << 15, [&](std::int64_t b, std::int64_t e) {
    L last_in{}, last_out{};
    bool cached = false;
    for (std::int64_t i = b; i < e; ++i) {
      const L v = seg.data()[i];
      if (!cached || v != last_in) {  // label maps are long runs: look each run up once
        last_in = v;
        last_out = unmapped.value_or(v);
        for (const auto& [from, to] : mapping)
          if (from == v) {
            last_out = to;
            break;
          }
        cached = true;
      }
      out.data()[i] = last_out;
    }
  });
}

template <class L, class M>
void set_ignore_label(const Tensor<L, Cpu>& seg, const Tensor<M, Cpu>& mask, L ignore, const Tensor<L, Cpu>& out) {
  parallel_for(0, seg.numel(), 1 << 15, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) out.data()[i] = mask.data()[i] != M(0) ? seg.data()[i] : ignore;
  });
}

template <class L>
std::vector<L> unique_labels(const Tensor<L, Cpu>& seg) {
  const std::int64_t n = seg.numel();
  const std::int64_t blocks = (n + (1 << 16) - 1) >> 16;
  std::vector<std::vector<L>> found(static_cast<std::size_t>(blocks));
  parallel_for(0, blocks, 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t k = b; k < e; ++k) {
      auto& f = found[static_cast<std::size_t>(k)];
      L last{};
      bool any = false;
      for (std::int64_t i = k << 16; i < std::min(n, (k + 1) << 16); ++i) {
        const L v = seg.data()[i];
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

}  // namespace medseg::ops
