// Overlays: a label blob at a known world position shows at the pixel that position maps to
// in each view (worked out here from the geometry, independently of the renderer), for an
// identity and for a flipped direction, with the patient's left on the picture's right;
// pixels are square in millimetres; reference outlines and errors.
#include <catch2/catch.hpp>

#include <cmath>

#include "medseg/viz/overlay.hpp"
#include "viz_test_util.hpp"

using namespace medseg;
using namespace medseg::viz;

namespace {

constexpr std::int64_t W = 40, H = 30, D = 20;  // i, j, k extents

io::Image<float> ramp_image(const io::Geometry& g) {
  auto t = Tensor<float>::empty({D, H, W});
  for (std::int64_t k = 0; k < D; ++k)
    for (std::int64_t j = 0; j < H; ++j)
      for (std::int64_t i = 0; i < W; ++i) t.at(k, j, i) = static_cast<float>(100 + i + j + k);
  return {t, g};
}

/// A 3x3x3 cube of `label` centred on voxel (i, j, k).
io::Image<std::uint8_t> blob(const io::Geometry& g, std::int64_t i, std::int64_t j, std::int64_t k, std::uint8_t label = 1) {
  auto t = Tensor<std::uint8_t>::zeros({D, H, W});
  for (std::int64_t dk = -1; dk <= 1; ++dk)
    for (std::int64_t dj = -1; dj <= 1; ++dj)
      for (std::int64_t di = -1; di <= 1; ++di) t.at(k + dk, j + dj, i + di) = label;
  return {t, g};
}

bool reddish(Rgb c) { return c.r > c.g + 40 && c.r > c.b + 40; }

/// World bounds of the image along world axis a: centres' min and max.
std::array<double, 2> world_range(const io::Geometry& g, int a) {
  double lo = 1e300, hi = -1e300;
  for (double i : {0.0, double(W - 1)})
    for (double j : {0.0, double(H - 1)})
      for (double k : {0.0, double(D - 1)}) {
        const double v = g.index_to_world({i, j, k})[static_cast<std::size_t>(a)];
        lo = std::min(lo, v), hi = std::max(hi, v);
      }
  return {lo, hi};
}

/// Checks that the blob centred at world point p lands at the expected pixel of each view,
/// and that the mirror image of that pixel across the panel does not show it.
void check_views(const Overlay& o, const io::Geometry& g, const io::Vec3& p) {
  const auto xr = world_range(g, 0), yr = world_range(g, 1), zr = world_range(g, 2);
  const double sx = 1, sy = 1, sz = 2;  // the spacing of both test geometries, by world axis
  // axial: x to the right from the patient's right edge, y (posterior) downwards.
  const int ax = static_cast<int>(std::floor((p[0] - (xr[0] - sx / 2)) / 1.0));
  const int ay = static_cast<int>(std::floor((p[1] - (yr[0] - sy / 2)) / 1.0));
  // coronal and sagittal: z downwards from the superior edge; sagittal columns run along y.
  const int cz = static_cast<int>(std::floor(((zr[1] + sz / 2) - p[2]) / 1.0));
  const OverlayView& a = o.views[0];
  const OverlayView& c = o.views[1];
  const OverlayView& s = o.views[2];
  CHECK(reddish(o.picture.rgb(a.x0 + ax, a.y0 + ay)));
  CHECK(reddish(o.picture.rgb(c.x0 + ax, c.y0 + cz)));
  CHECK(reddish(o.picture.rgb(s.x0 + ay, s.y0 + cz)));
  CHECK(!reddish(o.picture.rgb(a.x0 + a.width - 1 - ax, a.y0 + ay)));
  CHECK(!reddish(o.picture.rgb(s.x0 + s.width - 1 - ay, s.y0 + cz)));
  CHECK(!reddish(o.picture.rgb(c.x0 + ax, c.y0 + c.height - 1 - cz)));
  // The renderer's own mapping agrees.
  CHECK(a.pixel_of(p) == std::array<int, 2>{a.x0 + ax, a.y0 + ay});
  CHECK(c.pixel_of(p) == std::array<int, 2>{c.x0 + ax, c.y0 + cz});
  CHECK(s.pixel_of(p) == std::array<int, 2>{s.x0 + ay, s.y0 + cz});
}

}  // namespace

TEST_CASE("overlay puts a blob at its world position in all three views") {
  io::Geometry g;
  g.spacing = {1, 1, 2};
  g.origin = {-20, -15, 3};
  const auto image = ramp_image(g);
  const auto label = blob(g, 31, 8, 12);  // towards the patient's left (+x) and anterior (-y)
  const Overlay o = render_overlay(image, label);
  const io::Vec3 p = g.index_to_world({31, 8, 12});
  check_views(o, g, p);
  // Patient's left on the picture's right; anterior at the top; superior at the top.
  CHECK(o.views[0].pixel_of(p)[0] > o.views[0].x0 + o.views[0].width / 2);
  CHECK(o.views[0].pixel_of(p)[1] < o.views[0].y0 + o.views[0].height / 2);
  CHECK(o.views[2].pixel_of(p)[0] < o.views[2].x0 + o.views[2].width / 2);  // anterior on the left
  // Slices pass through the blob's centre of mass.
  CHECK(o.views[0].slice == 12);
  CHECK(o.views[1].slice == 8);
  CHECK(o.views[2].slice == 31);
}

TEST_CASE("overlay of an image with flipped axes shows the same anatomy the same way") {
  io::Geometry g;
  g.spacing = {1, 1, 2};
  g.direction = {-1, 0, 0, 0, -1, 0, 0, 0, 1};  // RAS-like storage: i to the right, j anterior
  g.origin = {19, 14, 3};
  const auto image = ramp_image(g);
  const io::Vec3 p = g.index_to_world({8, 21, 12});
  const Overlay o = render_overlay(image, blob(g, 8, 21, 12));
  check_views(o, g, p);
  // p lies at x = 11 (left of centre x = 0): on the picture's right, whatever the storage.
  CHECK(p[0] > 0);
  CHECK(o.views[0].pixel_of(p)[0] > o.views[0].x0 + o.views[0].width / 2);
  CHECK(o.views[2].slice == W - 1 - 8);  // the sagittal index counts in the LPS grid
}

TEST_CASE("overlay pixels are square in millimetres") {
  io::Geometry g;
  g.spacing = {1, 1, 2};
  const Overlay o = render_overlay(ramp_image(g), blob(g, 20, 15, 10));
  CHECK(o.views[0].width == W);
  CHECK(o.views[0].height == H);
  CHECK(o.views[1].width == W);
  CHECK(o.views[1].height == 2 * D);  // 2 mm slices: two pixels each
  CHECK(o.views[2].width == H);
  CHECK(o.views[2].height == 2 * D);
  const Overlay half = render_overlay(ramp_image(g), blob(g, 20, 15, 10), std::nullopt, {.pixel_mm = 0.5});
  CHECK(half.views[1].height == 4 * D);
  CHECK(half.views[1].width == 2 * W);
}

TEST_CASE("reference is outlined and the prediction filled in class colours") {
  io::Geometry g;
  const auto image = ramp_image(g);
  auto pred = blob(g, 20, 15, 10, 2);
  const auto ref = blob(g, 20, 15, 10, 2);
  const Overlay o = render_overlay(image, pred, std::optional{ref}, {.voxel = std::array<std::int64_t, 3>{20, 15, 10}});
  const OverlayView& a = o.views[0];
  CHECK(o.picture.rgb(a.x0 + 19, a.y0 + 14) == label_colour(2));  // the outline, opaque
  const Rgb inside = o.picture.rgb(a.x0 + 20, a.y0 + 15);          // filled, blended with grey
  CHECK(inside != label_colour(2));
  CHECK(inside.g > inside.r + 30);                                 // class 2 is green
  CHECK(o.views[0].slice == 10);
}

TEST_CASE("overlay works from tensors with a spacing and writes a PNG") {
  viz_test::ScratchDir dir("overlay");
  const auto image = ramp_image({});
  const auto label = blob({}, 10, 10, 10);
  const Overlay o = render_overlay(image.voxels, {1, 1, 2}, label.voxels);
  CHECK(o.views[1].height == 2 * D);
  write_overlay(dir.path / "overlay.png", image, label);
  const Picture back = viz_test::python_decode(dir.path / "overlay.png");
  CHECK(back.pixels == render_overlay(image, label).picture.pixels);
}

TEST_CASE("overlay rejects a label map of another shape") {
  const auto image = ramp_image({});
  const io::Image<std::uint8_t> small{Tensor<std::uint8_t>::zeros({D, H, W - 1}), {}};
  CHECK_THROWS_WITH(render_overlay(image, small), Catch::Contains("prediction") && Catch::Contains("[20,30,40]"));
}
