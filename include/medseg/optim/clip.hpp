// Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_: one norm over every
// gradient of the network, and all gradients scaled by the same factor when it exceeds the
// limit, so the update's direction is kept (nnU-Net clips at 12). On the CPU or the GPU (the
// Cuda kernels: backends/cuda/optim.hpp), where the norm is reduced on the device and one
// number comes back.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../nn/parameter.hpp"
#include "optimizer.hpp"

namespace medseg::optim {

struct ClipOptions {
  /// Order of the norm: 2 (Euclidean, PyTorch's default), any p > 0, or infinity (max |g|).
  double norm_type = 2.0;
  /// Throw when the total norm is NaN or infinite instead of scaling by it.
  bool error_if_nonfinite = false;
};

/// Scales every gradient by min(1, max_norm / (total + 1e-6)) where total is the norm of
/// all gradients together; returns total (before clipping). The sum is taken over
/// fixed chunks in a fixed order, so the result does not depend on the thread count.
///
///   double norm = optim::clip_grad_norm(params, 12.0);
template <class B>
double clip_grad_norm(const nn::ParameterList<B>& params, double max_norm, ClipOptions options = {});

namespace detail {
/// Sum over every gradient element of |g|^norm_type (g^2 for 2), or for an infinite norm_type
/// the largest |g| (NaN when any g is NaN): the norm before its root. Per-chunk partials are
/// combined in chunk order.
inline double gradient_norm_total(const FusedTable<Cpu>& table, double norm_type);
/// g *= factor for every gradient of the table.
inline void scale_gradients(const FusedTable<Cpu>& table, float factor);
}  // namespace detail

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {
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

inline double gradient_norm_total(const FusedTable<Cpu>& table, double norm_type) {
  const double q = norm_type;
  const bool inf = std::isinf(q);
  const auto& chunks = table.host_chunks();
  const auto& tensors = table.host_tensors();
  std::vector<double> part(chunks.size(), 0.0);
  parallel_for(0, static_cast<std::int64_t>(chunks.size()), 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t k = b; k < e; ++k) {
      const auto& c = chunks[static_cast<std::size_t>(k)];
      const float* g = tensors[c.param].grad;
      double acc = 0;
      if (inf)
        for (std::int64_t i = c.begin; i < c.end; ++i) acc = std::max(acc, double(std::abs(g[i])));
      else if (q == 2.0)
        acc = sum_of_squares(g + c.begin, c.end - c.begin);
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
  const auto& tensors = table.host_tensors();
  for_each_chunk(table.host_chunks(), [&](const Chunk& c) {
    float* g = tensors[c.param].grad;
    for (std::int64_t i = c.begin; i < c.end; ++i) g[i] *= factor;
  });
}
}  // namespace detail

template <class B>
double clip_grad_norm(const nn::ParameterList<B>& params, double max_norm, ClipOptions options) {
  static constexpr const char* where = "optim::clip_grad_norm";
  detail::require_option(max_norm >= 0, where, "max_norm", ">= 0", max_norm);
  const double q = options.norm_type;
  const bool inf = std::isinf(q);
  detail::require_option(q > 0 && !std::isnan(q), where, "norm_type", "> 0 or infinity", q);
  detail::FusedTable<B> table;
  table.refresh(detail::fused_tensors(params, {}), detail::plan_chunks(where, params));
  double total = detail::gradient_norm_total(table, q);
  if (!inf) total = q == 2.0 ? std::sqrt(total) : std::pow(total, 1.0 / q);
  if (options.error_if_nonfinite && !std::isfinite(total)) {
    // Name the first parameter whose gradient is at fault: that is where to look.
    std::string culprit = "?";
    for (const auto& p : params) {
      const std::vector<float> g = p.grad.to_vector();
      if (std::any_of(g.begin(), g.end(), [](float v) { return !std::isfinite(v); })) {
        culprit = p.path;
        break;
      }
    }
    throw Error{{.where = where, .field = "total gradient norm", .expected = "finite",
                 .actual = str(total, " (first non-finite gradient: \"", culprit, "\")"),
                 .detail = "set error_if_nonfinite = false to scale by it anyway"}};
  }
  const double coef = max_norm / (total + 1e-6);
  // PyTorch clamps the factor at 1 and always multiplies; a factor of 1 changes nothing, and
  // a NaN factor (NaN norm) must poison the gradients as it does there.
  if (!(coef < 1.0) && !std::isnan(coef)) return total;
  detail::scale_gradients(table, static_cast<float>(coef));
  return total;
}

}  // namespace medseg::optim
