// MedicalSeg's soft Dice: the per-channel Dice of softmax probabilities against one-hot
// labels that its DiceLoss returns next to the loss, and that its validation averages (with
// the background class) into the mDice of its published tables. Reported beside the hard
// Dice so our numbers compare with MedicalSeg's.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor.hpp"
#include "overlap.hpp"

namespace medseg::metrics {

/// Per class c (background included), summed over the batch and all voxels:
///   soft_dice_c = 2 sum(p_c g_c) / max(sum(p_c^2) + sum(g_c^2), epsilon)
/// with g the one-hot labels (medicalseg/models/losses/dice_loss.py, compute_per_channel_dice,
/// called with its default epsilon 1e-6). MedicalSeg's mDice is the plain mean of these.
/// probabilities: [K,D,H,W] or [N,K,D,H,W] (already through the softmax);
/// labels: [D,H,W], [N,D,H,W] or [N,1,D,H,W] of classes in [0, K).
///   auto sd = metrics::soft_dice_per_class(probs, labels);   // K values
template <std::integral L>
std::vector<double> soft_dice_per_class(const Tensor<float, Cpu>& probabilities, const Tensor<L, Cpu>& labels,
                                        double epsilon = 1e-6);

// ----------------------------------------------------------------------------------------
// Implementation

template <std::integral L>
std::vector<double> soft_dice_per_class(const Tensor<float, Cpu>& probabilities, const Tensor<L, Cpu>& labels,
                                        double epsilon) {
  constexpr const char* where = "metrics::soft_dice_per_class";
  require(probabilities.defined() && (probabilities.rank() == 4 || probabilities.rank() == 5), [&] {
    return ErrorInfo{.where = where, .field = "probabilities", .expected = "[K,D,H,W] or [N,K,D,H,W]",
                     .actual = detail::shape_text(probabilities)};
  });
  const Tensor<float, Cpu> prob = probabilities.contiguous();
  const int s0 = prob.rank() - 4;  // axis of K
  const std::int64_t N = s0 ? prob.size(0) : 1, K = prob.size(s0);
  const Shape spatial{prob.size(s0 + 1), prob.size(s0 + 2), prob.size(s0 + 3)};
  const std::int64_t S = spatial.product();
  // The label shapes that mean "one class index per voxel of each sample".
  const bool label_shape_ok =
      labels.defined() &&
      (labels.shape() == spatial || labels.shape() == Shape{N, spatial[0], spatial[1], spatial[2]} ||
       labels.shape() == Shape{N, 1, spatial[0], spatial[1], spatial[2]});
  require(label_shape_ok, [&] {
    return ErrorInfo{.where = where, .field = "labels",
                     .expected = "N x " + spatial.to_string() + " class indices (N = " + std::to_string(N) + ")",
                     .actual = detail::shape_text(labels)};
  });
  require(labels.numel() == N * S, [&] {
    return ErrorInfo{.where = where, .field = "labels", .expected = str(N * S, " voxels"),
                     .actual = str(labels.numel(), " (a single map needs N = 1)")};
  });
  detail::check_num_classes(static_cast<int>(K), where);
  const Tensor<L, Cpu> lab = labels.contiguous();
  detail::check_label_range(lab, static_cast<int>(K), where, "labels");

  // Fixed blocks, summed in block order afterwards: the result does not depend on threads.
  constexpr std::int64_t block = 1 << 14;
  const std::int64_t blocks_per_sample = (S + block - 1) / block;
  const std::int64_t blocks = N * blocks_per_sample;
  const auto Ku = static_cast<std::size_t>(K);
  std::vector<double> inter(static_cast<std::size_t>(blocks) * Ku, 0.0), p2(inter.size(), 0.0);
  std::vector<std::int64_t> g(inter.size(), 0);
  parallel_for(0, blocks, 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t blk = b; blk < e; ++blk) {
      const std::int64_t n = blk / blocks_per_sample;
      const std::int64_t s_begin = (blk % blocks_per_sample) * block, s_end = std::min(S, s_begin + block);
      const L* y = lab.data() + n * S;
      double* in = inter.data() + static_cast<std::size_t>(blk) * Ku;
      double* sq = p2.data() + static_cast<std::size_t>(blk) * Ku;
      std::int64_t* gc = g.data() + static_cast<std::size_t>(blk) * Ku;
      for (std::int64_t k = 0; k < K; ++k) {
        const float* p = prob.data() + (n * K + k) * S;
        double acc = 0;
        for (std::int64_t s = s_begin; s < s_end; ++s) acc += static_cast<double>(p[s]) * p[s];
        sq[k] = acc;
      }
      for (std::int64_t s = s_begin; s < s_end; ++s) {
        const auto c = static_cast<std::int64_t>(y[s]);
        in[c] += prob.data()[(n * K + c) * S + s];
        ++gc[c];
      }
    }
  });
  std::vector<double> out(Ku);
  for (std::size_t c = 0; c < Ku; ++c) {
    double I = 0, P = 0, G = 0;
    for (std::int64_t blk = 0; blk < blocks; ++blk) {
      I += inter[static_cast<std::size_t>(blk) * Ku + c];
      P += p2[static_cast<std::size_t>(blk) * Ku + c];
      G += static_cast<double>(g[static_cast<std::size_t>(blk) * Ku + c]);
    }
    out[c] = 2.0 * I / std::max(P + G, epsilon);
  }
  return out;
}

}  // namespace medseg::metrics
