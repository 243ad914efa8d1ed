// transforms/box.hpp: the whole-voxel box copy reads exact voxels inside the volume and the
// fill value outside, and names a bad size.
#include "support.hpp"

using namespace medseg;
using namespace medseg::transforms;
using namespace transforms_test;

TEST_CASE("crop_or_pad copies the box and fills outside with the fill value") {
  const Sample s = ramp_sample({4, 5, 6}, 2);
  const auto out = crop_or_pad(s.image, {-1, 2, 3}, {3, 4, 5}, -5.0f);
  REQUIRE(out.shape() == Shape{2, 3, 4, 5});
  for (std::int64_t c = 0; c < 2; ++c)
    for (std::int64_t z = 0; z < 3; ++z)
      for (std::int64_t y = 0; y < 4; ++y)
        for (std::int64_t x = 0; x < 5; ++x) {
          const std::int64_t iz = z - 1, iy = y + 2, ix = x + 3;
          const bool inside = iz >= 0 && iz < 4 && iy < 5 && ix < 6;
          REQUIRE(out(c, z, y, x) == (inside ? s.image(c, iz, iy, ix) : -5.0f));
        }
}

TEST_CASE("start_range allows every start when the patch fits and centres it otherwise") {
  CHECK(start_range(10, 4) == std::array<std::int64_t, 2>{0, 6});
  CHECK(start_range(4, 4) == std::array<std::int64_t, 2>{0, 0});
  CHECK(start_range(4, 9) == std::array<std::int64_t, 2>{-2, -2});
}

TEST_CASE("a fused crop reaches past the volume by its margin so the final patch covers the borders") {
  // nnU-Net's get_bbox for a 90-voxel axis, a 77-voxel crop around a 48-voxel final patch:
  // need_to_pad 29, crop starts -14..28, so the centred final patch starts 0.5..42.5.
  CHECK(start_range(90, 77, 29) == std::array<std::int64_t, 2>{-14, 28});
  CHECK(start_range(40, 77, 29) == std::array<std::int64_t, 2>{-18, -18});  // too small: padded evenly
  const Sample s = ramp_sample({90, 20, 20});
  std::int64_t lowest = 1000, highest = -1000;
  for (std::uint64_t i = 0; i < 400; ++i) {
    RandomStream rng(3, i);
    const Index3 b = patch_start(s, {77, 20, 20}, 0.0f, rng, {29, 0, 0});
    lowest = std::min(lowest, b[0]);
    highest = std::max(highest, b[0]);
  }
  CHECK(lowest == -14);
  CHECK(highest == 28);
}

TEST_CASE("crop_or_pad of a sample moves image and label together") {
  const Sample s0 = ramp_sample({5, 5, 5});
  Sample s = s0;
  crop_or_pad(s, {1, -1, 2}, {3, 3, 3});
  for (std::int64_t i = 0; i < s.label.numel(); ++i)
    REQUIRE(s.label.data()[i] == static_cast<std::int64_t>(s.image.data()[i]) % 7);
  CHECK_THROWS_WITH(crop_or_pad(s.image, {0, 0, 0}, {1, -1, 1}), Catch::Contains("crop_or_pad") && Catch::Contains("[1,-1,1]"));
}
