// The labels a loss is given, checked against the logits once and brought to one of two
// forms the kernels read: class indices (int32, one per voxel) or a dense float target with
// the logits' shape (one-hot maps, soft labels, binary masks). Every loss goes through here,
// so every loss accepts the same label tensors and reports bad ones the same way, on either
// backend: the checks and messages are shared; the scans and conversions are backend kernels
// (the CPU's below, the Cuda ones declared in backends/cuda/loss.hpp).
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "../core/error.hpp"
#include "../core/host_device.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor.hpp"

#if defined(MEDSEG_WITH_CUDA) && MEDSEG_WITH_CUDA
#include "../backends/cuda/loss.hpp"
#endif

namespace medseg::loss {

/// Element types accepted as labels: integers are class indices, float is a dense target
/// (one-hot or probabilities) with the logits' shape.
template <class L>
concept LabelElement = (std::integral<L> && !std::same_as<L, bool>) || std::same_as<L, float>;

namespace detail {

/// Logits seen as [N, C, S]: batch, channels, and every spatial axis flattened into S.
struct Extents {
  std::int64_t n = 0, c = 0, s = 0;
};

/// The checked target, on the logits' backend: exactly one of `index` ([N*S] class ids, -1
/// where ignored) and `dense` ([N,C,S]) is defined.
template <class B>
struct Target {
  Tensor<std::int32_t, B> index;
  Tensor<float, B> dense;
  bool is_index() const { return index.defined(); }
};

/// How index labels are read.
struct IndexRule {
  /// Labels must lie in [0, classes); `ignore` (when set) is also accepted and kept as is.
  std::int64_t classes = 0;
  std::optional<std::int64_t> ignore{};
  /// Turn the indices into a dense one-hot target over the C channels. With a single channel
  /// (a sigmoid on one foreground map) the label value itself is the target, 0 or 1.
  bool to_dense = false;
};

/// What a loss's statistics kernel hands to the host-side math: partial sums, laid out as
/// each loss says ([rows][blocks][K] in general), where `blocks` is how many spatial blocks
/// each row was summed in (the CPU's fixed block_size blocks, summed by the host in order;
/// 1 where a device reduced them already). `finite` is false when the activation met a
/// non-finite logit.
struct PartialSums {
  std::vector<double> values{};
  std::int64_t blocks = 1;
  bool finite = true;
};

/// Checks logits [N,C,spatial...] (rank >= 2, contiguous, finite checked later by the kernels).
template <class B>
Extents check_logits(std::string_view loss, const Tensor<float, B>& logits);

/// Checks `labels` against `logits` and returns the target form. Accepted shapes: index
/// labels [N,1,spatial...] or [N,spatial...]; dense float labels with the logits' exact shape.
template <LabelElement L, class B>
Target<B> make_target(std::string_view loss, const Tensor<float, B>& logits, const Tensor<L, B>& labels,
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

/// Fixed-size spatial blocks: reductions sum per block, then blocks in order, so the result
/// does not depend on the thread count.
inline constexpr std::int64_t block_size = 2048;
inline std::int64_t block_count(std::int64_t s) { return (s + block_size - 1) / block_size; }

/// Whether label value v is accepted: in [0, classes) (compared without sign trouble for
/// unsigned types) or equal to the ignore value. The Cuda kernels apply the same test.
template <class L>
MEDSEG_HOST_DEVICE bool valid_label(L v, std::int64_t classes, bool has_ignore, std::int64_t ignore);
/// The int32 class id label v becomes: -1 for the ignore value.
template <class L>
MEDSEG_HOST_DEVICE std::int32_t class_id(L v, bool has_ignore, std::int64_t ignore);

// -- The CPU kernels of make_target (the Cuda ones: backends/cuda/loss.hpp) ---------------

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
void labels_to_one_hot(const Tensor<L, Cpu>& labels, const Extents& e, const Tensor<float, Cpu>& dense);

// ----------------------------------------------------------------------------------------
// Implementation

/// Element i of a contiguous tensor on any backend, read to the host (for error messages).
template <class T, class B>
T element_at(const Tensor<T, B>& t, std::int64_t i) {
  return t.flatten().slice(0, i, i + 1).to_vector()[0];
}

template <class L>
MEDSEG_HOST_DEVICE bool valid_label(L v, std::int64_t classes, bool has_ignore, std::int64_t ignore) {
  const auto w = static_cast<std::int64_t>(v);
  if (has_ignore && w == ignore) return true;
  if constexpr (std::is_unsigned_v<L>)
    return static_cast<std::uint64_t>(v) < static_cast<std::uint64_t>(classes);
  else
    return w >= 0 && w < classes;
}

template <class L>
MEDSEG_HOST_DEVICE std::int32_t class_id(L v, bool has_ignore, std::int64_t ignore) {
  // An ignore_index outside int32 never equals a valid class, so it maps to -1 safely.
  const auto w = static_cast<std::int64_t>(v);
  return (has_ignore && w == ignore) ? -1 : static_cast<std::int32_t>(w);
}

template <class B>
Extents check_logits(std::string_view loss, const Tensor<float, B>& logits) {
  require(logits.defined() && logits.rank() >= 2, [&] {
    return ErrorInfo{.where = std::string(loss), .field = "logits shape", .expected = "[N,C,spatial...] (rank >= 2)",
                     .actual = logits.defined() ? logits.shape().to_string() : "an undefined tensor"};
  });
  require(logits.size(1) >= 1 && logits.size(0) >= 1, [&] {
    return ErrorInfo{.where = std::string(loss), .field = "logits shape", .expected = "at least one sample and one class",
                     .actual = logits.shape().to_string()};
  });
  Extents e{logits.size(0), logits.size(1), 0};
  e.s = logits.numel() / (e.n * e.c);
  return e;
}

template <LabelElement L, class B>
Target<B> make_target(std::string_view loss, const Tensor<float, B>& logits, const Tensor<L, B>& labels,
                      const IndexRule& rule) {
  const Extents e = check_logits(loss, logits);
  const std::string where(loss);
  require(labels.defined(), [&] {
    return ErrorInfo{.where = where, .field = "labels", .expected = "a defined tensor", .actual = "an undefined tensor"};
  });
  Target<B> t;
  if constexpr (std::same_as<L, float>) {
    require(labels.shape() == logits.shape(), [&] {
      return ErrorInfo{.where = where, .field = "labels shape",
                       .expected = "float (one-hot) labels of the logits' shape " + logits.shape().to_string(),
                       .actual = labels.shape().to_string(),
                       .detail = "pass class indices as an integer tensor [N,1,spatial...] or [N,spatial...]"};
    });
    t.dense = labels.contiguous();
    // Soft labels must be finite and in [0, 1]; a NaN here would silently poison the loss.
    const std::int64_t bad = first_outside_unit_interval(t.dense);
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
    const std::int64_t bad = first_invalid_label(src, classes, rule.ignore);
    require(bad < 0, [&] {
      return ErrorInfo{.where = where, .field = "labels",
                       .expected = "class indices in [0, " + std::to_string(classes) + ")" +
                                   (rule.ignore ? " or ignore_index " + std::to_string(*rule.ignore) : std::string()) +
                                   " for logits " + xs.to_string(),
                       .actual = str(+element_at(src, bad), " at flat index ", bad, " of labels ", ls.to_string())};
    });
    if (rule.to_dense) {
      t.dense = Tensor<float, B>::empty(xs);
      labels_to_one_hot(src, e, t.dense);
    } else {
      t.index = Tensor<std::int32_t, B>::empty({e.n * e.s});
      labels_to_index(src, rule.ignore, t.index);
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

template <class L>
std::int64_t first_invalid_label(const Tensor<L, Cpu>& labels, std::int64_t classes, std::optional<std::int64_t> ignore) {
  const L* y = labels.data();
  const std::int64_t count = labels.numel();
  const bool has_ignore = ignore.has_value();
  const std::int64_t ignored = ignore.value_or(0);
  bool ok = true;  // one branch-free pass; the position is searched for only on failure
  for (std::int64_t i = 0; i < count; ++i) ok &= valid_label(y[i], classes, has_ignore, ignored);
  if (ok) return -1;
  std::int64_t i = 0;
  while (valid_label(y[i], classes, has_ignore, ignored)) ++i;
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
    for (std::int64_t i = b; i < end; ++i) idx[i] = class_id(y[i], has_ignore, ignored);
  });
}

template <class L>
void labels_to_one_hot(const Tensor<L, Cpu>& labels, const Extents& e, const Tensor<float, Cpu>& dense) {
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

}  // namespace detail
}  // namespace medseg::loss
