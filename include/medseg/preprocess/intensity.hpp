// Intensity normalisation: MedicalSeg's HU window (HUnorm) and range normalise, clip +
// min-max, z-score (per image, inside the nonzero mask, or with dataset statistics) and
// nnU-Net's CTNormalization (clip to foreground 0.5/99.5 percentiles, dataset mean/std).
// Each op is also a pointwise functor, so it can be fused into resize's load (one pass).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor.hpp"
#include "../io/image.hpp"

namespace medseg::preprocess {

/// MedicalSeg's HUnorm: NaN -> nan_value, then (v - lo) / (hi - lo) clipped to [0, 1],
/// times 255 when scale_255. A functor so it can run inside resize's load:
///   auto x = resize(ct, {128, 128, 128}, {.order = 1}, HuWindow{-1250, 250});
struct HuWindow {
  float lo = -1200, hi = 600;  // MedicalSeg's defaults (HUnorm)
  bool scale_255 = false;
  std::optional<float> nan_value{};  // default: lo (MedicalSeg uses -2000, which clips to lo)

  float operator()(float v) const {
    if (std::isnan(v)) v = nan_value.value_or(lo);
    const float scale = (scale_255 ? 255.0f : 1.0f) / (hi - lo);
    return std::clamp((v - lo) * scale, 0.0f, scale_255 ? 255.0f : 1.0f);
  }
};

/// v -> (v - shift) * scale: z-score with known statistics, and any other affine.
struct Affine {
  float shift = 0, scale = 1;
  float operator()(float v) const { return (v - shift) * scale; }
};

/// Mean and standard deviation (population, ddof = 0, as numpy's std) in double.
struct Moments {
  double mean = 0, std = 0;
  std::int64_t count = 0;
};

/// nnU-Net's CT statistics of a dataset's foreground: mean, std and the 0.5 / 99.5
/// percentiles (numpy's linear interpolation).
struct CtStats {
  double mean = 0, std = 1, lower = 0, upper = 0;
};

/// x with `f` applied to every element, as float: the building block of the ops below.
template <class T, class B, class F>
Tensor<float, B> map_to_float(const Tensor<T, B>& x, F f);

/// HuWindow over a tensor or image.
template <class T, class B>
Tensor<float, B> hu_window(const Tensor<T, B>& x, const HuWindow& window);
template <class T>
io::Image<float> hu_window(const io::Image<T>& image, const HuWindow& window);

/// MedicalSeg's normalize: with bounds, (v - lo) / (hi - lo) clipped to [0, 1]; without,
/// (v - min) / (max - min) over the whole image.
template <class T, class B>
Tensor<float, B> normalize_range(const Tensor<T, B>& x, std::optional<float> lo = {}, std::optional<float> hi = {});

/// Clip to [lo, hi], then min-max to [0, 1] with the clipped image's own min and max.
template <class T, class B>
Tensor<float, B> clip_minmax(const Tensor<T, B>& x, float lo, float hi);

/// Moments of x, or of its nonzero elements when `nonzero_only` (nnU-Net's use_mask_for_norm).
template <class T, class B>
Moments moments(const Tensor<T, B>& x, bool nonzero_only = false);

/// (v - mean) / max(std, 1e-8) with x's own moments; with `nonzero_only`, moments over the
/// nonzero elements and zeros left at zero (nnU-Net's ZScoreNormalization with a mask).
template <class T, class B>
Tensor<float, B> zscore(const Tensor<T, B>& x, bool nonzero_only = false);
/// z-score with given (dataset) statistics.
template <class T, class B>
Tensor<float, B> zscore(const Tensor<T, B>& x, const Moments& stats);

/// CT statistics of the elements of x where `foreground` is nonzero (same shape).
template <class T, class M, class B>
CtStats ct_statistics(const Tensor<T, B>& x, const Tensor<M, B>& foreground);
/// nnU-Net's CTNormalization: clip to [lower, upper], then (v - mean) / max(std, 1e-8).
template <class T, class B>
Tensor<float, B> ct_normalize(const Tensor<T, B>& x, const CtStats& stats);

/// numpy.percentile(values, q) with the default linear method; reorders `values`.
double percentile(std::vector<float>& values, double q);

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

/// Elements per block of a reduction. Blocks are fixed by index, never by thread, so sums
/// come out bit-identical at any thread count.
inline constexpr std::int64_t reduce_block = 1 << 16;

template <class B>
void require_host(const char* op) {
  static_assert(B::is_host, "medseg::preprocess intensity ops have no implementation for this backend: for Cuda "
                            "tensors include medseg/cuda.hpp and link medseg::cuda, or pass a CPU tensor");
  (void)op;
}

template <class T, class B>
void require_defined(const Tensor<T, B>& x, const char* op) {
  require(x.defined(), [&] {
    return ErrorInfo{.where = std::string("preprocess::") + op, .field = "input", .expected = "a defined tensor",
                     .actual = "an undefined tensor"};
  });
}

/// Per-block partials of f over x, combined in block order.
template <class T, class B, class Acc, class F>
Acc reduce_blocks(const Tensor<T, B>& x, Acc init, F block_fn) {
  const Tensor<T, B> c = x.contiguous();
  const std::int64_t n = c.numel();
  const std::int64_t blocks = (n + reduce_block - 1) / reduce_block;
  std::vector<Acc> partial(static_cast<std::size_t>(blocks), init);
  parallel_for(0, blocks, 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t k = b; k < e; ++k) {
      const std::int64_t lo = k * reduce_block, hi = std::min(n, lo + reduce_block);
      partial[static_cast<std::size_t>(k)] = block_fn(c.data() + lo, hi - lo);
    }
  });
  Acc total = init;
  for (const auto& p : partial) total = total + p;
  return total;
}

struct SumSq {
  double sum = 0, sq = 0;
  std::int64_t count = 0;
  friend SumSq operator+(const SumSq& a, const SumSq& b) { return {a.sum + b.sum, a.sq + b.sq, a.count + b.count}; }
};

/// Moments from the sums of (v - shift) and its squares: the last step of moments(), on every
/// backend.
inline Moments finish_moments(const SumSq& s, double shift) {
  Moments m;
  m.count = s.count;
  if (s.count == 0) return m;
  const double mean_shifted = s.sum / static_cast<double>(s.count);
  m.mean = shift + mean_shifted;
  m.std = std::sqrt(std::max(0.0, s.sq / static_cast<double>(s.count) - mean_shifted * mean_shifted));
  return m;
}

/// numpy's linear percentile over `count` sorted values: the position between ranks...
inline double percentile_position(std::size_t count, double q) { return q / 100.0 * static_cast<double>(count - 1); }
/// ... and the value there, from the values at ranks floor(pos) (a) and floor(pos) + 1 (b).
inline double percentile_between(double a, double b, double pos, std::size_t lo) {
  return a + (b - a) * (pos - static_cast<double>(lo));
}

/// What percentile() says when there is nothing to take a percentile of.
inline void require_values(std::size_t count) {
  require(count > 0, [] {
    return ErrorInfo{.where = "preprocess::percentile", .field = "values", .expected = "at least one value",
                     .actual = "none (an empty foreground?)"};
  });
}

struct MinMax {
  float lo = std::numeric_limits<float>::infinity(), hi = -std::numeric_limits<float>::infinity();
  friend MinMax operator+(const MinMax& a, const MinMax& b) { return {std::min(a.lo, b.lo), std::max(a.hi, b.hi)}; }
};

/// Min and max of f(p[i]) over n elements, in independent lanes so the loop vectorises.
template <class T, class F>
MinMax min_max(const T* p, std::int64_t n, F f) {
  constexpr std::int64_t lanes = 16;
  float lo[lanes], hi[lanes];
  std::fill(lo, lo + lanes, std::numeric_limits<float>::infinity());
  std::fill(hi, hi + lanes, -std::numeric_limits<float>::infinity());
  std::int64_t i = 0;
  for (; i + lanes <= n; i += lanes)
    for (std::int64_t l = 0; l < lanes; ++l) {
      const float v = f(static_cast<float>(p[i + l]));
      lo[l] = v < lo[l] ? v : lo[l];
      hi[l] = v > hi[l] ? v : hi[l];
    }
  for (; i < n; ++i) {
    const float v = f(static_cast<float>(p[i]));
    lo[0] = v < lo[0] ? v : lo[0];
    hi[0] = v > hi[0] ? v : hi[0];
  }
  MinMax m;
  for (std::int64_t l = 0; l < lanes; ++l) m = m + MinMax{lo[l], hi[l]};
  return m;
}

}  // namespace detail

template <class T, class B, class F>
Tensor<float, B> map_to_float(const Tensor<T, B>& x, F f) {
  detail::require_host<B>("map");
  detail::require_defined(x, "map");
  const Tensor<T, B> c = x.contiguous();
  auto out = Tensor<float, B>::empty(c.shape());
  const T* src = c.data();
  float* dst = out.data();
  parallel_for(0, c.numel(), 1 << 15, [&](std::int64_t b, std::int64_t e) {
    const F local = f;  // cannot alias dst, so its constants stay in registers and the loop vectorises
    for (std::int64_t i = b; i < e; ++i) dst[i] = local(static_cast<float>(src[i]));
  });
  return out;
}

template <class T, class B>
Tensor<float, B> hu_window(const Tensor<T, B>& x, const HuWindow& window) {
  require(window.hi > window.lo, [&] {
    return ErrorInfo{.where = "preprocess::hu_window", .field = "window", .expected = "lo < hi",
                     .actual = "[" + str(window.lo) + ", " + str(window.hi) + "]"};
  });
  return map_to_float(x, window);
}

template <class T>
io::Image<float> hu_window(const io::Image<T>& image, const HuWindow& window) {
  return {hu_window(image.voxels, window), image.geometry};
}

template <class T, class B>
Tensor<float, B> normalize_range(const Tensor<T, B>& x, std::optional<float> lo, std::optional<float> hi) {
  if (lo && hi) {
    require(*hi > *lo, [&] {
      return ErrorInfo{.where = "preprocess::normalize_range", .field = "range", .expected = "min < max",
                       .actual = "[" + str(*lo) + ", " + str(*hi) + "]"};
    });
    return map_to_float(x, HuWindow{.lo = *lo, .hi = *hi});
  }
  detail::require_host<B>("normalize_range");
  detail::require_defined(x, "normalize_range");
  const auto mm = detail::reduce_blocks(x, detail::MinMax{}, [](const T* p, std::int64_t n) {
    return detail::min_max(p, n, [](float v) { return v; });
  });
  const float range = mm.hi > mm.lo ? mm.hi - mm.lo : 1.0f;
  return map_to_float(x, Affine{mm.lo, 1.0f / range});
}

template <class T, class B>
Tensor<float, B> clip_minmax(const Tensor<T, B>& x, float lo, float hi) {
  require(hi > lo, [&] {
    return ErrorInfo{.where = "preprocess::clip_minmax", .field = "clip range", .expected = "lo < hi",
                     .actual = "[" + str(lo) + ", " + str(hi) + "]"};
  });
  detail::require_host<B>("clip_minmax");
  detail::require_defined(x, "clip_minmax");
  const auto mm = detail::reduce_blocks(x, detail::MinMax{}, [&](const T* p, std::int64_t n) {
    return detail::min_max(p, n, [&](float v) { return std::clamp(v, lo, hi); });
  });
  const float range = mm.hi > mm.lo ? mm.hi - mm.lo : 1.0f;
  return map_to_float(x, [=, shift = mm.lo, scale = 1.0f / range](float v) { return (std::clamp(v, lo, hi) - shift) * scale; });
}

template <class T, class B>
Moments moments(const Tensor<T, B>& x, bool nonzero_only) {
  detail::require_host<B>("moments");
  detail::require_defined(x, "moments");
  // Shifted sums (by the first element) keep the variance exact for data far from zero,
  // such as CT in HU around -1000.
  const Tensor<T, B> c = x.contiguous();
  double shift = 0;
  for (std::int64_t i = 0; i < c.numel(); ++i)
    if (!nonzero_only || c.data()[i] != T(0)) {
      shift = static_cast<double>(c.data()[i]);
      break;
    }
  const auto fs = static_cast<float>(shift);
  const auto s = detail::reduce_blocks(c, detail::SumSq{}, [&](const T* p, std::int64_t n) {
    // Independent float lanes vectorise (one running sum would be a serial chain); each run
    // of 1024 elements is folded into double so long sums keep their precision.
    constexpr std::int64_t lanes = 16, run = 1024;
    detail::SumSq a;
    for (std::int64_t r0 = 0; r0 < n; r0 += run) {
      const std::int64_t r1 = std::min(n, r0 + run);
      float sum[lanes] = {}, sq[lanes] = {};
      std::int32_t count[lanes] = {};
      std::int64_t i = r0;
      for (; i + lanes <= r1; i += lanes)
        for (std::int64_t l = 0; l < lanes; ++l) {
          const bool keep = !nonzero_only || p[i + l] != T(0);
          const float v = keep ? static_cast<float>(p[i + l]) - fs : 0.0f;
          sum[l] += v;
          sq[l] += v * v;
          count[l] += keep ? 1 : 0;
        }
      for (; i < r1; ++i) {
        const bool keep = !nonzero_only || p[i] != T(0);
        const float v = keep ? static_cast<float>(p[i]) - fs : 0.0f;
        sum[0] += v;
        sq[0] += v * v;
        count[0] += keep ? 1 : 0;
      }
      for (std::int64_t l = 0; l < lanes; ++l) {
        a.sum += sum[l];
        a.sq += sq[l];
        a.count += count[l];
      }
    }
    return a;
  });
  return detail::finish_moments(s, shift);
}

template <class T, class B>
Tensor<float, B> zscore(const Tensor<T, B>& x, const Moments& stats) {
  return map_to_float(x, Affine{static_cast<float>(stats.mean), static_cast<float>(1.0 / std::max(stats.std, 1e-8))});
}

template <class T, class B>
Tensor<float, B> zscore(const Tensor<T, B>& x, bool nonzero_only) {
  const Moments m = moments(x, nonzero_only);
  if (!nonzero_only) return zscore(x, m);
  const Affine a{static_cast<float>(m.mean), static_cast<float>(1.0 / std::max(m.std, 1e-8))};
  return map_to_float(x, [a](float v) { return v != 0.0f ? a(v) : 0.0f; });
}

inline double percentile(std::vector<float>& values, double q) {
  detail::require_values(values.size());
  const double pos = detail::percentile_position(values.size(), q);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(lo), values.end());
  const double a = values[lo];
  if (lo + 1 >= values.size()) return a;
  const double b = *std::min_element(values.begin() + static_cast<std::ptrdiff_t>(lo) + 1, values.end());
  return detail::percentile_between(a, b, pos, lo);
}

template <class T, class M, class B>
CtStats ct_statistics(const Tensor<T, B>& x, const Tensor<M, B>& foreground) {
  detail::require_host<B>("ct_statistics");
  detail::require_defined(x, "ct_statistics");
  require(foreground.defined() && foreground.shape() == x.shape(), [&] {
    return ErrorInfo{.where = "preprocess::ct_statistics", .field = "foreground mask",
                     .expected = "shape " + x.shape().to_string(),
                     .actual = foreground.defined() ? foreground.shape().to_string() : "an undefined tensor"};
  });
  const Tensor<T, B> c = x.contiguous();
  const Tensor<M, B> f = foreground.contiguous();
  std::vector<float> values;
  for (std::int64_t i = 0; i < c.numel(); ++i)
    if (f.data()[i] != M(0)) values.push_back(static_cast<float>(c.data()[i]));
  CtStats s;
  double sum = 0, sq = 0;
  for (float v : values) sum += v;
  const double n = static_cast<double>(std::max<std::size_t>(values.size(), 1));
  s.mean = sum / n;
  for (float v : values) sq += (v - s.mean) * (v - s.mean);
  s.std = std::sqrt(sq / n);
  s.lower = percentile(values, 0.5);
  s.upper = percentile(values, 99.5);
  return s;
}

template <class T, class B>
Tensor<float, B> ct_normalize(const Tensor<T, B>& x, const CtStats& stats) {
  require(stats.upper >= stats.lower, [&] {
    return ErrorInfo{.where = "preprocess::ct_normalize", .field = "percentiles", .expected = "lower <= upper",
                     .actual = "[" + str(stats.lower) + ", " + str(stats.upper) + "]"};
  });
  const auto lo = static_cast<float>(stats.lower), hi = static_cast<float>(stats.upper);
  const Affine a{static_cast<float>(stats.mean), static_cast<float>(1.0 / std::max(stats.std, 1e-8))};
  return map_to_float(x, [=](float v) { return a(std::clamp(v, lo, hi)); });
}

}  // namespace medseg::preprocess
