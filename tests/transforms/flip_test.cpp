// transforms/flip.hpp: a flip is its own inverse, matches a hand-written reversal, keeps
// image and label aligned, and RandomFlip3D flips each axis with its probability.
#include "support.hpp"

using namespace medseg;
using namespace medseg::transforms;
using namespace transforms_test;

namespace {
/// Every label still equals its image voxel's index mod 7, as ramp_sample made them.
bool aligned(const Sample& s) {
  for (std::int64_t i = 0; i < s.label.numel(); ++i)
    if (s.label.data()[i] != static_cast<std::int64_t>(s.image.data()[i]) % 7) return false;
  return true;
}
}  // namespace

TEST_CASE("flip twice is the identity on every axis combination") {
  const Sample original = ramp_sample({3, 4, 5}, 2);
  for (int mask = 0; mask < 8; ++mask) {
    const std::array<bool, 3> axes{(mask & 1) != 0, (mask & 2) != 0, (mask & 4) != 0};
    Sample s = original;
    flip(s, axes);
    if (mask != 0) CHECK(count_different(s.image, original.image) > 0);
    CHECK(aligned(s));
    flip(s, axes);
    CHECK(count_different(s.image, original.image) == 0);
    CHECK(count_different(s.label, original.label) == 0);
  }
}

TEST_CASE("flip reverses the chosen axis as a hand-written loop does") {
  const Sample s0 = ramp_sample({3, 4, 5}, 2);
  for (int axis = 0; axis < 3; ++axis) {
    Sample s = s0;
    std::array<bool, 3> axes{};
    axes[axis] = true;
    flip(s, axes);
    for (std::int64_t c = 0; c < 2; ++c)
      for (std::int64_t z = 0; z < 3; ++z)
        for (std::int64_t y = 0; y < 4; ++y)
          for (std::int64_t x = 0; x < 5; ++x) {
            const std::int64_t zz = axis == 0 ? 2 - z : z, yy = axis == 1 ? 3 - y : y, xx = axis == 2 ? 4 - x : x;
            REQUIRE(s.image(c, z, y, x) == s0.image(c, zz, yy, xx));
          }
  }
}

TEST_CASE("flip leaves the input tensors untouched") {
  const Sample s0 = ramp_sample({2, 3, 4});
  const auto before = s0.image.clone();
  Sample s = s0;
  flip(s, {true, true, true});
  CHECK(count_different(s0.image, before) == 0);
}

TEST_CASE("RandomFlip3D flips each axis with probability p") {
  const Sample s0 = ramp_sample({2, 2, 2});
  const int trials = 4000;
  const float p = 0.3f;
  int flipped[3] = {0, 0, 0};
  for (int t = 0; t < trials; ++t) {
    Sample s = s0;
    RandomStream rng(7, static_cast<std::uint64_t>(t));
    RandomFlip3D{.p = p}.apply(s, rng);
    REQUIRE(aligned(s));
    // Voxel (0,0,0) now holds the value of voxel (fz, fy, fx): value = fz*4 + fy*2 + fx.
    const auto v = static_cast<int>(s.image.data()[0]);
    flipped[0] += (v >> 2) & 1;
    flipped[1] += (v >> 1) & 1;
    flipped[2] += v & 1;
  }
  // Binomial standard deviation sqrt(n p (1-p)) = 29: five of them is a safe bound.
  for (int a = 0; a < 3; ++a) CHECK(std::abs(flipped[a] - p * trials) < 5 * std::sqrt(trials * p * (1 - p)));
}

TEST_CASE("RandomFlip3D never flips a disabled axis") {
  const Sample s0 = ramp_sample({2, 2, 2});
  for (int t = 0; t < 200; ++t) {
    Sample s = s0;
    RandomStream rng(1, static_cast<std::uint64_t>(t));
    RandomFlip3D{.p = 1.0f, .axes = {false, true, false}}.apply(s, rng);
    CHECK(static_cast<int>(s.image.data()[0]) == 2);
  }
}

TEST_CASE("flip rejects an image that is not CDHW") {
  Sample s;
  s.image = Tensor<float>::zeros({4, 4, 4});
  CHECK_THROWS_WITH(flip(s, {true, false, false}), Catch::Contains("sample.image") && Catch::Contains("[C,D,H,W]"));
}
