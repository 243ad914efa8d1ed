// The labels a loss is given, checked against the logits once and brought to one of two
// forms the kernels read: class indices (int32, one per voxel) or a dense float target with
// the logits' shape (one-hot maps, soft labels, binary masks). Every loss goes through here,
// so every loss accepts the same label tensors and reports bad ones the same way, on either
// backend: the checks and messages are shared; the scans and conversions are backend kernels
// (ops::first_invalid_label and the like, one overload per backend, reached through
// backends/ops.hpp).
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include "../backends/loss.hpp"
#include "../backends/ops.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"

namespace medseg::loss {

/// Element types accepted as labels: integers are class indices, float is a dense target
/// (one-hot or probabilities) with the logits' shape.
template <class L>
concept LabelElement = (std::integral<L> && !std::same_as<L, bool>) || std::same_as<L, float>;

namespace detail {

/// How index labels are read.
struct IndexRule {
  /// Labels must lie in [0, classes); `ignore` (when set) is also accepted and kept as is.
  std::int64_t classes = 0;
  std::optional<std::int64_t> ignore{};
  /// Turn the indices into a dense one-hot target over the C channels. With a single channel
  /// (a sigmoid on one foreground map) the label value itself is the target, 0 or 1.
  bool to_dense = false;
};

/// Checks logits [N,C,spatial...] (rank >= 2, contiguous, finite checked later by the kernels).
template <class B>
ops::LossExtents check_logits(std::string_view loss, const Tensor<float, B>& logits);

/// Checks `labels` against `logits` and returns the target form. Accepted shapes: index
/// labels [N,1,spatial...] or [N,spatial...]; dense float labels with the logits' exact shape.
template <LabelElement L, class B>
ops::LossTarget<B> make_target(std::string_view loss, const Tensor<float, B>& logits, const Tensor<L, B>& labels,
                               const IndexRule& rule);

/// Raises the loss's error for the first non-finite logit. Kernels detect trouble cheaply
/// (a flag, a non-finite sum) and call this only then, so the scan costs nothing normally;
/// device logits are copied to the host for it.
template <class B>
[[noreturn]] void throw_non_finite(std::string_view loss, const Tensor<float, B>& logits);

/// Throws when backward comes before a successful forward.
inline void require_ready(std::string_view loss, bool ready) {
  require(ready, [&] {
    return ErrorInfo{.where = std::string(loss), .field = "backward", .expected = "a forward call first",
                     .actual = "no forward since construction or since a failed forward"};
  });
}

template <class B>
void require_gradient_shape(std::string_view loss, const Tensor<float, B>& grad, const Shape& shape) {
  require(grad.shape() == shape && grad.is_contiguous(), [&] {
    return ErrorInfo{.where = std::string(loss), .field = "gradient", .expected = "contiguous " + shape.to_string(),
                     .actual = grad.layout().to_string()};
  });
}

// ----------------------------------------------------------------------------------------
// Implementation

/// Element i of a contiguous tensor on any backend, read to the host (for error messages).
template <class T, class B>
T element_at(const Tensor<T, B>& t, std::int64_t i) {
  return t.flatten().slice(0, i, i + 1).to_vector()[0];
}

template <class B>
ops::LossExtents check_logits(std::string_view loss, const Tensor<float, B>& logits) {
  require(logits.defined() && logits.rank() >= 2, [&] {
    return ErrorInfo{.where = std::string(loss), .field = "logits shape", .expected = "[N,C,spatial...] (rank >= 2)",
                     .actual = logits.defined() ? logits.shape().to_string() : "an undefined tensor"};
  });
  require(logits.size(1) >= 1 && logits.size(0) >= 1, [&] {
    return ErrorInfo{.where = std::string(loss), .field = "logits shape", .expected = "at least one sample and one class",
                     .actual = logits.shape().to_string()};
  });
  ops::LossExtents e{logits.size(0), logits.size(1), 0};
  e.s = logits.numel() / (e.n * e.c);
  return e;
}

template <LabelElement L, class B>
ops::LossTarget<B> make_target(std::string_view loss, const Tensor<float, B>& logits, const Tensor<L, B>& labels,
                               const IndexRule& rule) {
  const ops::LossExtents e = check_logits(loss, logits);
  const std::string where(loss);
  require(labels.defined(), [&] {
    return ErrorInfo{.where = where, .field = "labels", .expected = "a defined tensor", .actual = "an undefined tensor"};
  });
  ops::LossTarget<B> t;
  if constexpr (std::same_as<L, float>) {
    require(labels.shape() == logits.shape(), [&] {
      return ErrorInfo{.where = where, .field = "labels shape",
                       .expected = "float (one-hot) labels of the logits' shape " + logits.shape().to_string(),
                       .actual = labels.shape().to_string(),
                       .detail = "pass class indices as an integer tensor [N,1,spatial...] or [N,spatial...]"};
    });
    t.dense = labels.contiguous();
    // Soft labels must be finite and in [0, 1]; a NaN here would silently poison the loss.
    const std::int64_t bad = ops::first_outside_unit_interval(t.dense);
    require(bad < 0, [&] {
      return ErrorInfo{.where = where, .field = "labels", .expected = "one-hot or probability values in [0, 1]",
                       .actual = str(element_at(t.dense, bad), " at flat index ", bad, " of ", labels.shape().to_string())};
    });
    return t;
  } else {
    // Index labels: the channel axis is either 1 or absent.
    const Shape& ls = labels.shape();
    const Shape& xs = logits.shape();
    Shape spatial_x;
    for (int i = 2; i < xs.rank(); ++i) spatial_x.push_back(xs[i]);
    Shape spatial_l;
    bool shape_ok = ls.rank() >= 1 && ls[0] == xs[0];
    if (shape_ok && ls.rank() == xs.rank()) {
      shape_ok = ls[1] == 1;
      for (int i = 2; i < ls.rank(); ++i) spatial_l.push_back(ls[i]);
    } else if (shape_ok && ls.rank() == xs.rank() - 1) {
      for (int i = 1; i < ls.rank(); ++i) spatial_l.push_back(ls[i]);
    } else {
      shape_ok = false;
    }
    shape_ok = shape_ok && spatial_l == spatial_x;
    require(shape_ok, [&] {
      Shape with_channel = xs;
      with_channel[1] = 1;
      return ErrorInfo{.where = where, .field = "labels shape",
                       .expected = "index labels " + with_channel.to_string() + " or " + xs.erase(1).to_string() +
                                   " for logits " + xs.to_string(),
                       .actual = ls.to_string()};
    });
    const Tensor<L, B> src = labels.contiguous();
    const std::int64_t classes = rule.to_dense && e.c == 1 ? 2 : rule.classes;
    // Range check first, in one pass, so the message can name the first bad label.
    const std::int64_t bad = ops::first_invalid_label(src, classes, rule.ignore);
    require(bad < 0, [&] {
      return ErrorInfo{.where = where, .field = "labels",
                       .expected = "class indices in [0, " + std::to_string(classes) + ")" +
                                   (rule.ignore ? " or ignore_index " + std::to_string(*rule.ignore) : std::string()) +
                                   " for logits " + xs.to_string(),
                       .actual = str(+element_at(src, bad), " at flat index ", bad, " of labels ", ls.to_string())};
    });
    if (rule.to_dense) {
      t.dense = Tensor<float, B>::empty(xs);
      ops::labels_to_one_hot(src, e, t.dense);
    } else {
      t.index = Tensor<std::int32_t, B>::empty({e.n * e.s});
      ops::labels_to_index(src, rule.ignore, t.index);
    }
    return t;
  }
}

template <class B>
void throw_non_finite(std::string_view loss, const Tensor<float, B>& logits) {
  const Tensor<float, Cpu> x = logits.template to<Cpu>();
  std::int64_t i = 0;
  while (i < x.numel() && std::isfinite(x.data()[i])) ++i;
  throw Error{{.where = std::string(loss), .field = "logits " + logits.shape().to_string(),
               .expected = "finite values",
               .actual = i < x.numel() ? str(x.data()[i], " at flat index ", i) : std::string("a non-finite loss"),
               .detail = "check the learning rate and the input intensities"}};
}

}  // namespace detail
}  // namespace medseg::loss
