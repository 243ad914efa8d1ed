// Slice overlays: one picture with the axial, coronal and sagittal slices through a label's
// centre of mass, the image in grey (windowed to its 0.5-99.5 percentiles), the prediction
// filled in per-class colours and a reference outlined, pixels square in millimetres. It is
// the picture a person looks at to judge a segmentation, so orientation follows radiology.
//
// Picture conventions (world in LPS, as io::Image; the image is first reoriented to LPS
// without resampling, io::reorient, so any direction matrix displays the same way):
// - axial: seen from the feet; the patient's left on the picture's right, anterior at top.
// - coronal: seen from the front; the patient's left on the picture's right, superior at top.
// - sagittal: seen from the patient's left; anterior on the picture's left, superior at top.
// Each caption names the view and the patient side at the panel's left and right edge.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../io/image.hpp"
#include "../io/orientation.hpp"
#include "../preprocess/resample.hpp"
#include "png.hpp"
#include "raster.hpp"

namespace medseg::viz {

struct OverlayOptions {
  /// The voxel (i, j, k) of the input image the three slices pass through. Default: the
  /// centre of mass of the reference's foreground, else the prediction's, else the centre.
  std::optional<std::array<std::int64_t, 3>> voxel{};
  double pixel_mm = 0;  // picture pixel size in mm; 0: the image's smallest spacing
  int max_panel_pixels = 512;  // a larger view is shown with bigger pixels instead
  double low_percentile = 0.5, high_percentile = 99.5;  // the grey window
  double alpha = 0.45;          // opacity of the prediction's fill
  bool fill_prediction = true;  // false: the prediction outlined as well
  bool caption = true;
};

/// Where one view landed, so callers (and tests) can map world points to pixels.
struct OverlayView {
  std::string name;                 // "axial", "coronal", "sagittal"
  int x0 = 0, y0 = 0, width = 0, height = 0;  // the panel in the picture
  double column_mm = 1, row_mm = 1;  // size of one picture pixel (equal up to rounding)
  io::Vec3 top_left{};              // world (LPS) of the panel's outer top-left corner
  io::Vec3 right{}, down{};         // unit world directions of the picture's x and y
  std::int64_t slice = 0;           // slice index along the view's normal, LPS-reoriented

  /// The picture pixel (x, y) holding world point `p` (LPS); it may lie outside the panel.
  /// Exact for axis-aligned images; an oblique image is shown along its closest axes.
  std::array<int, 2> pixel_of(const io::Vec3& p) const;
};

struct Overlay {
  Picture picture;
  std::array<OverlayView, 3> views;  // axial, coronal, sagittal
};

/// The overlay of `prediction` (and `reference`) on `image`. Label maps are 3-D on the
/// image's grid (same shape); a 4-D image shows its first channel. Labels <= 0 are background.
template <class T, class L>
Overlay render_overlay(const io::Image<T>& image, const io::Image<L>& prediction,
                       const std::optional<io::Image<std::type_identity_t<L>>>& reference = std::nullopt, const OverlayOptions& options = {});

/// For tensors [D, H, W] with a spacing (x, y, z): LPS identity direction, origin 0.
template <class T, class L>
Overlay render_overlay(const Tensor<T, Cpu>& image, const io::Vec3& spacing, const Tensor<L, Cpu>& prediction,
                       const std::optional<Tensor<std::type_identity_t<L>, Cpu>>& reference = std::nullopt,
                       const OverlayOptions& options = {});

/// render_overlay written as PNG (atomically).
template <class T, class L>
void write_overlay(const std::filesystem::path& png, const io::Image<T>& image, const io::Image<L>& prediction,
                   const std::optional<io::Image<std::type_identity_t<L>>>& reference = std::nullopt, const OverlayOptions& options = {});

/// The colour of class `label` (> 0): a fixed palette of 12 distinct colours, repeating.
Rgb label_colour(std::int64_t label);

// ----------------------------------------------------------------------------------------
// Implementation

inline Rgb label_colour(std::int64_t label) {
  // Sasha Trubetskoy's distinct colours, most distinguishable first.
  static constexpr Rgb palette[] = {{230, 25, 75},  {60, 180, 75},  {255, 225, 25}, {0, 130, 200},
                                    {245, 130, 48}, {145, 30, 180}, {70, 240, 240}, {240, 50, 230},
                                    {210, 245, 60}, {250, 190, 212}, {0, 128, 128}, {170, 110, 40}};
  return palette[static_cast<std::size_t>((std::max<std::int64_t>(label, 1) - 1) % 12)];
}

inline std::array<int, 2> OverlayView::pixel_of(const io::Vec3& p) const {
  double u = 0, v = 0;
  for (int a = 0; a < 3; ++a) {
    u += (p[static_cast<std::size_t>(a)] - top_left[static_cast<std::size_t>(a)]) * right[static_cast<std::size_t>(a)];
    v += (p[static_cast<std::size_t>(a)] - top_left[static_cast<std::size_t>(a)]) * down[static_cast<std::size_t>(a)];
  }
  return {x0 + static_cast<int>(std::floor(u / column_mm)), y0 + static_cast<int>(std::floor(v / row_mm))};
}

namespace detail {

/// One view's 2-D slice before resampling: element (v, u) at v * nu + u.
template <class T>
struct Plane {
  std::int64_t nu = 0, nv = 0;  // columns, rows
  double su = 1, sv = 1;        // mm per column, per row
  Tensor<T, Cpu> values;        // [1, nv, nu], ready for preprocess::resize
};

/// The slice of an LPS-oriented volume [K, J, I] for view 0 (axial: normal k, columns i,
/// rows j), 1 (coronal: normal j, columns i, rows k from superior down) or 2 (sagittal:
/// normal i, columns j, rows k from superior down).
template <class T>
Plane<T> take_plane(const Tensor<T, Cpu>& v, const io::Vec3& spacing, int view, std::int64_t slice) {
  const std::int64_t K = v.size(0), J = v.size(1), I = v.size(2);
  Plane<T> p;
  p.nu = view == 2 ? J : I;
  p.nv = view == 0 ? J : K;
  p.su = view == 2 ? spacing[1] : spacing[0];
  p.sv = view == 0 ? spacing[1] : spacing[2];
  p.values = Tensor<T, Cpu>::empty({1, p.nv, p.nu});
  const T* in = v.data();
  T* out = p.values.data();
  for (std::int64_t r = 0; r < p.nv; ++r)
    for (std::int64_t c = 0; c < p.nu; ++c) {
      std::int64_t k = 0, j = 0, i = 0;
      if (view == 0) k = slice, j = r, i = c;
      if (view == 1) k = K - 1 - r, j = slice, i = c;
      if (view == 2) k = K - 1 - r, j = c, i = slice;
      out[r * p.nu + c] = in[(k * J + j) * I + i];
    }
  return p;
}

/// Value at `fraction` (0..1) of the sorted finite values, by selection (no full sort).
inline float percentile(std::vector<float>& values, double fraction) {
  if (values.empty()) return 0;
  const auto n = static_cast<std::int64_t>(values.size());
  const auto k = std::clamp<std::int64_t>(static_cast<std::int64_t>(std::llround(fraction * static_cast<double>(n - 1))), 0, n - 1);
  std::nth_element(values.begin(), values.begin() + k, values.end());
  return values[static_cast<std::size_t>(k)];
}

template <class L>
bool is_outline(const Tensor<L, Cpu>& lab, std::int64_t w, std::int64_t h, std::int64_t x, std::int64_t y) {
  const L* d = lab.data();
  const L here = d[y * w + x];
  if (!(here > L(0))) return false;
  const std::int64_t nx[] = {x - 1, x + 1, x, x}, ny[] = {y, y, y - 1, y + 1};
  for (int n = 0; n < 4; ++n) {
    if (nx[n] < 0 || ny[n] < 0 || nx[n] >= w || ny[n] >= h) return true;
    if (d[ny[n] * w + nx[n]] != here) return true;
  }
  return false;
}

}  // namespace detail

template <class T, class L>
Overlay render_overlay(const io::Image<T>& image, const io::Image<L>& prediction,
                       const std::optional<io::Image<std::type_identity_t<L>>>& reference, const OverlayOptions& options) {
  const std::string where = "viz::render_overlay";
  require(image.voxels.rank() == 3 || image.voxels.rank() == 4, [&] {
    return ErrorInfo{.where = where, .field = "image", .expected = "[D,H,W] or [C,D,H,W]",
                     .actual = image.voxels.shape().to_string()};
  });
  io::Image<T> first{image.voxels.rank() == 4 ? image.voxels[0] : image.voxels, image.geometry};
  io::validate(first.geometry, where);
  auto check_labels = [&](const io::Image<L>& lab, const char* name) {
    require(lab.voxels.rank() == 3 && lab.voxels.shape() == first.voxels.shape(), [&] {
      return ErrorInfo{.where = where, .field = name, .expected = "a label map of the image's shape " +
                                                                   first.voxels.shape().to_string(),
                       .actual = lab.voxels.shape().to_string()};
    });
  };
  check_labels(prediction, "prediction");
  if (reference) check_labels(*reference, "reference");
  require(options.alpha >= 0 && options.alpha <= 1 && options.pixel_mm >= 0 && options.max_panel_pixels >= 16 &&
              options.low_percentile >= 0 && options.low_percentile < options.high_percentile &&
              options.high_percentile <= 100,
          [&] {
            return ErrorInfo{.where = where, .field = "options",
                             .expected = "alpha in [0, 1], pixel_mm >= 0, max_panel_pixels >= 16, "
                                         "0 <= low_percentile < high_percentile <= 100",
                             .actual = str(options.alpha, ", ", options.pixel_mm, ", ", options.max_panel_pixels, ", ",
                                           options.low_percentile, ", ", options.high_percentile)};
          });

  // Everything in LPS index order: i to the patient's left, j posterior, k superior.
  const io::Image<float> img = io::reorient(io::Image<float>{first.voxels.template astype<float>(), first.geometry}, "LPS");
  const io::Image<L> pred = io::reorient(prediction, "LPS");
  std::optional<io::Image<L>> ref;
  if (reference) ref = io::reorient(*reference, "LPS");
  const std::int64_t K = img.voxels.size(0), J = img.voxels.size(1), I = img.voxels.size(2);
  const io::Vec3 spacing = img.geometry.spacing;

  std::vector<float> finite;
  finite.reserve(static_cast<std::size_t>(img.voxels.numel()));
  for (std::int64_t n = 0; n < img.voxels.numel(); ++n)
    if (std::isfinite(img.voxels.data()[n])) finite.push_back(img.voxels.data()[n]);
  const float lo = detail::percentile(finite, options.low_percentile / 100);
  float hi = detail::percentile(finite, options.high_percentile / 100);
  if (!(hi > lo)) hi = lo + 1;

  std::array<std::int64_t, 3> centre{I / 2, J / 2, K / 2};  // (i, j, k) in the LPS grid
  if (options.voxel) {
    const auto& v = *options.voxel;
    const io::Vec3 w = first.geometry.index_to_world({static_cast<double>(v[0]), static_cast<double>(v[1]),
                                                      static_cast<double>(v[2])});
    const io::Vec3 idx = img.geometry.world_to_index(w);
    const std::int64_t n[3] = {I, J, K};
    for (int a = 0; a < 3; ++a)
      centre[static_cast<std::size_t>(a)] = std::clamp<std::int64_t>(std::llround(idx[static_cast<std::size_t>(a)]), 0, n[a] - 1);
  } else {
    const io::Image<L>& lab = ref ? *ref : pred;
    double s[3] = {0, 0, 0}, count = 0;
    const L* d = lab.voxels.data();
    for (std::int64_t k = 0; k < K; ++k)
      for (std::int64_t j = 0; j < J; ++j)
        for (std::int64_t i = 0; i < I; ++i)
          if (d[(k * J + j) * I + i] > L(0)) {
            s[0] += static_cast<double>(i), s[1] += static_cast<double>(j), s[2] += static_cast<double>(k);
            count += 1;
          }
    if (count > 0)
      for (int a = 0; a < 3; ++a) centre[static_cast<std::size_t>(a)] = std::llround(s[a] / count);
  }

  double pixel = options.pixel_mm > 0 ? options.pixel_mm : std::min({spacing[0], spacing[1], spacing[2]});
  const double longest = std::max({I * spacing[0], J * spacing[1], K * spacing[2]});
  pixel = std::max(pixel, longest / options.max_panel_pixels);

  const int margin = 6, gap = 14, caption_h = options.caption ? text_height() + 8 : 0;
  static constexpr const char* names[3] = {"axial", "coronal", "sagittal"};
  static constexpr const char* sides[3][2] = {{"R", "L"}, {"R", "L"}, {"A", "P"}};
  const std::int64_t slice_of[3] = {centre[2], centre[1], centre[0]};

  struct Panel {
    Picture picture;
    Tensor<float, Cpu> grey;
    Tensor<L, Cpu> pred, ref;
  };
  std::array<Panel, 3> panels;
  Overlay result;
  int total_w = margin, total_h = 0;
  for (int view = 0; view < 3; ++view) {
    auto grey = detail::take_plane(img.voxels, spacing, view, slice_of[view]);
    const std::int64_t mu = std::max<std::int64_t>(1, std::llround(static_cast<double>(grey.nu) * grey.su / pixel));
    const std::int64_t mv = std::max<std::int64_t>(1, std::llround(static_cast<double>(grey.nv) * grey.sv / pixel));
    // Pixel centres sample the slice as an extent grid, so the panel covers exactly the
    // slice's physical extent; image linear, labels nearest.
    const preprocess::ResampleOptions linear{.order = 1, .grid = preprocess::GridMode::extent,
                                             .boundary = preprocess::Boundary::nearest};
    const preprocess::ResampleOptions nearest{.order = 0, .grid = preprocess::GridMode::extent,
                                              .boundary = preprocess::Boundary::nearest};
    Panel& p = panels[static_cast<std::size_t>(view)];
    p.grey = preprocess::resize<float>(grey.values, {1, mv, mu}, linear);
    p.pred = preprocess::resize<L>(detail::take_plane(pred.voxels, spacing, view, slice_of[view]).values, {1, mv, mu}, nearest);
    if (ref) p.ref = preprocess::resize<L>(detail::take_plane(ref->voxels, spacing, view, slice_of[view]).values, {1, mv, mu}, nearest);

    OverlayView& v = result.views[static_cast<std::size_t>(view)];
    v.name = names[view];
    v.x0 = total_w;
    v.y0 = caption_h + margin;
    v.width = static_cast<int>(mu);
    v.height = static_cast<int>(mv);
    v.slice = slice_of[view];
    v.right = view == 2 ? io::Vec3{0, 1, 0} : io::Vec3{1, 0, 0};
    v.down = view == 0 ? io::Vec3{0, 1, 0} : io::Vec3{0, 0, -1};
    // The outer corner: half a voxel before the first column and above the top row.
    const io::Vec3 first_col = view == 2 ? io::Vec3{0, -0.5, 0} : io::Vec3{-0.5, 0, 0};
    const io::Vec3 first_row = view == 0 ? io::Vec3{0, -0.5, 0} : io::Vec3{0, 0, static_cast<double>(K) - 0.5};
    io::Vec3 corner{};
    for (int a = 0; a < 3; ++a) corner[static_cast<std::size_t>(a)] = first_col[static_cast<std::size_t>(a)] + first_row[static_cast<std::size_t>(a)];
    v.top_left = img.geometry.index_to_world(corner);
    // Along the view's normal the slice's own position, not the corner's.
    const io::Vec3 on_slice = img.geometry.index_to_world(
        {static_cast<double>(centre[0]), static_cast<double>(centre[1]), static_cast<double>(centre[2])});
    const int normal = view == 0 ? 2 : view == 1 ? 1 : 0;
    v.top_left[static_cast<std::size_t>(normal)] = on_slice[static_cast<std::size_t>(normal)];
    v.column_mm = static_cast<double>(grey.nu) * grey.su / static_cast<double>(mu);
    v.row_mm = static_cast<double>(grey.nv) * grey.sv / static_cast<double>(mv);
    total_w += v.width + gap;
    total_h = std::max(total_h, v.height);
  }
  total_w += margin - gap;
  result.picture = Picture::filled(total_w, caption_h + margin + total_h + margin, black);
  Picture& pic = result.picture;

  for (int view = 0; view < 3; ++view) {
    const OverlayView& v = result.views[static_cast<std::size_t>(view)];
    const Panel& p = panels[static_cast<std::size_t>(view)];
    const float* g = p.grey.data();
    const L* pr = p.pred.data();
    for (int y = 0; y < v.height; ++y)
      for (int x = 0; x < v.width; ++x) {
        const std::int64_t n = static_cast<std::int64_t>(y) * v.width + x;
        const float t = std::isfinite(g[n]) ? std::clamp((g[n] - lo) / (hi - lo), 0.0f, 1.0f) : 0.0f;
        const auto grey_level = static_cast<std::uint8_t>(std::lround(t * 255));
        pic.set(v.x0 + x, v.y0 + y, {grey_level, grey_level, grey_level});
        if (pr[n] > L(0)) {
          const Rgb c = label_colour(static_cast<std::int64_t>(pr[n]));
          if (options.fill_prediction) pic.blend(v.x0 + x, v.y0 + y, c, options.alpha);
          if (!options.fill_prediction && detail::is_outline(p.pred, v.width, v.height, x, y)) pic.set(v.x0 + x, v.y0 + y, c);
        }
        if (ref && detail::is_outline(p.ref, v.width, v.height, x, y))
          pic.set(v.x0 + x, v.y0 + y, label_colour(static_cast<std::int64_t>(p.ref.data()[n])));
      }
    if (options.caption) {
      const std::string text = std::string(names[view]) + " " + std::to_string(v.slice);
      const int cy = margin / 2 + 2;
      draw_text(pic, v.x0 + (v.width - text_width(text)) / 2, cy, text, white);
      draw_text(pic, v.x0, cy, sides[view][0], Rgb{255, 255, 0});
      draw_text(pic, v.x0 + v.width - text_width(sides[view][1]), cy, sides[view][1], Rgb{255, 255, 0});
    }
  }
  return result;
}

template <class T, class L>
Overlay render_overlay(const Tensor<T, Cpu>& image, const io::Vec3& spacing, const Tensor<L, Cpu>& prediction,
                       const std::optional<Tensor<std::type_identity_t<L>, Cpu>>& reference, const OverlayOptions& options) {
  io::Geometry g;
  g.spacing = spacing;
  std::optional<io::Image<L>> ref;
  if (reference) ref = io::Image<L>{*reference, g};
  return render_overlay(io::Image<T>{image, g}, io::Image<L>{prediction, g}, ref, options);
}

template <class T, class L>
void write_overlay(const std::filesystem::path& png, const io::Image<T>& image, const io::Image<L>& prediction,
                   const std::optional<io::Image<std::type_identity_t<L>>>& reference, const OverlayOptions& options) {
  write_png(png, render_overlay(image, prediction, reference, options).picture);
}

}  // namespace medseg::viz
