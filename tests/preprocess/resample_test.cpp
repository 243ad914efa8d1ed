// resize/zoom against scipy.ndimage.zoom (orders 0, 1, 3; up and down; odd shapes; both grid
// modes; several channels; int16 input), the geometry of resampled images, and the errors.
#include <catch2/catch.hpp>

#include "medseg/preprocess/resample.hpp"
#include "reference.hpp"

using namespace medseg;
using namespace medseg::preprocess;
using preprocess_test::Case;

namespace {

std::string extent_text(const Extent3& e) {
  return std::to_string(e[0]) + "," + std::to_string(e[1]) + "," + std::to_string(e[2]);
}

std::string shape_text(const Shape& s) {
  std::string t;
  for (auto v : s) t += (t.empty() ? "" : ",") + std::to_string(v);
  return t;
}

struct ZoomCase {
  std::string name;
  Shape in;
  Extent3 out;
  int order;
  GridMode grid = GridMode::corners;
  std::string dtype = "float32";
  Boundary boundary = Boundary::mirror;
  int separate_axis = -1, separate_order = 0;

  ResampleOptions options() const {
    return {.order = order, .grid = grid, .boundary = boundary, .separate_axis = separate_axis,
            .separate_order = separate_order};
  }
  std::string line() const {
    std::string l = "zoom order=" + std::to_string(order) + " in=" + shape_text(in) + " out=" + extent_text(out) +
                    " grid=" + (grid == GridMode::extent ? "extent" : "corners") + " dtype=" + dtype;
    if (boundary == Boundary::nearest) l += " boundary=nearest";
    if (separate_axis >= 0)
      l += " separate_axis=" + std::to_string(separate_axis) + " separate_order=" + std::to_string(separate_order);
    return l;
  }
};

std::vector<ZoomCase> zoom_cases() {
  std::vector<ZoomCase> cases;
  const std::vector<std::pair<Shape, Extent3>> shapes = {
      {{9, 10, 11}, {5, 4, 6}},      // down, odd
      {{5, 6, 7}, {9, 13, 16}},      // up, odd
      {{6, 17, 16}, {12, 8, 31}},    // mixed
      {{1, 7, 3}, {4, 1, 5}},        // one-voxel axes in and out
      {{40, 36, 35}, {16, 64, 20}},  // lines longer than the prefilter horizon
      {{8, 8, 8}, {8, 8, 8}},        // identity
  };
  int n = 0;
  for (const auto& [in, out] : shapes)
    for (int order : {0, 1, 3})
      for (auto grid : {GridMode::corners, GridMode::extent})
        cases.push_back({"zoom" + std::to_string(n++), in, out, order, grid});
  cases.push_back({"zoom_channels", {3, 6, 7, 5}, {9, 4, 8}, 1});
  cases.push_back({"zoom_channels_cubic", {2, 6, 7, 5}, {9, 4, 8}, 3});
  cases.push_back({"zoom_int16_linear", {10, 12, 14}, {7, 5, 9}, 1, GridMode::corners, "int16"});
  cases.push_back({"zoom_int16_nearest", {10, 12, 14}, {17, 5, 9}, 0, GridMode::corners, "int16"});
  // Output extents whose source coordinates land on exact halves: order 0 must round them as
  // SciPy does (half up after k * zoom in double).
  cases.push_back({"zoom_halves", {3, 5, 9}, {5, 9, 17}, 0});
  cases.push_back({"zoom_halves_down", {5, 9, 17}, {3, 5, 9}, 0});
  // nnU-Net's geometry: extent grid, clamped edges (skimage mode='edge', scipy 'nearest').
  for (int order : {0, 1}) {
    cases.push_back({"zoom_nearest_edge_up" + std::to_string(order), {5, 6, 7}, {9, 13, 16}, order, GridMode::extent,
                     "float32", Boundary::nearest});
    cases.push_back({"zoom_nearest_edge_down" + std::to_string(order), {9, 10, 11}, {5, 4, 6}, order, GridMode::extent,
                     "float32", Boundary::nearest});
  }
  // Anisotropic (nnU-Net's separate z): one axis with its own order.
  for (int axis : {0, 1, 2}) {
    cases.push_back({"zoom_separate" + std::to_string(axis), {6, 9, 11}, {13, 5, 7}, 1, GridMode::extent, "float32",
                     Boundary::nearest, axis, 0});
    cases.push_back({"zoom_separate_cubic" + std::to_string(axis), {6, 9, 11}, {13, 5, 7}, 3, GridMode::corners,
                     "float32", Boundary::mirror, axis, 0});
  }
  cases.push_back({"zoom_separate_linear_z", {5, 12, 10}, {9, 7, 6}, 3, GridMode::corners, "float32",
                   Boundary::mirror, 0, 1});
  return cases;
}

template <class T>
void check_case(const ZoomCase& c, const preprocess_test::fs::path& dir) {
  INFO(c.name << ": " << c.line());
  auto x = preprocess_test::read_raw<T>(dir / (c.name + ".in"), c.in);
  Shape out_shape = c.in.rank() == 4 ? Shape{c.in[0], c.out[0], c.out[1], c.out[2]} : Shape{c.out[0], c.out[1], c.out[2]};
  if (c.order == 0 && c.separate_axis < 0) {
    auto ours = resize<T>(x, c.out, c.options());
    auto ref = preprocess_test::read_raw<T>(dir / (c.name + ".ref"), out_shape);
    CHECK(ours.shape() == out_shape);
    CHECK(ours.to_vector() == ref.to_vector());  // nearest must pick exactly the same voxel
  } else {
    auto ours = resize(x, c.out, c.options());
    auto ref = preprocess_test::read_raw<float>(dir / (c.name + ".ref"), out_shape);
    CHECK(ours.shape() == out_shape);
    CHECK(preprocess_test::relative_error(ours, ref) < 1e-4);
  }
}

}  // namespace

TEST_CASE("resize matches scipy.ndimage.zoom for orders 0 1 and 3") {
  const auto cases = zoom_cases();
  std::vector<Case> lines;
  for (const auto& c : cases)
    lines.push_back({c.name, c.line()});
  const auto dir = preprocess_test::make_references(lines, "zoom");
  for (const auto& c : cases) {
    if (c.dtype == "int16")
      check_case<std::int16_t>(c, dir);
    else
      check_case<float>(c, dir);
  }
  preprocess_test::remove_references(dir);
}

TEST_CASE("resize gives the same result on one thread and on all") {
  auto x = Tensor<float>::empty({13, 21, 19});
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] = static_cast<float>((i * 7919) % 1000) * 0.01f;
  for (int order : {0, 1, 3}) {
    const int before = num_threads();
    set_num_threads(1);
    const auto serial = resize(x, {7, 30, 11}, {.order = order}).to_vector();
    set_num_threads(std::max(before, 2));
    const auto parallel = resize(x, {7, 30, 11}, {.order = order}).to_vector();
    set_num_threads(before);
    CHECK(serial == parallel);
  }
}

TEST_CASE("zoom_shape rounds half to even as Python does") {
  CHECK(zoom_shape({5, 7, 3}, {0.5, 0.5, 0.5}) == Extent3{2, 4, 2});  // 2.5 -> 2, 3.5 -> 4, 1.5 -> 2
  CHECK(zoom_shape({200, 512, 512}, {0.64, 0.25, 0.25}) == Extent3{128, 128, 128});
  auto x = Tensor<float>::zeros({5, 7, 3});
  CHECK(zoom(x, {0.5, 0.5, 0.5}).shape() == Shape{2, 4, 2});
}

TEST_CASE("resampled geometry keeps corners or the physical extent") {
  io::Geometry g;
  g.spacing = {0.5, 0.8, 2.5};
  g.origin = {-10, 20, 30};
  g.direction = {0, 1, 0, -1, 0, 0, 0, 0, 1};  // i along -y... a rotated grid
  const Extent3 in{40, 101, 64};  // (D, H, W) = k, j, i
  const Extent3 out{20, 51, 32};

  const auto corners = resized_geometry(g, in, out, GridMode::corners);
  // The last voxel centre of both grids is the same world point.
  const auto last_in = g.index_to_world({63, 100, 39});
  const auto last_out = corners.index_to_world({31, 50, 19});
  for (int c = 0; c < 3; ++c) CHECK(last_out[static_cast<std::size_t>(c)] == Approx(last_in[static_cast<std::size_t>(c)]));
  CHECK(corners.origin == g.origin);

  const auto extent = resized_geometry(g, in, out, GridMode::extent);
  // The outer corner of the grid (index -0.5 and n - 0.5) is the same world point.
  const auto lo_in = g.index_to_world({-0.5, -0.5, -0.5}), lo_out = extent.index_to_world({-0.5, -0.5, -0.5});
  const auto hi_in = g.index_to_world({63.5, 100.5, 39.5}), hi_out = extent.index_to_world({31.5, 50.5, 19.5});
  for (std::size_t c = 0; c < 3; ++c) {
    CHECK(lo_out[c] == Approx(lo_in[c]));
    CHECK(hi_out[c] == Approx(hi_in[c]));
  }
  CHECK(extent.direction == g.direction);
}

TEST_CASE("resample_to_spacing picks nnU-Net's shape and moves the spacing to the target") {
  io::Image<std::int16_t> image{Tensor<std::int16_t>::zeros({30, 64, 50}), {}};
  image.geometry.spacing = {0.7, 0.7, 3.0};
  const auto r = resample_to_spacing(image, {1.0, 1.0, 1.5});
  CHECK(r.voxels.shape() == Shape{60, 45, 35});  // round(30 * 3 / 1.5), round(64 * .7), round(50 * .7)
  CHECK(r.geometry.spacing[0] == Approx(0.7 * 50 / 35));
  CHECK(r.geometry.spacing[2] == Approx(1.5));
  const auto s = resample_to_shape(image, {10, 32, 25}, {.order = 0});
  CHECK(s.voxels.shape() == Shape{10, 32, 25});
  CHECK(s.geometry.spacing[2] == Approx(3.0 * 29 / 9));
}

TEST_CASE("resize rejects bad arguments with a named error") {
  auto x = Tensor<float>::zeros({4, 5, 6});
  CHECK_THROWS_WITH(resize(x, {2, 2, 2}, {.order = 2}), Catch::Contains("order") && Catch::Contains("got 2"));
  CHECK_THROWS_WITH(resize(x, {0, 2, 2}), Catch::Contains("output shape"));
  CHECK_THROWS_WITH(resize<std::int16_t>(x, {2, 2, 2}, {.order = 1}), Catch::Contains("floating type"));
  CHECK_THROWS_WITH(resize(Tensor<float>::zeros({4, 5}), {2, 2, 2}), Catch::Contains("[D,H,W]"));
  CHECK_THROWS_WITH(zoom(x, {1.0, -1.0, 1.0}), Catch::Contains("factor of axis H"));
}
