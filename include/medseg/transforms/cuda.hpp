// The augmentations on the GPU: every transform of this folder runs on a BasicSample<L, Cuda>,
// so a training loop can augment without the CPU in the way, and the ready-made chains of
// presets.hpp (nnunet_3d, medicalseg_lung, medicalseg_spine) run entirely on the device.
// Include this header (and link medseg::cuda); then `t.apply(gpu_sample, rng)` and
// `(a | b | c).apply(gpu_sample, rng)` work as on the CPU. On the GPU:
//   spatial   SpatialTransform (rotation, scaling and elastic deformation in one sampling
//             pass, the fused foreground crop), RandomScale, RandomRotation3D,
//             RandomResizedCrop3D: the one grid sampler (resample);
//   moves     RandomFlip3D, RandomQuarterTurn3D (permute_reverse, rot90, flip), RandomCrop,
//             CenterCrop, PadToSize, ForegroundCrop (crop_or_pad): exact voxel copies;
//   intensity GaussianNoise, GaussianBlur, MultiplicativeBrightness, Contrast, Gamma,
//             Normalize, SimulateLowResolution (resize_nearest_exact, resize_trilinear),
//             RandomBiasField; the label passes through.
// Compose (`|`) and Maybe take GPU samples as they take CPU ones.
//
// Same results as the CPU for the same RandomStream: every random parameter is drawn on the
// host by the very function the CPU transform draws with (the transforms' draw()), and the
// per-voxel random fields (elastic noise, Gaussian noise) are the same counter-based Philox
// words, generated on the device (the RNG is a pure function of seed, stream and index: no
// upload, no host in the loop). Draws that centre a patch on foreground read the label on
// the host (it is copied back only then). The kernels round as the CPU does
// (voxel_sampling.hpp, voxel_intensity.hpp), so the sampling, the voxel moves, the resizes,
// the blur, brightness, contrast and normalisation give the CPU's bits; Gaussian noise, gamma
// and the bias field go through CUDA's logf / cosf / sinf / pow / expf, which can differ from
// the C library's in the last bit or two: ~1e-7 of the data's scale. Labels are always exact.
//   transforms::BasicSample<std::uint8_t, Cuda> s{image.to<Cuda>(), label.to<Cuda>()};
//   auto aug = transforms::nnunet_3d({128, 128, 128});
//   aug.apply(s, rng);                                    // s.image, s.label: new device tensors
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "../backends/cuda/augment.hpp"
#include "../backends/cuda/backend.hpp"
#include "../core/tensor.hpp"
#include "bias_field.hpp"
#include "crop.hpp"
#include "flip.hpp"
#include "intensity.hpp"
#include "low_resolution.hpp"
#include "presets.hpp"
#include "rotate.hpp"
#include "spatial.hpp"

namespace medseg::transforms {

/// gaussian_filter on a device tensor [C,D,H,W]: the same taps, sums and 'reflect' boundary.
Tensor<float, Cuda> gaussian_filter(const Tensor<float, Cuda>& x, const std::array<double, 3>& sigma,
                                    double truncate = 4.0);

/// elastic_displacement on the device: the same draw from rng, the same noise, the same field.
Tensor<float, Cuda> elastic_displacement_on_device(const Index3& size, double alpha, double sigma, RandomStream& rng);

/// crop_or_pad of a GPU sample: the box [begin, begin + size) of image and label, 0 outside.
template <class L>
void crop_or_pad(BasicSample<L, Cuda>& s, const Index3& begin, const Index3& size);

/// resample of a GPU sample on `grid`. The displacement is `displacement` (on the device,
/// [3, grid.out_size...]) or, when that is undefined, grid.displacement (host; uploaded).
template <class L>
void resample(BasicSample<L, Cuda>& s, const SamplingGrid& grid, ImageInterpolation image_interpolation,
              LabelInterpolation label_interpolation, const Tensor<float, Cuda>& displacement = {});

/// permute_reverse of a device tensor: the same voxel moves (flip.hpp).
template <class T>
Tensor<T, Cuda> permute_reverse(const Tensor<T, Cuda>& x, const std::array<int, 3>& source,
                                const std::array<bool, 3>& reverse);
/// rot90 of a device tensor (rotate.hpp).
template <class T>
Tensor<T, Cuda> rot90(const Tensor<T, Cuda>& x, int k, const Plane& plane);
/// flip of a GPU sample: the axes marked in `axes` reversed in image and label.
template <class L>
void flip(BasicSample<L, Cuda>& s, const std::array<bool, 3>& axes);

/// resize_nearest_exact and resize_trilinear of a device tensor [C,D,H,W] (low_resolution.hpp):
/// the CPU's index and weight tables, made on the host, and its lerps in its order.
Tensor<float, Cuda> resize_nearest_exact(const Tensor<float, Cuda>& x, const Index3& size);
Tensor<float, Cuda> resize_trilinear(const Tensor<float, Cuda>& x, const Index3& size);

// The GPU versions, found by the transforms' apply on a BasicSample<L, Cuda>.
template <class L>
void apply_on_device(const SpatialTransform& t, BasicSample<L, Cuda>& s, RandomStream& rng);
template <class L>
void apply_on_device(const RandomScale& t, BasicSample<L, Cuda>& s, RandomStream& rng);
template <class L>
void apply_on_device(const RandomRotation3D& t, BasicSample<L, Cuda>& s, RandomStream& rng);
template <class L>
void apply_on_device(const RandomQuarterTurn3D& t, BasicSample<L, Cuda>& s, RandomStream& rng);
template <class L>
void apply_on_device(const RandomFlip3D& t, BasicSample<L, Cuda>& s, RandomStream& rng);
template <class L>
void apply_on_device(const RandomCrop& t, BasicSample<L, Cuda>& s, RandomStream& rng);
template <class L>
void apply_on_device(const CenterCrop& t, BasicSample<L, Cuda>& s, RandomStream& rng);
template <class L>
void apply_on_device(const PadToSize& t, BasicSample<L, Cuda>& s, RandomStream& rng);
template <class L>
void apply_on_device(const ForegroundCrop& t, BasicSample<L, Cuda>& s, RandomStream& rng);
template <class L>
void apply_on_device(const RandomResizedCrop3D& t, BasicSample<L, Cuda>& s, RandomStream& rng);
template <class L>
void apply_on_device(const SimulateLowResolution& t, BasicSample<L, Cuda>& s, RandomStream& rng);
template <class L>
void apply_on_device(const RandomBiasField& t, BasicSample<L, Cuda>& s, RandomStream& rng);
template <class L>
void apply_on_device(const GaussianNoise& t, BasicSample<L, Cuda>& s, RandomStream& rng);
template <class L>
void apply_on_device(const GaussianBlur& t, BasicSample<L, Cuda>& s, RandomStream& rng);
template <class L>
void apply_on_device(const MultiplicativeBrightness& t, BasicSample<L, Cuda>& s, RandomStream& rng);
template <class L>
void apply_on_device(const Contrast& t, BasicSample<L, Cuda>& s, RandomStream& rng);
template <class L>
void apply_on_device(const Gamma& t, BasicSample<L, Cuda>& s, RandomStream& rng);
template <class L>
void apply_on_device(const Normalize& t, BasicSample<L, Cuda>& s, RandomStream& rng);

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

/// channel_stats of n device values: the partials on the device, their sum on the host.
inline ChannelStats channel_stats_on_device(const float* x, std::int64_t n) {
  ChannelPartials parts;
  cuda::detail::channel_partials(x, n, parts.sums, parts.squares, parts.mins, parts.maxs);
  return finish_channel_stats(parts, n);
}

/// writable_image for a device image: a shared tensor is copied first, never written.
inline float* writable_image(Tensor<float, Cuda>& image) {
  if (!image.storage_handle() || image.use_count() != 1) image = image.clone();
  return image.data();
}

inline void map_channel(float* x, std::int64_t n, const cuda::detail::IntensityMap& m) {
  cuda::detail::map_intensity(x, n, m);
}

inline cuda::detail::IntensityMap multiply_map(float a) {
  return {.kind = cuda::detail::IntensityMap::Kind::multiply, .a = a};
}

/// The label on the host for a draw that centres a patch on foreground (small: a label map),
/// when the draw may read it; else undefined, which the draws take as "no label to read".
template <class L>
Tensor<L> label_for_draw(const BasicSample<L, Cuda>& s, bool reads_label) {
  return reads_label && s.label.defined() ? s.label.template to<Cpu>() : Tensor<L>{};
}

/// resize_nearest_exact (linear false) or resize_trilinear of a device tensor.
inline Tensor<float, Cuda> resize_on_device(const Tensor<float, Cuda>& x, const Index3& size, bool linear,
                                            const char* where) {
  check_resize(x, size, where);
  const Index3 in{x.size(1), x.size(2), x.size(3)};
  const Taps taps = separable_taps(in, size, linear);
  auto out = Tensor<float, Cuda>::empty({x.size(0), size[0], size[1], size[2]});
  cuda::detail::resize_separable(x.data(), out.data(), x.size(0), in.data(), size.data(), taps.i0, taps.i1, taps.t,
                                 linear);
  return out;
}

}  // namespace detail

inline Tensor<float, Cuda> gaussian_filter(const Tensor<float, Cuda>& x, const std::array<double, 3>& sigma,
                                           double truncate) {
  require(x.rank() == 4, [&] {
    return ErrorInfo{.where = "transforms::gaussian_filter", .field = "x", .expected = "a [C,D,H,W] tensor",
                     .actual = x.shape().to_string()};
  });
  Tensor<float, Cuda> current = x.contiguous();
  const std::int64_t c = x.size(0), d = x.size(1), h = x.size(2), w = x.size(3);
  const std::int64_t outer[3] = {c, c * d, c * d * h}, extent[3] = {d, h, w}, inner[3] = {h * w, w, 1};
  for (int a = 0; a < 3; ++a) {
    if (sigma[a] <= 0) continue;
    const auto kernel = gaussian_kernel(sigma[a], truncate);  // the CPU's taps, computed here
    auto next = Tensor<float, Cuda>::empty(x.shape());
    cuda::detail::gaussian_axis(current.data(), next.data(), outer[a], extent[a], inner[a], kernel);
    current = next;
  }
  return current.shares_storage_with(x) ? current.clone() : current;
}

inline Tensor<float, Cuda> elastic_displacement_on_device(const Index3& size, double alpha, double sigma,
                                                          RandomStream& rng) {
  auto noise = Tensor<float, Cuda>::empty({3, size[0], size[1], size[2]});
  // The CPU's draw of the field's stream, then its noise, voxel by voxel, on the device.
  const RandomStream field = rng.substream(rng.next_u64());
  cuda::detail::uniform_noise(field.seed(), field.stream(), noise.data(), noise.numel());
  auto smooth = gaussian_filter(noise, {sigma, sigma, sigma});
  detail::map_channel(smooth.data(), smooth.numel(), detail::multiply_map(static_cast<float>(alpha)));
  return smooth;
}

template <class L>
void crop_or_pad(BasicSample<L, Cuda>& s, const Index3& begin, const Index3& size) {
  check_sample(s, "transforms::crop_or_pad");
  require(size[0] > 0 && size[1] > 0 && size[2] > 0, [&] {
    return ErrorInfo{.where = "transforms::crop_or_pad", .field = "size", .expected = "three positive extents",
                     .actual = index3_text(size)};
  });
  const Index3 in = s.spatial();
  auto image = Tensor<float, Cuda>::empty({s.image.size(0), size[0], size[1], size[2]});
  cuda::detail::crop_or_pad(s.image.data(), sizeof(float), s.image.size(0), in.data(), begin.data(), size.data(),
                            image.data());
  if (s.label.defined()) {
    auto label = Tensor<L, Cuda>::empty({1, size[0], size[1], size[2]});
    cuda::detail::crop_or_pad(s.label.data(), sizeof(L), 1, in.data(), begin.data(), size.data(), label.data());
    s.label = label;
  }
  s.image = image;
}

template <class L>
void resample(BasicSample<L, Cuda>& s, const SamplingGrid& grid, ImageInterpolation image_interpolation,
              LabelInterpolation label_interpolation, const Tensor<float, Cuda>& displacement) {
  check_sample(s, "transforms::resample");
  detail::check_grid(grid, "transforms::resample");
  Tensor<float, Cuda> field = displacement;
  if (!field.defined() && grid.displacement.defined()) field = grid.displacement.to<Cuda>();
  const Shape want{3, grid.out_size[0], grid.out_size[1], grid.out_size[2]};
  require(!field.defined() || (field.shape() == want && field.is_contiguous()), [&] {
    return ErrorInfo{.where = "transforms::resample", .field = "displacement", .expected = "contiguous " + want.to_string(),
                     .actual = field.layout().to_string()};
  });
  const voxel::GridSpec spec = detail::grid_spec(grid);
  const Index3 in = s.spatial();
  auto image = Tensor<float, Cuda>::empty({s.image.size(0), grid.out_size[0], grid.out_size[1], grid.out_size[2]});
  Tensor<L, Cuda> label;
  if (s.label.defined()) label = Tensor<L, Cuda>::empty({1, grid.out_size[0], grid.out_size[1], grid.out_size[2]});
  const cuda::detail::SamplingModes modes{image_interpolation == ImageInterpolation::nearest ? 0 : 1,
                                          label_interpolation == LabelInterpolation::nearest ? 0 : 1};
  cuda::detail::sample_grid(spec, field.defined() ? field.data() : nullptr, s.image.data(), image.data(), s.image.size(0),
                            in.data(), s.label.defined() ? s.label.data() : nullptr,
                            s.label.defined() ? label.data() : nullptr, dtype_of<L>, modes);
  s.image = image;
  if (s.label.defined()) s.label = label;
}

template <class T>
Tensor<T, Cuda> permute_reverse(const Tensor<T, Cuda>& x, const std::array<int, 3>& source,
                                const std::array<bool, 3>& reverse) {
  const voxel::PermutePlan plan = detail::checked_permute_plan(x, source, reverse);
  auto out = Tensor<T, Cuda>::empty({x.size(0), plan.out[0], plan.out[1], plan.out[2]});
  cuda::detail::permute_reverse(x.data(), sizeof(T), x.size(0), plan, out.data());
  return out;
}

template <class T>
Tensor<T, Cuda> rot90(const Tensor<T, Cuda>& x, int k, const Plane& plane) {
  const detail::QuarterTurn q = detail::quarter_turn(k, plane);
  return q.identity ? x.clone() : permute_reverse(x, q.source, q.reverse);
}

template <class L>
void flip(BasicSample<L, Cuda>& s, const std::array<bool, 3>& axes) {
  check_sample(s, "transforms::flip");
  if (!axes[0] && !axes[1] && !axes[2]) return;
  s.image = permute_reverse(s.image, {0, 1, 2}, axes);
  if (s.label.defined()) s.label = permute_reverse(s.label, {0, 1, 2}, axes);
}

inline Tensor<float, Cuda> resize_nearest_exact(const Tensor<float, Cuda>& x, const Index3& size) {
  return detail::resize_on_device(x, size, false, "transforms::resize_nearest_exact");
}

inline Tensor<float, Cuda> resize_trilinear(const Tensor<float, Cuda>& x, const Index3& size) {
  return detail::resize_on_device(x, size, true, "transforms::resize_trilinear");
}

template <class L>
void apply_on_device(const SpatialTransform& t, BasicSample<L, Cuda>& s, RandomStream& rng) {
  check_sample(s, "transforms::SpatialTransform");
  // The draws read the label only to centre a foreground crop: then it comes to the host
  // (a label map is small), and the CPU's patch_start draws from it.
  const bool crops = t.crop_size[0] > 0 || t.crop_size[1] > 0 || t.crop_size[2] > 0;
  const Tensor<L> host_label = detail::label_for_draw(s, crops && t.foreground_fraction > 0);
  const SpatialTransform::Draw d = t.draw(s.spatial(), host_label, rng);
  Tensor<float, Cuda> displacement;
  if (d.deform) displacement = elastic_displacement_on_device(d.out, d.alpha, d.sigma, rng);
  if (d.exact_crop()) {
    if (d.out == s.spatial() && d.crop_begin == Index3{0, 0, 0}) return;
    crop_or_pad(s, d.begin(), d.out);
    return;
  }
  resample(s, d.grid, t.image_interpolation, t.label_interpolation, displacement);
}

template <class L>
void apply_on_device(const RandomScale& t, BasicSample<L, Cuda>& s, RandomStream& rng) {
  check_sample(s, "transforms::RandomScale");
  if (const auto grid = t.draw(s.spatial(), rng)) resample(s, *grid, t.image_interpolation, t.label_interpolation);
}

template <class L>
void apply_on_device(const RandomRotation3D& t, BasicSample<L, Cuda>& s, RandomStream& rng) {
  check_sample(s, "transforms::RandomRotation3D");
  if (const auto grid = t.draw(s.spatial(), rng)) resample(s, *grid, t.image_interpolation, t.label_interpolation);
}

template <class L>
void apply_on_device(const RandomQuarterTurn3D& t, BasicSample<L, Cuda>& s, RandomStream& rng) {
  check_sample(s, "transforms::RandomQuarterTurn3D");
  const RandomQuarterTurn3D::Draw d = t.draw(s.spatial(), rng);
  if (!d.turn) return;
  s.image = rot90(s.image, d.k, d.plane);
  if (s.label.defined()) s.label = rot90(s.label, d.k, d.plane);
}

template <class L>
void apply_on_device(const RandomFlip3D& t, BasicSample<L, Cuda>& s, RandomStream& rng) {
  flip(s, t.draw(rng));
}

template <class L>
void apply_on_device(const RandomCrop& t, BasicSample<L, Cuda>& s, RandomStream& rng) {
  check_sample(s, "transforms::RandomCrop");
  detail::check_size(t.size, "transforms::RandomCrop");
  crop_or_pad(s, t.draw(s.spatial(), rng), t.size);
}

template <class L>
void apply_on_device(const CenterCrop& t, BasicSample<L, Cuda>& s, RandomStream&) {
  check_sample(s, "transforms::CenterCrop");
  detail::check_size(t.size, "transforms::CenterCrop");
  crop_or_pad(s, t.begin(s.spatial()), t.size);
}

template <class L>
void apply_on_device(const PadToSize& t, BasicSample<L, Cuda>& s, RandomStream&) {
  check_sample(s, "transforms::PadToSize");
  const auto [begin, out] = t.box(s.spatial());
  if (out == s.spatial()) return;
  crop_or_pad(s, begin, out);
}

template <class L>
void apply_on_device(const ForegroundCrop& t, BasicSample<L, Cuda>& s, RandomStream& rng) {
  check_sample(s, "transforms::ForegroundCrop");
  detail::check_size(t.size, "transforms::ForegroundCrop");
  const Tensor<L> host_label = detail::label_for_draw(s, t.foreground_fraction > 0);
  crop_or_pad(s, t.draw(s.spatial(), host_label, rng), t.size);
}

template <class L>
void apply_on_device(const RandomResizedCrop3D& t, BasicSample<L, Cuda>& s, RandomStream& rng) {
  check_sample(s, "transforms::RandomResizedCrop3D");
  detail::check_size(t.size, "transforms::RandomResizedCrop3D");
  resample(s, t.draw(s.spatial(), rng), ImageInterpolation::linear, LabelInterpolation::nearest);
}

template <class L>
void apply_on_device(const SimulateLowResolution& t, BasicSample<L, Cuda>& s, RandomStream& rng) {
  check_sample(s, "transforms::SimulateLowResolution");
  const Index3 n = s.spatial();
  const auto draws = t.draw(n, s.channels(), rng);
  Tensor<float, Cuda> out;
  for (std::int64_t c = 0; c < static_cast<std::int64_t>(draws.size()); ++c) {
    const SimulateLowResolution::ChannelDraw& d = draws[static_cast<std::size_t>(c)];
    if (!d.fire) continue;
    if (!out.defined()) out = s.image.clone();
    auto channel = out.slice(0, c, c + 1);
    channel.copy_from(resize_trilinear(resize_nearest_exact(channel, d.low), n));
  }
  if (out.defined()) s.image = out;
}

template <class L>
void apply_on_device(const RandomBiasField& t, BasicSample<L, Cuda>& s, RandomStream& rng) {
  check_sample(s, "transforms::RandomBiasField");
  const std::vector<double> c = t.draw(rng);
  if (c.empty()) return;
  const Index3 size = s.spatial();
  float* x = detail::writable_image(s.image);
  cuda::detail::multiply_bias_field(x, s.channels(), size.data(), t.degree, detail::dense_bias_coefficients(t.degree, c),
                                    detail::legendre_table(size[0], t.degree),
                                    detail::legendre_table(size[1], t.degree),
                                    detail::legendre_table(size[2], t.degree));
}

template <class L>
void apply_on_device(const GaussianNoise& t, BasicSample<L, Cuda>& s, RandomStream& rng) {
  check_sample(s, "transforms::GaussianNoise");
  const GaussianNoise::Draw d = t.draw(rng);
  if (!d.fire) return;
  float* x = detail::writable_image(s.image);
  cuda::detail::add_gaussian_noise(x, s.image.numel(), d.field.seed(), d.field.stream(), d.sd);
}

template <class L>
void apply_on_device(const GaussianBlur& t, BasicSample<L, Cuda>& s, RandomStream& rng) {
  check_sample(s, "transforms::GaussianBlur");
  const auto draws = t.draw(rng, s.channels());
  Tensor<float, Cuda> out;
  for (std::int64_t c = 0; c < static_cast<std::int64_t>(draws.size()); ++c) {
    const auto& d = draws[static_cast<std::size_t>(c)];
    if (!d.blur) continue;
    if (!out.defined()) out = s.image.clone();
    auto channel = out.slice(0, c, c + 1);
    channel.copy_from(gaussian_filter(channel, d.sigma));
  }
  if (out.defined()) s.image = out;
}

template <class L>
void apply_on_device(const MultiplicativeBrightness& t, BasicSample<L, Cuda>& s, RandomStream& rng) {
  check_sample(s, "transforms::MultiplicativeBrightness");
  const auto factors = t.draw(rng, s.channels());
  if (factors.empty()) return;
  float* x = detail::writable_image(s.image);
  const std::int64_t plane = s.image.numel() / s.channels();
  for (std::int64_t c = 0; c < s.channels(); ++c)
    detail::map_channel(x + c * plane, plane, detail::multiply_map(factors[static_cast<std::size_t>(c)]));
}

template <class L>
void apply_on_device(const Contrast& t, BasicSample<L, Cuda>& s, RandomStream& rng) {
  check_sample(s, "transforms::Contrast");
  const auto factors = t.draw(rng, s.channels());
  if (factors.empty()) return;
  float* x = detail::writable_image(s.image);
  const std::int64_t plane = s.image.numel() / s.channels();
  for (std::int64_t c = 0; c < s.channels(); ++c) {
    const ChannelStats st = detail::channel_stats_on_device(x + c * plane, plane);
    detail::map_channel(x + c * plane, plane,
                        {.kind = cuda::detail::IntensityMap::Kind::contrast, .a = static_cast<float>(st.mean),
                         .b = factors[static_cast<std::size_t>(c)], .lo = static_cast<float>(st.min),
                         .hi = static_cast<float>(st.max), .clamp = t.preserve_range});
  }
}

template <class L>
void apply_on_device(const Gamma& t, BasicSample<L, Cuda>& s, RandomStream& rng) {
  check_sample(s, "transforms::Gamma");
  const auto gammas = t.draw(rng, s.channels());
  if (gammas.empty()) return;
  float* x = detail::writable_image(s.image);
  const std::int64_t plane = s.image.numel() / s.channels();
  using Kind = cuda::detail::IntensityMap::Kind;
  for (std::int64_t c = 0; c < s.channels(); ++c) {
    float* xc = x + c * plane;
    if (t.invert) detail::map_channel(xc, plane, detail::multiply_map(-1.0f));
    const ChannelStats st = detail::channel_stats_on_device(xc, plane);
    detail::map_channel(xc, plane,
                        {.kind = Kind::gamma, .a = static_cast<float>(st.max - st.min),
                         .b = gammas[static_cast<std::size_t>(c)], .lo = static_cast<float>(st.min)});
    if (t.retain_stats) {
      const ChannelStats now = detail::channel_stats_on_device(xc, plane);
      detail::map_channel(xc, plane,
                          {.kind = Kind::restore, .a = static_cast<float>(now.mean),
                           .b = static_cast<float>(st.std / (now.std + 1e-8)), .c = static_cast<float>(st.mean)});
    }
    if (t.invert) detail::map_channel(xc, plane, detail::multiply_map(-1.0f));
  }
}

template <class L>
void apply_on_device(const Normalize& t, BasicSample<L, Cuda>& s, RandomStream&) {
  check_sample(s, "transforms::Normalize");
  float* x = detail::writable_image(s.image);
  const std::int64_t plane = s.image.numel() / s.channels();
  for (std::int64_t c = 0; c < s.channels(); ++c) {
    float* xc = x + c * plane;
    const ChannelStats st = detail::channel_stats_on_device(xc, plane);
    if (t.mode == Normalize::Mode::divide_by_max) {
      const double m = std::max(std::abs(st.min), std::abs(st.max));
      detail::map_channel(xc, plane, detail::multiply_map(static_cast<float>(m > 0 ? 1.0 / m : 1.0)));
    } else {
      detail::map_channel(xc, plane,
                          {.kind = cuda::detail::IntensityMap::Kind::shift_scale, .a = static_cast<float>(st.mean),
                           .b = static_cast<float>(1.0 / std::max(st.std, 1e-8))});
    }
  }
}

}  // namespace medseg::transforms
