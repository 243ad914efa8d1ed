// Intensity augmentations (nnU-Net v2's default set: Gaussian noise, Gaussian blur,
// multiplicative brightness, contrast, gamma with invert and retain-stats) and MedicalSeg's
// normalisation. They touch only the image; the label passes through unchanged. Per-voxel
// noise is indexed by voxel in its own stream, so it does not depend on the thread count.
// Draws and statistics' last step are made here, on the host; the per-voxel maps, the noise
// and the channel statistics' block partials are the backend's (ops::map_intensity, ...).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <vector>

#include "../backends/ops.hpp"
#include "concepts.hpp"
#include "filter.hpp"

namespace medseg::transforms {

/// With probability p: x + N(0, sigma^2) per voxel, sigma uniform in `sigma` (one for all
/// channels). batchgenerators' augment_gaussian_noise draws this number as "variance" and
/// uses it as the standard deviation; so do we.
struct GaussianNoise {
  float p = 0.1f;
  Range sigma{0.0f, 0.1f};
  template <class L, class B>
  void apply(BasicSample<L, B>& s, RandomStream& rng) const;

  /// One apply's draws: whether it fires, the standard deviation, and the per-voxel stream
  /// (voxels 4k..4k+3 take Philox block k of it).
  struct Draw {
    bool fire = false;
    float sd = 0;
    RandomStream field{0, 0};
  };
  Draw draw(RandomStream& rng) const;
};

/// With probability p, each channel with probability p_per_channel blurred with a sigma drawn
/// per axis from `sigma` (SciPy's gaussian_filter, truncate 4, 'reflect').
struct GaussianBlur {
  float p = 0.2f;
  Range sigma{0.5f, 1.0f};
  float p_per_channel = 0.5f;
  template <class L, class B>
  void apply(BasicSample<L, B>& s, RandomStream& rng) const;

  /// One apply's draws: per channel, whether it is blurred and its sigmas (empty: not fired).
  struct ChannelDraw {
    bool blur = false;
    std::array<double, 3> sigma{};
  };
  std::vector<ChannelDraw> draw(RandomStream& rng, std::int64_t channels) const;
};

/// With probability p, each channel multiplied by a factor uniform in `factor`.
struct MultiplicativeBrightness {
  float p = 0.15f;
  Range factor{0.75f, 1.25f};
  template <class L, class B>
  void apply(BasicSample<L, B>& s, RandomStream& rng) const;
  /// One apply's draws: the factor of each channel (empty: not fired).
  std::vector<float> draw(RandomStream& rng, std::int64_t channels) const;
};

/// With probability p, each channel x -> (x - mean) * f + mean, f uniform in `factor`; with
/// preserve_range the result is clipped to the channel's former [min, max].
struct Contrast {
  float p = 0.15f;
  Range factor{0.75f, 1.25f};
  bool preserve_range = true;
  template <class L, class B>
  void apply(BasicSample<L, B>& s, RandomStream& rng) const;
  /// One apply's draws: the factor of each channel (empty: not fired).
  std::vector<float> draw(RandomStream& rng, std::int64_t channels) const;
};

/// With probability p, each channel x -> ((x - min) / range)^gamma * range + min. gamma is
/// drawn as batchgenerators does: half the time from [low, 1), else from [1, high].
/// invert: applied to -x (then negated back), which brightens instead of darkening.
/// retain_stats: mean and standard deviation restored afterwards.
struct Gamma {
  float p = 0.3f;
  Range gamma{0.7f, 1.5f};
  bool invert = false;
  bool retain_stats = true;
  template <class L, class B>
  void apply(BasicSample<L, B>& s, RandomStream& rng) const;
  /// One apply's draws: the gamma of each channel (empty: not fired).
  std::vector<float> draw(RandomStream& rng, std::int64_t channels) const;
};

/// MedicalSeg's normalisation, always applied: each channel divided by its max |x|
/// (divide_by_max), or (x - mean) / std (zscore; population std, 1e-8 floor).
struct Normalize {
  enum class Mode { divide_by_max, zscore };
  Mode mode = Mode::zscore;
  template <class L, class B>
  void apply(BasicSample<L, B>& s, RandomStream& rng) const;
};

/// Mean, standard deviation (population), min and max of one channel, in double.
struct ChannelStats {
  double mean = 0, std = 0, min = 0, max = 0;
};
/// Of the n host values at x.
ChannelStats channel_stats(const float* x, std::int64_t n);
/// Of every value of contiguous x, on any backend (the same numbers on each).
template <class B>
ChannelStats channel_stats(const Tensor<float, B>& x);

/// channel_stats in two halves: the backend's partials of each block of channel_stats_block
/// values (ops::channel_partials: eight interleaved running sums, combined in order), then
/// their serial combination on the host.
inline constexpr std::int64_t channel_stats_block = ops::channel_stats_block;
using ChannelPartials = ops::ChannelPartials;
ChannelStats finish_channel_stats(const ChannelPartials& parts, std::int64_t n);

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {
/// The sample's image made private: a tensor that other handles share (a cached case, the
/// caller's input) is copied first, never written.
template <class B>
void make_writable(Tensor<float, B>& image) {
  if (!image.storage_handle() || image.use_count() != 1) image = image.clone();
}
/// Channel c of contiguous image [C,D,H,W], a view: [1,D,H,W].
template <class B>
Tensor<float, B> channel(const Tensor<float, B>& image, std::int64_t c) {
  return image.slice(0, c, c + 1);
}
inline ops::IntensityMap multiply_map(float a) { return {.kind = ops::IntensityMap::Kind::multiply, .a = a}; }
}  // namespace detail

inline ChannelStats channel_stats(const float* x, std::int64_t n) {
  return channel_stats(Tensor<float>::wrap(const_cast<float*>(x), {n}));  // only read
}

template <class B>
ChannelStats channel_stats(const Tensor<float, B>& x) {
  if (x.numel() == 0) return {};
  return finish_channel_stats(ops::channel_partials(x), x.numel());
}

inline ChannelStats finish_channel_stats(const ChannelPartials& parts, std::int64_t n) {
  ChannelStats r;
  if (n == 0 || parts.sums.empty()) return r;
  double s = 0, q = 0;
  for (std::size_t k = 0; k < parts.sums.size(); ++k) {
    s += parts.sums[k];
    q += parts.squares[k];
  }
  r.mean = s / static_cast<double>(n);
  r.std = std::sqrt(std::max(0.0, q / static_cast<double>(n) - r.mean * r.mean));
  r.min = *std::min_element(parts.mins.begin(), parts.mins.end());
  r.max = *std::max_element(parts.maxs.begin(), parts.maxs.end());
  return r;
}

// The draws: made in the order the transforms of batchgenerators make them, every one drawn
// whether it fires or not.

inline GaussianNoise::Draw GaussianNoise::draw(RandomStream& rng) const {
  const bool fired = rng.bernoulli(p);
  const float sd = sigma.draw(rng);
  const RandomStream field = rng.substream(0);
  return {fired && sd != 0.0f, sd, field};
}

inline std::vector<GaussianBlur::ChannelDraw> GaussianBlur::draw(RandomStream& rng, std::int64_t channels) const {
  std::vector<ChannelDraw> d;
  if (!rng.bernoulli(p)) return d;
  for (std::int64_t c = 0; c < channels; ++c) {
    const bool blur = rng.bernoulli(p_per_channel);
    const std::array<double, 3> sig{sigma.draw(rng), sigma.draw(rng), sigma.draw(rng)};
    d.push_back({blur, sig});
  }
  return d;
}

inline std::vector<float> MultiplicativeBrightness::draw(RandomStream& rng, std::int64_t channels) const {
  std::vector<float> f;
  if (!rng.bernoulli(p)) return f;
  for (std::int64_t c = 0; c < channels; ++c) f.push_back(factor.draw(rng));
  return f;
}

inline std::vector<float> Contrast::draw(RandomStream& rng, std::int64_t channels) const {
  std::vector<float> f;
  if (!rng.bernoulli(p)) return f;
  for (std::int64_t c = 0; c < channels; ++c) f.push_back(factor.draw(rng));
  return f;
}

inline std::vector<float> Gamma::draw(RandomStream& rng, std::int64_t channels) const {
  std::vector<float> g;
  if (!rng.bernoulli(p)) return g;
  for (std::int64_t c = 0; c < channels; ++c) {
    const bool below_one = rng.uniform() < 0.5f && gamma.low < 1.0f;
    g.push_back(below_one ? rng.uniform(gamma.low, 1.0f) : rng.uniform(std::max(gamma.low, 1.0f), gamma.high));
  }
  return g;
}

template <class L, class B>
void GaussianNoise::apply(BasicSample<L, B>& s, RandomStream& rng) const {
  check_sample(s, "transforms::GaussianNoise");
  const Draw d = draw(rng);
  if (!d.fire) return;
  detail::make_writable(s.image);
  ops::add_gaussian_noise(s.image, d.field.seed(), d.field.stream(), d.sd);
}

template <class L, class B>
void GaussianBlur::apply(BasicSample<L, B>& s, RandomStream& rng) const {
  check_sample(s, "transforms::GaussianBlur");
  const auto draws = draw(rng, s.channels());
  Tensor<float, B> out;
  for (std::int64_t c = 0; c < static_cast<std::int64_t>(draws.size()); ++c) {
    const auto& d = draws[static_cast<std::size_t>(c)];
    if (!d.blur) continue;
    if (!out.defined()) out = s.image.clone();
    auto channel = out.slice(0, c, c + 1);
    channel.copy_from(gaussian_filter(channel, d.sigma));
  }
  if (out.defined()) s.image = out;
}

template <class L, class B>
void MultiplicativeBrightness::apply(BasicSample<L, B>& s, RandomStream& rng) const {
  check_sample(s, "transforms::MultiplicativeBrightness");
  const auto factors = draw(rng, s.channels());
  if (factors.empty()) return;
  detail::make_writable(s.image);
  for (std::int64_t c = 0; c < s.channels(); ++c)
    ops::map_intensity(detail::channel(s.image, c), detail::multiply_map(factors[static_cast<std::size_t>(c)]));
}

template <class L, class B>
void Contrast::apply(BasicSample<L, B>& s, RandomStream& rng) const {
  check_sample(s, "transforms::Contrast");
  const auto factors = draw(rng, s.channels());
  if (factors.empty()) return;
  detail::make_writable(s.image);
  for (std::int64_t c = 0; c < s.channels(); ++c) {
    const auto xc = detail::channel(s.image, c);
    const ChannelStats st = channel_stats(xc);
    ops::map_intensity(xc, {.kind = ops::IntensityMap::Kind::contrast, .a = static_cast<float>(st.mean),
                            .b = factors[static_cast<std::size_t>(c)], .lo = static_cast<float>(st.min),
                            .hi = static_cast<float>(st.max), .clamp = preserve_range});
  }
}

template <class L, class B>
void Gamma::apply(BasicSample<L, B>& s, RandomStream& rng) const {
  check_sample(s, "transforms::Gamma");
  const auto gammas = draw(rng, s.channels());
  if (gammas.empty()) return;
  detail::make_writable(s.image);
  using Kind = ops::IntensityMap::Kind;
  for (std::int64_t c = 0; c < s.channels(); ++c) {
    const auto xc = detail::channel(s.image, c);
    if (invert) ops::map_intensity(xc, detail::multiply_map(-1.0f));
    const ChannelStats st = channel_stats(xc);
    // ((v - min) / (range + 1e-7))^gamma * range + min, batchgenerators' epsilon.
    ops::map_intensity(xc, {.kind = Kind::gamma, .a = static_cast<float>(st.max - st.min),
                            .b = gammas[static_cast<std::size_t>(c)], .lo = static_cast<float>(st.min)});
    if (retain_stats) {
      const ChannelStats now = channel_stats(xc);
      ops::map_intensity(xc, {.kind = Kind::restore, .a = static_cast<float>(now.mean),
                              .b = static_cast<float>(st.std / (now.std + 1e-8)), .c = static_cast<float>(st.mean)});
    }
    if (invert) ops::map_intensity(xc, detail::multiply_map(-1.0f));
  }
}

template <class L, class B>
void Normalize::apply(BasicSample<L, B>& s, RandomStream&) const {
  check_sample(s, "transforms::Normalize");
  detail::make_writable(s.image);
  for (std::int64_t c = 0; c < s.channels(); ++c) {
    const auto xc = detail::channel(s.image, c);
    const ChannelStats st = channel_stats(xc);
    if (mode == Mode::divide_by_max) {
      const double m = std::max(std::abs(st.min), std::abs(st.max));
      ops::map_intensity(xc, detail::multiply_map(static_cast<float>(m > 0 ? 1.0 / m : 1.0)));
    } else {
      ops::map_intensity(xc, {.kind = ops::IntensityMap::Kind::shift_scale, .a = static_cast<float>(st.mean),
                              .b = static_cast<float>(1.0 / std::max(st.std, 1e-8))});
    }
  }
}

}  // namespace medseg::transforms
