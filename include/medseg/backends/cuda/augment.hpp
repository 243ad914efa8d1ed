// Kernels of the GPU augmentations (transforms/cuda.hpp): the spatial transform's sampling
// pass, whole-voxel crops, flips and quarter turns, the separable resizes of the low-resolution
// simulation, the Gaussian filter and the elastic field's noise, the intensity maps, the bias
// field and the per-channel statistics. Type-erased entry points on device pointers, run on
// the current stream (backends/cuda/stream.hpp), compiled into medseg::cuda from
// src/backends/cuda/augment.cu. Each repeats the CPU transform's arithmetic in its order
// (transforms/voxel_sampling.hpp and voxel_intensity.hpp, with explicit rounding), so the
// results are the CPU's bits, except where a C library function (logf, cosf, sinf, powf)
// rounds differently in its last bit.
#pragma once

#include <cstdint>
#include <vector>

#include "../../core/dtype.hpp"
#include "../../transforms/voxel_intensity.hpp"
#include "../../transforms/voxel_sampling.hpp"

namespace medseg::cuda::detail {

/// How a spatial sampling pass reads: transforms::ImageInterpolation and LabelInterpolation
/// as plain values (0 nearest, 1 linear / per-class linear).
struct SamplingModes {
  int image = 1;
  int label = 0;
};

/// Samples image [channels, in...] (and label [1, in...] of `label_type`, when not null) on
/// `grid` into image_out [channels, grid.out...] (and label_out). displacement: null, or
/// [3, grid.out...] in voxels. One thread per output voxel, all channels at once.
void sample_grid(const transforms::voxel::GridSpec& grid, const float* displacement, const float* image,
                 float* image_out, std::int64_t channels, const std::int64_t in[3], const void* label, void* label_out,
                 DType label_type, SamplingModes modes);

/// out [channels, size...] = the box [begin, begin + size) of x [channels, in...], whose
/// outside reads zero bits (0.0f, label 0); elements of `element_bytes` (1, 2, 4 or 8).
void crop_or_pad(const void* x, std::size_t element_bytes, std::int64_t channels, const std::int64_t in[3],
                 const std::int64_t begin[3], const std::int64_t size[3], void* out);

/// out[i] = x[voxel::permuted_source(plan, i)] for the channels * plan.out... elements of out
/// (flip.hpp's permute_reverse); elements of `element_bytes` (1, 2, 4 or 8), moved as bits.
void permute_reverse(const void* x, std::size_t element_bytes, std::int64_t channels,
                     const transforms::voxel::PermutePlan& plan, void* out);

/// out [channels, size...] = x [channels, in...] resized separably (low_resolution.hpp's
/// resize_nearest_exact when !linear, resize_trilinear when linear): per output axis, the
/// taps i0, i1 and weights t of its outputs, the three axes one after another (D, H, W; host
/// memory, size[0] + size[1] + size[2] each; i1 and t are read only when linear).
void resize_separable(const float* x, float* out, std::int64_t channels, const std::int64_t in[3],
                      const std::int64_t size[3], const std::vector<std::int64_t>& i0,
                      const std::vector<std::int64_t>& i1, const std::vector<float>& t, bool linear);

/// Every channel of x [channels, size...] multiplied, in place, by exp(f), f the bias field
/// of `degree` (transforms::bias_field_log): coefficients dense (detail::dense_bias_coefficients),
/// pz, py, px the Legendre tables of the three axes (detail::legendre_table); host memory.
void multiply_bias_field(float* x, std::int64_t channels, const std::int64_t size[3], int degree,
                         const std::vector<double>& coefficients, const std::vector<double>& pz,
                         const std::vector<double>& py, const std::vector<double>& px);

/// out[i] = 2 * uniform_from_bits(word i % 4 of Philox block i / 4 of (seed, stream)) - 1:
/// the elastic field's noise (transforms::elastic_displacement).
void uniform_noise(std::uint64_t seed, std::uint64_t stream, float* out, std::int64_t n);

/// y = x smoothed along the middle axis of the view (outer, n, inner) with the taps
/// `weights` (2r + 1 of them, host memory), SciPy's 'reflect' boundary; the CPU's
/// transforms::detail::gaussian_axis, sum for sum.
void gaussian_axis(const float* x, float* y, std::int64_t outer, std::int64_t n, std::int64_t inner,
                   const std::vector<float>& weights);

/// x[i] += sd * normal i of GaussianNoise's field (seed, stream), in place.
void add_gaussian_noise(float* x, std::int64_t n, std::uint64_t seed, std::uint64_t stream, float sd);

/// A pointwise intensity map (transforms/voxel_intensity.hpp).
using IntensityMap = transforms::voxel::IntensityMap;
/// x[i] = map(x[i]) for n values, in place.
void map_intensity(float* x, std::int64_t n, const IntensityMap& map);

/// The first half of transforms::channel_stats on the device: one partial (sum, sum of
/// squares, min, max) per block of transforms::channel_stats_block values, the CPU's eight
/// interleaved lanes summed in the CPU's order, copied back to the host (blocks of them).
void channel_partials(const float* x, std::int64_t n, std::vector<double>& sums, std::vector<double>& squares,
                      std::vector<float>& mins, std::vector<float>& maxs);

}  // namespace medseg::cuda::detail
