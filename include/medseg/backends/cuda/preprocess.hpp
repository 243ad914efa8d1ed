// The Cuda overloads of preprocess/: resize (orders 0, 1, 3, with an HU window or affine fused
// into the read), per-label segmentation resampling, HU window / range / clip + min-max /
// z-score / CT (percentile) normalisation with their reductions on the device, crop to the
// nonzero box, label remapping. Each takes device tensors and gives the CPU function's result:
// the kernels repeat the CPU's arithmetic in the CPU's order (no FMA contraction, the same
// blocking of the float sums), so resampling and normalisation are meant to agree to the last
// bit (tests/cuda/preprocess_test.cpp allows 1e-5 of the data's scale and reports any
// difference); order 0, crops and label ops are exact. Double sums over a foreground (CT
// statistics) are tree sums, not the CPU's serial ones: equal to ~1e-15. Declared here,
// compiled into medseg::cuda from src/backends/cuda/preprocess.cu.
//   auto ct = image.voxels.to<Cuda>();                                       // int16 CT
//   auto x = preprocess::resize(ct, {128, 128, 128}, {.order = 1}, preprocess::HuWindow{-1250, 250});
//   auto z = preprocess::zscore(x);                                          // Tensor<float, Cuda>
#pragma once

#include <array>
#include <concepts>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "../../preprocess/crop.hpp"
#include "../../preprocess/intensity.hpp"
#include "../../preprocess/labels.hpp"
#include "../../preprocess/on_device.hpp"
#include "../../preprocess/resample.hpp"
#include "../../preprocess/segmentation_resample.hpp"
#include "backend.hpp"

namespace medseg::cuda {

/// The element types the preprocessing kernels read: what scans and label maps are stored as.
template <class T>
concept PreprocessVoxel = std::same_as<T, std::uint8_t> || std::same_as<T, std::int8_t> ||
                          std::same_as<T, std::uint16_t> || std::same_as<T, std::int16_t> ||
                          std::same_as<T, std::int32_t> || std::same_as<T, float>;
/// Label maps: the integral ones of those.
template <class L>
concept PreprocessLabel = PreprocessVoxel<L> && std::integral<L>;

/// A pointwise op on a voxel's float value: what the CPU's functors (HuWindow, Affine, the
/// lambdas of clip_minmax, zscore and ct_normalize, the one-hot load of per-label resampling)
/// compute, as plain data a kernel can take. The factories fill it from those functors.
struct VoxelMap {
  enum class Kind : std::uint8_t {
    identity,
    window,          // HuWindow: NaN -> nan_value, clamp((v - shift) * scale, 0, top)
    affine,          // (v - shift) * scale
    clip_affine,     // (clamp(v, lo, hi) - shift) * scale
    affine_nonzero,  // v != 0 ? (v - shift) * scale : 0
    equals,          // v == lo ? 1 : 0
  };
  Kind kind = Kind::identity;
  float lo = 0, hi = 0;
  float shift = 0, scale = 1;
  float top = 1, nan_value = 0;

  static VoxelMap window(const preprocess::HuWindow& w) {
    // HuWindow::operator()'s scale, computed the same way.
    return {.kind = Kind::window, .shift = w.lo, .scale = (w.scale_255 ? 255.0f : 1.0f) / (w.hi - w.lo),
            .top = w.scale_255 ? 255.0f : 1.0f, .nan_value = w.nan_value.value_or(w.lo)};
  }
  static VoxelMap affine(const preprocess::Affine& a) { return {.kind = Kind::affine, .shift = a.shift, .scale = a.scale}; }
  static VoxelMap clip_affine(float lo, float hi, const preprocess::Affine& a) {
    return {.kind = Kind::clip_affine, .lo = lo, .hi = hi, .shift = a.shift, .scale = a.scale};
  }
  static VoxelMap affine_nonzero(const preprocess::Affine& a) {
    return {.kind = Kind::affine_nonzero, .shift = a.shift, .scale = a.scale};
  }
  static VoxelMap equals(float label) { return {.kind = Kind::equals, .lo = label}; }
};

/// A resampling from one grid to another, planned once: the per-axis taps (the CPU's
/// preprocess::detail::AxisPlan, computed on the host) go to the device in one copy and serve
/// every run: each channel, each label of a per-label resampling, each case of one shape.
/// Kernels, by the orders of the three axes:
///   all 0:      a gather, one thread per output voxel, in the input's own type;
///   all <= 1:   one thread per output voxel, its 2 x 2 x 2 taps summed in the order the CPU's
///               kernel for these extents sums them (preprocess::detail::blends_rows_first);
///   any 3:      the CPU's separable passes W, H, D, each axis of order 3 prefiltered (SciPy's
///               spline prefilter, one thread per line) before its pass.
///   cuda::ResamplePlan plan({200, 512, 512}, {128, 128, 128}, {.order = 1});
///   plan.run(ct, out, cuda::VoxelMap::window({-1250, 250}));    // no host work, no copies
class ResamplePlan {
 public:
  /// `in` and `out` are spatial extents (D, H, W); the options are resize's and checked as it checks them.
  ResamplePlan(const preprocess::Extent3& in, const preprocess::Extent3& out, const preprocess::ResampleOptions& options);

  /// out = x resampled, each value passed through `load` as it is read. x is [D,H,W] or
  /// [C,D,H,W] with the plan's input extent; out is contiguous, of the same rank and channels,
  /// with the output extent. Out is float, or T when every axis is order 0. Kernels only: on
  /// the current stream, nothing copied, nothing waited for (scratch for order 3 comes from
  /// the caching allocator).
  template <Element Out, Element T>
  void run(const Tensor<T, Cuda>& x, const Tensor<Out, Cuda>& out, const VoxelMap& load = {}) const;

  const preprocess::Extent3& in_extent() const { return in_; }
  const preprocess::Extent3& out_extent() const { return out_; }

 private:
  void launch(const void* x, DType in_type, void* out, DType out_type, std::int64_t channels, const VoxelMap& load) const;

  preprocess::Extent3 in_{}, out_{};
  std::array<int, 3> orders_{};
  int order_ = 1;                      // the options' order, for messages
  std::array<int, 3> taps_{};
  std::array<std::int64_t, 3> first_{};  // where each axis's taps start in index_ / weight_
  Tensor<std::int64_t, Cuda> index_;     // the three axes' tap indices, D then H then W
  Tensor<float, Cuda> weight_;           // and their weights
};

namespace detail {

// Type-erased entry points of src/backends/cuda/preprocess.cu, for the templates below; all
// pointers are device memory of `n` contiguous elements of the DType given.

/// out[i] = map(float(x[i])).
void map_to_float(const void* x, DType type, std::int64_t n, float* out, const VoxelMap& map);
/// out[i] = x[i] != 0.
void nonzero_flags(const void* x, DType type, std::int64_t n, std::uint8_t* out);
/// Min and max of map(float(x[i])), NaN skipped, as the CPU's min_max.
preprocess::detail::MinMax min_max(const void* x, DType type, std::int64_t n, const VoxelMap& map);
/// The index of the first nonzero element, or -1.
std::int64_t first_nonzero(const void* x, DType type, std::int64_t n);
/// The CPU moments' sums of (v - shift) and (v - shift)^2 (of nonzero v only when
/// `nonzero_only`), in the CPU's blocks, runs and lanes: the same float and double roundings.
preprocess::detail::SumSq shifted_sums(const void* x, DType type, std::int64_t n, bool nonzero_only, float shift);
/// Sum (in double) and count of values[i] where flags[i] (every i when flags is null).
preprocess::detail::SumSq masked_sum(const float* values, const std::uint8_t* flags, std::int64_t n);
/// Sum of (values[i] - mean)^2 in double where flags[i].
double masked_squared_deviation(const float* values, const std::uint8_t* flags, std::int64_t n, double mean);
/// The k-th smallest (0-based) of values[i] where flags[i]: a radix select, exact.
float kth_smallest(const float* values, const std::uint8_t* flags, std::int64_t n, std::int64_t k);

/// The bounding box of elements != *background (a host pointer to one element of `type`).
preprocess::Box nonzero_box(const void* x, DType type, std::int64_t channels, const preprocess::Extent3& extent,
                            const void* background);
/// out = the box of x, every channel, elements of `element_bytes` bytes.
void crop(const void* x, std::size_t element_bytes, std::int64_t channels, const preprocess::Extent3& extent,
          const preprocess::Box& box, void* out);
/// out[i] = the `to` of the first `from` equal to x[i], else unmapped (when given) or x[i].
void remap_labels(const void* x, DType type, std::int64_t n, const std::vector<std::int64_t>& from,
                  const std::vector<std::int64_t>& to, std::optional<std::int64_t> unmapped, void* out);
/// out[i] = mask[i] != 0 ? seg[i] : ignore.
void set_ignore_label(const void* seg, DType type, const void* mask, DType mask_type, std::int64_t n,
                      std::int64_t ignore, void* out);
/// The distinct values of x, ascending.
std::vector<std::int64_t> unique_values(const void* x, DType type, std::int64_t n);
/// out[i] = label where mask[i] >= preprocess::detail::label_mask_threshold.
void paint_label(const float* mask, std::int64_t n, void* out, DType type, std::int64_t label);

template <class T>
constexpr void require_voxel_type() {
  static_assert(PreprocessVoxel<T>, "medseg::preprocess on Cuda tensors reads uint8, int8, uint16, int16, int32 "
                                    "or float32 elements: convert the tensor first (astype on the host)");
}
template <class L>
constexpr void require_label_type() {
  static_assert(PreprocessLabel<L>, "medseg::preprocess label ops on Cuda tensors take uint8, int8, uint16, int16 "
                                    "or int32 label maps");
}

/// x's spatial extent (the last three axes) after checking it is [D,H,W] or [C,D,H,W].
template <class T>
preprocess::Extent3 spatial_extent(const Tensor<T, Cuda>& x, const char* op) {
  require(x.defined(), [&] {
    return ErrorInfo{.where = std::string("preprocess::") + op, .field = "input", .expected = "a defined tensor",
                     .actual = "an undefined tensor"};
  });
  return preprocess::detail::spatial_extent(x.shape(), op);
}

/// A percentile (numpy's linear method) of values[i] where flags[i], `count` of them.
inline double percentile_of(const float* values, const std::uint8_t* flags, std::int64_t n, std::int64_t count,
                            double q) {
  preprocess::detail::require_values(static_cast<std::size_t>(count));
  const double pos = preprocess::detail::percentile_position(static_cast<std::size_t>(count), q);
  const auto lo = static_cast<std::int64_t>(std::floor(pos));
  const double a = kth_smallest(values, flags, n, lo);
  if (lo + 1 >= count) return a;
  const double b = kth_smallest(values, flags, n, lo + 1);
  return preprocess::detail::percentile_between(a, b, pos, static_cast<std::size_t>(lo));
}

}  // namespace detail

template <Element Out, Element T>
void ResamplePlan::run(const Tensor<T, Cuda>& x, const Tensor<Out, Cuda>& out, const VoxelMap& load) const {
  detail::require_voxel_type<T>();
  static_assert(std::same_as<Out, float> || std::same_as<Out, T>,
                "cuda::ResamplePlan::run writes float32, or the input's own type for order 0");
  const std::string where = "cuda::ResamplePlan::run";
  preprocess::detail::check_output_type(orders_, dtype_of<Out>, order_, where);
  const preprocess::Extent3 e = detail::spatial_extent(x, "resize");
  require(e == in_, [&] {
    return ErrorInfo{.where = where, .field = "input shape",
                     .expected = "spatial extent [" + std::to_string(in_[0]) + "," + std::to_string(in_[1]) + "," +
                                 std::to_string(in_[2]) + "] (the plan's)",
                     .actual = x.shape().to_string()};
  });
  const int r = x.rank();
  const Shape expect = r == 4 ? Shape{x.size(0), out_[0], out_[1], out_[2]} : Shape{out_[0], out_[1], out_[2]};
  require(out.defined() && out.shape() == expect && out.is_contiguous(), [&] {
    return ErrorInfo{.where = where, .field = "output", .expected = "a contiguous " + expect.to_string(),
                     .actual = out.defined() ? out.layout().to_string() : "an undefined tensor"};
  });
  const Tensor<T, Cuda> src = x.contiguous();
  launch(src.data(), dtype_of<T>, out.data(), dtype_of<Out>, r == 4 ? x.size(0) : 1, load);
}

}  // namespace medseg::cuda

namespace medseg::preprocess {

// -- resample.hpp ---------------------------------------------------------------------------

namespace detail {
template <class Out, class T>
Tensor<Out, Cuda> resize_on_device(const Tensor<T, Cuda>& x, const Extent3& shape, const ResampleOptions& options,
                                   const cuda::VoxelMap& load) {
  cuda::detail::require_voxel_type<T>();
  static_assert(std::same_as<Out, float> || std::same_as<Out, T>,
                "medseg::preprocess::resize on Cuda tensors writes float32, or the input's own type for order 0");
  const std::string where = "preprocess::resize";
  require(x.defined() && (x.rank() == 3 || x.rank() == 4), [&] {
    return ErrorInfo{.where = where, .field = "input shape", .expected = "[D,H,W] or [C,D,H,W]",
                     .actual = x.defined() ? x.shape().to_string() : "an undefined tensor"};
  });
  const int r = x.rank();
  const Extent3 in{x.size(r - 3), x.size(r - 2), x.size(r - 1)};
  require(in[0] >= 1 && in[1] >= 1 && in[2] >= 1, [&] {
    return ErrorInfo{.where = where, .field = "input shape", .expected = "non-empty spatial axes",
                     .actual = x.shape().to_string()};
  });
  check_output_type(checked_orders(options, where), dtype_of<Out>, options.order, where);
  const cuda::ResamplePlan plan(in, shape, options);
  auto out = Tensor<Out, Cuda>::empty(r == 4 ? Shape{x.size(0), shape[0], shape[1], shape[2]}
                                             : Shape{shape[0], shape[1], shape[2]});
  plan.run(x, out, load);
  return out;
}
}  // namespace detail

/// resize on the device: the same values as on the CPU (see the top of this file).
template <Element Out, Element T>
Tensor<Out, Cuda> resize(const Tensor<T, Cuda>& x, const Extent3& shape, const ResampleOptions& options) {
  return detail::resize_on_device<Out>(x, shape, options, {});
}
/// resize with an HU window fused into the read (the CPU's resize(x, shape, options, window)).
template <Element Out, Element T>
Tensor<Out, Cuda> resize(const Tensor<T, Cuda>& x, const Extent3& shape, const ResampleOptions& options,
                         const HuWindow& window) {
  return detail::resize_on_device<Out>(x, shape, options, cuda::VoxelMap::window(window));
}
/// resize with an affine (a z-score with known statistics) fused into the read.
template <Element Out = float, Element T>
Tensor<Out, Cuda> resize(const Tensor<T, Cuda>& x, const Extent3& shape, const ResampleOptions& options,
                         const Affine& affine) {
  return detail::resize_on_device<Out>(x, shape, options, cuda::VoxelMap::affine(affine));
}

// -- intensity.hpp --------------------------------------------------------------------------

namespace detail {
template <class T>
Tensor<float, Cuda> map_on_device(const Tensor<T, Cuda>& x, const cuda::VoxelMap& map, const char* op) {
  cuda::detail::require_voxel_type<T>();
  require_defined(x, op);
  const Tensor<T, Cuda> c = x.contiguous();
  auto out = Tensor<float, Cuda>::empty(c.shape());
  cuda::detail::map_to_float(c.data(), dtype_of<T>, c.numel(), out.data(), map);
  return out;
}
template <class T>
MinMax min_max_on_device(const Tensor<T, Cuda>& x, const cuda::VoxelMap& map, const char* op) {
  cuda::detail::require_voxel_type<T>();
  require_defined(x, op);
  const Tensor<T, Cuda> c = x.contiguous();
  return cuda::detail::min_max(c.data(), dtype_of<T>, c.numel(), map);
}
}  // namespace detail

template <class T>
Tensor<float, Cuda> hu_window(const Tensor<T, Cuda>& x, const HuWindow& window) {
  require(window.hi > window.lo, [&] {
    return ErrorInfo{.where = "preprocess::hu_window", .field = "window", .expected = "lo < hi",
                     .actual = "[" + str(window.lo) + ", " + str(window.hi) + "]"};
  });
  return detail::map_on_device(x, cuda::VoxelMap::window(window), "hu_window");
}

template <class T>
Tensor<float, Cuda> normalize_range(const Tensor<T, Cuda>& x, std::optional<float> lo, std::optional<float> hi) {
  if (lo && hi) {
    require(*hi > *lo, [&] {
      return ErrorInfo{.where = "preprocess::normalize_range", .field = "range", .expected = "min < max",
                       .actual = "[" + str(*lo) + ", " + str(*hi) + "]"};
    });
    return detail::map_on_device(x, cuda::VoxelMap::window(HuWindow{.lo = *lo, .hi = *hi}), "normalize_range");
  }
  const auto mm = detail::min_max_on_device(x, {}, "normalize_range");
  const float range = mm.hi > mm.lo ? mm.hi - mm.lo : 1.0f;
  return detail::map_on_device(x, cuda::VoxelMap::affine(Affine{mm.lo, 1.0f / range}), "normalize_range");
}

template <class T>
Tensor<float, Cuda> clip_minmax(const Tensor<T, Cuda>& x, float lo, float hi) {
  require(hi > lo, [&] {
    return ErrorInfo{.where = "preprocess::clip_minmax", .field = "clip range", .expected = "lo < hi",
                     .actual = "[" + str(lo) + ", " + str(hi) + "]"};
  });
  // clamp(v) - 0 and * 1 are exact: the min and max of the clipped values.
  const auto mm = detail::min_max_on_device(x, cuda::VoxelMap::clip_affine(lo, hi, Affine{}), "clip_minmax");
  const float range = mm.hi > mm.lo ? mm.hi - mm.lo : 1.0f;
  return detail::map_on_device(x, cuda::VoxelMap::clip_affine(lo, hi, Affine{mm.lo, 1.0f / range}), "clip_minmax");
}

template <class T>
Moments moments(const Tensor<T, Cuda>& x, bool nonzero_only = false) {
  cuda::detail::require_voxel_type<T>();
  detail::require_defined(x, "moments");
  const Tensor<T, Cuda> c = x.contiguous();
  // The CPU's shift: the first element (the first nonzero one with nonzero_only).
  double shift = 0;
  const std::int64_t first = c.numel() == 0 ? -1
                             : nonzero_only ? cuda::detail::first_nonzero(c.data(), dtype_of<T>, c.numel())
                                            : 0;
  if (first >= 0) shift = static_cast<double>(c.flatten().slice(0, first, first + 1).to_vector()[0]);
  const auto s = cuda::detail::shifted_sums(c.data(), dtype_of<T>, c.numel(), nonzero_only, static_cast<float>(shift));
  return detail::finish_moments(s, shift);
}

template <class T>
Tensor<float, Cuda> zscore(const Tensor<T, Cuda>& x, const Moments& stats) {
  return detail::map_on_device(
      x, cuda::VoxelMap::affine(Affine{static_cast<float>(stats.mean), static_cast<float>(1.0 / std::max(stats.std, 1e-8))}),
      "zscore");
}

template <class T>
Tensor<float, Cuda> zscore(const Tensor<T, Cuda>& x, bool nonzero_only) {
  const Moments m = moments(x, nonzero_only);
  if (!nonzero_only) return zscore(x, m);
  const Affine a{static_cast<float>(m.mean), static_cast<float>(1.0 / std::max(m.std, 1e-8))};
  return detail::map_on_device(x, cuda::VoxelMap::affine_nonzero(a), "zscore");
}

/// numpy.percentile(x, q) over every element (linear method), on the device.
template <class T>
double percentile(const Tensor<T, Cuda>& x, double q) {
  const auto values = detail::map_on_device(x, {}, "percentile");
  return cuda::detail::percentile_of(values.data(), nullptr, values.numel(), values.numel(), q);
}

template <class T, class M>
CtStats ct_statistics(const Tensor<T, Cuda>& x, const Tensor<M, Cuda>& foreground) {
  cuda::detail::require_voxel_type<M>();
  detail::require_defined(x, "ct_statistics");
  require(foreground.defined() && foreground.shape() == x.shape(), [&] {
    return ErrorInfo{.where = "preprocess::ct_statistics", .field = "foreground mask",
                     .expected = "shape " + x.shape().to_string(),
                     .actual = foreground.defined() ? foreground.shape().to_string() : "an undefined tensor"};
  });
  const auto values = detail::map_on_device(x, {}, "ct_statistics");
  const Tensor<M, Cuda> f = foreground.contiguous();
  auto flags = Tensor<std::uint8_t, Cuda>::empty(f.shape());
  cuda::detail::nonzero_flags(f.data(), dtype_of<M>, f.numel(), flags.data());
  const std::int64_t n = values.numel();
  // The CPU's formulas: mean and (population) std over the foreground, percentiles of it.
  const auto sum = cuda::detail::masked_sum(values.data(), flags.data(), n);
  CtStats s;
  const double count = static_cast<double>(std::max<std::int64_t>(sum.count, 1));
  s.mean = sum.sum / count;
  s.std = std::sqrt(cuda::detail::masked_squared_deviation(values.data(), flags.data(), n, s.mean) / count);
  s.lower = cuda::detail::percentile_of(values.data(), flags.data(), n, sum.count, 0.5);
  s.upper = cuda::detail::percentile_of(values.data(), flags.data(), n, sum.count, 99.5);
  return s;
}

template <class T>
Tensor<float, Cuda> ct_normalize(const Tensor<T, Cuda>& x, const CtStats& stats) {
  require(stats.upper >= stats.lower, [&] {
    return ErrorInfo{.where = "preprocess::ct_normalize", .field = "percentiles", .expected = "lower <= upper",
                     .actual = "[" + str(stats.lower) + ", " + str(stats.upper) + "]"};
  });
  const auto lo = static_cast<float>(stats.lower), hi = static_cast<float>(stats.upper);
  const Affine a{static_cast<float>(stats.mean), static_cast<float>(1.0 / std::max(stats.std, 1e-8))};
  return detail::map_on_device(x, cuda::VoxelMap::clip_affine(lo, hi, a), "ct_normalize");
}

// -- crop.hpp -------------------------------------------------------------------------------

template <class T>
Box nonzero_box(const Tensor<T, Cuda>& x, T background) {
  cuda::detail::require_voxel_type<T>();
  const Extent3 e = cuda::detail::spatial_extent(x, "nonzero_box");
  const Tensor<T, Cuda> c = x.contiguous();
  return cuda::detail::nonzero_box(c.data(), dtype_of<T>, x.rank() == 4 ? x.size(0) : 1, e, &background);
}

template <class T>
Tensor<T, Cuda> crop(const Tensor<T, Cuda>& x, const Box& box) {
  const Extent3 e = cuda::detail::spatial_extent(x, "crop");
  for (std::size_t a = 0; a < 3; ++a)
    require(box.begin[a] >= 0 && box.begin[a] < box.end[a] && box.end[a] <= e[a], [&] {
      return ErrorInfo{.where = "preprocess::crop", .field = "box",
                       .expected = "a non-empty box inside " + x.shape().to_string(), .actual = detail::box_text(box)};
    });
  const Tensor<T, Cuda> c = x.contiguous();
  auto out = Tensor<T, Cuda>::empty(detail::with_spatial(x.shape(), box.shape()));
  cuda::detail::crop(c.data(), sizeof(T), x.rank() == 4 ? x.size(0) : 1, e, box, out.data());
  return out;
}

// -- labels.hpp -----------------------------------------------------------------------------

template <class L>
Tensor<L, Cuda> remap_labels(const Tensor<L, Cuda>& seg, const LabelMapping<L>& mapping,
                             std::optional<std::type_identity_t<L>> unmapped) {
  cuda::detail::require_label_type<L>();
  detail::require_defined(seg, "remap_labels");
  const Tensor<L, Cuda> c = seg.contiguous();
  std::vector<std::int64_t> from, to;
  for (const auto& [f, t] : mapping) {
    from.push_back(static_cast<std::int64_t>(f));
    to.push_back(static_cast<std::int64_t>(t));
  }
  std::optional<std::int64_t> u;
  if (unmapped) u = static_cast<std::int64_t>(*unmapped);
  auto out = Tensor<L, Cuda>::empty(c.shape());
  cuda::detail::remap_labels(c.data(), dtype_of<L>, c.numel(), from, to, u, out.data());
  return out;
}

template <class L, class M>
Tensor<L, Cuda> set_ignore_label(const Tensor<L, Cuda>& seg, const Tensor<M, Cuda>& mask, L ignore) {
  cuda::detail::require_label_type<L>();
  cuda::detail::require_voxel_type<M>();
  require(mask.defined() && seg.defined() && mask.shape() == seg.shape(), [&] {
    return ErrorInfo{.where = "preprocess::set_ignore_label", .field = "mask",
                     .expected = "the label map's shape " + (seg.defined() ? seg.shape().to_string() : std::string("?")),
                     .actual = mask.defined() ? mask.shape().to_string() : "an undefined tensor"};
  });
  const Tensor<L, Cuda> c = seg.contiguous();
  const Tensor<M, Cuda> m = mask.contiguous();
  auto out = Tensor<L, Cuda>::empty(c.shape());
  cuda::detail::set_ignore_label(c.data(), dtype_of<L>, m.data(), dtype_of<M>, c.numel(), static_cast<std::int64_t>(ignore),
                                 out.data());
  return out;
}

// -- segmentation_resample.hpp ---------------------------------------------------------------

template <class L>
std::vector<L> unique_labels(const Tensor<L, Cuda>& seg) {
  cuda::detail::require_label_type<L>();
  detail::require_defined(seg, "unique_labels");
  const Tensor<L, Cuda> c = seg.contiguous();
  std::vector<L> labels;
  for (const std::int64_t v : cuda::detail::unique_values(c.data(), dtype_of<L>, c.numel())) labels.push_back(static_cast<L>(v));
  return labels;
}

/// resample_segmentation on the device: order 0 is resize's gather; orders 1 and 3 interpolate
/// each label's one-hot mask (computed as it is read, never stored at full size) with one plan
/// for all labels and paint it where it reaches the CPU's threshold.
template <class L>
Tensor<L, Cuda> resample_segmentation(const Tensor<L, Cuda>& seg, const Extent3& shape,
                                      const SegmentationResampleOptions& options, int axis) {
  cuda::detail::require_label_type<L>();
  require(options.order == 0 || options.order == 1 || options.order == 3, [&] {
    return ErrorInfo{.where = "preprocess::resample_segmentation", .field = "order",
                     .expected = "0 (nearest), 1 or 3 (per-label interpolation)", .actual = std::to_string(options.order)};
  });
  const ResampleOptions r{.order = options.order, .grid = options.grid, .boundary = options.boundary,
                          .separate_axis = axis, .separate_order = options.separate_order};
  if (options.order == 0 && (axis < 0 || options.separate_order == 0)) return resize<L>(seg, shape, r);

  const Extent3 in = cuda::detail::spatial_extent(seg, "resample_segmentation");
  const cuda::ResamplePlan plan(in, shape, r);
  const auto labels = unique_labels(seg);
  const Shape out_shape = seg.rank() == 4 ? Shape{seg.size(0), shape[0], shape[1], shape[2]}
                                          : Shape{shape[0], shape[1], shape[2]};
  Tensor<L, Cuda> out;
  Tensor<float, Cuda> mask;
  for (std::size_t li = 0; li < labels.size(); ++li) {
    const L label = labels[li];
    if (!out.defined()) out = Tensor<L, Cuda>::zeros(out_shape);
    // Zeros are already in place when 0 is the smallest label.
    if (li == 0 && label == L(0)) continue;
    if (!mask.defined()) mask = Tensor<float, Cuda>::empty(out_shape);
    plan.run(seg, mask, cuda::VoxelMap::equals(static_cast<float>(label)));
    cuda::detail::paint_label(mask.data(), mask.numel(), out.data(), dtype_of<L>, static_cast<std::int64_t>(label));
  }
  if (!out.defined()) out = resize<L>(seg, shape, {.order = 0, .grid = options.grid, .boundary = options.boundary});
  return out;
}

}  // namespace medseg::preprocess
