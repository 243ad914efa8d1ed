// The Cuda overloads of the preprocessing kernels of backends/cpu/preprocess.hpp (same names
// and arguments, Tensor<..., Cuda> in place of Tensor<..., Cpu>): resampling (orders 0, 1, 3,
// with a VoxelMap such as an HU window or affine fused into the read), per-label segmentation
// resampling, the pointwise maps and the reductions of the intensity ops (min / max, moments,
// CT statistics, percentiles), the nonzero box and crop, label remapping. The kernels repeat
// the CPU's arithmetic in the CPU's order (no FMA contraction, the same blocking of the float
// sums), so resampling and normalisation are meant to agree to the last bit
// (tests/cuda/preprocess_test.cpp allows 1e-5 of the data's scale and reports any difference);
// order 0, crops and label ops are exact. Double sums over a foreground (CT statistics) are
// tree sums, not the CPU's serial ones: equal to ~1e-15. The templates here are thin: they
// pass pointers and DTypes to the type-erased entry points compiled into medseg::cuda from
// src/backends/cuda/preprocess.cu. Reached through backends/ops.hpp; preprocess/ calls them.
//   const cuda::ResamplePlan plan({200, 512, 512}, {128, 128, 128}, {.order = 1});
//   plan.run(ct, out, ops::VoxelMap::window({-1250, 250}));   // no host work, no copies
#pragma once

#include <array>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "../preprocess.hpp"
#include "backend.hpp"

namespace medseg::cuda {

/// A resampling from one grid to another on the device: the per-axis taps (ops::ResampleTaps,
/// planned on the host) go to the device in one copy and serve every run: each channel, each
/// label of a per-label resampling, each case of one shape. Kernels, by the orders of the
/// three axes:
///   all 0:      a gather, one thread per output voxel, in the input's own type;
///   all <= 1:   one thread per output voxel, its 2 x 2 x 2 taps summed in the order the CPU's
///               kernel for these extents sums them (ops::blends_rows_first);
///   any 3:      the CPU's separable passes W, H, D, each axis of order 3 prefiltered (SciPy's
///               spline prefilter, one thread per line) before its pass.
class ResamplePlan {
 public:
  /// `in` and `out` are spatial extents (D, H, W); the options are resize's and checked as it checks them.
  ResamplePlan(const ops::Extent3& in, const ops::Extent3& out, const ops::ResampleOptions& options);
  /// The device copy of taps planned (and checked) already.
  explicit ResamplePlan(const ops::ResampleTaps& taps);

  /// out = x resampled, each value passed through `load` as it is read. x is [D,H,W] or
  /// [C,D,H,W] with the plan's input extent; out is contiguous, of the same rank and channels,
  /// with the output extent. Out is float, or T when every axis is order 0. Kernels only: on
  /// the current stream, nothing copied, nothing waited for (scratch for order 3 comes from
  /// the caching allocator).
  template <Element Out, Element T>
  void run(const Tensor<T, Cuda>& x, const Tensor<Out, Cuda>& out, const ops::VoxelMap& load = {}) const;

  const ops::Extent3& in_extent() const { return in_; }
  const ops::Extent3& out_extent() const { return out_; }

 private:
  void upload(const ops::ResampleTaps& taps);
  void launch(const void* x, DType in_type, void* out, DType out_type, std::int64_t channels,
              const ops::VoxelMap& load) const;

  ops::Extent3 in_{}, out_{};
  std::array<int, 3> orders_{};
  int order_ = 1;                        // the options' order, for messages
  std::array<int, 3> taps_{};
  std::array<std::int64_t, 3> first_{};  // where each axis's taps start in index_ / weight_
  Tensor<std::int64_t, Cuda> index_;     // the three axes' tap indices, D then H then W
  Tensor<float, Cuda> weight_;           // and their weights
};

namespace detail {

// Type-erased entry points of src/backends/cuda/preprocess.cu, for the templates of this
// header; all pointers are device memory of `n` contiguous elements of the DType given.

/// out[i] = map(float(x[i])).
void map_to_float(const void* x, DType type, std::int64_t n, float* out, const ops::VoxelMap& map);
/// out[i] = x[i] != 0.
void nonzero_flags(const void* x, DType type, std::int64_t n, std::uint8_t* out);
/// Min and max of map(float(x[i])), NaN skipped, as the CPU's min_max.
ops::MinMax min_max(const void* x, DType type, std::int64_t n, const ops::VoxelMap& map);
/// The index of the first nonzero element, or -1.
std::int64_t first_nonzero(const void* x, DType type, std::int64_t n);
/// The CPU moments' sums of (v - shift) and (v - shift)^2 (of nonzero v only when
/// `nonzero_only`), in the CPU's blocks, runs and lanes: the same float and double roundings.
ops::SumSq shifted_sums(const void* x, DType type, std::int64_t n, bool nonzero_only, float shift);
/// Sum (in double) and count of values[i] where flags[i] (every i when flags is null).
ops::SumSq masked_sum(const float* values, const std::uint8_t* flags, std::int64_t n);
/// Sum of (values[i] - mean)^2 in double where flags[i].
double masked_squared_deviation(const float* values, const std::uint8_t* flags, std::int64_t n, double mean);
/// The k-th smallest (0-based) of values[i] where flags[i]: a radix select, exact.
float kth_smallest(const float* values, const std::uint8_t* flags, std::int64_t n, std::int64_t k);

/// The bounding box of elements != *background (a host pointer to one element of `type`).
ops::Box nonzero_box(const void* x, DType type, std::int64_t channels, const ops::Extent3& extent,
                     const void* background);
/// out = the box of x, every channel, elements of `element_bytes` bytes.
void crop(const void* x, std::size_t element_bytes, std::int64_t channels, const ops::Extent3& extent,
          const ops::Box& box, void* out);
/// out[i] = the `to` of the first `from` equal to x[i], else unmapped (when given) or x[i].
void remap_labels(const void* x, DType type, std::int64_t n, const std::vector<std::int64_t>& from,
                  const std::vector<std::int64_t>& to, std::optional<std::int64_t> unmapped, void* out);
/// out[i] = mask[i] != 0 ? seg[i] : ignore.
void set_ignore_label(const void* seg, DType type, const void* mask, DType mask_type, std::int64_t n,
                      std::int64_t ignore, void* out);
/// The distinct values of x, ascending.
std::vector<std::int64_t> unique_values(const void* x, DType type, std::int64_t n);
/// out[i] = label where mask[i] >= ops::label_mask_threshold.
void paint_label(const float* mask, std::int64_t n, void* out, DType type, std::int64_t label);

template <class T>
constexpr void require_voxel_type() {
  static_assert(ops::PreprocessVoxel<T>, "medseg::preprocess on Cuda tensors reads uint8, int8, uint16, int16, int32 "
                                         "or float32 elements: convert the tensor first (astype on the host)");
}
template <class L>
constexpr void require_label_type() {
  static_assert(ops::PreprocessLabel<L>, "medseg::preprocess label ops on Cuda tensors take uint8, int8, uint16, "
                                         "int16 or int32 label maps");
}

/// x's spatial extent (the last three axes) after checking it is [D,H,W] or [C,D,H,W].
template <class T>
ops::Extent3 spatial_extent(const Tensor<T, Cuda>& x, const std::string& where) {
  require(x.defined() && (x.rank() == 3 || x.rank() == 4), [&] {
    return ErrorInfo{.where = where, .field = "input shape", .expected = "[D,H,W] or [C,D,H,W]",
                     .actual = x.defined() ? x.shape().to_string() : "an undefined tensor"};
  });
  const int r = x.rank();
  return {x.size(r - 3), x.size(r - 2), x.size(r - 1)};
}
inline std::int64_t channels_of(const Shape& s) { return s.rank() == 4 ? s[0] : 1; }

/// A percentile (numpy's linear method) of values[i] where flags[i], `count` of them.
inline double percentile_of(const float* values, const std::uint8_t* flags, std::int64_t n, std::int64_t count,
                            double q) {
  ops::require_values(static_cast<std::size_t>(count));
  const double pos = ops::percentile_position(static_cast<std::size_t>(count), q);
  const auto lo = static_cast<std::int64_t>(std::floor(pos));
  const double a = kth_smallest(values, flags, n, lo);
  if (lo + 1 >= count) return a;
  const double b = kth_smallest(values, flags, n, lo + 1);
  return ops::percentile_between(a, b, pos, static_cast<std::size_t>(lo));
}

}  // namespace detail

template <Element Out, Element T>
void ResamplePlan::run(const Tensor<T, Cuda>& x, const Tensor<Out, Cuda>& out, const ops::VoxelMap& load) const {
  detail::require_voxel_type<T>();
  static_assert(std::same_as<Out, float> || std::same_as<Out, T>,
                "cuda::ResamplePlan::run writes float32, or the input's own type for order 0");
  const std::string where = "cuda::ResamplePlan::run";
  ops::check_output_type(orders_, dtype_of<Out>, order_, where);
  const ops::Extent3 e = detail::spatial_extent(x, where);
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

namespace medseg::ops {

// Each takes contiguous tensors checked by its caller in preprocess/ and writes into `out`
// allocated by it, on the current stream; what a function returns to the host it copies back.

// -- Resampling -------------------------------------------------------------------------------

template <class Out, class T>
void resample(const Tensor<T, Cuda>& x, const Tensor<Out, Cuda>& out, const ResampleTaps& taps, const VoxelMap& load) {
  cuda::detail::require_voxel_type<T>();
  static_assert(std::same_as<Out, float> || std::same_as<Out, T>,
                "medseg::preprocess::resize on Cuda tensors writes float32, or the input's own type for order 0");
  cuda::ResamplePlan(taps).run(x, out, load);
}

/// One plan for every label; each label's one-hot mask is computed as it is read, never
/// stored at full size, and painted where it reaches the CPU's threshold.
template <class L>
void resample_labels(const Tensor<L, Cuda>& seg, const Tensor<L, Cuda>& out, const ResampleTaps& taps,
                     const std::vector<L>& labels) {
  cuda::detail::require_label_type<L>();
  const cuda::ResamplePlan plan(taps);
  Tensor<float, Cuda> mask;
  for (std::size_t li = 0; li < labels.size(); ++li) {
    const L label = labels[li];
    if (li == 0 && label == L(0)) continue;  // zeros are already in place
    if (!mask.defined()) mask = Tensor<float, Cuda>::empty(out.shape());
    plan.run(seg, mask, VoxelMap::equals(static_cast<float>(label)));
    cuda::detail::paint_label(mask.data(), mask.numel(), out.data(), dtype_of<L>, static_cast<std::int64_t>(label));
  }
}

// -- Intensity --------------------------------------------------------------------------------

template <class T>
void map_voxels(const Tensor<T, Cuda>& x, const Tensor<float, Cuda>& out, const VoxelMap& map) {
  cuda::detail::require_voxel_type<T>();
  cuda::detail::map_to_float(x.data(), dtype_of<T>, x.numel(), out.data(), map);
}

template <class T>
MinMax min_max(const Tensor<T, Cuda>& x, const VoxelMap& map) {
  cuda::detail::require_voxel_type<T>();
  return cuda::detail::min_max(x.data(), dtype_of<T>, x.numel(), map);
}

template <class T>
std::int64_t first_nonzero(const Tensor<T, Cuda>& x) {
  cuda::detail::require_voxel_type<T>();
  return cuda::detail::first_nonzero(x.data(), dtype_of<T>, x.numel());
}

template <class T>
SumSq shifted_sums(const Tensor<T, Cuda>& x, bool nonzero_only, float shift) {
  cuda::detail::require_voxel_type<T>();
  return cuda::detail::shifted_sums(x.data(), dtype_of<T>, x.numel(), nonzero_only, shift);
}

/// The CPU's formulas: mean and (population) std over the foreground, percentiles of it;
/// the sums are fixed-order trees, the percentiles an exact radix select.
template <class T, class M>
CtStats foreground_statistics(const Tensor<T, Cuda>& x, const Tensor<M, Cuda>& foreground) {
  cuda::detail::require_voxel_type<T>();
  cuda::detail::require_voxel_type<M>();
  auto values = Tensor<float, Cuda>::empty(x.shape());
  cuda::detail::map_to_float(x.data(), dtype_of<T>, x.numel(), values.data(), {});
  auto flags = Tensor<std::uint8_t, Cuda>::empty(foreground.shape());
  cuda::detail::nonzero_flags(foreground.data(), dtype_of<M>, foreground.numel(), flags.data());
  const std::int64_t n = values.numel();
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
double percentile(const Tensor<T, Cuda>& x, double q) {
  cuda::detail::require_voxel_type<T>();
  auto values = Tensor<float, Cuda>::empty(x.shape());
  cuda::detail::map_to_float(x.data(), dtype_of<T>, x.numel(), values.data(), {});
  return cuda::detail::percentile_of(values.data(), nullptr, values.numel(), values.numel(), q);
}

// -- Boxes, crops -----------------------------------------------------------------------------

template <class T>
Box nonzero_box(const Tensor<T, Cuda>& x, T background) {
  cuda::detail::require_voxel_type<T>();
  const Extent3 e = cuda::detail::spatial_extent(x, "preprocess::nonzero_box");
  return cuda::detail::nonzero_box(x.data(), dtype_of<T>, cuda::detail::channels_of(x.shape()), e, &background);
}

template <class T>
void crop(const Tensor<T, Cuda>& x, const Box& box, const Tensor<T, Cuda>& out) {
  const Extent3 e = cuda::detail::spatial_extent(x, "preprocess::crop");
  cuda::detail::crop(x.data(), sizeof(T), cuda::detail::channels_of(x.shape()), e, box, out.data());
}

// -- Labels -----------------------------------------------------------------------------------

template <class L>
void remap_labels(const Tensor<L, Cuda>& seg, const LabelMapping<L>& mapping, std::optional<L> unmapped,
                  const Tensor<L, Cuda>& out) {
  cuda::detail::require_label_type<L>();
  std::vector<std::int64_t> from, to;
  for (const auto& [f, t] : mapping) {
    from.push_back(static_cast<std::int64_t>(f));
    to.push_back(static_cast<std::int64_t>(t));
  }
  std::optional<std::int64_t> u;
  if (unmapped) u = static_cast<std::int64_t>(*unmapped);
  cuda::detail::remap_labels(seg.data(), dtype_of<L>, seg.numel(), from, to, u, out.data());
}

template <class L, class M>
void set_ignore_label(const Tensor<L, Cuda>& seg, const Tensor<M, Cuda>& mask, L ignore, const Tensor<L, Cuda>& out) {
  cuda::detail::require_label_type<L>();
  cuda::detail::require_voxel_type<M>();
  cuda::detail::set_ignore_label(seg.data(), dtype_of<L>, mask.data(), dtype_of<M>, seg.numel(),
                                 static_cast<std::int64_t>(ignore), out.data());
}

template <class L>
std::vector<L> unique_labels(const Tensor<L, Cuda>& seg) {
  cuda::detail::require_label_type<L>();
  std::vector<L> labels;
  for (const std::int64_t v : cuda::detail::unique_values(seg.data(), dtype_of<L>, seg.numel()))
    labels.push_back(static_cast<L>(v));
  return labels;
}

}  // namespace medseg::ops
