// The optimizer kernels on the CPU: SGD and Adam/AdamW updates, the gradient norm and the
// gradient scaling of clipping, each one pass over the fused table (backends/optim.hpp) with
// its chunks split over the thread pool. The decisions (options, state, scalars, clipping
// factor) are made in optim/; the Cuda overloads (backends/cuda/optim.hpp) take the same
// arguments and do the same float operations in the same order.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "../../core/parallel.hpp"
#include "../optim.hpp"

namespace medseg::ops {

/// One SGD step over every chunk of `table` on the thread pool (state[0]: momentum buffer).
inline void sgd_update(const FusedTable<Cpu>& table, const SgdScalars& k);

/// One Adam or AdamW step over every chunk of `table` on the thread pool (state: exp_avg,
/// exp_avg_sq, max_exp_avg_sq or null).
inline void adam_update(const FusedTable<Cpu>& table, const AdamStep& step);

/// Sum over every gradient element of |g|^norm_type (g^2 for 2), or for an infinite norm_type
/// the largest |g| (NaN when any g is NaN): the norm before its root. Per-chunk partials are
/// combined in chunk order, so the result does not depend on the thread count.
inline double gradient_norm_total(const FusedTable<Cpu>& table, double norm_type);

/// g *= factor for every gradient of the table.
inline void scale_gradients(const FusedTable<Cpu>& table, float factor);

/// Calls body(tensor, chunk) for every chunk of `table` on the thread pool.
template <class Body>
void for_each_chunk(const FusedTable<Cpu>& table, Body&& body);

// ----------------------------------------------------------------------------------------
// Implementation

template <class Body>
void for_each_chunk(const FusedTable<Cpu>& table, Body&& body) {
  const FusedTensor* tensors = table.tensors();
  const Chunk* chunks = table.chunks();
  parallel_for(0, table.chunk_count(), 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) body(tensors[chunks[i].param], chunks[i]);
  });
}

namespace detail {

/// Adam's element loop, in PyTorch's operation order. (It stays scalar under GCC's default
/// -fmath-errno: std::sqrt keeps an errno path; the loop is threaded by chunks.)
inline void adam_elements(const AdamScalars& k, float* p, const float* g, float* m, float* v, float* vmax,
                          std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    p[i] *= k.shrink;
    const float gi = g[i] + k.l2 * p[i];
    m[i] = m[i] * k.b1 + k.one_b1 * gi;
    v[i] = v[i] * k.b2 + k.one_b2 * gi * gi;
    float second = v[i];
    if (vmax) {
      vmax[i] = vmax[i] > v[i] ? vmax[i] : v[i];
      second = vmax[i];
    }
    const float denom = std::sqrt(second) / k.bc2_sqrt + k.eps;
    p[i] = p[i] + k.neg_step * m[i] / denom;  // PyTorch's addcdiv order
  }
}

/// Sum of g^2 in double with eight independent accumulators: a single running sum is a
/// dependency chain the compiler may not reorder (and so not vectorise).
inline double sum_of_squares(const float* g, std::int64_t n) {
  double lanes[8] = {};
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) lanes[k] += double(g[i + k]) * g[i + k];
  double s = 0;
  for (; i < n; ++i) s += double(g[i]) * g[i];
  for (double l : lanes) s += l;
  return s;
}

}  // namespace detail

inline void sgd_update(const FusedTable<Cpu>& table, const SgdScalars& k) {
  // The variant is chosen once per chunk, so each inner loop is branch-free and vectorises.
  auto update = [&]<bool Momentum, bool First, bool Nesterov>(const FusedTensor& t, const Chunk& c) {
    const float wd = t.decay ? k.weight_decay : 0.0f;
    const float lr = k.lr, mu = k.momentum, keep = k.keep;
    float* p = t.value;
    const float* g = t.grad;
    float* buf = Momentum ? t.state[0] : nullptr;
    for (std::int64_t i = c.begin; i < c.end; ++i) {
      float d = g[i] + wd * p[i];
      if constexpr (Momentum) {
        buf[i] = First ? d : buf[i] * mu + keep * d;
        d = Nesterov ? d + mu * buf[i] : buf[i];
      }
      p[i] = p[i] + (-lr) * d;
    }
  };
  for_each_chunk(table, [&](const FusedTensor& t, const Chunk& c) {
    if (!k.use_momentum)
      update.template operator()<false, false, false>(t, c);
    else if (k.nesterov)
      k.first ? update.template operator()<true, true, true>(t, c)
              : update.template operator()<true, false, true>(t, c);
    else
      k.first ? update.template operator()<true, true, false>(t, c)
              : update.template operator()<true, false, false>(t, c);
  });
}

inline void adam_update(const FusedTable<Cpu>& table, const AdamStep& step) {
  for_each_chunk(table, [&](const FusedTensor& t, const Chunk& c) {
    float* vmax = t.state[2];
    detail::adam_elements(t.decay ? step.decayed : step.undecayed, t.value + c.begin, t.grad + c.begin,
                          t.state[0] + c.begin, t.state[1] + c.begin, vmax ? vmax + c.begin : nullptr,
                          c.end - c.begin);
  });
}

inline double gradient_norm_total(const FusedTable<Cpu>& table, double norm_type) {
  const double q = norm_type;
  const bool inf = std::isinf(q);
  const FusedTensor* tensors = table.tensors();
  const Chunk* chunks = table.chunks();
  std::vector<double> part(static_cast<std::size_t>(table.chunk_count()), 0.0);
  parallel_for(0, table.chunk_count(), 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t k = b; k < e; ++k) {
      const Chunk& c = chunks[k];
      const float* g = tensors[c.param].grad;
      double acc = 0;
      if (inf)
        for (std::int64_t i = c.begin; i < c.end; ++i) acc = std::max(acc, double(std::abs(g[i])));
      else if (q == 2.0)
        acc = detail::sum_of_squares(g + c.begin, c.end - c.begin);
      else
        for (std::int64_t i = c.begin; i < c.end; ++i) acc += std::pow(std::abs(double(g[i])), q);
      // A NaN must survive std::max, which would drop it.
      for (std::int64_t i = c.begin; i < c.end && inf; ++i)
        if (std::isnan(g[i])) acc = std::numeric_limits<double>::quiet_NaN();
      part[static_cast<std::size_t>(k)] = acc;
    }
  });
  double total = 0;
  for (double v : part) total = inf ? (std::isnan(v) || std::isnan(total) ? NAN : std::max(total, v)) : total + v;
  return total;
}

inline void scale_gradients(const FusedTable<Cpu>& table, float factor) {
  for_each_chunk(table, [&](const FusedTensor& t, const Chunk& c) {
    float* g = t.grad;
    for (std::int64_t i = c.begin; i < c.end; ++i) g[i] *= factor;
  });
}

}  // namespace medseg::ops
