// CPU kernels of every normalisation layer (BatchNorm, GroupNorm, InstanceNorm, LayerNorm over
// channels or over the last axis). They differ only in which elements share a mean and a
// variance, so one kernel pair takes that grouping as a NormSets value; statistics are
// accumulated in double, and reductions are per set, so results do not depend on threads.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "elementwise.hpp"

namespace medseg::ops {

/// Which elements are normalised together, and which affine channel each element uses.
/// Set k is `segments` runs of `length` contiguous elements; run j of set k starts at
///   base(k) = (k / inner_sets) * outer_step + (k % inner_sets) * inner_step + j * stride
/// and element i of that run uses gamma/beta entry
///   (k % channel_sets) * channel_set_step + j * channel_segment_step + i * channel_element_step.
/// The factories below give the layouts of the layers.
struct NormSets {
  std::int64_t sets = 1, segments = 1, length = 1, stride = 0;
  std::int64_t inner_sets = 1, outer_step = 0, inner_step = 0;
  std::int64_t channel_sets = 1, channel_set_step = 0, channel_segment_step = 0, channel_element_step = 0;

  /// Elements per set (the M of mean = sum / M).
  std::int64_t set_size() const { return segments * length; }
  std::int64_t base(std::int64_t k, std::int64_t j) const {
    return (k / inner_sets) * outer_step + (k % inner_sets) * inner_step + j * stride;
  }
  std::int64_t channel(std::int64_t k, std::int64_t j) const {
    return (k % channel_sets) * channel_set_step + j * channel_segment_step;
  }

  /// GroupNorm over [N, C, S]: a set per (sample, group); InstanceNorm is groups == C.
  static NormSets group(std::int64_t n, std::int64_t c, std::int64_t s, std::int64_t groups) {
    const std::int64_t cg = c / groups;
    return {.sets = n * groups, .segments = cg, .length = s, .stride = s, .outer_step = cg * s,
            .channel_sets = groups, .channel_set_step = cg, .channel_segment_step = 1};
  }
  /// BatchNorm over [N, C, S]: a set per channel, spanning the batch.
  static NormSets batch(std::int64_t n, std::int64_t c, std::int64_t s) {
    return {.sets = c, .segments = n, .length = s, .stride = c * s, .outer_step = s,
            .channel_sets = c, .channel_set_step = 1};
  }
  /// LayerNorm over the last axis of [rows, C]: a set per row.
  static NormSets last_axis(std::int64_t rows, std::int64_t c) {
    return {.sets = rows, .segments = 1, .length = c, .stride = 0, .outer_step = c, .channel_element_step = 1};
  }
  /// LayerNorm over the channels of [N, C, S]: a set per voxel, C runs of one element.
  static NormSets channels(std::int64_t n, std::int64_t c, std::int64_t s) {
    return {.sets = n * s, .segments = c, .length = 1, .stride = s, .inner_sets = s, .outer_step = c * s,
            .inner_step = 1, .channel_segment_step = 1};
  }
};

/// Per-set statistics of a forward pass: the mean and the biased variance.
struct NormStats {
  std::vector<float> mean, var;
};

/// y = (x - mean) / sqrt(var + eps) * gamma + beta, per set; gamma/beta may be null (no
/// affine). Returns the statistics used. x and y contiguous with equal shapes.
NormStats normalize_forward(const NormSets& sets, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& y,
                            const float* gamma, const float* beta, double eps);

/// dx from dy through the normalisation (batch statistics are functions of x), and, when
/// dgamma/dbeta are not null, their accumulation (+=) of sum(dy * xhat) and sum(dy).
void normalize_backward(const NormSets& sets, const NormStats& stats, double eps, const Tensor<float, Cpu>& x,
                        const Tensor<float, Cpu>& dy, const Tensor<float, Cpu>& dx, const float* gamma,
                        float* dgamma, float* dbeta);

/// y[n,c,s] = x[n,c,s] * scale[c] + shift[c] over [N, C, S]: BatchNorm in eval mode.
void channel_affine(const Tensor<float, Cpu>& x, const std::vector<float>& scale, const std::vector<float>& shift,
                    const Tensor<float, Cpu>& y);

// ----------------------------------------------------------------------------------------
// Implementation


inline NormStats normalize_forward(const NormSets& g, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& y,
                                   const float* gamma, const float* beta, double eps) {
  detail::require_same_shape("ops::normalize_forward", x, y);
  NormStats st{std::vector<float>(static_cast<std::size_t>(g.sets)), std::vector<float>(static_cast<std::size_t>(g.sets))};
  const float* px = x.data();
  float* py = y.data();
  const double m = static_cast<double>(g.set_size());
  parallel_for(0, g.sets, 1, [&](std::int64_t kb, std::int64_t ke) {
    for (std::int64_t k = kb; k < ke; ++k) {
      double sum = 0.0;
      for (std::int64_t j = 0; j < g.segments; ++j) {
        const float* r = px + g.base(k, j);
        sum += detail::lane_sum(g.length, [r](std::int64_t i) { return r[i]; });
      }
      const auto mean = static_cast<float>(sum / m);
      double sq = 0.0;  // two passes: no cancellation for data far from zero
      for (std::int64_t j = 0; j < g.segments; ++j) {
        const float* r = px + g.base(k, j);
        sq += detail::lane_sum(g.length, [r, mean](std::int64_t i) { return (r[i] - mean) * (r[i] - mean); });
      }
      const double var = sq / m;
      const auto rstd = static_cast<float>(1.0 / std::sqrt(var + eps));
      st.mean[static_cast<std::size_t>(k)] = mean;
      st.var[static_cast<std::size_t>(k)] = static_cast<float>(var);
      for (std::int64_t j = 0; j < g.segments; ++j) {
        const std::int64_t off = g.base(k, j), c0 = g.channel(k, j);
        const float* r = px + off;
        float* o = py + off;
        if (g.channel_element_step == 0) {  // one affine pair per run: y = x * scale + shift
          const float scale = rstd * (gamma ? gamma[c0] : 1.0f);
          const float shift = (beta ? beta[c0] : 0.0f) - mean * scale;
          for (std::int64_t i = 0; i < g.length; ++i) o[i] = r[i] * scale + shift;
        } else {
          for (std::int64_t i = 0; i < g.length; ++i) {
            const std::int64_t c = c0 + i * g.channel_element_step;
            const float v = (r[i] - mean) * rstd;
            o[i] = gamma ? v * gamma[c] + beta[c] : v;
          }
        }
      }
    }
  });
  return st;
}

inline void normalize_backward(const NormSets& g, const NormStats& st, double eps, const Tensor<float, Cpu>& x,
                               const Tensor<float, Cpu>& dy, const Tensor<float, Cpu>& dx, const float* gamma,
                               float* dgamma, float* dbeta) {
  detail::require_same_shape("ops::normalize_backward", x, dy);
  detail::require_same_shape("ops::normalize_backward", x, dx);
  const float* px = x.data();
  const float* pdy = dy.data();
  float* pdx = dx.data();
  const double m = static_cast<double>(g.set_size());
  const bool per_element = g.channel_element_step != 0;
  // Affine gradients as partial sums per (set, run[, element]), reduced serially below, so
  // the result does not depend on the thread count.
  const std::int64_t per_set = g.segments * (per_element ? g.length : 1);
  const bool want_affine = dgamma != nullptr;
  std::vector<double> part_g(want_affine ? static_cast<std::size_t>(g.sets * per_set) : 0);
  std::vector<double> part_b(part_g.size());
  parallel_for(0, g.sets, 1, [&](std::int64_t kb, std::int64_t ke) {
    for (std::int64_t k = kb; k < ke; ++k) {
      const float mean = st.mean[static_cast<std::size_t>(k)];
      const double rstd = 1.0 / std::sqrt(static_cast<double>(st.var[static_cast<std::size_t>(k)]) + eps);
      // dx = rstd (dy g - mean(dy g) - xhat mean(dy g xhat)), the means over the set.
      double sum_g = 0.0, sum_gx = 0.0;
      for (std::int64_t j = 0; j < g.segments; ++j) {
        const std::int64_t off = g.base(k, j), c0 = g.channel(k, j);
        const float* r = px + off;
        const float* d = pdy + off;
        if (!per_element) {
          const double sdy = detail::lane_sum(g.length, [d](std::int64_t i) { return d[i]; });
          const double sdyx = detail::lane_sum(g.length, [d, r, mean](std::int64_t i) { return d[i] * (r[i] - mean); });
          const double gm = gamma ? gamma[c0] : 1.0;
          sum_g += gm * sdy;
          sum_gx += gm * rstd * sdyx;
          if (want_affine) {
            part_g[static_cast<std::size_t>(k * per_set + j)] = rstd * sdyx;
            part_b[static_cast<std::size_t>(k * per_set + j)] = sdy;
          }
        } else {
          for (std::int64_t i = 0; i < g.length; ++i) {
            const double xhat = (r[i] - mean) * rstd;
            const double gm = gamma ? gamma[c0 + i * g.channel_element_step] : 1.0;
            sum_g += d[i] * gm;
            sum_gx += d[i] * gm * xhat;
            if (want_affine) {
              part_g[static_cast<std::size_t>(k * per_set + j * g.length + i)] = d[i] * xhat;
              part_b[static_cast<std::size_t>(k * per_set + j * g.length + i)] = d[i];
            }
          }
        }
      }
      const double a = sum_g / m, b = sum_gx / m;
      for (std::int64_t j = 0; j < g.segments; ++j) {
        const std::int64_t off = g.base(k, j), c0 = g.channel(k, j);
        const float* r = px + off;
        const float* d = pdy + off;
        float* o = pdx + off;
        if (!per_element) {  // dx = A dy + Bx x + C per run
          const double gm = gamma ? gamma[c0] : 1.0;
          const auto ca = static_cast<float>(rstd * gm);
          const auto cb = static_cast<float>(-rstd * rstd * b);
          const auto cc = static_cast<float>(-rstd * a + rstd * rstd * b * mean);
          for (std::int64_t i = 0; i < g.length; ++i) o[i] = ca * d[i] + cb * r[i] + cc;
        } else {
          for (std::int64_t i = 0; i < g.length; ++i) {
            const double xhat = (r[i] - mean) * rstd;
            const double gm = gamma ? gamma[c0 + i * g.channel_element_step] : 1.0;
            o[i] = static_cast<float>(rstd * (d[i] * gm - a - xhat * b));
          }
        }
      }
    }
  });
  if (!want_affine) return;
  for (std::int64_t k = 0; k < g.sets; ++k)
    for (std::int64_t j = 0; j < g.segments; ++j) {
      if (per_element) {
        for (std::int64_t i = 0; i < g.length; ++i) {
          const auto p = static_cast<std::size_t>(k * per_set + j * g.length + i);
          const std::int64_t c = g.channel(k, j) + i * g.channel_element_step;
          dgamma[c] += static_cast<float>(part_g[p]);
          dbeta[c] += static_cast<float>(part_b[p]);
        }
      } else {
        const auto p = static_cast<std::size_t>(k * per_set + j);
        dgamma[g.channel(k, j)] += static_cast<float>(part_g[p]);
        dbeta[g.channel(k, j)] += static_cast<float>(part_b[p]);
      }
    }
}

inline void channel_affine(const Tensor<float, Cpu>& x, const std::vector<float>& scale,
                           const std::vector<float>& shift, const Tensor<float, Cpu>& y) {
  detail::require_same_shape("ops::channel_affine", x, y);
  const std::int64_t c = x.size(1), s = x.numel() / (x.size(0) * c);
  const float* px = x.data();
  float* py = y.data();
  parallel_for(0, x.size(0) * c, std::max<std::int64_t>(1, elementwise_grain / std::max<std::int64_t>(s, 1)),
               [&](std::int64_t b, std::int64_t e) {
                 for (std::int64_t row = b; row < e; ++row) {
                   const float a = scale[static_cast<std::size_t>(row % c)], t = shift[static_cast<std::size_t>(row % c)];
                   for (std::int64_t i = 0; i < s; ++i) py[row * s + i] = px[row * s + i] * a + t;
                 }
               });
}

}  // namespace medseg::ops
