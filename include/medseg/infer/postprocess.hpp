// Post-processing of a predicted label map: keep only the largest connected component of
// chosen classes (nnU-Net's "remove all but the largest component", per label or for the
// foreground as a whole). The component labelling is preprocess/labels.hpp's; this header
// only decides which classes it applies to.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor.hpp"
#include "../preprocess/labels.hpp"

namespace medseg::infer {

using preprocess::Connectivity;

struct PostprocessOptions {
  /// Classes reduced to their largest component; the others are left as predicted.
  std::vector<int> largest_component_classes{};
  /// First, all foreground classes together reduced to their largest component (nnU-Net's
  /// foreground-as-one-region step); voxels outside it become background.
  bool largest_foreground_component = false;
  Connectivity connectivity = Connectivity::full;  // nnU-Net labels with full connectivity
};

/// `labels` ([D,H,W]) post-processed as `options` says; a copy, the input is unchanged.
///   auto clean = infer::postprocess(infer::argmax(probs), {.largest_component_classes = {1, 2}});
template <class L>
Tensor<L, Cpu> postprocess(const Tensor<L, Cpu>& labels, const PostprocessOptions& options);

// ----------------------------------------------------------------------------------------
// Implementation

template <class L>
Tensor<L, Cpu> postprocess(const Tensor<L, Cpu>& labels, const PostprocessOptions& options) {
  require(labels.defined() && labels.rank() == 3, [&] {
    return ErrorInfo{.where = "infer::postprocess", .field = "labels", .expected = "a [D,H,W] label map",
                     .actual = labels.defined() ? labels.shape().to_string() : "an undefined tensor"};
  });
  for (int c : options.largest_component_classes)
    require(c >= 1, [&] {
      return ErrorInfo{.where = "infer::postprocess", .field = "largest_component_classes",
                       .expected = "foreground classes (>= 1)", .actual = str(c)};
    });
  Tensor<L, Cpu> out = labels.contiguous().clone();
  if (options.largest_foreground_component)
    out = preprocess::keep_largest_component(out, options.connectivity, preprocess::ComponentsOf::foreground);
  if (options.largest_component_classes.empty()) return out;

  // The chosen classes alone, reduced per label, then merged back over the others.
  auto chosen = [&](L v) {
    const auto& cs = options.largest_component_classes;
    return std::find(cs.begin(), cs.end(), static_cast<int>(v)) != cs.end();
  };
  auto only_chosen = Tensor<L, Cpu>::empty(out.shape());
  parallel_for(0, out.numel(), 1 << 15, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) only_chosen.data()[i] = chosen(out.data()[i]) ? out.data()[i] : L(0);
  });
  const auto kept = preprocess::keep_largest_component(only_chosen, options.connectivity,
                                                       preprocess::ComponentsOf::each_label);
  parallel_for(0, out.numel(), 1 << 15, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i)
      if (chosen(out.data()[i])) out.data()[i] = kept.data()[i];
  });
  return out;
}

}  // namespace medseg::infer
