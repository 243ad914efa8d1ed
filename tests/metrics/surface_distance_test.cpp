// The anisotropic Euclidean distance transform against scipy.ndimage.distance_transform_edt,
// HD95 / average surface distance against a SciPy computation of MONAI's definitions (6- and
// 26-connected erosion), and the edge cases: empty masks, single voxels, the image border.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>

#include "medseg/metrics/distance_transform.hpp"
#include "medseg/metrics/surface_distance.hpp"
#include "reference.hpp"

using namespace medseg;
using namespace medseg::metrics;

TEST_CASE("distance_transform_edt matches SciPy with anisotropic spacing") {
  const auto g = metrics_test::make_golden("edt", 3, {21, 18, 25}, 3, {2.5, 0.7, 1.3});
  const auto d = distance_transform_edt(g.reference, g.spacing);
  double worst = 0, largest = 0;
  for (std::int64_t i = 0; i < d.numel(); ++i) {
    worst = std::max(worst, std::abs(d.data()[i] - g.edt.data()[i]));
    largest = std::max(largest, g.edt.data()[i]);
  }
  CHECK(worst < 1e-9);
  CHECK(largest > 3.0);  // distances of several voxels: the passes really propagate
  // The same on any thread count: each line's minimum does not depend on the chunking.
  const int threads = num_threads();
  set_num_threads(1);
  const auto serial = distance_transform_edt(g.reference, g.spacing);
  set_num_threads(threads);
  CHECK(serial.to_vector() == d.to_vector());
}

TEST_CASE("distance_transform_edt on single points and without background") {
  auto mask = Tensor<std::uint8_t>::ones({5, 6, 7});
  mask.at(1, 2, 3) = 0;
  const auto d = distance_transform_edt(mask, {2.0, 1.0, 0.5});
  CHECK(d.at(1, 2, 3) == 0.0);
  CHECK(d.at(4, 5, 6) == Approx(std::sqrt(6.0 * 6.0 + 3.0 * 3.0 + 1.5 * 1.5)).epsilon(1e-14));
  CHECK(d.at(1, 2, 0) == Approx(1.5).epsilon(1e-14));
  const auto none = distance_transform_edt(Tensor<std::uint8_t>::ones({2, 3, 4}));
  for (double v : none.to_vector()) CHECK(std::isinf(v));
  CHECK_THROWS_WITH(distance_transform_edt(mask, {1.0, 0.0, 1.0}), Catch::Contains("spacing[1]"));
  CHECK_THROWS_WITH(distance_transform_edt(Tensor<std::uint8_t>::ones({3, 4})), Catch::Contains("[D,H,W]"));
}

TEST_CASE("HD95 and average surface distance match SciPy on random blobs") {
  const auto g = metrics_test::make_golden("surface", 7, {22, 26, 19}, 4, {2.5, 0.8, 1.1});
  const auto faces = surface_distance_per_class(g.prediction, g.reference, 4, {.spacing = g.spacing}, 0);
  const auto full = surface_distance_per_class(
      g.prediction, g.reference, 4, {.spacing = g.spacing, .connectivity = Connectivity::full}, 0);
  const auto max = surface_distance_per_class(g.prediction, g.reference, 4, {.spacing = g.spacing, .percentile = 100});
  CHECK(std::isnan(max[0].hausdorff));  // first_class 1 by default, as MONAI's include_background=False
  for (int c = 0; c < 4; ++c) {
    INFO("class " << c);
    const auto k = static_cast<std::size_t>(c);
    REQUIRE(g.has("hd95", c));
    CHECK(faces[k].hausdorff == Approx(g.at("hd95", c)).epsilon(1e-9));
    CHECK(faces[k].average == Approx(g.at("assd", c)).epsilon(1e-9));
    CHECK(full[k].hausdorff == Approx(g.at("hd95_full", c)).epsilon(1e-9));
    CHECK(full[k].average == Approx(g.at("assd_full", c)).epsilon(1e-9));
    if (c > 0) CHECK(max[k].hausdorff == Approx(g.at("hd100", c)).epsilon(1e-9));
    CHECK(faces[k].hausdorff > 1.0);  // imperfect predictions: distances of a few voxels
  }
  // The binary-mask entry point agrees with the per-class one.
  auto p1 = Tensor<std::uint8_t>::empty(g.shape), r1 = Tensor<std::uint8_t>::empty(g.shape);
  for (std::int64_t i = 0; i < p1.numel(); ++i) {
    p1.data()[i] = g.prediction.data()[i] == 2;
    r1.data()[i] = g.reference.data()[i] == 2;
  }
  const auto one = surface_distance(p1, r1, {.spacing = g.spacing});
  CHECK(one.hausdorff == faces[2].hausdorff);
  CHECK(one.average == faces[2].average);
}

TEST_CASE("surface distances of empty masks and single voxels") {
  const SurfaceDistanceOptions o{.spacing = {3.0, 1.0, 0.5}};
  auto empty = Tensor<std::uint8_t>::zeros({6, 7, 8});
  auto a = Tensor<std::uint8_t>::zeros({6, 7, 8});
  auto b = Tensor<std::uint8_t>::zeros({6, 7, 8});
  a.at(1, 1, 1) = 1;
  b.at(3, 1, 5) = 1;
  // Two single voxels: every distance is the one between them.
  const auto ab = surface_distance(a, b, o);
  CHECK(ab.hausdorff == Approx(std::sqrt(36.0 + 4.0)).epsilon(1e-14));
  CHECK(ab.average == Approx(std::sqrt(36.0 + 4.0)).epsilon(1e-14));
  CHECK(surface_distance(a, a, o).hausdorff == 0.0);
  // MONAI: both empty -> NaN (nothing to measure); one empty -> inf.
  const auto none = surface_distance(empty, empty, o);
  CHECK(std::isnan(none.hausdorff));
  CHECK(std::isnan(none.average));
  CHECK(std::isinf(surface_distance(a, empty, o).hausdorff));
  CHECK(std::isinf(surface_distance(empty, b, o).average));
  // A full volume: its surface is the image border (erosion treats outside as background).
  const auto s = surface_voxels(Tensor<std::uint8_t>::ones({4, 5, 6}));
  std::int64_t count = 0;
  for (auto v : s.to_vector()) count += v;
  CHECK(count == 4 * 5 * 6 - 2 * 3 * 4);
  // A 3x3x3 cube: 26 surface voxels with faces erosion; with full erosion also 26 (the
  // centre has all 26 neighbours).
  auto cube = Tensor<std::uint8_t>::zeros({5, 5, 5});
  for (int d = 1; d < 4; ++d)
    for (int h = 1; h < 4; ++h)
      for (int w = 1; w < 4; ++w) cube.at(d, h, w) = 1;
  auto count_of = [](const Tensor<std::uint8_t>& t) {
    std::int64_t n = 0;
    for (auto v : t.to_vector()) n += v;
    return n;
  };
  CHECK(count_of(surface_voxels(cube, Connectivity::faces)) == 26);
  CHECK(count_of(surface_voxels(cube, Connectivity::full)) == 26);
  // Per class: class 2 absent from both -> NaN; class 1 predicted but absent -> inf.
  auto pred = Tensor<std::uint8_t>::zeros({6, 7, 8}), ref = Tensor<std::uint8_t>::zeros({6, 7, 8});
  pred.at(0, 0, 0) = 1;
  pred.at(2, 2, 2) = 3;
  ref.at(2, 2, 3) = 3;
  const auto sd = surface_distance_per_class(pred, ref, 4, o);
  CHECK(std::isinf(sd[1].hausdorff));
  CHECK(std::isnan(sd[2].hausdorff));
  CHECK(sd[3].hausdorff == Approx(0.5));
  CHECK(sd[3].average == Approx(0.5));
}

TEST_CASE("surface distances reject bad inputs") {
  auto a = Tensor<std::uint8_t>::zeros({4, 5, 6});
  CHECK_THROWS_WITH(surface_distance(a, Tensor<std::uint8_t>::zeros({4, 5, 7})),
                    Catch::Contains("reference shape") && Catch::Contains("[4,5,6]") && Catch::Contains("[4,5,7]"));
  CHECK_THROWS_WITH(surface_distance(a, a, {.spacing = {1, 1, -2}}), Catch::Contains("spacing[2]"));
  CHECK_THROWS_WITH(surface_distance(a, a, {.percentile = 120}), Catch::Contains("percentile"));
  auto labels = Tensor<std::uint8_t>::full({4, 5, 6}, 5);
  CHECK_THROWS_WITH(surface_distance_per_class(labels, a, 3), Catch::Contains("labels in [0, 3)") &&
                                                                  Catch::Contains("got 5"));
  CHECK_THROWS_WITH(surface_distance_per_class(Tensor<std::uint8_t>::zeros({20}), Tensor<std::uint8_t>::zeros({20}), 3),
                    Catch::Contains("[D,H,W]"));
}

TEST_CASE("percentile interpolates as numpy") {
  std::vector<double> v{4, 1, 3, 2, 5};
  CHECK(percentile(v, 95) == Approx(4.8));
  CHECK(percentile(v, 50) == Approx(3.0));
  CHECK(percentile(v, 100) == 5.0);
  CHECK(percentile(v, 0) == 1.0);
  std::vector<double> e;
  CHECK(std::isnan(percentile(e, 95)));
}
