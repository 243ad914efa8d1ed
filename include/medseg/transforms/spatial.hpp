// The fused spatial augmentation: rotation, scaling and elastic deformation become one map
// from output voxel to input coordinate, sampled in ONE pass (image linear or nearest, label
// nearest or per-class linear, never linear on ids). One interpolation instead of three keeps
// the image sharp and the CPU cost low; this is nnU-Net's SpatialTransform. The draws are
// made here, on the host; the sampling pass is the backend's (ops::sample_grid).
#pragma once

#include <array>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <numbers>
#include <optional>

#include "../backends/ops.hpp"
#include "box.hpp"
#include "concepts.hpp"
#include "filter.hpp"

namespace medseg::transforms {

/// A 3x3 matrix acting on (D, H, W) voxel coordinates.
struct Mat3 {
  std::array<std::array<double, 3>, 3> m{{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}};

  static Mat3 identity() { return {}; }
  static Mat3 diagonal(double d, double h, double w) { return {{{{d, 0, 0}, {0, h, 0}, {0, 0, w}}}}; }
  /// Rotation by `radians` in the plane of spatial axes a and b (a turn from a towards b).
  static Mat3 plane_rotation(int a, int b, double radians);
  friend Mat3 operator*(const Mat3& x, const Mat3& y);
  bool is_identity() const { return m == Mat3{}.m; }
};

enum class ImageInterpolation { nearest, linear };
/// per_class_linear: each class's one-hot mask interpolated linearly, the largest wins (what
/// nnU-Net does with order 1 for labels); nearest: the id of the nearest voxel.
enum class LabelInterpolation { nearest, per_class_linear };

/// Where every output voxel o reads the input:
///   input(o) = matrix * (o - out_center) + in_center + displacement(o)
/// in voxel coordinates (D, H, W). displacement is optional, [3, D_out, H_out, W_out].
/// Outside the input, samples read 0 (the image's and the label's fill).
struct SamplingGrid {
  Index3 out_size{};
  Mat3 matrix{};
  std::array<double, 3> out_center{}, in_center{};
  Tensor<float> displacement{};

  /// The grid whose centre lands on the centre of the input (offset by whole voxels, so an
  /// identity matrix is an exact crop).
  static SamplingGrid centered(const Index3& in_size, const Index3& out_size, const Mat3& matrix = {});
};

/// Every channel of `image` [C,D,H,W] sampled on `grid`: [C, grid.out_size...].
template <class B>
Tensor<float, B> sample_image(const Tensor<float, B>& image, const SamplingGrid& grid,
                              ImageInterpolation interpolation = ImageInterpolation::linear);
/// `label` [1,D,H,W] sampled on `grid`; output ids are always ids of the input (or 0).
template <class L, class B>
Tensor<L, B> sample_label(const Tensor<L, B>& label, const SamplingGrid& grid,
                          LabelInterpolation interpolation = LabelInterpolation::nearest);
/// Image and label of `s` sampled on `grid`. The displacement is `displacement` (on the
/// sample's backend, [3, grid.out_size...]) or, when that is undefined, grid.displacement.
template <class L, class B>
void resample(BasicSample<L, B>& s, const SamplingGrid& grid, ImageInterpolation image_interpolation,
              LabelInterpolation label_interpolation, const Tensor<float, B>& displacement = {});

/// nnU-Net's elastic displacement: uniform noise in [-1, 1] per component and voxel,
/// Gaussian-smoothed with `sigma`, times `alpha` (batchgenerators' elastic_deform_coordinates).
/// [3, D, H, W] in voxels, on backend B. Noise is indexed by voxel, so it does not depend on
/// threads or device.
template <class B = Cpu>
Tensor<float, B> elastic_displacement(const Index3& size, double alpha, double sigma, RandomStream& rng);

/// Rotation, scaling and elastic deformation fused, then one sampling pass to `patch_size`
/// (nnU-Net's SpatialTransform; defaults are nnU-Net v2's for 3D: rotation +-30 degrees about
/// every axis p 0.2, isotropic scale 0.7..1.4 p 0.2, no elastic). When nothing fires the
/// sample is cropped exactly to patch_size.
/// The patch is centred on the input, or, with crop_size set, where ForegroundCrop{crop_size,
/// foreground_fraction} would centre its crop: nnU-Net's loader crop and spatial transform
/// in one pass, without the intermediate (larger) crop being made.
struct SpatialTransform {
  Index3 patch_size{0, 0, 0};          // output size; 0 keeps the input's extent on that axis
  Index3 crop_size{0, 0, 0};           // 0: centre on the input; else the fused crop's size
  float foreground_fraction = 0.0f;    // with crop_size: nnU-Net's oversampling (0.33)
  float p_rotation = 0.2f;
  std::array<Range, 3> angle_degrees{{{-30, 30}, {-30, 30}, {-30, 30}}};  // about D, H, W
  float p_scale = 0.2f;
  Range scale{0.7f, 1.4f};             // > 1 shows more of the input (objects shrink)
  bool anisotropic_scale = false;      // one factor per axis instead of one for all
  float p_elastic = 0.0f;
  Range elastic_alpha{0.0f, 200.0f};
  Range elastic_sigma{9.0f, 13.0f};
  ImageInterpolation image_interpolation = ImageInterpolation::linear;  // nnU-Net uses cubic; see docs
  LabelInterpolation label_interpolation = LabelInterpolation::per_class_linear;

  /// On any backend: the draws on the host (draw()), then one sampling pass where the sample is.
  template <class L, class B>
  void apply(BasicSample<L, B>& s, RandomStream& rng) const;

  /// Everything one apply draws before its elastic field, in the order it draws it.
  struct Draw {
    Index3 out{}, crop_begin{};
    bool rotate = false, zoom = false, deform = false;
    double alpha = 0, sigma = 0;
    SamplingGrid grid;  // without its displacement (drawn after, from the same rng)
    /// Nothing fired: the grid is a whole-voxel crop, begin() where it starts.
    bool exact_crop() const { return !rotate && !zoom && !deform; }
    Index3 begin() const;
  };
  /// The draws of one apply to a sample of extent `spatial` whose label is `label` (host
  /// memory; only read, and only for a foreground crop; may be undefined).
  template <class L>
  Draw draw(const Index3& spatial, const Tensor<L>& label, RandomStream& rng) const;
};

/// Isotropic (or per-axis) zoom about the centre with probability p; keeps the size.
struct RandomScale {
  float p = 1.0f;
  Range scale{0.85f, 1.25f};            // factor on the coordinates: > 1 zooms out
  bool anisotropic = false;
  ImageInterpolation image_interpolation = ImageInterpolation::linear;
  LabelInterpolation label_interpolation = LabelInterpolation::nearest;

  template <class L, class B>
  void apply(BasicSample<L, B>& s, RandomStream& rng) const;
  /// One apply's draws for a sample of extent `spatial`: the grid to resample on, none when
  /// it does not fire.
  std::optional<SamplingGrid> draw(const Index3& spatial, RandomStream& rng) const;
};

// ----------------------------------------------------------------------------------------
// Implementation

inline Mat3 Mat3::plane_rotation(int a, int b, double radians) {
  Mat3 r;
  const double c = std::cos(radians), s = std::sin(radians);
  r.m[a][a] = c;
  r.m[a][b] = -s;
  r.m[b][a] = s;
  r.m[b][b] = c;
  return r;
}

inline Mat3 operator*(const Mat3& x, const Mat3& y) {
  Mat3 r;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      double acc = 0;
      for (int k = 0; k < 3; ++k) acc += x.m[i][k] * y.m[k][j];
      r.m[i][j] = acc;
    }
  return r;
}

inline SamplingGrid SamplingGrid::centered(const Index3& in_size, const Index3& out_size, const Mat3& matrix) {
  SamplingGrid g;
  g.out_size = out_size;
  g.matrix = matrix;
  for (int k = 0; k < 3; ++k) {
    g.out_center[k] = static_cast<double>(out_size[k] - 1) / 2.0;
    // floor division, so that an identity grid reads whole voxels (an exact crop or pad)
    const std::int64_t diff = in_size[k] - out_size[k];
    const std::int64_t offset = diff >= 0 ? diff / 2 : -((-diff + 1) / 2);
    g.in_center[k] = g.out_center[k] + static_cast<double>(offset);
  }
  return g;
}

namespace detail {

inline void check_grid(const SamplingGrid& g, const char* where) {
  require(g.out_size[0] > 0 && g.out_size[1] > 0 && g.out_size[2] > 0, [&] {
    return ErrorInfo{.where = where, .field = "grid.out_size", .expected = "positive extents",
                     .actual = index3_text(g.out_size)};
  });
  if (!g.displacement.defined()) return;
  const Shape want{3, g.out_size[0], g.out_size[1], g.out_size[2]};
  require(g.displacement.shape() == want && g.displacement.is_contiguous(), [&] {
    return ErrorInfo{.where = where, .field = "grid.displacement", .expected = "contiguous " + want.to_string(),
                     .actual = g.displacement.layout().to_string()};
  });
}

/// The grid as the plain data the kernels read (backends/augment.hpp).
inline ops::voxel::GridSpec grid_spec(const SamplingGrid& g) {
  ops::voxel::GridSpec spec{};
  for (int k = 0; k < 3; ++k) {
    spec.out[k] = g.out_size[k];
    spec.out_center[k] = g.out_center[k];
    spec.in_center[k] = g.in_center[k];
    for (int j = 0; j < 3; ++j) spec.m[k][j] = g.matrix.m[k][j];
  }
  return spec;
}

inline ops::SamplingModes sampling_modes(ImageInterpolation image, LabelInterpolation label) {
  return {image == ImageInterpolation::nearest ? 0 : 1, label == LabelInterpolation::nearest ? 0 : 1};
}

template <class B>
void check_image(const Tensor<float, B>& image, const char* where) {
  require(image.rank() == 4 && image.is_contiguous(), [&] {
    return ErrorInfo{.where = where, .field = "image", .expected = "a contiguous [C,D,H,W] tensor",
                     .actual = image.layout().to_string()};
  });
}

template <class L, class B>
void check_label(const Tensor<L, B>& label, const char* where) {
  require(label.rank() == 4 && label.size(0) == 1 && label.is_contiguous(), [&] {
    return ErrorInfo{.where = where, .field = "label", .expected = "a contiguous [1,D,H,W] tensor",
                     .actual = label.layout().to_string()};
  });
}

/// The displacement a sampling pass on backend B reads: `given` when defined, else the grid's
/// (moved to B), checked against the grid's output; undefined when there is none.
template <class B>
Tensor<float, B> displacement_for(const SamplingGrid& g, const Tensor<float, B>& given, const char* where) {
  Tensor<float, B> field = given;
  if (!field.defined() && g.displacement.defined()) ops::from_host(g.displacement, field);
  const Shape want{3, g.out_size[0], g.out_size[1], g.out_size[2]};
  require(!field.defined() || (field.shape() == want && field.is_contiguous()), [&] {
    return ErrorInfo{.where = where, .field = "displacement", .expected = "contiguous " + want.to_string(),
                     .actual = field.layout().to_string()};
  });
  return field;
}

}  // namespace detail

template <class B>
Tensor<float, B> sample_image(const Tensor<float, B>& image, const SamplingGrid& g, ImageInterpolation interpolation) {
  detail::check_image(image, "transforms::sample_image");
  detail::check_grid(g, "transforms::sample_image");
  auto out = Tensor<float, B>::empty({image.size(0), g.out_size[0], g.out_size[1], g.out_size[2]});
  ops::sample_grid(detail::grid_spec(g), detail::displacement_for(g, Tensor<float, B>{}, "transforms::sample_image"),
                   image, out, Tensor<std::uint8_t, B>{}, Tensor<std::uint8_t, B>{},
                   detail::sampling_modes(interpolation, LabelInterpolation::nearest));
  return out;
}

template <class L, class B>
Tensor<L, B> sample_label(const Tensor<L, B>& label, const SamplingGrid& g, LabelInterpolation interpolation) {
  detail::check_label(label, "transforms::sample_label");
  detail::check_grid(g, "transforms::sample_label");
  auto out = Tensor<L, B>::empty({1, g.out_size[0], g.out_size[1], g.out_size[2]});
  ops::sample_grid(detail::grid_spec(g), detail::displacement_for(g, Tensor<float, B>{}, "transforms::sample_label"),
                   Tensor<float, B>{}, Tensor<float, B>{}, label, out,
                   detail::sampling_modes(ImageInterpolation::linear, interpolation));
  return out;
}

template <class L, class B>
void resample(BasicSample<L, B>& s, const SamplingGrid& grid, ImageInterpolation image_interpolation,
              LabelInterpolation label_interpolation, const Tensor<float, B>& displacement) {
  check_sample(s, "transforms::resample");
  detail::check_grid(grid, "transforms::resample");
  const Tensor<float, B> field = detail::displacement_for(grid, displacement, "transforms::resample");
  auto image = Tensor<float, B>::empty({s.image.size(0), grid.out_size[0], grid.out_size[1], grid.out_size[2]});
  Tensor<L, B> label;
  if (s.label.defined()) label = Tensor<L, B>::empty({1, grid.out_size[0], grid.out_size[1], grid.out_size[2]});
  ops::sample_grid(detail::grid_spec(grid), field, s.image, image, s.label, label,
                   detail::sampling_modes(image_interpolation, label_interpolation));
  s.image = image;
  if (s.label.defined()) s.label = label;
}

template <class B>
Tensor<float, B> elastic_displacement(const Index3& size, double alpha, double sigma, RandomStream& rng) {
  auto noise = Tensor<float, B>::empty({3, size[0], size[1], size[2]});
  // A fresh stream per call, indexed by voxel: the field is the same on any thread count.
  const RandomStream field = rng.substream(rng.next_u64());
  ops::uniform_noise(field.seed(), field.stream(), noise);
  auto smooth = gaussian_filter(noise, {sigma, sigma, sigma});
  ops::map_intensity(smooth, {.kind = ops::IntensityMap::Kind::multiply, .a = static_cast<float>(alpha)});
  return smooth;
}

inline Index3 SpatialTransform::Draw::begin() const {
  Index3 b{};
  for (int k = 0; k < 3; ++k) b[k] = static_cast<std::int64_t>(grid.in_center[k] - grid.out_center[k]);
  return b;
}

template <class L>
SpatialTransform::Draw SpatialTransform::draw(const Index3& spatial, const Tensor<L>& label, RandomStream& rng) const {
  Draw d;
  Index3 in = spatial;
  if (crop_size[0] > 0 || crop_size[1] > 0 || crop_size[2] > 0) {
    require(crop_size[0] > 0 && crop_size[1] > 0 && crop_size[2] > 0, [&] {
      return ErrorInfo{.where = "transforms::SpatialTransform", .field = "crop_size",
                       .expected = "three positive extents, or all 0", .actual = index3_text(crop_size)};
    });
    // From here on the input is the crop ForegroundCrop would have made, offset by crop_begin.
    // Like nnU-Net's loader, the crop may reach past the volume by its margin over the final
    // patch, so the final patch's centre covers the whole volume, borders included.
    Index3 margin{};
    for (int k = 0; k < 3; ++k) margin[k] = patch_size[k] > 0 ? std::max<std::int64_t>(0, crop_size[k] - patch_size[k]) : 0;
    d.crop_begin = patch_start(spatial, label, crop_size, foreground_fraction, rng, margin);
    in = crop_size;
  }
  d.out = patch_size;
  for (int k = 0; k < 3; ++k)
    if (d.out[k] <= 0) d.out[k] = in[k];
  // Every decision is drawn, fired or not, so later draws never shift.
  d.rotate = rng.bernoulli(p_rotation);
  const double to_rad = std::numbers::pi / 180.0;
  const double angles[3] = {angle_degrees[0].draw(rng) * to_rad, angle_degrees[1].draw(rng) * to_rad,
                            angle_degrees[2].draw(rng) * to_rad};
  d.zoom = rng.bernoulli(p_scale);
  const double f0 = scale.draw(rng), f1 = anisotropic_scale ? scale.draw(rng) : f0,
               f2 = anisotropic_scale ? scale.draw(rng) : f0;
  d.deform = rng.bernoulli(p_elastic);
  d.alpha = elastic_alpha.draw(rng);
  d.sigma = elastic_sigma.draw(rng);

  Mat3 matrix;
  if (d.rotate)  // about D (the H-W plane), then H (D-W), then W (D-H), as batchgenerators does
    matrix = Mat3::plane_rotation(1, 2, angles[0]) * Mat3::plane_rotation(0, 2, angles[1]) *
             Mat3::plane_rotation(0, 1, angles[2]);
  if (d.zoom) matrix = matrix * Mat3::diagonal(f0, f1, f2);
  d.grid = SamplingGrid::centered(in, d.out, matrix);
  for (int k = 0; k < 3; ++k) d.grid.in_center[k] += static_cast<double>(d.crop_begin[k]);
  return d;
}

template <class L, class B>
void SpatialTransform::apply(BasicSample<L, B>& s, RandomStream& rng) const {
  check_sample(s, "transforms::SpatialTransform");
  // The draws read the label only to centre a foreground crop: then it is read on the host
  // (a device's label map comes back, it is small).
  const bool crops = crop_size[0] > 0 || crop_size[1] > 0 || crop_size[2] > 0;
  const Draw d = draw(s.spatial(), detail::label_for_draw(s, crops && foreground_fraction > 0), rng);
  Tensor<float, B> displacement;
  if (d.deform) displacement = elastic_displacement<B>(d.out, d.alpha, d.sigma, rng);
  if (d.exact_crop()) {
    // Nothing fired: the grid is a whole-voxel crop, done as one copy per row.
    if (d.out == s.spatial() && d.crop_begin == Index3{0, 0, 0}) return;
    crop_or_pad(s, d.begin(), d.out);
    return;
  }
  resample(s, d.grid, image_interpolation, label_interpolation, displacement);
}

inline std::optional<SamplingGrid> RandomScale::draw(const Index3& spatial, RandomStream& rng) const {
  const bool fire = rng.bernoulli(p);
  const double f0 = scale.draw(rng), f1 = anisotropic ? scale.draw(rng) : f0, f2 = anisotropic ? scale.draw(rng) : f0;
  if (!fire) return std::nullopt;
  return SamplingGrid::centered(spatial, spatial, Mat3::diagonal(f0, f1, f2));
}

template <class L, class B>
void RandomScale::apply(BasicSample<L, B>& s, RandomStream& rng) const {
  check_sample(s, "transforms::RandomScale");
  if (const auto grid = draw(s.spatial(), rng)) resample(s, *grid, image_interpolation, label_interpolation);
}

}  // namespace medseg::transforms
