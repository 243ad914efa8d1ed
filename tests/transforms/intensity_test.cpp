// transforms/intensity.hpp: each random intensity transform's statistics match its
// parameters (noise std, brightness factor, contrast about the mean, gamma's retained
// statistics), its probability is its firing rate, and the label is never touched.
#include "support.hpp"

using namespace medseg;
using namespace medseg::transforms;
using namespace transforms_test;

namespace {
Sample noise_sample(const Index3& size, std::uint64_t seed, std::int64_t channels = 1) {
  Sample s;
  s.image = Tensor<float>::empty({channels, size[0], size[1], size[2]});
  RandomStream rng(seed, 99);
  for (std::int64_t i = 0; i < s.image.numel(); ++i) s.image.data()[i] = 2.0f + rng.normal();
  s.label = Tensor<std::uint8_t>::zeros({1, size[0], size[1], size[2]});
  return s;
}
ChannelStats stats(const Tensor<float>& x) { return channel_stats(x.data(), x.numel()); }

/// How often `t` changes the image over `trials` streams.
template <class T>
double firing_rate(const T& t, int trials) {
  const Sample s0 = noise_sample({2, 2, 2}, 1);
  int fired = 0;
  for (int i = 0; i < trials; ++i) {
    Sample s = s0;
    RandomStream rng(3, static_cast<std::uint64_t>(i));
    t.apply(s, rng);
    fired += count_different(s.image, s0.image) > 0;
  }
  return static_cast<double>(fired) / trials;
}
}  // namespace

TEST_CASE("GaussianNoise adds noise of the drawn standard deviation") {
  auto s = Sample{Tensor<float>::zeros({1, 32, 32, 32}), Tensor<std::uint8_t>::zeros({1, 32, 32, 32})};
  RandomStream rng(1, 1);
  GaussianNoise{.p = 1.0f, .sigma = {0.2f, 0.2f}}.apply(s, rng);
  const auto st = stats(s.image);
  CHECK(st.mean == Approx(0.0).margin(0.002));
  CHECK(st.std == Approx(0.2).epsilon(0.01));
  // Over many draws from (0, 0.1) the mean standard deviation is 0.05.
  double total = 0;
  for (int t = 0; t < 200; ++t) {
    auto z = Sample{Tensor<float>::zeros({1, 8, 8, 8}), {}};
    RandomStream r(2, static_cast<std::uint64_t>(t));
    GaussianNoise{.p = 1.0f}.apply(z, r);
    total += stats(z.image).std;
  }
  CHECK(total / 200 == Approx(0.05).epsilon(0.1));
}

TEST_CASE("intensity transforms fire at their probability") {
  const int trials = 3000;
  const auto tolerance = [&](double p) { return 5 * std::sqrt(p * (1 - p) / trials); };
  CHECK(firing_rate(GaussianNoise{.p = 0.1f}, trials) == Approx(0.1).margin(tolerance(0.1)));
  CHECK(firing_rate(MultiplicativeBrightness{}, trials) == Approx(0.15).margin(tolerance(0.15)));
  CHECK(firing_rate(Contrast{}, trials) == Approx(0.15).margin(tolerance(0.15)));
  CHECK(firing_rate(Gamma{}, trials) == Approx(0.3).margin(tolerance(0.3)));
  // Blur: p 0.2 times p_per_channel 0.5 for one channel.
  CHECK(firing_rate(GaussianBlur{}, trials) == Approx(0.1).margin(tolerance(0.1)));
}

TEST_CASE("MultiplicativeBrightness scales by a factor drawn from its range") {
  const Sample s0 = noise_sample({4, 4, 4}, 2);
  double sum = 0, lo = 10, hi = 0;
  for (int t = 0; t < 500; ++t) {
    Sample s = s0;
    RandomStream rng(4, static_cast<std::uint64_t>(t));
    MultiplicativeBrightness{.p = 1.0f}.apply(s, rng);
    const double f = s.image.data()[0] / s0.image.data()[0];
    for (std::int64_t i = 0; i < s.image.numel(); ++i) REQUIRE(s.image.data()[i] == Approx(f * s0.image.data()[i]));
    sum += f;
    lo = std::min(lo, f);
    hi = std::max(hi, f);
  }
  CHECK(sum / 500 == Approx(1.0).epsilon(0.01));
  CHECK(lo >= 0.75 - 1e-6);
  CHECK(hi <= 1.25 + 1e-6);
  CHECK(hi - lo > 0.45);
}

TEST_CASE("Contrast scales about the mean and clips to the former range") {
  const Sample s0 = noise_sample({16, 16, 16}, 3);
  const auto before = stats(s0.image);
  Sample s = s0;
  RandomStream rng(5, 0);
  Contrast{.p = 1.0f, .factor = {1.5f, 1.5f}, .preserve_range = false}.apply(s, rng);
  const auto after = stats(s.image);
  CHECK(after.mean == Approx(before.mean).epsilon(1e-4));
  CHECK(after.std == Approx(1.5 * before.std).epsilon(1e-4));
  Sample c = s0;
  Contrast{.p = 1.0f, .factor = {1.5f, 1.5f}}.apply(c, rng);
  const auto clipped = stats(c.image);
  CHECK(clipped.min >= before.min);
  CHECK(clipped.max <= before.max);
}

TEST_CASE("Gamma keeps mean and std with retain_stats and follows the power law") {
  const Sample s0 = noise_sample({16, 16, 16}, 4);
  const auto before = stats(s0.image);
  for (const bool invert : {false, true}) {
    Sample s = s0;
    RandomStream rng(6, invert);
    Gamma{.p = 1.0f, .invert = invert}.apply(s, rng);
    const auto after = stats(s.image);
    CHECK(after.mean == Approx(before.mean).epsilon(1e-4));
    CHECK(after.std == Approx(before.std).epsilon(1e-3));
    CHECK(count_different(s.image, s0.image) > 0);
  }
  // gamma 2 without retained statistics: ((x - min) / range)^2 * range + min.
  Sample s = s0;
  RandomStream rng(7, 0);
  Gamma{.p = 1.0f, .gamma = {2.0f, 2.0f}, .retain_stats = false}.apply(s, rng);
  const double range = before.max - before.min;
  for (std::int64_t i = 0; i < s.image.numel(); i += 97) {
    const double u = (s0.image.data()[i] - before.min) / range;
    REQUIRE(s.image.data()[i] == Approx(u * u * range + before.min).margin(1e-4));
  }
  // Inverted: the same law on -x, so the image brightens (the mean of the un-retained result rises).
  Sample v = s0;
  Gamma{.p = 1.0f, .gamma = {2.0f, 2.0f}, .invert = true, .retain_stats = false}.apply(v, rng);
  CHECK(stats(v.image).mean > before.mean);
  CHECK(stats(s.image).mean < before.mean);
}

TEST_CASE("Normalize gives zero mean and unit std, or a max of one") {
  Sample s = noise_sample({8, 8, 8}, 5, 2);
  RandomStream rng(0, 0);
  Normalize{}.apply(s, rng);
  for (std::int64_t c = 0; c < 2; ++c) {
    const auto st = channel_stats(s.image.data() + c * 512, 512);
    CHECK(st.mean == Approx(0.0).margin(1e-5));
    CHECK(st.std == Approx(1.0).epsilon(1e-5));
  }
  Sample m = noise_sample({8, 8, 8}, 6);
  Normalize{.mode = Normalize::Mode::divide_by_max}.apply(m, rng);
  const auto st = stats(m.image);
  CHECK(std::max(std::abs(st.min), std::abs(st.max)) == Approx(1.0));
}

TEST_CASE("intensity transforms never write a shared image or the label") {
  const Sample s0 = noise_sample({6, 6, 6}, 7);
  const auto image_before = s0.image.clone();
  Sample s = s0;  // shares storage with s0, as a cached case would
  RandomStream rng(8, 0);
  (GaussianNoise{.p = 1.0f} | MultiplicativeBrightness{.p = 1.0f} | Contrast{.p = 1.0f} | Gamma{.p = 1.0f} |
   GaussianBlur{.p = 1.0f, .p_per_channel = 1.0f} | Normalize{})
      .apply(s, rng);
  CHECK(count_different(s0.image, image_before) == 0);
  CHECK(s.label.shares_storage_with(s0.label));
  CHECK(count_different(s.image, image_before) > 0);
}
