// CPU kernels of every normalisation layer (BatchNorm, GroupNorm, InstanceNorm, LayerNorm over
// channels or over the last axis). They differ only in which elements share a mean and a
// variance, so one kernel pair takes that grouping as a NormSets value; statistics are
// accumulated in double, and reductions are per set, so results do not depend on threads.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
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

/// Per-set statistics of a forward pass: the mean, the biased variance and the 1 / sqrt(var +
/// eps) the forward scaled by (kept so that a fused consumer applies the very same affine map).
struct NormStats {
  std::vector<float> mean, var, rstd;
};

/// What normalize_forward returns on backend B, kept by the layers for backward: host vectors
/// here; a device backend keeps them in its own memory (backends/cuda/norm.hpp specialises it).
template <class B>
struct norm_stats {
  static_assert(sizeof(B) == 0, "medseg: no normalisation kernels for this backend (for Cuda: link medseg::cuda, "
                                "which declares them through backends/ops.hpp)");
};
template <>
struct norm_stats<Cpu> {
  using type = NormStats;
};
template <class B>
using norm_stats_t = typename norm_stats<B>::type;

/// y = (x - mean) / sqrt(var + eps) * gamma + beta, per set; gamma/beta may be null (no
/// affine). Returns the statistics used. x and y contiguous with equal shapes; an undefined y
/// computes the statistics alone (a caller that fuses the normalisation into its next op).
NormStats normalize_forward(const NormSets& sets, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& y,
                            const float* gamma, const float* beta, double eps);

/// dx from dy through the normalisation (batch statistics are functions of x), and, when
/// dgamma/dbeta are not null, their accumulation (+=) of sum(dy * xhat) and sum(dy). dx may
/// be dy (each set is read whole before it is written).
void normalize_backward(const NormSets& sets, const NormStats& stats, double eps, const Tensor<float, Cpu>& x,
                        const Tensor<float, Cpu>& dy, const Tensor<float, Cpu>& dx, const float* gamma,
                        float* dgamma, float* dbeta);

/// y[n,c,s] = x[n,c,s] * scale[c] + shift[c] over [N, C, S]: BatchNorm in eval mode.
void channel_affine(const Tensor<float, Cpu>& x, const std::vector<float>& scale, const std::vector<float>& shift,
                    const Tensor<float, Cpu>& y);

/// The per-channel map y = x * scale[k] + shift[k] that a forward with these statistics
/// applies, one set per channel (BatchNorm's layout), for a caller that fuses the map into its
/// next op: scale = rstd * gamma, shift = beta - mean * scale, as normalize_forward computes
/// them. gamma/beta may be null; scale and shift are [sets].
void norm_factors(const NormStats& stats, const float* gamma, const float* beta, double eps,
                  const Tensor<float, Cpu>& scale, const Tensor<float, Cpu>& shift);

/// The same map from running statistics [C] (eval mode): normalize_with_running_stats's.
void running_norm_factors(const Tensor<float, Cpu>& running_mean, const Tensor<float, Cpu>& running_var,
                          const float* gamma, const float* beta, double eps, const Tensor<float, Cpu>& scale,
                          const Tensor<float, Cpu>& shift);

/// Eval mode of the norms that keep running statistics (BatchNorm, InstanceNorm tracking them)
/// over [N, C, S]: y = (x - running_mean[c]) / sqrt(running_var[c] + eps) * gamma[c] + beta[c],
/// as one channel_affine; gamma/beta may be null (no affine).
void normalize_with_running_stats(const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& running_mean,
                                  const Tensor<float, Cpu>& running_var, const float* gamma, const float* beta,
                                  double eps, const Tensor<float, Cpu>& y);

/// PyTorch's running averages after a training forward over [N, C, S] whose sets are k = n C + c
/// (BatchNorm: N = 1 set per channel; InstanceNorm: one per sample and channel):
///   running_mean[c] = (1 - momentum) running_mean[c] + momentum avg_n mean[n C + c]
///   running_var[c]  = (1 - momentum) running_var[c]  + momentum avg_n var[n C + c] * unbias
/// with unbias = M / (M - 1) for sets of M values. num_batches_tracked, when not null, gains 1
/// (BatchNorm counts; torch's instance_norm does not).
void update_running_stats(const NormStats& stats, double momentum, double unbias,
                          const Tensor<float, Cpu>& running_mean, const Tensor<float, Cpu>& running_var,
                          const Tensor<float, Cpu>* num_batches_tracked);

// ----------------------------------------------------------------------------------------
// Implementation


inline NormStats normalize_forward(const NormSets& g, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& y,
                                   const float* gamma, const float* beta, double eps) {
  const bool write = y.defined();
  if (write) detail::require_same_shape("ops::normalize_forward", x, y);
  const auto sets = static_cast<std::size_t>(g.sets);
  NormStats st{std::vector<float>(sets), std::vector<float>(sets), std::vector<float>(sets)};
  const float* px = x.data();
  float* py = write ? y.data() : nullptr;
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
      st.rstd[static_cast<std::size_t>(k)] = rstd;
      for (std::int64_t j = 0; write && j < g.segments; ++j) {
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

namespace detail {
/// Running statistics are [C] vectors matching the channels of the input.
template <class B>
void require_running_shape(const char* op, const Tensor<float, B>& running_mean, const Tensor<float, B>& running_var,
                           std::int64_t channels, const char* field = "running_mean/running_var") {
  require(running_mean.rank() == 1 && running_mean.shape() == running_var.shape() &&
              running_mean.size(0) == channels,
          [&] {
            return ErrorInfo{.where = op, .field = field,
                             .expected = "[" + std::to_string(channels) + "] each",
                             .actual = running_mean.shape().to_string() + " and " + running_var.shape().to_string()};
          });
}
}  // namespace detail

inline void norm_factors(const NormStats& stats, const float* gamma, const float* beta, double,
                         const Tensor<float, Cpu>& scale, const Tensor<float, Cpu>& shift) {
  const auto c = static_cast<std::int64_t>(stats.mean.size());
  detail::require_running_shape("ops::norm_factors", scale, shift, c, "scale/shift");
  float* a = scale.data();
  float* t = shift.data();
  for (std::int64_t k = 0; k < c; ++k) {  // normalize_forward's own factors: the fused map is bit for bit
    const auto i = static_cast<std::size_t>(k);
    a[k] = stats.rstd[i] * (gamma ? gamma[k] : 1.0f);
    t[k] = (beta ? beta[k] : 0.0f) - stats.mean[i] * a[k];
  }
}

inline void running_norm_factors(const Tensor<float, Cpu>& running_mean, const Tensor<float, Cpu>& running_var,
                                 const float* gamma, const float* beta, double eps, const Tensor<float, Cpu>& scale,
                                 const Tensor<float, Cpu>& shift) {
  const std::int64_t c = running_mean.numel();
  detail::require_running_shape("ops::running_norm_factors", running_mean, running_var, c);
  detail::require_running_shape("ops::running_norm_factors", scale, shift, c, "scale/shift");
  const float* rm = running_mean.data();
  const float* rv = running_var.data();
  for (std::int64_t k = 0; k < c; ++k) {
    const double a = (gamma ? gamma[k] : 1.0f) / std::sqrt(static_cast<double>(rv[k]) + eps);
    scale.data()[k] = static_cast<float>(a);
    shift.data()[k] = static_cast<float>((beta ? beta[k] : 0.0f) - rm[k] * a);
  }
}

inline void normalize_with_running_stats(const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& running_mean,
                                         const Tensor<float, Cpu>& running_var, const float* gamma, const float* beta,
                                         double eps, const Tensor<float, Cpu>& y) {
  detail::require_same_shape("ops::normalize_with_running_stats", x, y);
  const std::int64_t c = x.rank() >= 2 ? x.size(1) : 0;
  detail::require_running_shape("ops::normalize_with_running_stats", running_mean, running_var, c);
  auto scale = Tensor<float, Cpu>::empty({c}), shift = Tensor<float, Cpu>::empty({c});
  running_norm_factors(running_mean, running_var, gamma, beta, eps, scale, shift);
  channel_affine(x, scale.to_vector(), shift.to_vector(), y);
}

inline void update_running_stats(const NormStats& st, double momentum, double unbias,
                                 const Tensor<float, Cpu>& running_mean, const Tensor<float, Cpu>& running_var,
                                 const Tensor<float, Cpu>* num_batches_tracked) {
  const std::int64_t c = running_mean.numel(), sets = static_cast<std::int64_t>(st.mean.size());
  detail::require_running_shape("ops::update_running_stats", running_mean, running_var, c);
  require(c > 0 && sets % c == 0 && st.var.size() == st.mean.size(), [&] {
    return ErrorInfo{.where = "ops::update_running_stats", .field = "stats",
                     .expected = "a multiple of " + std::to_string(c) + " sets",
                     .actual = std::to_string(sets) + " means, " + std::to_string(st.var.size()) + " variances"};
  });
  const std::int64_t n = sets / c;
  float* rm = running_mean.data();
  float* rv = running_var.data();
  for (std::int64_t k = 0; k < c; ++k) {
    double mean = 0.0, var = 0.0;
    for (std::int64_t i = 0; i < n; ++i) {
      mean += st.mean[static_cast<std::size_t>(i * c + k)];
      var += st.var[static_cast<std::size_t>(i * c + k)] * unbias;
    }
    rm[k] = static_cast<float>((1.0 - momentum) * rm[k] + momentum * mean / static_cast<double>(n));
    rv[k] = static_cast<float>((1.0 - momentum) * rv[k] + momentum * var / static_cast<double>(n));
  }
  if (num_batches_tracked) num_batches_tracked->data()[0] += 1.0f;
}

}  // namespace medseg::ops
