// The augmentation kernels on the GPU, the Cuda overloads of the CPU kernels in
// backends/cpu/augment.hpp (same names and arguments, Tensor<..., Cuda> in place of
// Tensor<..., Cpu>): the sampling pass, whole-voxel crops and moves, the separable resizes, the
// bias field, the random fields, the Gaussian filter's passes, the intensity maps and the
// per-channel statistics, on the current stream (stream.hpp). Definitions in
// src/backends/cuda/augment.cu. Each repeats the CPU kernel's arithmetic in its order (the
// host-device functions of backends/augment.hpp, with explicit rounding), so the results are
// the CPU's bits, except where a C library function (logf, cosf, sinf, powf, expf) rounds
// differently in its last bit: GaussianNoise, Gamma and the bias field.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "../../core/dtype.hpp"
#include "../../core/tensor.hpp"
#include "../augment.hpp"
#include "backend.hpp"

namespace medseg::ops {

// -- Host access (what a draw reads) --------------------------------------------------------

/// x copied back to the host (a synchronous copy).
template <class T>
Tensor<T, Cpu> host_readable(const Tensor<T, Cuda>& x) {
  return x.template to<Cpu>();
}
/// out = host tensor x uploaded.
template <class T>
void from_host(const Tensor<T, Cpu>& x, Tensor<T, Cuda>& out) {
  out = x.template to<Cuda>();
}

// -- Sampling and voxel moves (type-erased entry points behind the templates below) ---------

namespace detail::augment {
void sample_grid(const voxel::GridSpec& grid, const float* displacement, const float* image, float* image_out,
                 std::int64_t channels, const std::int64_t in[3], const void* label, void* label_out, DType label_type,
                 SamplingModes modes);
void crop_or_pad(const void* x, std::size_t element_bytes, std::int64_t channels, const std::int64_t in[3],
                 const std::int64_t begin[3], const std::int64_t size[3], void* out, const void* fill);
void permute_reverse(const void* x, std::size_t element_bytes, const voxel::PermutePlan& plan, std::int64_t n,
                     void* out);
}  // namespace detail::augment

/// One thread per output voxel, all channels (and the label) at once. Label types: uint8,
/// int8, int16, uint16, int32, int64.
template <class L>
void sample_grid(const voxel::GridSpec& grid, const Tensor<float, Cuda>& displacement, const Tensor<float, Cuda>& image,
                 const Tensor<float, Cuda>& image_out, const Tensor<L, Cuda>& label, const Tensor<L, Cuda>& label_out,
                 SamplingModes modes) {
  if (!image.defined() && !label.defined()) return;
  const std::int64_t in[3] = {image.defined() ? image.size(1) : label.size(1),
                              image.defined() ? image.size(2) : label.size(2),
                              image.defined() ? image.size(3) : label.size(3)};
  detail::augment::sample_grid(grid, displacement.defined() ? displacement.data() : nullptr,
                               image.defined() ? image.data() : nullptr, image.defined() ? image_out.data() : nullptr,
                               image.defined() ? image.size(0) : 0, in, label.defined() ? label.data() : nullptr,
                               label.defined() ? label_out.data() : nullptr, Tensor<L, Cuda>::dtype(), modes);
}
/// Elements of 1, 2, 4 or 8 bytes, moved as bits; `fill` outside.
template <class T>
void crop_or_pad(const Tensor<T, Cuda>& x, const std::array<std::int64_t, 3>& begin, const Tensor<T, Cuda>& out,
                 T fill) {
  const std::int64_t in[3] = {x.size(1), x.size(2), x.size(3)}, size[3] = {out.size(1), out.size(2), out.size(3)};
  detail::augment::crop_or_pad(x.data(), sizeof(T), x.size(0), in, begin.data(), size, out.data(), &fill);
}
/// Elements of 1, 2, 4 or 8 bytes, moved as bits.
template <class T>
void permute_reverse(const Tensor<T, Cuda>& x, const voxel::PermutePlan& plan, const Tensor<T, Cuda>& out) {
  detail::augment::permute_reverse(x.data(), sizeof(T), plan, out.numel(), out.data());
}
/// The tap tables are host memory (uploaded).
void resize_separable(const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& out, const std::vector<std::int64_t>& i0,
                      const std::vector<std::int64_t>& i1, const std::vector<float>& t, bool linear);

// -- Fields and filters (tables and taps are host memory, uploaded) --------------------------

void bias_field_log(const Tensor<float, Cuda>& out, int degree, const std::vector<double>& coefficients,
                    const std::vector<double>& pz, const std::vector<double>& py, const std::vector<double>& px);
void multiply_bias_field(const Tensor<float, Cuda>& x, int degree, const std::vector<double>& coefficients,
                         const std::vector<double>& pz, const std::vector<double>& py, const std::vector<double>& px);
void uniform_noise(std::uint64_t seed, std::uint64_t stream, const Tensor<float, Cuda>& out);
void add_gaussian_noise(const Tensor<float, Cuda>& x, std::uint64_t seed, std::uint64_t stream, float sd);
/// One thread per output value: voxel::gaussian_tap_sum, the CPU's sum in the CPU's order.
void gaussian_axis(const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& y, std::int64_t outer, std::int64_t n,
                   std::int64_t inner, const std::vector<float>& weights);

// -- Intensity ------------------------------------------------------------------------------

void map_intensity(const Tensor<float, Cuda>& x, const IntensityMap& map);
/// The partials on the device (the CPU's lanes summed in its order), copied back.
ChannelPartials channel_partials(const Tensor<float, Cuda>& x);

}  // namespace medseg::ops
