// transforms/concepts.hpp and presets.hpp: `|` builds one flat Compose, members draw from
// their own substreams, Maybe fires at its probability, and the nnU-Net and MedicalSeg
// chains give patches of the right size with labels from the input's label set.
#include "support.hpp"

#include <set>

using namespace medseg;
using namespace medseg::transforms;
using namespace transforms_test;

static_assert(Transform<RandomFlip3D> && Transform<RandomQuarterTurn3D> && Transform<RandomRotation3D> &&
              Transform<SpatialTransform> && Transform<RandomScale> && Transform<RandomCrop> && Transform<CenterCrop> &&
              Transform<PadToSize> && Transform<ForegroundCrop> && Transform<RandomResizedCrop3D> &&
              Transform<GaussianNoise> && Transform<GaussianBlur> && Transform<MultiplicativeBrightness> &&
              Transform<Contrast> && Transform<Gamma> && Transform<Normalize> && Transform<SimulateLowResolution>);
static_assert(Transform<SpatialTransform, std::int16_t>, "transforms take any integral label type");
static_assert(!Transform<int>);
static_assert(std::is_same_v<decltype(RandomFlip3D{} | GaussianNoise{} | (Gamma{} | Contrast{})),
                             Compose<RandomFlip3D, GaussianNoise, Gamma, Contrast>>,
              "| splices Composes into one flat type");

TEST_CASE("a Compose member draws the same numbers whatever follows it") {
  const Sample s0 = blob_sample({12, 12, 12});
  const auto short_chain = RandomRotation3D{.degrees = 40.0f} | GaussianNoise{.p = 1.0f};
  const auto long_chain = RandomRotation3D{.degrees = 40.0f} | GaussianNoise{.p = 1.0f} | Normalize{};
  Sample a = s0, b = s0;
  RandomStream ra(5, 5), rb(5, 5);
  short_chain.apply(a, ra);
  long_chain.apply(b, rb);
  CHECK(count_different(a.label, b.label) == 0);
  // Normalize is the only difference: undoing it with a's statistics gives a back.
  const auto st = channel_stats(a.image.data(), a.image.numel());
  for (std::int64_t i = 0; i < a.image.numel(); i += 13)
    REQUIRE(b.image.data()[i] * st.std + st.mean == Approx(a.image.data()[i]).margin(1e-4));
}

TEST_CASE("Maybe applies its transform at its probability") {
  const Sample s0 = ramp_sample({2, 2, 2});
  const auto t = maybe(0.25f, RandomFlip3D{.p = 1.0f});
  int fired = 0;
  const int trials = 2000;
  for (int i = 0; i < trials; ++i) {
    Sample s = s0;
    RandomStream rng(1, static_cast<std::uint64_t>(i));
    t.apply(s, rng);
    fired += count_different(s.image, s0.image) > 0;
  }
  CHECK(static_cast<double>(fired) / trials == Approx(0.25).margin(5 * std::sqrt(0.25 * 0.75 / trials)));
}

TEST_CASE("initial_patch_size is nnU-Net's get_patch_size") {
  // nnU-Net v2 for a 128^3 patch, rotation 30 degrees about each axis, scale (0.85, 1.25): 205^3.
  CHECK(initial_patch_size({128, 128, 128}) == Index3{205, 205, 205});
  // No rotation: only the zoom margin.
  CHECK(initial_patch_size({64, 80, 96}, 0.0, 1.0) == Index3{64, 80, 96});
}

TEST_CASE("the nnU-Net preset gives patches with labels from the label set") {
  Sample s0 = blob_sample({40, 44, 48});
  for (std::int64_t i = 0; i < s0.label.numel(); ++i)
    s0.label.data()[i] = s0.label.data()[i] ? (s0.image.data()[i] > 0.8f ? 2 : 1) : 0;
  const auto chain = nnunet_3d({24, 24, 24});
  std::set<int> seen;
  for (int t = 0; t < 12; ++t) {
    Sample s = s0;
    RandomStream rng(77, static_cast<std::uint64_t>(t));
    chain.apply(s, rng);
    REQUIRE(s.image.shape() == Shape{1, 24, 24, 24});
    REQUIRE(s.label.shape() == Shape{1, 24, 24, 24});
    for (std::int64_t i = 0; i < s.label.numel(); ++i) {
      REQUIRE(s.label.data()[i] <= 2);
      seen.insert(s.label.data()[i]);
    }
    Sample again = s0;
    RandomStream same(77, static_cast<std::uint64_t>(t));
    chain.apply(again, same);
    REQUIRE(count_different(s.image, again.image) == 0);
  }
  CHECK(seen.count(2) == 1);
}

TEST_CASE("the MedicalSeg lung and spine chains keep their sizes and label sets") {
  const Sample s0 = blob_sample({20, 30, 28});
  for (int t = 0; t < 4; ++t) {
    Sample lung = s0, spine = s0;
    RandomStream r1(3, static_cast<std::uint64_t>(t)), r2(4, static_cast<std::uint64_t>(t));
    medicalseg_lung({16, 16, 16}).apply(lung, r1);
    medicalseg_spine().apply(spine, r2);
    CHECK(lung.image.shape() == Shape{1, 16, 16, 16});
    CHECK(spine.image.shape() == s0.image.shape());
    for (const Sample* s : {&lung, &spine}) {
      std::set<int> ids(s->label.data(), s->label.data() + s->label.numel());
      CHECK(std::includes(std::set<int>{0, 1}.begin(), std::set<int>{0, 1}.end(), ids.begin(), ids.end()));
      CHECK(misaligned_per_boundary(*s) < 0.2);
    }
  }
}
