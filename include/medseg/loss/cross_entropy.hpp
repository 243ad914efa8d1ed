// Cross-entropy losses as PyTorch defines them: CrossEntropy (softmax over channels, class
// weights, ignore_index, index or probability targets) and BinaryCrossEntropy (sigmoid per
// element, pos_weight per channel, as BCEWithLogitsLoss). Both work from the logits with a
// log-sum-exp, so confident wrong predictions give large finite losses, never inf.
// On either backend: a kernel activates and sums, the host divides (shared code), a kernel
// writes the gradient.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "../core/parallel.hpp"
#include "../core/tensor.hpp"
#include "activation.hpp"
#include "concepts.hpp"
#include "target.hpp"

namespace medseg::loss {

struct CrossEntropyOptions {
  /// PyTorch's `weight`: one per class (C values); empty: all 1.
  std::vector<float> class_weights{};
  /// Voxels with this label add nothing, to the loss or to the mean's denominator (PyTorch's
  /// default -100). Only index labels can carry it.
  std::int64_t ignore_index = -100;
  Reduction reduction = Reduction::mean;
};

/// torch.nn.functional.cross_entropy on logits [N,C,spatial...].
/// Index labels y: loss = sum_i w_{y_i} (-log p_{i,y_i}) / sum_i w_{y_i} (mean) over voxels i
/// whose label is not ignore_index. When every voxel is ignored the mean is 0 with a zero
/// gradient, where PyTorch gives NaN: a crop of pure ignore label must not end a run.
/// Probability labels t ([N,C,...] float): loss = sum_i sum_c w_c t_ic (-log p_ic) / (N * S).
template <class B = Cpu>
class CrossEntropy {
 public:
  using backend = B;
  static constexpr std::string_view name = "loss::CrossEntropy";

  CrossEntropy() = default;
  explicit CrossEntropy(CrossEntropyOptions options) : options_(std::move(options)) {}

  template <LabelElement L>
  float forward(const Tensor<float, B>& logits, const Tensor<L, B>& labels);
  Tensor<float, B> backward() const;
  void backward_accumulate(const Tensor<float, B>& grad, float scale) const;

  const CrossEntropyOptions& options() const { return options_; }

 private:
  CrossEntropyOptions options_;
  detail::Extents e_;
  detail::Target<B> target_;
  Tensor<float, B> probs_;
  double denominator_ = 1;  // what the summed loss was divided by (1 for Reduction::sum)
  bool ready_ = false;
};

CrossEntropy() -> CrossEntropy<Cpu>;
CrossEntropy(CrossEntropyOptions) -> CrossEntropy<Cpu>;

struct BinaryCrossEntropyOptions {
  /// PyTorch's `pos_weight`, one per channel (C values): > 1 favours recall of that channel.
  std::vector<float> pos_weight{};
  /// PyTorch's `weight`, here one per channel (C values), scaling each channel's loss.
  std::vector<float> class_weights{};
  Reduction reduction = Reduction::mean;
};

/// torch.nn.BCEWithLogitsLoss on logits [N,C,spatial...]: per element
///   l = w_c (pw_c y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))) negated,
/// averaged over all N*C*S elements (mean). Labels: float targets of the logits' shape, or
/// index labels (one channel: the 0/1 mask itself; C channels: one-hot over them).
template <class B = Cpu>
class BinaryCrossEntropy {
 public:
  using backend = B;
  static constexpr std::string_view name = "loss::BinaryCrossEntropy";

  BinaryCrossEntropy() = default;
  explicit BinaryCrossEntropy(BinaryCrossEntropyOptions options) : options_(std::move(options)) {}

  template <LabelElement L>
  float forward(const Tensor<float, B>& logits, const Tensor<L, B>& labels);
  Tensor<float, B> backward() const;
  void backward_accumulate(const Tensor<float, B>& grad, float scale) const;

  const BinaryCrossEntropyOptions& options() const { return options_; }

 private:
  BinaryCrossEntropyOptions options_;
  detail::Extents e_;
  detail::Target<B> target_;
  Tensor<float, B> probs_;
  double denominator_ = 1;
  bool ready_ = false;
};

BinaryCrossEntropy() -> BinaryCrossEntropy<Cpu>;
BinaryCrossEntropy(BinaryCrossEntropyOptions) -> BinaryCrossEntropy<Cpu>;

namespace detail {

// -- The CPU kernels (the Cuda ones: backends/cuda/loss.hpp) ------------------------------

/// Softmax of `logits` into `probs` and per (sample, block) partial sums [N][blocks][2]:
/// index labels: sum w_y (lse - x_y) and sum w_y over the voxels not ignored; probability
/// labels: sum_c w_c t_c (lse - x_c) and 0. (w: `class_weights`, all 1 when empty.)
inline PartialSums cross_entropy_sums(const Tensor<float, Cpu>& logits, const Tensor<float, Cpu>& probs,
                                      const Target<Cpu>& target, const Extents& e,
                                      const std::vector<float>& class_weights);
/// grad += k * (index: w_y (p_c - [c == y]); probabilities: p_c sum_j w_j t_j - w_c t_c).
inline void cross_entropy_backward(const Tensor<float, Cpu>& probs, const Target<Cpu>& target,
                                   const std::vector<float>& class_weights, const Extents& e, float k,
                                   const Tensor<float, Cpu>& grad);
/// Sigmoid of `logits` into `probs` and per (sample and channel, block) partial sums
/// [N*C][blocks] of the element losses pw_c y softplus(-x) + (1 - y) softplus(x), before
/// class weights. (pw: `pos_weight`, all 1 when empty.)
inline PartialSums binary_cross_entropy_sums(const Tensor<float, Cpu>& logits, const Tensor<float, Cpu>& probs,
                                             const Tensor<float, Cpu>& target, const Extents& e,
                                             const std::vector<float>& pos_weight);
/// grad += k * w_c (pw_c y (sigmoid - 1) + (1 - y) sigmoid).
inline void binary_cross_entropy_backward(const Tensor<float, Cpu>& probs, const Tensor<float, Cpu>& target,
                                          const std::vector<float>& pos_weight,
                                          const std::vector<float>& class_weights, const Extents& e, float k,
                                          const Tensor<float, Cpu>& grad);

}  // namespace detail

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

/// Checks an optional per-channel vector (empty, or one value per channel).
inline void check_channel_vector(std::string_view loss, const char* field, const std::vector<float>& v,
                                 const Shape& logits) {
  require(v.empty() || static_cast<std::int64_t>(v.size()) == logits[1], [&] {
    return ErrorInfo{.where = std::string(loss), .field = field,
                     .expected = std::to_string(logits[1]) + " values (one per channel of logits " +
                                 logits.to_string() + ")",
                     .actual = std::to_string(v.size())};
  });
}

}  // namespace detail

template <class B>
template <LabelElement L>
float CrossEntropy<B>::forward(const Tensor<float, B>& logits, const Tensor<L, B>& labels) {
  ready_ = false;
  const auto e = detail::check_logits(name, logits);
  detail::check_channel_vector(name, "class_weights", options_.class_weights, logits.shape());
  target_ = detail::make_target(name, logits, labels, {.classes = e.c, .ignore = options_.ignore_index});
  e_ = e;
  const Tensor<float, B> x = logits.contiguous();
  if (!probs_.defined() || probs_.shape() != x.shape()) probs_ = Tensor<float, B>::empty(x.shape());
  const detail::PartialSums part = detail::cross_entropy_sums(x, probs_, target_, e, options_.class_weights);
  if (!part.finite) detail::throw_non_finite(name, logits);
  double loss = 0, wsum = 0;
  for (std::size_t i = 0; i < part.values.size(); i += 2) {
    loss += part.values[i];
    wsum += part.values[i + 1];
  }
  if (options_.reduction == Reduction::sum)
    denominator_ = 1;
  else if (target_.is_index())
    denominator_ = wsum;  // 0 only when every voxel is ignored (or weighs 0): loss 0, grad 0
  else
    denominator_ = double(e.n * e.s);
  const double value = denominator_ > 0 ? loss / denominator_ : 0.0;
  if (!std::isfinite(value)) detail::throw_non_finite(name, logits);
  ready_ = true;
  return static_cast<float>(value);
}

template <class B>
Tensor<float, B> CrossEntropy<B>::backward() const {
  detail::require_ready(name, ready_);
  auto grad = Tensor<float, B>::zeros(probs_.shape());
  backward_accumulate(grad, 1.0f);
  return grad;
}

template <class B>
void CrossEntropy<B>::backward_accumulate(const Tensor<float, B>& grad, float scale) const {
  detail::require_ready(name, ready_);
  detail::require_gradient_shape(name, grad, probs_.shape());
  if (denominator_ <= 0) return;
  const float k = static_cast<float>(scale / denominator_);
  detail::cross_entropy_backward(probs_, target_, options_.class_weights, e_, k, grad);
}

template <class B>
template <LabelElement L>
float BinaryCrossEntropy<B>::forward(const Tensor<float, B>& logits, const Tensor<L, B>& labels) {
  ready_ = false;
  const auto e = detail::check_logits(name, logits);
  detail::check_channel_vector(name, "pos_weight", options_.pos_weight, logits.shape());
  detail::check_channel_vector(name, "class_weights", options_.class_weights, logits.shape());
  target_ = detail::make_target(name, logits, labels, {.classes = e.c, .to_dense = true});
  e_ = e;
  const Tensor<float, B> x = logits.contiguous();
  if (!probs_.defined() || probs_.shape() != x.shape()) probs_ = Tensor<float, B>::empty(x.shape());
  const detail::PartialSums part = detail::binary_cross_entropy_sums(x, probs_, target_.dense, e, options_.pos_weight);
  if (!part.finite) detail::throw_non_finite(name, logits);
  const auto& cw = options_.class_weights;
  double loss = 0;
  for (std::size_t u = 0; u < part.values.size(); ++u) {
    const auto c = static_cast<std::size_t>((static_cast<std::int64_t>(u) / part.blocks) % e.c);
    loss += (cw.empty() ? 1.0 : cw[c]) * part.values[u];
  }
  denominator_ = options_.reduction == Reduction::sum ? 1.0 : double(x.numel());
  const double value = loss / denominator_;
  if (!std::isfinite(value)) detail::throw_non_finite(name, logits);
  ready_ = true;
  return static_cast<float>(value);
}

template <class B>
Tensor<float, B> BinaryCrossEntropy<B>::backward() const {
  detail::require_ready(name, ready_);
  auto grad = Tensor<float, B>::zeros(probs_.shape());
  backward_accumulate(grad, 1.0f);
  return grad;
}

template <class B>
void BinaryCrossEntropy<B>::backward_accumulate(const Tensor<float, B>& grad, float scale) const {
  detail::require_ready(name, ready_);
  detail::require_gradient_shape(name, grad, probs_.shape());
  const float k = static_cast<float>(scale / denominator_);
  detail::binary_cross_entropy_backward(probs_, target_.dense, options_.pos_weight, options_.class_weights, e_, k,
                                        grad);
}

namespace detail {

inline PartialSums cross_entropy_sums(const Tensor<float, Cpu>& logits, const Tensor<float, Cpu>& probs,
                                      const Target<Cpu>& target, const Extents& e,
                                      const std::vector<float>& class_weights) {
  auto lse = Tensor<float, Cpu>::empty({e.n * e.s});
  if (!softmax_channels(logits.data(), probs.data(), e, lse.data())) return {.finite = false};
  const auto& w = class_weights;
  auto weight = [&](std::int64_t c) { return w.empty() ? 1.0 : double(w[static_cast<std::size_t>(c)]); };
  const std::int64_t blocks = block_count(e.s);
  PartialSums part{.values = std::vector<double>(static_cast<std::size_t>(e.n * blocks * 2), 0.0), .blocks = blocks};
  parallel_for(0, e.n * blocks, 1, [&](std::int64_t u0, std::int64_t u1) {
    for (std::int64_t u = u0; u < u1; ++u) {
      const std::int64_t n = u / blocks, s0 = (u % blocks) * block_size;
      const std::int64_t m = std::min(block_size, e.s - s0);
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

inline void cross_entropy_backward(const Tensor<float, Cpu>& probs, const Target<Cpu>& target,
                                   const std::vector<float>& class_weights, const Extents& e, float k,
                                   const Tensor<float, Cpu>& grad) {
  const auto& w = class_weights;
  const std::int64_t blocks = block_count(e.s);
  parallel_for(0, e.n * blocks, 1, [&](std::int64_t u0, std::int64_t u1) {
    float tw[block_size];  // index labels: w_y; soft labels: sum_c w_c t_c
    for (std::int64_t u = u0; u < u1; ++u) {
      const std::int64_t n = u / blocks, s0 = (u % blocks) * block_size;
      const std::int64_t m = std::min(block_size, e.s - s0);
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

inline PartialSums binary_cross_entropy_sums(const Tensor<float, Cpu>& logits, const Tensor<float, Cpu>& probs,
                                             const Tensor<float, Cpu>& target, const Extents& e,
                                             const std::vector<float>& pos_weight) {
  const auto& pw = pos_weight;
  const std::int64_t blocks = block_count(e.s);
  PartialSums part{.values = std::vector<double>(static_cast<std::size_t>(e.n * e.c * blocks), 0.0), .blocks = blocks};
  std::atomic<bool> finite{true};
  parallel_for(0, e.n * e.c * blocks, 1, [&](std::int64_t u0, std::int64_t u1) {
    float terms[block_size];
    for (std::int64_t u = u0; u < u1; ++u) {
      const std::int64_t nc = u / blocks, c = nc % e.c, s0 = (u % blocks) * block_size;
      const std::int64_t m = std::min(block_size, e.s - s0);
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
                                          const std::vector<float>& class_weights, const Extents& e, float k,
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

}  // namespace detail

static_assert(Loss<CrossEntropy<Cpu>>);
static_assert(Loss<BinaryCrossEntropy<Cpu>>);

}  // namespace medseg::loss
