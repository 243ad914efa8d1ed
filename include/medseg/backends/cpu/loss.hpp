// CPU kernels of the losses in loss/: the label scans and conversions make_target runs,
// activation with per-term partial sums, and the gradients of Dice, cross-entropy and binary
// cross-entropy. The loss classes check their inputs and turn the sums into values; these
// loops only compute. Sums are taken per fixed-size spatial block and the host adds the blocks
// in order, so results do not depend on the thread count.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

#include "../../core/parallel.hpp"
#include "../../core/tensor.hpp"
#include "../loss.hpp"

namespace medseg::ops {

// -- Labels (loss::detail::make_target) ----------------------------------------------------

/// Flat index of the first label outside [0, classes) that is not `ignore`; -1 when all are valid.
template <class L>
std::int64_t first_invalid_label(const Tensor<L, Cpu>& labels, std::int64_t classes, std::optional<std::int64_t> ignore);
/// Flat index of the first value outside [0, 1] (NaN included); -1 when all are inside.
inline std::int64_t first_outside_unit_interval(const Tensor<float, Cpu>& labels);
/// index[i] = class_id(labels[i]).
template <class L>
void labels_to_index(const Tensor<L, Cpu>& labels, std::optional<std::int64_t> ignore,
                     const Tensor<std::int32_t, Cpu>& index);
/// dense[n,c,s] = (labels[n,s] == c), or labels[n,s] itself with one channel.
template <class L>
void labels_to_one_hot(const Tensor<L, Cpu>& labels, const LossExtents& e, const Tensor<float, Cpu>& dense);

// -- Dice (loss::Dice) ----------------------------------------------------------------------

/// Activates `logits` into `probs` (softmax or sigmoid; with LossActivation::none `probs`
/// holds the probabilities already) and returns per (sample, block, class) partial sums
/// [N][blocks][C][I, P, G]: I = sum p g, P = sum p (or p^2), G = sum g (or g^2).
inline LossSums dice_sums(const Tensor<float, Cpu>& logits, const Tensor<float, Cpu>& probs,
                          const LossTarget<Cpu>& target, const LossExtents& e, LossActivation activation,
                          bool squared);
/// grad += scale * d loss / d logits, from the per-term coefficients `coef` [N * C].
inline void dice_backward(const Tensor<float, Cpu>& probs, const LossTarget<Cpu>& target,
                          const std::vector<DiceCoefficients>& coef, const LossExtents& e, LossActivation activation,
                          bool squared, const Tensor<float, Cpu>& grad, float scale);

// -- Cross-entropy (loss::CrossEntropy, loss::BinaryCrossEntropy) ---------------------------

/// Softmax of `logits` into `probs` and per (sample, block) partial sums [N][blocks][2]:
/// index labels: sum w_y (lse - x_y) and sum w_y over the voxels not ignored; probability
/// labels: sum_c w_c t_c (lse - x_c) and 0. (w: `class_weights`, all 1 when empty.)
inline LossSums cross_entropy_sums(const Tensor<float, Cpu>& logits, const Tensor<float, Cpu>& probs,
                                   const LossTarget<Cpu>& target, const LossExtents& e,
                                   const std::vector<float>& class_weights);
/// grad += k * (index: w_y (p_c - [c == y]); probabilities: p_c sum_j w_j t_j - w_c t_c).
inline void cross_entropy_backward(const Tensor<float, Cpu>& probs, const LossTarget<Cpu>& target,
                                   const std::vector<float>& class_weights, const LossExtents& e, float k,
                                   const Tensor<float, Cpu>& grad);
/// Sigmoid of `logits` into `probs` and per (sample and channel, block) partial sums
/// [N*C][blocks] of the element losses pw_c y softplus(-x) + (1 - y) softplus(x), before
/// class weights. (pw: `pos_weight`, all 1 when empty.)
inline LossSums binary_cross_entropy_sums(const Tensor<float, Cpu>& logits, const Tensor<float, Cpu>& probs,
                                          const Tensor<float, Cpu>& target, const LossExtents& e,
                                          const std::vector<float>& pos_weight);
/// grad += k * w_c (pw_c y (sigmoid - 1) + (1 - y) sigmoid).
inline void binary_cross_entropy_backward(const Tensor<float, Cpu>& probs, const Tensor<float, Cpu>& target,
                                          const std::vector<float>& pos_weight,
                                          const std::vector<float>& class_weights, const LossExtents& e, float k,
                                          const Tensor<float, Cpu>& grad);

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

/// Fixed-size spatial blocks: reductions sum per block, then blocks in order, so the result
/// does not depend on the thread count.
inline constexpr std::int64_t loss_block_size = 2048;
inline std::int64_t loss_block_count(std::int64_t s) { return (s + loss_block_size - 1) / loss_block_size; }

/// p[n,c,s] = exp(x[n,c,s]) / sum_k exp(x[n,k,s]) over [N, C, S]. When `lse` is given it
/// receives the log-sum-exp [N*S], so log p = x - lse keeps full precision where p underflows.
/// Returns false when any logit is not finite.
inline bool loss_softmax(const float* x, float* p, const LossExtents& e, float* lse = nullptr) {
  using fast_math::exp_approx, fast_math::non_finite, fast_math::select;
  const std::int64_t blocks = loss_block_count(e.s);
  std::atomic<bool> finite{true};
  parallel_for(0, e.n * blocks, 1, [&](std::int64_t u0, std::int64_t u1) {
    float mx[loss_block_size], sum[loss_block_size];
    for (std::int64_t u = u0; u < u1; ++u) {
      const std::int64_t n = u / blocks, s0 = (u % blocks) * loss_block_size;
      const std::int64_t m = std::min(loss_block_size, e.s - s0);
      const float* xn = x + n * e.c * e.s + s0;
      float* pn = p + n * e.c * e.s + s0;
      std::uint32_t bad = 0;
      std::fill_n(mx, m, -INFINITY);
      std::fill_n(sum, m, 0.0f);
      for (std::int64_t c = 0; c < e.c; ++c) {
        const float* xc = xn + c * e.s;
        for (std::int64_t s = 0; s < m; ++s) {
          mx[s] = select(xc[s] > mx[s], xc[s], mx[s]);
          bad |= non_finite(xc[s]);
        }
      }
      for (std::int64_t c = 0; c < e.c; ++c) {
        const float* xc = xn + c * e.s;
        float* pc = pn + c * e.s;
        for (std::int64_t s = 0; s < m; ++s) {
          pc[s] = exp_approx(xc[s] - mx[s]);
          sum[s] += pc[s];
        }
      }
      if (lse)
        for (std::int64_t s = 0; s < m; ++s) lse[n * e.s + s0 + s] = mx[s] + std::log(sum[s]);
      for (std::int64_t s = 0; s < m; ++s) sum[s] = 1.0f / sum[s];
      for (std::int64_t c = 0; c < e.c; ++c) {
        float* pc = pn + c * e.s;
        for (std::int64_t s = 0; s < m; ++s) pc[s] *= sum[s];
      }
      if (bad) finite.store(false, std::memory_order_relaxed);
    }
  });
  return finite.load();
}

/// p = 1 / (1 + exp(-x)) element-wise over `count` values. Returns false on non-finite input.
inline bool loss_sigmoid(const float* x, float* p, std::int64_t count) {
  std::atomic<bool> finite{true};
  parallel_for(0, count, 1 << 14, [&](std::int64_t b, std::int64_t e) {
    std::uint32_t bad = 0;
    for (std::int64_t i = b; i < e; ++i) {
      p[i] = 1.0f / (1.0f + fast_math::exp_approx(-x[i]));
      bad |= fast_math::non_finite(x[i]);
    }
    if (bad) finite.store(false, std::memory_order_relaxed);
  });
  return finite.load();
}

}  // namespace detail

template <class L>
std::int64_t first_invalid_label(const Tensor<L, Cpu>& labels, std::int64_t classes, std::optional<std::int64_t> ignore) {
  const L* y = labels.data();
  const std::int64_t count = labels.numel();
  const bool has_ignore = ignore.has_value();
  const std::int64_t ignored = ignore.value_or(0);
  bool ok = true;  // one branch-free pass; the position is searched for only on failure
  for (std::int64_t i = 0; i < count; ++i) ok &= detail::valid_label(y[i], classes, has_ignore, ignored);
  if (ok) return -1;
  std::int64_t i = 0;
  while (detail::valid_label(y[i], classes, has_ignore, ignored)) ++i;
  return i;
}

inline std::int64_t first_outside_unit_interval(const Tensor<float, Cpu>& labels) {
  const float* g = labels.data();
  const std::int64_t total = labels.numel();
  std::uint32_t bad = 0;  // an integer OR, so the scan vectorises
  for (std::int64_t i = 0; i < total; ++i)
    bad |= static_cast<std::uint32_t>(!(g[i] >= 0.0f)) | static_cast<std::uint32_t>(!(g[i] <= 1.0f));
  if (!bad) return -1;
  std::int64_t i = 0;
  while (g[i] >= 0.0f && g[i] <= 1.0f) ++i;
  return i;
}

template <class L>
void labels_to_index(const Tensor<L, Cpu>& labels, std::optional<std::int64_t> ignore,
                     const Tensor<std::int32_t, Cpu>& index) {
  const L* y = labels.data();
  std::int32_t* idx = index.data();
  const bool has_ignore = ignore.has_value();
  const std::int64_t ignored = ignore.value_or(0);
  parallel_for(0, index.numel(), 1 << 16, [&](std::int64_t b, std::int64_t end) {
    for (std::int64_t i = b; i < end; ++i) idx[i] = detail::class_id(y[i], has_ignore, ignored);
  });
}

template <class L>
void labels_to_one_hot(const Tensor<L, Cpu>& labels, const LossExtents& e, const Tensor<float, Cpu>& dense) {
  const L* y = labels.data();
  float* g = dense.data();
  parallel_for(0, e.n * e.c, 1, [&](std::int64_t b, std::int64_t end) {
    for (std::int64_t nc = b; nc < end; ++nc) {
      const std::int64_t n = nc / e.c, c = nc % e.c;
      const L* yn = y + n * e.s;
      float* gn = g + nc * e.s;
      if (e.c == 1)
        for (std::int64_t s = 0; s < e.s; ++s) gn[s] = static_cast<float>(yn[s]);
      else
        for (std::int64_t s = 0; s < e.s; ++s) gn[s] = static_cast<std::int64_t>(yn[s]) == c ? 1.0f : 0.0f;
    }
  });
}

inline LossSums dice_sums(const Tensor<float, Cpu>& logits, const Tensor<float, Cpu>& probs,
                          const LossTarget<Cpu>& target, const LossExtents& e, LossActivation activation,
                          bool squared) {
  using detail::loss_block_size;
  if (activation != LossActivation::none) {
    const bool finite = activation == LossActivation::softmax
                            ? detail::loss_softmax(logits.data(), probs.data(), e)
                            : detail::loss_sigmoid(logits.data(), probs.data(), logits.numel());
    if (!finite) return {.finite = false};
  }
  const std::int64_t blocks = detail::loss_block_count(e.s);
  LossSums part{.values = std::vector<double>(static_cast<std::size_t>(e.n * blocks * e.c * 3), 0.0),
                .blocks = blocks};
  const float* p = probs.data();
  parallel_for(0, e.n * blocks, 1, [&](std::int64_t u0, std::int64_t u1) {
    for (std::int64_t u = u0; u < u1; ++u) {
      const std::int64_t n = u / blocks, s0 = (u % blocks) * loss_block_size;
      const std::int64_t m = std::min(loss_block_size, e.s - s0);
      double* out = part.values.data() + u * e.c * 3;  // [c][I, P, G]
      for (std::int64_t c = 0; c < e.c; ++c) {
        const float* pc = p + (n * e.c + c) * e.s + s0;
        double sp = 0;
        if (squared)
          for (std::int64_t s = 0; s < m; ++s) sp += double(pc[s]) * pc[s];
        else
          for (std::int64_t s = 0; s < m; ++s) sp += pc[s];
        out[c * 3 + 1] = sp;
        if (!target.is_index()) {
          const float* gc = target.dense.data() + (n * e.c + c) * e.s + s0;
          double si = 0, sg = 0;
          for (std::int64_t s = 0; s < m; ++s) {
            si += double(pc[s]) * gc[s];
            sg += squared ? double(gc[s]) * gc[s] : double(gc[s]);
          }
          out[c * 3] = si;
          out[c * 3 + 2] = sg;
        }
      }
      if (target.is_index()) {
        const std::int32_t* y = target.index.data() + n * e.s + s0;
        for (std::int64_t s = 0; s < m; ++s) {
          const std::int64_t c = y[s];
          out[c * 3] += p[(n * e.c + c) * e.s + s0 + s];
          out[c * 3 + 2] += 1.0;  // a one-hot g is its own square
        }
      }
    }
  });
  return part;
}

inline void dice_backward(const Tensor<float, Cpu>& probs, const LossTarget<Cpu>& target,
                          const std::vector<DiceCoefficients>& coef, const LossExtents& e, LossActivation activation,
                          bool squared, const Tensor<float, Cpu>& grad, float scale) {
  using detail::loss_block_size;
  const std::int64_t blocks = detail::loss_block_count(e.s);
  const float* p = probs.data();
  float* gx = grad.data();
  parallel_for(0, e.n * blocks, 1, [&](std::int64_t u0, std::int64_t u1) {
    float dot[loss_block_size];
    for (std::int64_t u = u0; u < u1; ++u) {
      const std::int64_t n = u / blocks, s0 = (u % blocks) * loss_block_size;
      const std::int64_t m = std::min(loss_block_size, e.s - s0);
      const std::int32_t* y = target.is_index() ? target.index.data() + n * e.s + s0 : nullptr;
      // d loss / d p for class c at voxel s of this block.
      auto dp = [&](std::int64_t c, const float* pc, const float* gc, std::int64_t s) {
        const DiceCoefficients k = coef[static_cast<std::size_t>(n * e.c + c)];
        const float g = y ? (y[s] == c ? 1.0f : 0.0f) : gc[s];
        return k.a * g + k.b * (squared ? 2.0f * pc[s] : 1.0f);
      };
      auto target_row = [&](std::int64_t c) {
        return y ? nullptr : target.dense.data() + (n * e.c + c) * e.s + s0;
      };
      if (activation == LossActivation::softmax) {
        // Softmax's Jacobian: dx_c = p_c (dp_c - sum_k p_k dp_k).
        std::fill_n(dot, m, 0.0f);
        for (std::int64_t c = 0; c < e.c; ++c) {
          const float* pc = p + (n * e.c + c) * e.s + s0;
          const float* gc = target_row(c);
          for (std::int64_t s = 0; s < m; ++s) dot[s] += pc[s] * dp(c, pc, gc, s);
        }
        for (std::int64_t c = 0; c < e.c; ++c) {
          const float* pc = p + (n * e.c + c) * e.s + s0;
          const float* gc = target_row(c);
          float* oc = gx + (n * e.c + c) * e.s + s0;
          for (std::int64_t s = 0; s < m; ++s) oc[s] += scale * pc[s] * (dp(c, pc, gc, s) - dot[s]);
        }
      } else {
        for (std::int64_t c = 0; c < e.c; ++c) {
          const float* pc = p + (n * e.c + c) * e.s + s0;
          const float* gc = target_row(c);
          float* oc = gx + (n * e.c + c) * e.s + s0;
          if (activation == LossActivation::sigmoid)
            for (std::int64_t s = 0; s < m; ++s) oc[s] += scale * dp(c, pc, gc, s) * pc[s] * (1.0f - pc[s]);
          else
            for (std::int64_t s = 0; s < m; ++s) oc[s] += scale * dp(c, pc, gc, s);
        }
      }
    }
  });
}

inline LossSums cross_entropy_sums(const Tensor<float, Cpu>& logits, const Tensor<float, Cpu>& probs,
                                   const LossTarget<Cpu>& target, const LossExtents& e,
                                   const std::vector<float>& class_weights) {
  using detail::loss_block_size;
  auto lse = Tensor<float, Cpu>::empty({e.n * e.s});
  if (!detail::loss_softmax(logits.data(), probs.data(), e, lse.data())) return {.finite = false};
  const auto& w = class_weights;
  auto weight = [&](std::int64_t c) { return w.empty() ? 1.0 : double(w[static_cast<std::size_t>(c)]); };
  const std::int64_t blocks = detail::loss_block_count(e.s);
  LossSums part{.values = std::vector<double>(static_cast<std::size_t>(e.n * blocks * 2), 0.0), .blocks = blocks};
  parallel_for(0, e.n * blocks, 1, [&](std::int64_t u0, std::int64_t u1) {
    for (std::int64_t u = u0; u < u1; ++u) {
      const std::int64_t n = u / blocks, s0 = (u % blocks) * loss_block_size;
      const std::int64_t m = std::min(loss_block_size, e.s - s0);
      const float* xn = logits.data() + n * e.c * e.s + s0;
      const float* l = lse.data() + n * e.s + s0;
      double loss = 0, wsum = 0;
      if (target.is_index()) {
        const std::int32_t* y = target.index.data() + n * e.s + s0;
        for (std::int64_t s = 0; s < m; ++s) {
          if (y[s] < 0) continue;
          const double wy = weight(y[s]);
          loss += wy * (double(l[s]) - xn[y[s] * e.s + s]);
          wsum += wy;
        }
      } else {
        for (std::int64_t c = 0; c < e.c; ++c) {
          const float* t = target.dense.data() + (n * e.c + c) * e.s + s0;
          const float* xc = xn + c * e.s;
          double lc = 0;
          for (std::int64_t s = 0; s < m; ++s) lc += double(t[s]) * (double(l[s]) - xc[s]);
          loss += weight(c) * lc;
        }
      }
      part.values[static_cast<std::size_t>(u * 2)] = loss;
      part.values[static_cast<std::size_t>(u * 2 + 1)] = wsum;
    }
  });
  return part;
}

inline void cross_entropy_backward(const Tensor<float, Cpu>& probs, const LossTarget<Cpu>& target,
                                   const std::vector<float>& class_weights, const LossExtents& e, float k,
                                   const Tensor<float, Cpu>& grad) {
  using detail::loss_block_size;
  const auto& w = class_weights;
  const std::int64_t blocks = detail::loss_block_count(e.s);
  parallel_for(0, e.n * blocks, 1, [&](std::int64_t u0, std::int64_t u1) {
    float tw[loss_block_size];  // index labels: w_y; soft labels: sum_c w_c t_c
    for (std::int64_t u = u0; u < u1; ++u) {
      const std::int64_t n = u / blocks, s0 = (u % blocks) * loss_block_size;
      const std::int64_t m = std::min(loss_block_size, e.s - s0);
      const float* pn = probs.data() + n * e.c * e.s + s0;
      float* gn = grad.data() + n * e.c * e.s + s0;
      if (target.is_index()) {
        // dx_c = w_y (p_c - [c == y]) / W
        const std::int32_t* y = target.index.data() + n * e.s + s0;
        for (std::int64_t s = 0; s < m; ++s) tw[s] = y[s] < 0 ? 0.0f : (w.empty() ? 1.0f : w[static_cast<std::size_t>(y[s])]);
        for (std::int64_t c = 0; c < e.c; ++c) {
          const float* pc = pn + c * e.s;
          float* gc = gn + c * e.s;
          for (std::int64_t s = 0; s < m; ++s) gc[s] += k * tw[s] * (pc[s] - (y[s] == c ? 1.0f : 0.0f));
        }
      } else {
        // dx_c = (p_c sum_k w_k t_k - w_c t_c) / M
        const float* tn = target.dense.data() + n * e.c * e.s + s0;
        std::fill_n(tw, m, 0.0f);
        for (std::int64_t c = 0; c < e.c; ++c) {
          const float wc = w.empty() ? 1.0f : w[static_cast<std::size_t>(c)];
          for (std::int64_t s = 0; s < m; ++s) tw[s] += wc * tn[c * e.s + s];
        }
        for (std::int64_t c = 0; c < e.c; ++c) {
          const float wc = w.empty() ? 1.0f : w[static_cast<std::size_t>(c)];
          const float* pc = pn + c * e.s;
          const float* tc = tn + c * e.s;
          float* gc = gn + c * e.s;
          for (std::int64_t s = 0; s < m; ++s) gc[s] += k * (pc[s] * tw[s] - wc * tc[s]);
        }
      }
    }
  });
}

inline LossSums binary_cross_entropy_sums(const Tensor<float, Cpu>& logits, const Tensor<float, Cpu>& probs,
                                          const Tensor<float, Cpu>& target, const LossExtents& e,
                                          const std::vector<float>& pos_weight) {
  using detail::loss_block_size;
  using fast_math::exp_approx, fast_math::log_approx, fast_math::non_finite, fast_math::select;
  const auto& pw = pos_weight;
  const std::int64_t blocks = detail::loss_block_count(e.s);
  LossSums part{.values = std::vector<double>(static_cast<std::size_t>(e.n * e.c * blocks), 0.0), .blocks = blocks};
  std::atomic<bool> finite{true};
  parallel_for(0, e.n * e.c * blocks, 1, [&](std::int64_t u0, std::int64_t u1) {
    float terms[loss_block_size];
    for (std::int64_t u = u0; u < u1; ++u) {
      const std::int64_t nc = u / blocks, c = nc % e.c, s0 = (u % blocks) * loss_block_size;
      const std::int64_t m = std::min(loss_block_size, e.s - s0);
      const float* xc = logits.data() + nc * e.s + s0;
      const float* yc = target.data() + nc * e.s + s0;
      float* sc = probs.data() + nc * e.s + s0;
      const float p = pw.empty() ? 1.0f : pw[static_cast<std::size_t>(c)];
      std::uint32_t bad = 0;
      // One exp and one log per element: with q = exp(-|x|), sigmoid(x) is 1/(1+q) or
      // q/(1+q), softplus(x) = -log(1 - sigmoid(x)) = max(x, 0) + log(1 + q), and
      // -log sigmoid(x) = softplus(x) - x.
      for (std::int64_t s = 0; s < m; ++s) {
        const float xv = xc[s];
        const float q = exp_approx(-std::abs(xv));
        const float inv = 1.0f / (1.0f + q);
        sc[s] = select(xv >= 0.0f, inv, q * inv);
        const float softplus = select(xv > 0.0f, xv, 0.0f) + log_approx(1.0f + q);
        terms[s] = p * yc[s] * (softplus - xv) + (1.0f - yc[s]) * softplus;
        bad |= non_finite(xv);
      }
      if (bad) finite.store(false, std::memory_order_relaxed);
      double l = 0;
      for (std::int64_t s = 0; s < m; ++s) l += terms[s];
      part.values[static_cast<std::size_t>(u)] = l;
    }
  });
  part.finite = finite.load();
  return part;
}

inline void binary_cross_entropy_backward(const Tensor<float, Cpu>& probs, const Tensor<float, Cpu>& target,
                                          const std::vector<float>& pos_weight,
                                          const std::vector<float>& class_weights, const LossExtents& e, float k,
                                          const Tensor<float, Cpu>& grad) {
  const auto& pw = pos_weight;
  const auto& cw = class_weights;
  parallel_for(0, e.n * e.c, 1, [&](std::int64_t b, std::int64_t end) {
    for (std::int64_t nc = b; nc < end; ++nc) {
      const auto c = static_cast<std::size_t>(nc % e.c);
      const float p = pw.empty() ? 1.0f : pw[c];
      const float kc = k * (cw.empty() ? 1.0f : cw[c]);
      const float* sc = probs.data() + nc * e.s;
      const float* yc = target.data() + nc * e.s;
      float* gc = grad.data() + nc * e.s;
      // d/dx = pw y (sigmoid - 1) + (1 - y) sigmoid
      for (std::int64_t s = 0; s < e.s; ++s) gc[s] += kc * (p * yc[s] * (sc[s] - 1.0f) + (1.0f - yc[s]) * sc[s]);
    }
  });
}

}  // namespace medseg::ops
