// nnU-Net's SimulateLowResolution: a channel is shrunk by a random zoom with nearest
// sampling and brought back to its size with linear interpolation, which mimics scans taken
// at a coarser resolution. Sampling follows PyTorch's interpolate (nearest-exact, then
// trilinear with align_corners=False), as batchgenerators v2 does; the label is untouched.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <vector>

#include "concepts.hpp"
#include "voxel_sampling.hpp"

namespace medseg::transforms {

/// torch.nn.functional.interpolate(x[None], size, mode='nearest-exact') per channel of x [C,D,H,W].
Tensor<float> resize_nearest_exact(const Tensor<float>& x, const Index3& size);
/// torch.nn.functional.interpolate(x[None], size, mode='trilinear', align_corners=False).
Tensor<float> resize_trilinear(const Tensor<float>& x, const Index3& size);

/// With probability p, each channel with probability p_per_channel resampled to
/// round(n * zoom) per axis (one zoom uniform in `zoom` for all axes) and back.
struct SimulateLowResolution {
  float p = 0.25f;
  Range zoom{0.5f, 1.0f};
  float p_per_channel = 0.5f;
  template <class L>
  void apply(BasicSample<L>& s, RandomStream& rng) const;
  /// The same on a GPU sample (transforms/cuda.hpp): draws made here, the resizes on the device.
  template <class L, class B>
    requires(!std::same_as<B, Cpu>)
  void apply(BasicSample<L, B>& s, RandomStream& rng) const {
    apply_on_device(*this, s, rng);
  }
  /// One apply's draws for a sample of extent `spatial`: per channel, whether it is resampled
  /// and the low resolution it goes through (empty: not fired).
  struct ChannelDraw {
    bool fire = false;
    Index3 low{};
  };
  std::vector<ChannelDraw> draw(const Index3& spatial, std::int64_t channels, RandomStream& rng) const;
};

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {
template <class B>
void check_resize(const Tensor<float, B>& x, const Index3& size, const char* where) {
  require(x.rank() == 4 && x.is_contiguous(), [&] {
    return ErrorInfo{.where = where, .field = "x", .expected = "a contiguous [C,D,H,W] tensor", .actual = x.layout().to_string()};
  });
  require(size[0] > 0 && size[1] > 0 && size[2] > 0, [&] {
    return ErrorInfo{.where = where, .field = "size", .expected = "positive extents", .actual = index3_text(size)};
  });
}

/// Linear interpolation taps along one axis, PyTorch's align_corners=False rule.
struct Taps {
  std::vector<std::int64_t> i0, i1;
  std::vector<float> t;
};
inline Taps linear_taps(std::int64_t in, std::int64_t out) {
  Taps taps;
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  for (std::int64_t o = 0; o < out; ++o) {
    const double src = std::max(0.0, (static_cast<double>(o) + 0.5) * scale - 0.5);
    const auto i0 = std::min(static_cast<std::int64_t>(src), in - 1);
    taps.i0.push_back(i0);
    taps.i1.push_back(std::min(i0 + 1, in - 1));
    taps.t.push_back(static_cast<float>(src - static_cast<double>(i0)));
  }
  return taps;
}

/// The input index each output index reads along one axis, PyTorch's nearest-exact rule.
inline std::vector<std::int64_t> nearest_exact_index(std::int64_t in, std::int64_t out) {
  std::vector<std::int64_t> index;
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  for (std::int64_t o = 0; o < out; ++o)
    index.push_back(std::min(static_cast<std::int64_t>(std::floor((static_cast<double>(o) + 0.5) * scale)), in - 1));
  return index;
}

/// The three axes' tables of a resize from `in` to `size`, one after another (D, H, W), as
/// voxel::ResizeSpec reads them: nearest_exact_index's indices (linear false; i1 and t stay
/// empty) or linear_taps's taps.
inline Taps separable_taps(const Index3& in, const Index3& size, bool linear) {
  Taps all;
  for (int k = 0; k < 3; ++k) {
    if (!linear) {
      const auto index = nearest_exact_index(in[k], size[k]);
      all.i0.insert(all.i0.end(), index.begin(), index.end());
      continue;
    }
    const Taps taps = linear_taps(in[k], size[k]);
    all.i0.insert(all.i0.end(), taps.i0.begin(), taps.i0.end());
    all.i1.insert(all.i1.end(), taps.i1.begin(), taps.i1.end());
    all.t.insert(all.t.end(), taps.t.begin(), taps.t.end());
  }
  return all;
}
}  // namespace detail

inline Tensor<float> resize_nearest_exact(const Tensor<float>& x, const Index3& size) {
  detail::check_resize(x, size, "transforms::resize_nearest_exact");
  const std::int64_t channels = x.size(0);
  const Index3 in{x.size(1), x.size(2), x.size(3)};
  std::array<std::vector<std::int64_t>, 3> index;
  for (int k = 0; k < 3; ++k) index[k] = detail::nearest_exact_index(in[k], size[k]);
  auto out = Tensor<float>::empty({channels, size[0], size[1], size[2]});
  const float* src = x.data();
  float* dst = out.data();
  parallel_for(0, channels * size[0] * size[1], 16, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t r = b; r < e; ++r) {
      const std::int64_t c = r / (size[0] * size[1]), z = (r / size[1]) % size[0], y = r % size[1];
      const float* row = src + ((c * in[0] + index[0][static_cast<std::size_t>(z)]) * in[1] +
                                index[1][static_cast<std::size_t>(y)]) * in[2];
      float* o = dst + r * size[2];
      for (std::int64_t i = 0; i < size[2]; ++i) o[i] = row[index[2][static_cast<std::size_t>(i)]];
    }
  });
  return out;
}

inline Tensor<float> resize_trilinear(const Tensor<float>& x, const Index3& size) {
  detail::check_resize(x, size, "transforms::resize_trilinear");
  const std::int64_t channels = x.size(0);
  const Index3 in{x.size(1), x.size(2), x.size(3)};
  const auto tz = detail::linear_taps(in[0], size[0]), ty = detail::linear_taps(in[1], size[1]),
             tx = detail::linear_taps(in[2], size[2]);
  auto out = Tensor<float>::empty({channels, size[0], size[1], size[2]});
  const float* src = x.data();
  float* dst = out.data();
  parallel_for(0, channels * size[0] * size[1], 16, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t r = b; r < e; ++r) {
      const auto c = r / (size[0] * size[1]);
      const auto z = static_cast<std::size_t>((r / size[1]) % size[0]), y = static_cast<std::size_t>(r % size[1]);
      const float* base = src + c * in[0] * in[1] * in[2];
      const float* r00 = base + (tz.i0[z] * in[1] + ty.i0[y]) * in[2];
      const float* r01 = base + (tz.i0[z] * in[1] + ty.i1[y]) * in[2];
      const float* r10 = base + (tz.i1[z] * in[1] + ty.i0[y]) * in[2];
      const float* r11 = base + (tz.i1[z] * in[1] + ty.i1[y]) * in[2];
      const float wz = tz.t[z], wy = ty.t[y];
      float* o = dst + r * size[2];
      for (std::size_t i = 0; i < static_cast<std::size_t>(size[2]); ++i)
        o[i] = voxel::trilinear_rows(r00, r01, r10, r11, tx.i0[i], tx.i1[i], tx.t[i], wy, wz);
    }
  });
  return out;
}

inline std::vector<SimulateLowResolution::ChannelDraw> SimulateLowResolution::draw(const Index3& n,
                                                                                  std::int64_t channels,
                                                                                  RandomStream& rng) const {
  std::vector<ChannelDraw> d;
  if (!rng.bernoulli(p)) return d;
  for (std::int64_t c = 0; c < channels; ++c) {
    ChannelDraw cd;
    cd.fire = rng.bernoulli(p_per_channel);
    const float z = zoom.draw(rng);
    for (int k = 0; k < 3; ++k)
      cd.low[k] = std::max<std::int64_t>(1, static_cast<std::int64_t>(std::lround(static_cast<double>(n[k]) * z)));
    d.push_back(cd);
  }
  return d;
}

template <class L>
void SimulateLowResolution::apply(BasicSample<L>& s, RandomStream& rng) const {
  check_sample(s, "transforms::SimulateLowResolution");
  const Index3 n = s.spatial();
  const auto draws = draw(n, s.channels(), rng);
  Tensor<float> out;
  for (std::int64_t c = 0; c < static_cast<std::int64_t>(draws.size()); ++c) {
    const ChannelDraw& d = draws[static_cast<std::size_t>(c)];
    if (!d.fire) continue;
    if (!out.defined()) out = s.image.clone();
    auto channel = out.slice(0, c, c + 1);
    channel.copy_from(resize_trilinear(resize_nearest_exact(channel, d.low), n));
  }
  if (out.defined()) s.image = out;
}

}  // namespace medseg::transforms
