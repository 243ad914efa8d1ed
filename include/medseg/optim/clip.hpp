// Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_: one norm over every
// gradient of the network, and all gradients scaled by the same factor when it exceeds the
// limit, so the update's direction is kept (nnU-Net clips at 12). On the CPU or the GPU
// (ops::gradient_norm_total and ops::scale_gradients: backends/cpu/optim.hpp,
// backends/cuda/optim.hpp; on the GPU the norm is reduced on the device and one number comes
// back).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "../core/error.hpp"
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

// ----------------------------------------------------------------------------------------
// Implementation

template <class B>
double clip_grad_norm(const nn::ParameterList<B>& params, double max_norm, ClipOptions options) {
  static constexpr const char* where = "optim::clip_grad_norm";
  detail::require_option(max_norm >= 0, where, "max_norm", ">= 0", max_norm);
  const double q = options.norm_type;
  const bool inf = std::isinf(q);
  detail::require_option(q > 0 && !std::isnan(q), where, "norm_type", "> 0 or infinity", q);
  ops::FusedTable<B> table;
  table.refresh(detail::fused_tensors(params, {}), detail::plan_chunks(where, params));
  double total = ops::gradient_norm_total(table, q);
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
  ops::scale_gradients(table, static_cast<float>(coef));
  return total;
}

}  // namespace medseg::optim
