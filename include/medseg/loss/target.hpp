// The labels a loss is given, checked against the logits once and brought to one of two
// forms the kernels read: class indices (int32, one per voxel) or a dense float target with
// the logits' shape (one-hot maps, soft labels, binary masks). Every loss goes through here,
// so every loss accepts the same label tensors and reports bad ones the same way.
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor.hpp"

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

/// The checked target: exactly one of `index` ([N*S] class ids) and `dense` ([N,C,S]) is defined.
struct Target {
  Tensor<std::int32_t, Cpu> index;
  Tensor<float, Cpu> dense;
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

/// Checks logits [N,C,spatial...] (rank >= 2, contiguous, finite checked later by the kernels).
inline Extents check_logits(std::string_view loss, const Tensor<float, Cpu>& logits) {
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

/// Checks `labels` against `logits` and returns the target form. Accepted shapes: index
/// labels [N,1,spatial...] or [N,spatial...]; dense float labels with the logits' exact shape.
template <LabelElement L>
Target make_target(std::string_view loss, const Tensor<float, Cpu>& logits, const Tensor<L, Cpu>& labels,
                   const IndexRule& rule);

/// Raises the loss's error for the first non-finite logit. Kernels detect trouble cheaply
/// (a non-finite partial sum) and call this only then, so the scan costs nothing normally.
void throw_non_finite(std::string_view loss, const Tensor<float, Cpu>& logits);

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

// ----------------------------------------------------------------------------------------
// Implementation

template <LabelElement L>
Target make_target(std::string_view loss, const Tensor<float, Cpu>& logits, const Tensor<L, Cpu>& labels,
                   const IndexRule& rule) {
  const Extents e = check_logits(loss, logits);
  const std::string where(loss);
  require(labels.defined(), [&] {
    return ErrorInfo{.where = where, .field = "labels", .expected = "a defined tensor", .actual = "an undefined tensor"};
  });
  Target t;
  if constexpr (std::same_as<L, float>) {
    require(labels.shape() == logits.shape(), [&] {
      return ErrorInfo{.where = where, .field = "labels shape",
                       .expected = "float (one-hot) labels of the logits' shape " + logits.shape().to_string(),
                       .actual = labels.shape().to_string(),
                       .detail = "pass class indices as an integer tensor [N,1,spatial...] or [N,spatial...]"};
    });
    t.dense = labels.contiguous();
    const float* g = t.dense.data();
    const std::int64_t total = t.dense.numel();
    // Soft labels must be finite and in [0, 1]; a NaN here would silently poison the loss.
    std::uint32_t bad = 0;  // an integer OR, so the scan vectorises
    for (std::int64_t i = 0; i < total; ++i)
      bad |= static_cast<std::uint32_t>(!(g[i] >= 0.0f)) | static_cast<std::uint32_t>(!(g[i] <= 1.0f));
    require(!bad, [&] {
      std::int64_t i = 0;
      while (g[i] >= 0.0f && g[i] <= 1.0f) ++i;
      return ErrorInfo{.where = where, .field = "labels", .expected = "one-hot or probability values in [0, 1]",
                       .actual = str(g[i], " at flat index ", i, " of ", labels.shape().to_string())};
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
    const Tensor<L, Cpu> src = labels.contiguous();
    const L* y = src.data();
    const std::int64_t voxels = e.n * e.s;
    const std::int64_t classes = rule.to_dense && e.c == 1 ? 2 : rule.classes;
    // Range check first, in one pass, so the message can name the first bad label.
    auto valid = [&](L v) {
      const auto w = static_cast<std::int64_t>(v);
      if (rule.ignore && w == *rule.ignore) return true;
      if constexpr (std::is_unsigned_v<L>)
        return static_cast<std::uint64_t>(v) < static_cast<std::uint64_t>(classes);
      else
        return w >= 0 && w < classes;
    };
    bool ok = true;
    for (std::int64_t i = 0; i < voxels; ++i) ok &= valid(y[i]);
    require(ok, [&] {
      std::int64_t i = 0;
      while (valid(y[i])) ++i;
      return ErrorInfo{.where = where, .field = "labels",
                       .expected = "class indices in [0, " + std::to_string(classes) + ")" +
                                   (rule.ignore ? " or ignore_index " + std::to_string(*rule.ignore) : std::string()) +
                                   " for logits " + xs.to_string(),
                       .actual = str(+y[i], " at flat index ", i, " of labels ", ls.to_string())};
    });
    if (rule.to_dense) {
      t.dense = Tensor<float, Cpu>::empty(xs);
      float* g = t.dense.data();
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
      return t;
    }
    t.index = Tensor<std::int32_t, Cpu>::empty({voxels});
    std::int32_t* idx = t.index.data();
    // An ignore_index outside int32 never equals a valid class, so it maps to -1 safely.
    parallel_for(0, voxels, 1 << 16, [&](std::int64_t b, std::int64_t end) {
      for (std::int64_t i = b; i < end; ++i) {
        const auto w = static_cast<std::int64_t>(y[i]);
        idx[i] = (rule.ignore && w == *rule.ignore) ? -1 : static_cast<std::int32_t>(w);
      }
    });
    return t;
  }
}

inline void throw_non_finite(std::string_view loss, const Tensor<float, Cpu>& logits) {
  const Tensor<float, Cpu> x = logits.contiguous();
  std::int64_t i = 0;
  while (i < x.numel() && std::isfinite(x.data()[i])) ++i;
  throw Error{{.where = std::string(loss), .field = "logits " + logits.shape().to_string(),
               .expected = "finite values",
               .actual = i < x.numel() ? str(x.data()[i], " at flat index ", i) : std::string("a non-finite loss"),
               .detail = "check the learning rate and the input intensities"}};
}

}  // namespace detail
}  // namespace medseg::loss
