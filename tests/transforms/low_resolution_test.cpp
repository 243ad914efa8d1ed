// transforms/low_resolution.hpp: the two resamplers against torch.nn.functional.interpolate
// (nearest-exact and trilinear, align_corners=False), and the transform's behaviour.
#include "support.hpp"

using namespace medseg;
using namespace medseg::transforms;
using namespace transforms_test;

TEST_CASE("resize_nearest_exact and resize_trilinear match torch interpolate") {
  struct R {
    std::string name;
    Shape in;
    Index3 out;
  };
  const std::vector<R> rs = {{"down", {2, 9, 10, 11}, {5, 4, 7}}, {"up", {1, 4, 5, 3}, {9, 7, 8}},
                             {"odd", {1, 7, 7, 7}, {3, 11, 7}}};
  std::vector<Case> cases;
  for (const auto& r : rs)
    cases.push_back({r.name, str("resize shape=", r.in[0], ",", r.in[1], ",", r.in[2], ",", r.in[3], " out=", r.out[0],
                                 ",", r.out[1], ",", r.out[2], " seed=5")});
  const auto dir = make_references(cases, "resize");
  for (const auto& r : rs) {
    INFO(r.name);
    const auto in = read_raw<float>(dir / (r.name + ".in.raw"), r.in);
    const Shape out{r.in[0], r.out[0], r.out[1], r.out[2]};
    CHECK(max_abs_diff(resize_nearest_exact(in, r.out), read_raw<float>(dir / (r.name + ".nearest.raw"), out)) == 0.0);
    CHECK(max_abs_diff(resize_trilinear(in, r.out), read_raw<float>(dir / (r.name + ".trilinear.raw"), out)) < 1e-5);
  }
  fs::remove_all(dir);
}

TEST_CASE("SimulateLowResolution blurs detail but keeps size, mean and label") {
  Sample s0;
  s0.image = Tensor<float>::empty({1, 16, 16, 16});
  for (std::int64_t i = 0; i < s0.image.numel(); ++i) s0.image.data()[i] = static_cast<float>((i % 2) ^ ((i / 16) % 2));
  s0.label = Tensor<std::uint8_t>::ones({1, 16, 16, 16});
  Sample s = s0;
  RandomStream rng(1, 0);
  SimulateLowResolution{.p = 1.0f, .zoom = {0.5f, 0.5f}, .p_per_channel = 1.0f}.apply(s, rng);
  REQUIRE(s.image.shape() == s0.image.shape());
  CHECK(s.label.shares_storage_with(s0.label));
  // The checkerboard's finest detail is gone: neighbours along W are now equal in pairs.
  int equal_pairs = 0;
  for (std::int64_t x = 0; x < 16; x += 2) equal_pairs += s.image(0, 3, 5, x) == s.image(0, 3, 5, x + 1);
  CHECK(equal_pairs >= 4);
  CHECK(count_different(s.image, s0.image) > 0);
}

TEST_CASE("SimulateLowResolution at zoom 1 is the identity") {
  const Sample s0 = ramp_sample({5, 6, 7});
  Sample s = s0;
  RandomStream rng(1, 0);
  SimulateLowResolution{.p = 1.0f, .zoom = {1.0f, 1.0f}, .p_per_channel = 1.0f}.apply(s, rng);
  CHECK(max_abs_diff(s.image, s0.image) == 0.0);
}
