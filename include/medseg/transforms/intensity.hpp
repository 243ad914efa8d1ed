// Intensity augmentations (nnU-Net v2's default set: Gaussian noise, Gaussian blur,
// multiplicative brightness, contrast, gamma with invert and retain-stats) and MedicalSeg's
// normalisation. They touch only the image; the label passes through unchanged. Per-voxel
// noise is indexed by voxel in its own stream, so it does not depend on the thread count.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <vector>

#include "concepts.hpp"
#include "filter.hpp"

namespace medseg::transforms {

/// With probability p: x + N(0, sigma^2) per voxel, sigma uniform in `sigma` (one for all
/// channels). batchgenerators' augment_gaussian_noise draws this number as "variance" and
/// uses it as the standard deviation; so do we.
struct GaussianNoise {
  float p = 0.1f;
  Range sigma{0.0f, 0.1f};
  template <class L>
  void apply(BasicSample<L>& s, RandomStream& rng) const;
  /// The same on a GPU sample (transforms/cuda.hpp): draws made here, per-voxel work on the device.
  template <class L, class B>
    requires(!std::same_as<B, Cpu>)
  void apply(BasicSample<L, B>& s, RandomStream& rng) const {
    apply_on_device(*this, s, rng);
  }

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
  template <class L>
  void apply(BasicSample<L>& s, RandomStream& rng) const;
  /// The same on a GPU sample (transforms/cuda.hpp): draws made here, per-voxel work on the device.
  template <class L, class B>
    requires(!std::same_as<B, Cpu>)
  void apply(BasicSample<L, B>& s, RandomStream& rng) const {
    apply_on_device(*this, s, rng);
  }

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
  template <class L>
  void apply(BasicSample<L>& s, RandomStream& rng) const;
  /// The same on a GPU sample (transforms/cuda.hpp): draws made here, per-voxel work on the device.
  template <class L, class B>
    requires(!std::same_as<B, Cpu>)
  void apply(BasicSample<L, B>& s, RandomStream& rng) const {
    apply_on_device(*this, s, rng);
  }
  /// One apply's draws: the factor of each channel (empty: not fired).
  std::vector<float> draw(RandomStream& rng, std::int64_t channels) const;
};

/// With probability p, each channel x -> (x - mean) * f + mean, f uniform in `factor`; with
/// preserve_range the result is clipped to the channel's former [min, max].
struct Contrast {
  float p = 0.15f;
  Range factor{0.75f, 1.25f};
  bool preserve_range = true;
  template <class L>
  void apply(BasicSample<L>& s, RandomStream& rng) const;
  /// The same on a GPU sample (transforms/cuda.hpp): draws made here, per-voxel work on the device.
  template <class L, class B>
    requires(!std::same_as<B, Cpu>)
  void apply(BasicSample<L, B>& s, RandomStream& rng) const {
    apply_on_device(*this, s, rng);
  }
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
  template <class L>
  void apply(BasicSample<L>& s, RandomStream& rng) const;
  /// The same on a GPU sample (transforms/cuda.hpp): draws made here, per-voxel work on the device.
  template <class L, class B>
    requires(!std::same_as<B, Cpu>)
  void apply(BasicSample<L, B>& s, RandomStream& rng) const {
    apply_on_device(*this, s, rng);
  }
  /// One apply's draws: the gamma of each channel (empty: not fired).
  std::vector<float> draw(RandomStream& rng, std::int64_t channels) const;
};

/// MedicalSeg's normalisation, always applied: each channel divided by its max |x|
/// (divide_by_max), or (x - mean) / std (zscore; population std, 1e-8 floor).
struct Normalize {
  enum class Mode { divide_by_max, zscore };
  Mode mode = Mode::zscore;
  template <class L>
  void apply(BasicSample<L>& s, RandomStream& rng) const;
  /// The same on a GPU sample (transforms/cuda.hpp): draws made here, per-voxel work on the device.
  template <class L, class B>
    requires(!std::same_as<B, Cpu>)
  void apply(BasicSample<L, B>& s, RandomStream& rng) const {
    apply_on_device(*this, s, rng);
  }
};

/// Mean, standard deviation (population), min and max of one channel, in double.
struct ChannelStats {
  double mean = 0, std = 0, min = 0, max = 0;
};
ChannelStats channel_stats(const float* x, std::int64_t n);

/// channel_stats in two halves, so another backend can compute the first: the partials of
/// each block of channel_stats_block values (eight interleaved running sums, combined in
/// order), then their serial combination.
inline constexpr std::int64_t channel_stats_block = 1 << 14;
struct ChannelPartials {
  std::vector<double> sums, squares;
  std::vector<float> mins, maxs;
};
ChannelStats finish_channel_stats(const ChannelPartials& parts, std::int64_t n);

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {
/// f(x) for each of n values, threaded.
template <class F>
void map_inplace(float* x, std::int64_t n, F&& f) {
  parallel_for(0, n, 1 << 15, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) x[i] = f(x[i]);
  });
}
/// The sample's image made private, then its elements: a tensor that other handles share
/// (a cached case, the caller's input) is copied first, never written.
inline float* writable_image(Tensor<float>& image) {
  if (!image.storage_handle() || image.use_count() != 1) image = image.clone();
  return image.data();
}
}  // namespace detail

inline ChannelStats channel_stats(const float* x, std::int64_t n) {
  if (n == 0) return {};
  // Blocks of fixed size summed in order: the result does not depend on the thread count.
  constexpr std::int64_t block = channel_stats_block;
  const std::int64_t blocks = (n + block - 1) / block;
  std::vector<double> sums(static_cast<std::size_t>(blocks)), squares(sums.size());
  std::vector<float> mins(sums.size()), maxs(sums.size());
  parallel_for(0, blocks, 4, [&](std::int64_t b, std::int64_t e) {
    // Eight independent running sums per block (element i goes to lane i % 8), combined in a
    // fixed order: the loop vectorises without reassociating anything, so the result stays
    // the same on any thread count and any instruction set.
    constexpr std::int64_t lanes = 8;
    for (std::int64_t k = b; k < e; ++k) {
      const std::int64_t begin = k * block, end = std::min(n, (k + 1) * block);
      double s[lanes] = {}, q[lanes] = {};
      float lo[lanes], hi[lanes];
      for (std::int64_t l = 0; l < lanes; ++l) lo[l] = hi[l] = x[begin];
      std::int64_t i = begin;
      for (; i + lanes <= end; i += lanes)
        for (std::int64_t l = 0; l < lanes; ++l) {
          const float v = x[i + l];
          s[l] += v;
          q[l] += static_cast<double>(v) * v;
          lo[l] = std::min(lo[l], v);
          hi[l] = std::max(hi[l], v);
        }
      for (; i < end; ++i) {
        s[0] += x[i];
        q[0] += static_cast<double>(x[i]) * x[i];
        lo[0] = std::min(lo[0], x[i]);
        hi[0] = std::max(hi[0], x[i]);
      }
      for (std::int64_t l = 1; l < lanes; ++l) {
        s[0] += s[l];
        q[0] += q[l];
        lo[0] = std::min(lo[0], lo[l]);
        hi[0] = std::max(hi[0], hi[l]);
      }
      sums[static_cast<std::size_t>(k)] = s[0];
      squares[static_cast<std::size_t>(k)] = q[0];
      mins[static_cast<std::size_t>(k)] = lo[0];
      maxs[static_cast<std::size_t>(k)] = hi[0];
    }
  });
  return finish_channel_stats({std::move(sums), std::move(squares), std::move(mins), std::move(maxs)}, n);
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

// The draws, shared by the CPU and the GPU versions: made in the order the transforms of
// batchgenerators make them, every one drawn whether it fires or not.

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

template <class L>
void GaussianNoise::apply(BasicSample<L>& s, RandomStream& rng) const {
  check_sample(s, "transforms::GaussianNoise");
  const Draw d = draw(rng);
  if (!d.fire) return;
  const float sd = d.sd;
  const RandomStream field = d.field;
  float* x = detail::writable_image(s.image);
  const std::int64_t n = s.image.numel();
  // Voxels 4k..4k+3 take block k of the field's stream, through Box-Muller in float: an
  // augmentation needs no double-precision normals, and float halves the cost.
  parallel_for(0, (n + 3) / 4, 1 << 13, [&](std::int64_t b, std::int64_t e) {
    constexpr float two_pi = 6.2831853071795865f, unit = 1.0f / 16777216.0f;
    for (std::int64_t k = b; k < e; ++k) {
      const auto w = Philox4x32::block(field.seed(), field.stream(), static_cast<std::uint64_t>(k));
      float z[4];
      for (int pair = 0; pair < 2; ++pair) {
        const float u1 = (static_cast<float>(w[2 * pair] >> 8) + 1.0f) * unit;  // (0, 1]: log is finite
        const float theta = two_pi * static_cast<float>(w[2 * pair + 1] >> 8) * unit;
        const float r = std::sqrt(-2.0f * std::log(u1));
        z[2 * pair] = r * std::cos(theta);
        z[2 * pair + 1] = r * std::sin(theta);
      }
      for (std::int64_t j = 0; j < 4 && 4 * k + j < n; ++j) x[4 * k + j] += sd * z[j];
    }
  });
}

template <class L>
void GaussianBlur::apply(BasicSample<L>& s, RandomStream& rng) const {
  check_sample(s, "transforms::GaussianBlur");
  const auto draws = draw(rng, s.channels());
  Tensor<float> out;
  for (std::int64_t c = 0; c < static_cast<std::int64_t>(draws.size()); ++c) {
    const auto& d = draws[static_cast<std::size_t>(c)];
    if (!d.blur) continue;
    if (!out.defined()) out = s.image.clone();
    auto channel = out.slice(0, c, c + 1);
    channel.copy_from(gaussian_filter(channel, d.sigma));
  }
  if (out.defined()) s.image = out;
}

template <class L>
void MultiplicativeBrightness::apply(BasicSample<L>& s, RandomStream& rng) const {
  check_sample(s, "transforms::MultiplicativeBrightness");
  const auto factors = draw(rng, s.channels());
  if (factors.empty()) return;
  float* x = detail::writable_image(s.image);
  const std::int64_t plane = s.image.numel() / s.channels();
  for (std::int64_t c = 0; c < s.channels(); ++c) {
    const float f = factors[static_cast<std::size_t>(c)];
    detail::map_inplace(x + c * plane, plane, [f](float v) { return v * f; });
  }
}

template <class L>
void Contrast::apply(BasicSample<L>& s, RandomStream& rng) const {
  check_sample(s, "transforms::Contrast");
  const auto factors = draw(rng, s.channels());
  if (factors.empty()) return;
  float* x = detail::writable_image(s.image);
  const std::int64_t plane = s.image.numel() / s.channels();
  for (std::int64_t c = 0; c < s.channels(); ++c) {
    const float f = factors[static_cast<std::size_t>(c)];
    const ChannelStats st = channel_stats(x + c * plane, plane);
    const auto mean = static_cast<float>(st.mean), lo = static_cast<float>(st.min), hi = static_cast<float>(st.max);
    detail::map_inplace(x + c * plane, plane, [&](float v) {
      const float r = (v - mean) * f + mean;
      return preserve_range ? std::clamp(r, lo, hi) : r;
    });
  }
}

template <class L>
void Gamma::apply(BasicSample<L>& s, RandomStream& rng) const {
  check_sample(s, "transforms::Gamma");
  const auto gammas = draw(rng, s.channels());
  if (gammas.empty()) return;
  float* x = detail::writable_image(s.image);
  const std::int64_t plane = s.image.numel() / s.channels();
  const float sign = invert ? -1.0f : 1.0f;
  for (std::int64_t c = 0; c < s.channels(); ++c) {
    const float g = gammas[static_cast<std::size_t>(c)];
    float* xc = x + c * plane;
    if (invert) detail::map_inplace(xc, plane, [](float v) { return -v; });
    const ChannelStats st = channel_stats(xc, plane);
    const auto lo = static_cast<float>(st.min);
    const float range = static_cast<float>(st.max - st.min);
    constexpr float eps = 1e-7f;  // batchgenerators' epsilon
    detail::map_inplace(xc, plane, [&](float v) { return std::pow((v - lo) / (range + eps), g) * range + lo; });
    if (retain_stats) {
      const ChannelStats now = channel_stats(xc, plane);
      const auto scale = static_cast<float>(st.std / (now.std + 1e-8));
      const auto m_now = static_cast<float>(now.mean), m_then = static_cast<float>(st.mean);
      detail::map_inplace(xc, plane, [&](float v) { return (v - m_now) * scale + m_then; });
    }
    if (invert) detail::map_inplace(xc, plane, [sign](float v) { return sign * v; });
  }
}

template <class L>
void Normalize::apply(BasicSample<L>& s, RandomStream&) const {
  check_sample(s, "transforms::Normalize");
  float* x = detail::writable_image(s.image);
  const std::int64_t plane = s.image.numel() / s.channels();
  for (std::int64_t c = 0; c < s.channels(); ++c) {
    float* xc = x + c * plane;
    const ChannelStats st = channel_stats(xc, plane);
    if (mode == Mode::divide_by_max) {
      const double m = std::max(std::abs(st.min), std::abs(st.max));
      const auto inv = static_cast<float>(m > 0 ? 1.0 / m : 1.0);
      detail::map_inplace(xc, plane, [inv](float v) { return v * inv; });
    } else {
      const auto mean = static_cast<float>(st.mean), inv = static_cast<float>(1.0 / std::max(st.std, 1e-8));
      detail::map_inplace(xc, plane, [mean, inv](float v) { return (v - mean) * inv; });
    }
  }
}

}  // namespace medseg::transforms
