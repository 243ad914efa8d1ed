// transforms/crop.hpp: crops copy exact voxels (padding reads 0), random crops reach every
// position, nnU-Net's foreground oversampling hits foreground in the fraction it is set to,
// and RandomResizedCrop3D resizes to its size with image and label aligned.
#include "support.hpp"

#include <set>

using namespace medseg;
using namespace medseg::transforms;
using namespace transforms_test;

namespace {
bool ramp_aligned(const Sample& s) {
  for (std::int64_t i = 0; i < s.label.numel(); ++i)
    if (s.label.data()[i] != static_cast<std::int64_t>(s.image.data()[i]) % 7) return false;
  return true;
}
}  // namespace

TEST_CASE("RandomCrop reaches every start and keeps image and label aligned") {
  const Sample s0 = ramp_sample({6, 6, 6});
  std::set<int> starts;
  for (int t = 0; t < 300; ++t) {
    Sample s = s0;
    RandomStream rng(1, static_cast<std::uint64_t>(t));
    RandomCrop{.size = {4, 4, 4}}.apply(s, rng);
    REQUIRE(s.image.shape() == Shape{1, 4, 4, 4});
    REQUIRE(ramp_aligned(s));
    starts.insert(static_cast<int>(s.image.data()[0]));
  }
  CHECK(starts.size() == 27);  // 3 x 3 x 3 possible starts
}

TEST_CASE("CenterCrop and PadToSize place the volume centrally") {
  const Sample s0 = ramp_sample({6, 7, 8});
  Sample s = s0;
  RandomStream rng(0, 0);
  CenterCrop{.size = {4, 9, 8}}.apply(s, rng);
  REQUIRE(s.image.shape() == Shape{1, 4, 9, 8});
  CHECK(s.image(0, 0, 1, 0) == s0.image(0, 1, 0, 0));
  CHECK(s.image(0, 0, 0, 0) == 0.0f);
  CHECK(ramp_aligned(s));
  Sample p = s0;
  PadToSize{.size = {8, 7, 4}}.apply(p, rng);
  REQUIRE(p.image.shape() == Shape{1, 8, 7, 8});
  CHECK(p.image(0, 1, 0, 0) == s0.image(0, 0, 0, 0));
  CHECK(p.image(0, 0, 3, 3) == 0.0f);
  CHECK(p.image(0, 7, 3, 3) == 0.0f);
}

TEST_CASE("ForegroundCrop puts foreground in the patch at its set fraction") {
  // A 48^3 volume with a 2^3 foreground cube near a corner: a random 8^3 patch almost never
  // meets it, so the fraction of patches with foreground is the oversampling fraction.
  Sample s0;
  s0.image = Tensor<float>::zeros({1, 48, 48, 48});
  s0.label = Tensor<std::uint8_t>::zeros({1, 48, 48, 48});
  for (int z = 40; z < 42; ++z)
    for (int y = 3; y < 5; ++y)
      for (int x = 44; x < 46; ++x) {
        s0.label(0, z, y, x) = 2;
        s0.image(0, z, y, x) = 1.0f;
      }
  auto has_foreground = [](const Sample& s) { return foreground(s) > 0; };
  for (int t = 0; t < 30; ++t) {
    Sample s = s0;
    RandomStream rng(4, static_cast<std::uint64_t>(t));
    ForegroundCrop{.size = {8, 8, 8}, .foreground_fraction = 1.0f}.apply(s, rng);
    REQUIRE(s.image.shape() == Shape{1, 8, 8, 8});
    REQUIRE(has_foreground(s));
    for (std::int64_t i = 0; i < s.label.numel(); ++i) REQUIRE((s.label.data()[i] == 2) == (s.image.data()[i] == 1.0f));
  }
  const int trials = 1500;
  int hits = 0;
  for (int t = 0; t < trials; ++t) {
    Sample s = s0;
    RandomStream rng(5, static_cast<std::uint64_t>(t));
    ForegroundCrop{.size = {8, 8, 8}}.apply(s, rng);
    hits += has_foreground(s);
  }
  // 0.33 plus the ~0.2% chance a random patch meets the cube; binomial sd is 0.012.
  CHECK(static_cast<double>(hits) / trials == Approx(0.332).margin(0.05));
}

TEST_CASE("ForegroundCrop without foreground or label still crops") {
  Sample s = ramp_sample({10, 10, 10});
  s.label = Tensor<std::uint8_t>::zeros({1, 10, 10, 10});
  RandomStream rng(0, 1);
  ForegroundCrop{.size = {4, 4, 4}, .foreground_fraction = 1.0f}.apply(s, rng);
  CHECK(s.image.shape() == Shape{1, 4, 4, 4});
  Sample u = ramp_sample({10, 10, 10});
  u.label = {};
  ForegroundCrop{.size = {12, 4, 4}, .foreground_fraction = 1.0f}.apply(u, rng);
  CHECK(u.image.shape() == Shape{1, 12, 4, 4});
  CHECK(!u.label.defined());
}

TEST_CASE("RandomResizedCrop3D resizes to its size with the label aligned") {
  const Sample s0 = blob_sample({20, 40, 40});
  for (int t = 0; t < 5; ++t) {
    Sample s = s0;
    RandomStream rng(6, static_cast<std::uint64_t>(t));
    RandomResizedCrop3D{.size = {24, 24, 24}}.apply(s, rng);
    REQUIRE(s.image.shape() == Shape{1, 24, 24, 24});
    REQUIRE(s.label.shape() == Shape{1, 24, 24, 24});
    CHECK(misaligned_per_boundary(s) < 0.2);
    std::set<int> ids(s.label.data(), s.label.data() + s.label.numel());
    CHECK(ids == std::set<int>{0, 1});
  }
}

TEST_CASE("RandomResizedCrop3D with scale 1 and ratio 1 on a square slice is a plain resize") {
  const Sample s0 = ramp_sample({3, 5, 5});
  Sample s = s0;
  RandomStream rng(0, 0);
  RandomResizedCrop3D{.size = {3, 5, 5}, .scale = {1, 1}, .ratio = {1, 1}}.apply(s, rng);
  CHECK(max_abs_diff(s.image, s0.image) < 1e-4);
  CHECK(count_different(s.label, s0.label) == 0);
}

TEST_CASE("crops reject a non-positive size") {
  Sample s = ramp_sample({4, 4, 4});
  RandomStream rng(0, 0);
  CHECK_THROWS_WITH((RandomCrop{.size = {4, 0, 4}}.apply(s, rng)),
                    Catch::Contains("RandomCrop") && Catch::Contains("size") && Catch::Contains("[4,0,4]"));
}
