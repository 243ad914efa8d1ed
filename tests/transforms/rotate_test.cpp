// transforms/rotate.hpp: quarter turns are numpy's rot90 (a transpose plus a flip), four of
// them are the identity, and rotations by any angle keep image and label aligned.
#include "support.hpp"

#include <numbers>

using namespace medseg;
using namespace medseg::transforms;
using namespace transforms_test;

TEST_CASE("rot90 by one turn is a transpose of the plane plus a flip") {
  const Sample s = ramp_sample({3, 4, 5}, 2);
  const Plane planes[] = {{0, 1}, {0, 2}, {1, 2}};
  for (const auto& plane : planes) {
    const auto out = rot90(s.image, 1, plane);
    const Index3 n = s.spatial();
    Index3 want = n;
    std::swap(want[plane[0]], want[plane[1]]);
    REQUIRE(out.shape() == Shape{2, want[0], want[1], want[2]});
    // np.rot90(m, 1, axes=(a, b)) == np.flip(m, b).swapaxes(a, b): out[i@a, j@b] = in[j@a, (n_b - 1 - i)@b].
    for (std::int64_t c = 0; c < 2; ++c)
      for (std::int64_t z = 0; z < want[0]; ++z)
        for (std::int64_t y = 0; y < want[1]; ++y)
          for (std::int64_t x = 0; x < want[2]; ++x) {
            std::int64_t o[3] = {z, y, x}, i[3] = {z, y, x};
            i[plane[0]] = o[plane[1]];
            i[plane[1]] = n[plane[1]] - 1 - o[plane[0]];
            REQUIRE(out(c, z, y, x) == s.image(c, i[0], i[1], i[2]));
          }
  }
}

TEST_CASE("rot90 four times and three-then-one are the identity") {
  const Sample s = ramp_sample({3, 4, 5});
  for (const Plane plane : {Plane{0, 1}, Plane{0, 2}, Plane{1, 2}}) {
    auto x = s.image;
    for (int k = 0; k < 4; ++k) x = rot90(x, 1, plane);
    CHECK(count_different(x, s.image) == 0);
    CHECK(count_different(rot90(rot90(s.image, 3, plane), 1, plane), s.image) == 0);
    CHECK(count_different(rot90(s.image, 2, plane), rot90(rot90(s.image, 1, plane), 1, plane)) == 0);
  }
}

TEST_CASE("a 90 degree rotation through the sampler equals the exact quarter turn") {
  const Sample s = ramp_sample({5, 5, 5});
  for (const Plane plane : {Plane{0, 1}, Plane{0, 2}, Plane{1, 2}}) {
    const auto grid = SamplingGrid::centered({5, 5, 5}, {5, 5, 5}, Mat3::plane_rotation(plane[0], plane[1], -std::numbers::pi / 2));
    CHECK(max_abs_diff(sample_image(s.image, grid), rot90(s.image, 1, plane)) < 1e-3);
    CHECK(count_different(sample_label(s.label, grid, LabelInterpolation::per_class_linear), rot90(s.label, 1, plane)) == 0);
    CHECK(count_different(sample_label(s.label, grid, LabelInterpolation::nearest), rot90(s.label, 1, plane)) == 0);
  }
}

TEST_CASE("RandomQuarterTurn3D keeps image and label aligned and cubic shapes unchanged") {
  const Sample s0 = ramp_sample({4, 4, 4});
  int changed = 0;
  for (int t = 0; t < 50; ++t) {
    Sample s = s0;
    RandomStream rng(3, static_cast<std::uint64_t>(t));
    RandomQuarterTurn3D{.p = 0.8f}.apply(s, rng);
    REQUIRE(s.image.shape() == s0.image.shape());
    for (std::int64_t i = 0; i < s.label.numel(); ++i)
      REQUIRE(s.label.data()[i] == static_cast<std::int64_t>(s.image.data()[i]) % 7);
    changed += count_different(s.image, s0.image) > 0;
  }
  CHECK(changed > 25);
  CHECK(changed < 50);
}

TEST_CASE("RandomQuarterTurn3D with square_only never turns a non-square plane") {
  const Sample s0 = ramp_sample({3, 4, 4});
  for (int t = 0; t < 40; ++t) {
    Sample s = s0;
    RandomStream rng(5, static_cast<std::uint64_t>(t));
    RandomQuarterTurn3D{.p = 1.0f}.apply(s, rng);
    REQUIRE(s.image.shape() == s0.image.shape());
    // Only the H-W plane is square, so every D slice keeps its voxels.
    for (std::int64_t z = 0; z < 3; ++z) REQUIRE(static_cast<std::int64_t>(s.image(0, z, 0, 0)) / 16 == z);
  }
}

TEST_CASE("RandomRotation3D keeps the label equal to the thresholded image") {
  const Sample s0 = blob_sample({24, 28, 32});
  const auto fg = foreground(s0);
  for (int t = 0; t < 6; ++t) {
    Sample s = s0;
    RandomStream rng(11, static_cast<std::uint64_t>(t));
    RandomRotation3D{.degrees = 45.0f}.apply(s, rng);
    REQUIRE(s.image.shape() == s0.image.shape());
    CHECK(count_different(s.image, s0.image) > 0);
    // Disagreement only where linear and nearest sampling round a boundary voxel differently.
    CHECK(misaligned_per_boundary(s) < 0.2);
    CHECK(std::abs(foreground(s) - fg) < 0.1 * static_cast<double>(fg));
  }
}

TEST_CASE("RandomRotation3D rejects a plane of one axis") {
  Sample s = ramp_sample({3, 3, 3});
  RandomStream rng(0, 0);
  CHECK_THROWS_WITH((RandomRotation3D{.degrees = 10.0f, .planes = {{1, 1}}}.apply(s, rng)),
                    Catch::Contains("plane") && Catch::Contains("two different spatial axes"));
}
