// Hard overlap metrics from label maps: per-class Dice and IoU (Jaccard) of an argmax
// prediction against a reference, from one threaded pass that counts true positives, false
// positives and false negatives of every class. What a class that is absent from the
// reference scores is a convention that differs between nnU-Net and MONAI, so it is an option.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor.hpp"

namespace medseg::metrics {

/// What Dice and IoU are for a class the reference does not contain.
enum class EmptyClass {
  /// nnU-Net (evaluation/evaluate_predictions.py): NaN when reference and prediction are both
  /// empty (tp + fp + fn == 0), ignored by the mean; a prediction of an absent class scores 0.
  nnunet,
  /// MONAI DiceMetric / MeanIoU with ignore_empty=True (their default): NaN whenever the
  /// reference is empty, even if the prediction is not (false positives go unscored).
  monai_ignore_empty,
  /// MONAI with ignore_empty=False: 1 when both are empty, 0 when only the reference is.
  monai_count_empty,
};

/// Voxel counts of one class: prediction == c and reference == c (tp), prediction only (fp),
/// reference only (fn).
struct ClassCounts {
  std::int64_t tp = 0, fp = 0, fn = 0;
  std::int64_t reference() const { return tp + fn; }
  std::int64_t prediction() const { return tp + fp; }
};

/// Counts of classes 0..num_classes-1 of `prediction` against `reference`: integer label maps
/// of the same shape (any rank, any layout), every label in [0, num_classes).
/// Throws Error naming the field when shapes differ or a label is out of range.
template <std::integral L, std::integral R>
std::vector<ClassCounts> class_counts(const Tensor<L, Cpu>& prediction, const Tensor<R, Cpu>& reference,
                                      int num_classes);

/// 2 tp / (2 tp + fp + fn), or the `empty` convention's value when the reference is empty.
double dice(const ClassCounts& counts, EmptyClass empty = EmptyClass::nnunet);
/// tp / (tp + fp + fn), with the same conventions as dice.
double iou(const ClassCounts& counts, EmptyClass empty = EmptyClass::nnunet);

/// Per-class Dice, index = class (background 0 included; callers skip it for a foreground mean).
///   auto d = metrics::dice_per_class(pred, ref, 3);     // {dice_bg, dice_1, dice_2}
template <std::integral L, std::integral R>
std::vector<double> dice_per_class(const Tensor<L, Cpu>& prediction, const Tensor<R, Cpu>& reference, int num_classes,
                                   EmptyClass empty = EmptyClass::nnunet);
template <std::integral L, std::integral R>
std::vector<double> iou_per_class(const Tensor<L, Cpu>& prediction, const Tensor<R, Cpu>& reference, int num_classes,
                                  EmptyClass empty = EmptyClass::nnunet);

/// Mean of the values that are not NaN (nnU-Net's np.nanmean); NaN when all are.
double nan_mean(const std::vector<double>& values);

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

template <class T>
std::string shape_text(const Tensor<T, Cpu>& t) {
  return t.defined() ? t.shape().to_string() : std::string("an undefined tensor");
}

/// Every label of `labels` (contiguous) in [0, num_classes), or an Error naming the first
/// offender. Checked once up front so the counting loop has no branches on bad input.
template <std::integral L>
void check_label_range(const Tensor<L, Cpu>& labels, int num_classes, const char* where, const char* field) {
  std::int64_t bad_index = -1;
  std::mutex m;
  parallel_for(0, labels.numel(), 1 << 16, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) {
      const L v = labels.data()[i];
      if (std::cmp_less(v, 0) || std::cmp_greater_equal(v, num_classes)) {
        std::lock_guard lock(m);
        if (bad_index < 0 || i < bad_index) bad_index = i;
        return;
      }
    }
  });
  require(bad_index < 0, [&] {
    return ErrorInfo{.where = where, .field = field,
                     .expected = "labels in [0, " + std::to_string(num_classes) + ")",
                     .actual = str(+labels.data()[bad_index], " at flat index ", bad_index)};
  });
}

inline void check_num_classes(int num_classes, const char* where) {
  require(num_classes >= 1 && num_classes <= (1 << 16), [&] {
    return ErrorInfo{.where = where, .field = "num_classes", .expected = "1 to 65536", .actual = str(num_classes)};
  });
}

}  // namespace detail

template <std::integral L, std::integral R>
std::vector<ClassCounts> class_counts(const Tensor<L, Cpu>& prediction, const Tensor<R, Cpu>& reference,
                                      int num_classes) {
  constexpr const char* where = "metrics::class_counts";
  detail::check_num_classes(num_classes, where);
  require(prediction.defined() && reference.defined() && prediction.shape() == reference.shape(), [&] {
    return ErrorInfo{.where = where, .field = "prediction shape",
                     .expected = "the reference's shape " + detail::shape_text(reference),
                     .actual = detail::shape_text(prediction)};
  });
  const Tensor<L, Cpu> p = prediction.contiguous();
  const Tensor<R, Cpu> r = reference.contiguous();
  detail::check_label_range(p, num_classes, where, "prediction");
  detail::check_label_range(r, num_classes, where, "reference");

  // Per chunk a confusion diagonal plus per-class totals; integer sums, so the result does
  // not depend on the chunking.
  const auto K = static_cast<std::size_t>(num_classes);
  std::vector<std::int64_t> tp(K, 0), pred_total(K, 0), ref_total(K, 0);
  std::mutex m;
  parallel_for(0, p.numel(), 1 << 16, [&](std::int64_t b, std::int64_t e) {
    std::vector<std::int64_t> t(K, 0), pt(K, 0), rt(K, 0);
    for (std::int64_t i = b; i < e; ++i) {
      const auto a = static_cast<std::size_t>(p.data()[i]);
      const auto g = static_cast<std::size_t>(r.data()[i]);
      ++pt[a];
      ++rt[g];
      t[a] += a == g;
    }
    std::lock_guard lock(m);
    for (std::size_t c = 0; c < K; ++c) {
      tp[c] += t[c];
      pred_total[c] += pt[c];
      ref_total[c] += rt[c];
    }
  });
  std::vector<ClassCounts> out(K);
  for (std::size_t c = 0; c < K; ++c) out[c] = {tp[c], pred_total[c] - tp[c], ref_total[c] - tp[c]};
  return out;
}

namespace detail {

/// The value of an empty-reference class under `empty`, or nothing to override (-1).
inline double empty_reference_value(const ClassCounts& n, EmptyClass empty) {
  constexpr double nan = std::numeric_limits<double>::quiet_NaN();
  if (n.reference() > 0) return -1;
  switch (empty) {
    case EmptyClass::nnunet: return n.prediction() == 0 ? nan : -1;
    case EmptyClass::monai_ignore_empty: return nan;
    case EmptyClass::monai_count_empty: return n.prediction() == 0 ? 1.0 : 0.0;
  }
  return -1;
}

}  // namespace detail

inline double dice(const ClassCounts& n, EmptyClass empty) {
  if (const double v = detail::empty_reference_value(n, empty); v != -1) return v;
  return 2.0 * static_cast<double>(n.tp) / static_cast<double>(2 * n.tp + n.fp + n.fn);
}

inline double iou(const ClassCounts& n, EmptyClass empty) {
  if (const double v = detail::empty_reference_value(n, empty); v != -1) return v;
  return static_cast<double>(n.tp) / static_cast<double>(n.tp + n.fp + n.fn);
}

template <std::integral L, std::integral R>
std::vector<double> dice_per_class(const Tensor<L, Cpu>& prediction, const Tensor<R, Cpu>& reference, int num_classes,
                                   EmptyClass empty) {
  std::vector<double> out;
  for (const auto& n : class_counts(prediction, reference, num_classes)) out.push_back(dice(n, empty));
  return out;
}

template <std::integral L, std::integral R>
std::vector<double> iou_per_class(const Tensor<L, Cpu>& prediction, const Tensor<R, Cpu>& reference, int num_classes,
                                  EmptyClass empty) {
  std::vector<double> out;
  for (const auto& n : class_counts(prediction, reference, num_classes)) out.push_back(iou(n, empty));
  return out;
}

inline double nan_mean(const std::vector<double>& values) {
  double sum = 0;
  int n = 0;
  for (double v : values)
    if (!std::isnan(v)) {
      sum += v;
      ++n;
    }
  return n ? sum / n : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace medseg::metrics
