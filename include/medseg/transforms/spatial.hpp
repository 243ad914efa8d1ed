// The fused spatial augmentation: rotation, scaling and elastic deformation become one map
// from output voxel to input coordinate, sampled in ONE pass (image linear or nearest, label
// nearest or per-class linear, never linear on ids). One interpolation instead of three keeps
// the image sharp and the CPU cost low; this is nnU-Net's SpatialTransform.
#pragma once

#include <array>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <numbers>
#include <optional>

#include "box.hpp"
#include "concepts.hpp"
#include "filter.hpp"
#include "voxel_sampling.hpp"

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
Tensor<float> sample_image(const Tensor<float>& image, const SamplingGrid& grid,
                           ImageInterpolation interpolation = ImageInterpolation::linear);
/// `label` [1,D,H,W] sampled on `grid`; output ids are always ids of the input (or 0).
template <class L>
Tensor<L> sample_label(const Tensor<L>& label, const SamplingGrid& grid,
                       LabelInterpolation interpolation = LabelInterpolation::nearest);
/// Image and label of `s` sampled on `grid`.
template <class L>
void resample(BasicSample<L>& s, const SamplingGrid& grid, ImageInterpolation image_interpolation,
              LabelInterpolation label_interpolation);

/// nnU-Net's elastic displacement: uniform noise in [-1, 1] per component and voxel,
/// Gaussian-smoothed with `sigma`, times `alpha` (batchgenerators' elastic_deform_coordinates).
/// [3, D, H, W] in voxels. Noise is indexed by voxel, so it does not depend on threads.
Tensor<float> elastic_displacement(const Index3& size, double alpha, double sigma, RandomStream& rng);

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

  template <class L>
  void apply(BasicSample<L>& s, RandomStream& rng) const;
  /// The same on a GPU sample (transforms/cuda.hpp): the same draws, made here on the host
  /// by draw(), then the sampling pass on the device.
  template <class L, class B>
    requires(!std::same_as<B, Cpu>)
  void apply(BasicSample<L, B>& s, RandomStream& rng) const {
    apply_on_device(*this, s, rng);
  }

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

  template <class L>
  void apply(BasicSample<L>& s, RandomStream& rng) const;
  /// The same on a GPU sample (transforms/cuda.hpp): draws made here, the sampling pass on the device.
  template <class L, class B>
    requires(!std::same_as<B, Cpu>)
  void apply(BasicSample<L, B>& s, RandomStream& rng) const {
    apply_on_device(*this, s, rng);
  }
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

/// The grid as the plain data the per-voxel functions (voxel_sampling.hpp) and the GPU read.
inline voxel::GridSpec grid_spec(const SamplingGrid& g) {
  voxel::GridSpec spec{};
  for (int k = 0; k < 3; ++k) {
    spec.out[k] = g.out_size[k];
    spec.out_center[k] = g.out_center[k];
    spec.in_center[k] = g.in_center[k];
    for (int j = 0; j < 3; ++j) spec.m[k][j] = g.matrix.m[k][j];
  }
  return spec;
}

/// Walks the output grid row by row (threaded over rows), handing `visit` the output offset
/// and the input coordinate of each voxel. The coordinate of voxel x of a row is the row's
/// start plus x times the matrix's W column: no per-voxel matrix product.
template <class Visit>
void walk_grid(const SamplingGrid& g, Visit&& visit) {
  const voxel::GridSpec spec = grid_spec(g);
  const std::int64_t od = g.out_size[0], oh = g.out_size[1], ow = g.out_size[2];
  const std::int64_t plane = od * oh * ow;
  const float* disp = g.displacement.defined() ? g.displacement.data() : nullptr;
  parallel_for(0, od * oh, 8, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t r = b; r < e; ++r) {
      double start[3], p[3];
      voxel::row_start(spec, r / oh, r % oh, start);
      const std::int64_t row = r * ow;
      for (std::int64_t x = 0; x < ow; ++x) {
        voxel::row_point(spec, start, x, disp, row + x, plane, p);
        visit(row + x, p[0], p[1], p[2]);
      }
    }
  });
}

inline void check_image(const Tensor<float>& image, const char* where) {
  require(image.rank() == 4 && image.is_contiguous(), [&] {
    return ErrorInfo{.where = where, .field = "image", .expected = "a contiguous [C,D,H,W] tensor",
                     .actual = image.layout().to_string()};
  });
}

template <class L>
void check_label(const Tensor<L>& label, const char* where) {
  require(label.rank() == 4 && label.size(0) == 1 && label.is_contiguous(), [&] {
    return ErrorInfo{.where = where, .field = "label", .expected = "a contiguous [1,D,H,W] tensor",
                     .actual = label.layout().to_string()};
  });
}

/// Writes output voxel `at` of every channel from input coordinate (z, y, x). Outside the
/// input reads 0; on the border, neighbours outside read 0 (SciPy's 'grid-constant').
struct ImageSampler {
  const float* in;
  float* out;
  std::int64_t channels, d, h, w, in_plane, out_plane;
  ImageInterpolation interpolation;

  ImageSampler(const Tensor<float>& image, const Tensor<float>& output, ImageInterpolation mode)
      : in(image.data()), out(output.data()), channels(image.size(0)), d(image.size(1)), h(image.size(2)),
        w(image.size(3)), in_plane(d * h * w), out_plane(output.numel() / std::max<std::int64_t>(1, output.size(0))),
        interpolation(mode) {}

  void operator()(std::int64_t at, double z, double y, double x) const {
    if (interpolation == ImageInterpolation::nearest) {
      const std::int64_t src = voxel::nearest_offset(z, y, x, d, h, w);
      for (std::int64_t c = 0; c < channels; ++c) out[c * out_plane + at] = src >= 0 ? in[c * in_plane + src] : 0.0f;
      return;
    }
    const voxel::Corner k = voxel::corner_of(z, y, x);
    const auto tz = static_cast<float>(k.tz), ty = static_cast<float>(k.ty), tx = static_cast<float>(k.tx);
    if (voxel::corner_inside(k, d, h, w)) {
      interior(at, (k.z0 * h + k.y0) * w + k.x0, tz, ty, tx);
      return;
    }
    border(at, k.z0, k.y0, k.x0, tz, ty, tx);
  }

  /// All eight neighbours inside (the common case): no bounds checks. `base` is the offset
  /// of the lowest corner.
  void interior(std::int64_t at, std::int64_t base, float tz, float ty, float tx) const {
    for (std::int64_t c = 0; c < channels; ++c) {
      const float* p = in + c * in_plane + base;
      out[c * out_plane + at] = voxel::trilinear_rows(p, p + w, p + h * w, p + h * w + w, 0, 1, tx, ty, tz);
    }
  }

  /// Voxels near or outside the input's edge: kept out of line so that the interior path
  /// above stays small enough to inline into the grid walk.
  [[gnu::noinline]] void border(std::int64_t at, std::int64_t z0, std::int64_t y0, std::int64_t x0, float tz, float ty,
                                float tx) const {
    for (std::int64_t c = 0; c < channels; ++c)
      out[c * out_plane + at] = voxel::border_sample({in + c * in_plane, d, h, w}, z0, y0, x0, tz, ty, tx);
  }
};

/// Writes output voxel `at` of the label from input coordinate (z, y, x): the nearest id,
/// or the id whose one-hot mask interpolates largest. Outside the input reads id 0.
template <class L>
struct LabelSampler {
  const L* in;
  L* out;
  std::int64_t d, h, w;
  LabelInterpolation interpolation;

  LabelSampler(const Tensor<L>& label, const Tensor<L>& output, LabelInterpolation mode)
      : in(label.data()), out(output.data()), d(label.size(1)), h(label.size(2)), w(label.size(3)), interpolation(mode) {}

  void operator()(std::int64_t at, double z, double y, double x) const {
    if (interpolation == LabelInterpolation::nearest) {
      const std::int64_t src = voxel::nearest_offset(z, y, x, d, h, w);
      out[at] = src >= 0 ? in[src] : L(0);
      return;
    }
    const voxel::Corner k = voxel::corner_of(z, y, x);
    if (voxel::corner_inside(k, d, h, w)) {
      interior(at, (k.z0 * h + k.y0) * w + k.x0, k.tz, k.ty, k.tx);
      return;
    }
    out[at] = voxel::per_class_linear_sample(in, d, h, w, k);
  }

  /// Per-class linear with all eight neighbours inside; `base` is the lowest corner's offset.
  void interior(std::int64_t at, std::int64_t base, double tz, double ty, double tx) const {
    const L* p = in + base;
    const L ids[8] = {p[0], p[1], p[w], p[w + 1], p[h * w], p[h * w + 1], p[h * w + w], p[h * w + w + 1]};
    out[at] = vote(ids, tz, ty, tx);
  }

  static L vote(const L* ids, double tz, double ty, double tx) {
    return voxel::all_equal(ids) ? ids[0] : largest_class(ids, tz, ty, tx);
  }

  /// Neighbours of several classes (voxel::largest_class). Out of line: only boundary voxels
  /// get here, and the uniform test above stays small enough to inline.
  [[gnu::noinline]] static L largest_class(const L* ids, double tz, double ty, double tx) {
    return voxel::largest_class(ids, tz, ty, tx);
  }
};

/// Image and label read at the same coordinate, for linear image and per-class linear label
/// (nnU-Net's spatial transform): the floors, the weights and the bounds test are computed
/// once for both, and both reads hit the same neighbourhood.
template <class L>
struct PairSampler {
  ImageSampler image;
  LabelSampler<L> label;

  void operator()(std::int64_t at, double z, double y, double x) const {
    if (image.interpolation != ImageInterpolation::linear || label.interpolation != LabelInterpolation::per_class_linear) {
      image(at, z, y, x);
      label(at, z, y, x);
      return;
    }
    const voxel::Corner k = voxel::corner_of(z, y, x);
    const auto tz = static_cast<float>(k.tz), ty = static_cast<float>(k.ty), tx = static_cast<float>(k.tx);
    if (voxel::corner_inside(k, image.d, image.h, image.w)) {
      const std::int64_t base = (k.z0 * image.h + k.y0) * image.w + k.x0;
      image.interior(at, base, tz, ty, tx);
      label.interior(at, base, k.tz, k.ty, k.tx);
      return;
    }
    image.border(at, k.z0, k.y0, k.x0, tz, ty, tx);
    label(at, z, y, x);
  }
};

}  // namespace detail

inline Tensor<float> sample_image(const Tensor<float>& image, const SamplingGrid& g, ImageInterpolation interpolation) {
  detail::check_image(image, "transforms::sample_image");
  detail::check_grid(g, "transforms::sample_image");
  auto out = Tensor<float>::empty({image.size(0), g.out_size[0], g.out_size[1], g.out_size[2]});
  detail::walk_grid(g, detail::ImageSampler(image, out, interpolation));
  return out;
}

template <class L>
Tensor<L> sample_label(const Tensor<L>& label, const SamplingGrid& g, LabelInterpolation interpolation) {
  detail::check_label(label, "transforms::sample_label");
  detail::check_grid(g, "transforms::sample_label");
  auto out = Tensor<L>::empty({1, g.out_size[0], g.out_size[1], g.out_size[2]});
  detail::walk_grid(g, detail::LabelSampler<L>(label, out, interpolation));
  return out;
}

template <class L>
void resample(BasicSample<L>& s, const SamplingGrid& grid, ImageInterpolation image_interpolation,
              LabelInterpolation label_interpolation) {
  check_sample(s, "transforms::resample");
  detail::check_grid(grid, "transforms::resample");
  auto image = Tensor<float>::empty({s.image.size(0), grid.out_size[0], grid.out_size[1], grid.out_size[2]});
  const detail::ImageSampler image_at(s.image, image, image_interpolation);
  if (!s.label.defined()) {
    detail::walk_grid(grid, image_at);
  } else {
    // One walk for both: each coordinate is computed once and image and label are read
    // while the same input neighbourhood is in cache.
    auto label = Tensor<L>::empty({1, grid.out_size[0], grid.out_size[1], grid.out_size[2]});
    detail::walk_grid(grid, detail::PairSampler<L>{image_at, detail::LabelSampler<L>(s.label, label, label_interpolation)});
    s.label = label;
  }
  s.image = image;
}

inline Tensor<float> elastic_displacement(const Index3& size, double alpha, double sigma, RandomStream& rng) {
  auto noise = Tensor<float>::empty({3, size[0], size[1], size[2]});
  // A fresh stream per call, indexed by voxel: the field is the same on any thread count.
  const RandomStream field = rng.substream(rng.next_u64());
  float* n = noise.data();
  const std::int64_t count = noise.numel();
  // Voxel i gets uniform_at(field, i); one Philox block serves four voxels.
  parallel_for(0, (count + 3) / 4, 1 << 13, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t k = b; k < e; ++k) {
      const auto w = Philox4x32::block(field.seed(), field.stream(), static_cast<std::uint64_t>(k));
      for (std::int64_t j = 0; j < 4 && 4 * k + j < count; ++j)
        n[4 * k + j] = 2.0f * uniform_from_bits(w[static_cast<std::uint64_t>(j)]) - 1.0f;
    }
  });
  auto smooth = gaussian_filter(noise, {sigma, sigma, sigma});
  float* p = smooth.data();
  const auto a = static_cast<float>(alpha);
  parallel_for(0, smooth.numel(), 1 << 15, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) p[i] *= a;
  });
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

template <class L>
void SpatialTransform::apply(BasicSample<L>& s, RandomStream& rng) const {
  check_sample(s, "transforms::SpatialTransform");
  Draw d = draw(s.spatial(), s.label, rng);
  if (d.deform) d.grid.displacement = elastic_displacement(d.out, d.alpha, d.sigma, rng);
  if (d.exact_crop()) {
    // Nothing fired: the grid is a whole-voxel crop, done as one copy per row.
    if (d.out == s.spatial() && d.crop_begin == Index3{0, 0, 0}) return;
    crop_or_pad(s, d.begin(), d.out);
    return;
  }
  resample(s, d.grid, image_interpolation, label_interpolation);
}

inline std::optional<SamplingGrid> RandomScale::draw(const Index3& spatial, RandomStream& rng) const {
  const bool fire = rng.bernoulli(p);
  const double f0 = scale.draw(rng), f1 = anisotropic ? scale.draw(rng) : f0, f2 = anisotropic ? scale.draw(rng) : f0;
  if (!fire) return std::nullopt;
  return SamplingGrid::centered(spatial, spatial, Mat3::diagonal(f0, f1, f2));
}

template <class L>
void RandomScale::apply(BasicSample<L>& s, RandomStream& rng) const {
  check_sample(s, "transforms::RandomScale");
  if (const auto grid = draw(s.spatial(), rng)) resample(s, *grid, image_interpolation, label_interpolation);
}

}  // namespace medseg::transforms
