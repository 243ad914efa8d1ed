// Kernels of backends/cuda/elementwise.hpp. One thread per element in grid-stride loops over
// contiguous tensors. Each op checks its arguments as its CPU twin does, with the same messages.
#include "medseg/backends/cuda/elementwise.hpp"

#include <algorithm>
#include <string>

#include "backends/cuda/launch.cuh"

namespace medseg::ops {

namespace detail {
void require_same_shape(const char* op, const Tensor<float, Cuda>& a, const Tensor<float, Cuda>& b) {
  require(a.shape() == b.shape(), [&] {
    return ErrorInfo{.where = op, .field = "shapes", .expected = "equal shapes",
                     .actual = a.shape().to_string() + " and " + b.shape().to_string()};
  });
  require(a.is_contiguous() && b.is_contiguous(), [&] {
    return ErrorInfo{.where = op, .field = "layout", .expected = "contiguous tensors",
                     .actual = a.layout().to_string() + " and " + b.layout().to_string()};
  });
}
}  // namespace detail

namespace {

using namespace cuda::detail;  // launch.cuh: block_threads, grid_for, grid-stride loops, check_launch

// No __restrict__ below: the ops allow the output to be one of the inputs.

__global__ void add_kernel(const float* a, const float* b, float* out, std::int64_t n) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) out[i] = a[i] + b[i];
}

__global__ void accumulate_kernel(float* dst, const float* src, float alpha, std::int64_t n) {
  // Rounded product, then rounded sum: nvcc would otherwise fuse them into an FMA, which
  // rounds once and differs from the CPU in the last bit.
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) dst[i] = __fadd_rn(dst[i], __fmul_rn(alpha, src[i]));
}

__global__ void scale_kernel(const float* a, float s, float* out, std::int64_t n) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) out[i] = a[i] * s;
}

/// The CPU asks DropoutMask::keeps about the first element of each unit of `unit` elements,
/// which draws number (first / unit_size) of the mask's stream; this asks the same question
/// of the same Philox numbers. `divisor` is the mask's unit_size (1 where that is 0).
__global__ void dropout_kernel(const float* x, float* out, std::int64_t n, std::int64_t unit, std::int64_t divisor,
                               float p, float keep_scale, std::uint64_t seed, std::uint64_t stream) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) {
    const std::int64_t first = (i / unit) * unit;
    const bool keep = uniform_at(seed, stream, static_cast<std::uint64_t>(first / divisor)) >= p;
    out[i] = x[i] * (keep ? keep_scale : 0.0f);
  }
}

/// Launches an element-wise kernel over n elements on the current stream (nothing for n = 0).
template <class... Params, class... Args>
void launch_elementwise(const char* name, void (*kernel)(Params...), std::int64_t n, Args... args) {
  if (n == 0) return;
  kernel<<<grid_for(n), block_threads, 0, cuda::current_stream()>>>(args...);
  check_launch(name);
}

}  // namespace

void add(const Tensor<float, Cuda>& a, const Tensor<float, Cuda>& b, const Tensor<float, Cuda>& out) {
  detail::require_same_shape("ops::add", a, b);
  detail::require_same_shape("ops::add", a, out);
  launch_elementwise("ops::add", add_kernel, a.numel(), a.data(), b.data(), out.data(), a.numel());
}

void accumulate(const Tensor<float, Cuda>& dst, const Tensor<float, Cuda>& src, float alpha) {
  detail::require_same_shape("ops::accumulate", dst, src);
  launch_elementwise("ops::accumulate", accumulate_kernel, dst.numel(), dst.data(), src.data(), alpha, dst.numel());
}

void scale(const Tensor<float, Cuda>& a, float s, const Tensor<float, Cuda>& out) {
  detail::require_same_shape("ops::scale", a, out);
  launch_elementwise("ops::scale", scale_kernel, a.numel(), a.data(), s, out.data(), a.numel());
}

void apply_dropout(const DropoutMask& mask, const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& out) {
  detail::require_same_shape("ops::apply_dropout", x, out);
  // The CPU's scale and unit, computed the same way on the host.
  const float keep_scale = mask.p < 1.0f ? 1.0f / (1.0f - mask.p) : 0.0f;
  const std::int64_t unit = std::max<std::int64_t>(mask.unit_size, 1);
  const std::int64_t divisor = mask.unit_size != 0 ? mask.unit_size : 1;
  launch_elementwise("ops::apply_dropout", dropout_kernel, x.numel(), x.data(), out.data(), x.numel(), unit, divisor,
                     mask.p, keep_scale, mask.seed, mask.stream);
}

}  // namespace medseg::ops
