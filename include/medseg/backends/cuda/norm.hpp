// The Cuda backend's normalisation kernels: the ops of backends/cpu/norm.hpp (which defines the
// NormSets layouts of every norm layer) on device tensors. Statistics stay on the device:
// normalize_forward returns them as device tensors (CudaNormStats, the layers' norm_stats_t<Cuda>),
// and the running averages of BatchNorm/InstanceNorm are updated by a kernel, so a norm layer
// never waits for the host. Reductions have a fixed shape and order: results are the same run
// to run. Definitions in src/backends/cuda/norm.cu.
#pragma once

#include <vector>

#include "../cpu/norm.hpp"
#include "backend.hpp"

namespace medseg::ops {

/// normalize_forward's statistics on the device: the mean and the biased variance, [sets] each.
struct CudaNormStats {
  Tensor<float, Cuda> mean, var;
};
template <>
struct norm_stats<Cuda> {
  using type = CudaNormStats;
};

/// y = (x - mean) / sqrt(var + eps) * gamma + beta per set of `sets`; gamma/beta are device
/// pointers, or null (no affine). x and y contiguous with equal shapes; the layout must lie
/// inside x. An undefined y computes the statistics alone (a caller that fuses the map).
CudaNormStats normalize_forward(const NormSets& sets, const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& y,
                                const float* gamma, const float* beta, double eps);

/// dx from dy through the normalisation, and, when dgamma/dbeta (device pointers) are not null,
/// their accumulation (+=) of sum(dy * xhat) and sum(dy) per affine channel.
void normalize_backward(const NormSets& sets, const CudaNormStats& stats, double eps, const Tensor<float, Cuda>& x,
                        const Tensor<float, Cuda>& dy, const Tensor<float, Cuda>& dx, const float* gamma,
                        float* dgamma, float* dbeta);

/// The per-set map y = x * scale + shift of a forward with these statistics (BatchNorm: a set
/// per channel), for a caller that fuses it into its next op; gamma/beta device pointers or
/// null, scale and shift [sets] on the device. As the CPU op, within float rounding.
void norm_factors(const CudaNormStats& stats, const float* gamma, const float* beta, double eps,
                  const Tensor<float, Cuda>& scale, const Tensor<float, Cuda>& shift);

/// The same map from running statistics [C] (eval mode): normalize_with_running_stats's.
void running_norm_factors(const Tensor<float, Cuda>& running_mean, const Tensor<float, Cuda>& running_var,
                          const float* gamma, const float* beta, double eps, const Tensor<float, Cuda>& scale,
                          const Tensor<float, Cuda>& shift);

/// y[n,c,s] = x[n,c,s] * scale[c] + shift[c] over [N, C, S], the factors on the host (copied,
/// C values) or, in the second form, on the device ([C] each).
void channel_affine(const Tensor<float, Cuda>& x, const std::vector<float>& scale, const std::vector<float>& shift,
                    const Tensor<float, Cuda>& y);
void channel_affine(const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& scale, const Tensor<float, Cuda>& shift,
                    const Tensor<float, Cuda>& y);

/// Eval mode with running statistics ([C] device tensors): as the CPU op, factors computed on
/// the device.
void normalize_with_running_stats(const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& running_mean,
                                  const Tensor<float, Cuda>& running_var, const float* gamma, const float* beta,
                                  double eps, const Tensor<float, Cuda>& y);

/// PyTorch's running averages from a training forward's statistics, as the CPU op, in one
/// kernel; num_batches_tracked (a device scalar) gains 1 when not null.
void update_running_stats(const CudaNormStats& stats, double momentum, double unbias,
                          const Tensor<float, Cuda>& running_mean, const Tensor<float, Cuda>& running_var,
                          const Tensor<float, Cuda>* num_batches_tracked);

}  // namespace medseg::ops
