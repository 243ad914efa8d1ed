// The Cuda overloads of this folder's ops that the per-case steps (pipeline.hpp) call,
// declared here and defined in backends/cuda/preprocess.hpp. Why declared apart: the steps
// are templates on the case's backend, and a template finds an overload by ordinary lookup
// only where it is defined. Without these declarations a device case would reach the generic
// `template <class T, class B>` CPU versions, whose static_assert rejects a device tensor.
// Needs no CUDA header: only the Cuda tag. The default arguments live here, not on the
// definitions.
#pragma once

#include <optional>
#include <type_traits>

#include "../core/fwd.hpp"
#include "../core/tensor.hpp"
#include "crop.hpp"
#include "intensity.hpp"
#include "labels.hpp"
#include "resample.hpp"
#include "segmentation_resample.hpp"

namespace medseg::preprocess {

template <class T>
Tensor<float, Cuda> hu_window(const Tensor<T, Cuda>& x, const HuWindow& window);
template <class T>
Tensor<float, Cuda> normalize_range(const Tensor<T, Cuda>& x, std::optional<float> lo = {}, std::optional<float> hi = {});
template <class T>
Tensor<float, Cuda> clip_minmax(const Tensor<T, Cuda>& x, float lo, float hi);
template <class T>
Tensor<float, Cuda> zscore(const Tensor<T, Cuda>& x, const Moments& stats);
template <class T>
Tensor<float, Cuda> zscore(const Tensor<T, Cuda>& x, bool nonzero_only = false);
template <class T>
Tensor<float, Cuda> ct_normalize(const Tensor<T, Cuda>& x, const CtStats& stats);
template <Element Out = float, Element T>
Tensor<Out, Cuda> resize(const Tensor<T, Cuda>& x, const Extent3& shape, const ResampleOptions& options = {});
template <Element Out = float, Element T>
Tensor<Out, Cuda> resize(const Tensor<T, Cuda>& x, const Extent3& shape, const ResampleOptions& options,
                         const HuWindow& window);
template <class T>
Box nonzero_box(const Tensor<T, Cuda>& x, T background = T(0));
template <class T>
Tensor<T, Cuda> crop(const Tensor<T, Cuda>& x, const Box& box);
template <class L>
Tensor<L, Cuda> remap_labels(const Tensor<L, Cuda>& seg, const LabelMapping<L>& mapping,
                             std::optional<std::type_identity_t<L>> unmapped = {});
template <class L>
Tensor<L, Cuda> resample_segmentation(const Tensor<L, Cuda>& seg, const Extent3& shape,
                                      const SegmentationResampleOptions& options = {}, int axis = -1);

}  // namespace medseg::preprocess
