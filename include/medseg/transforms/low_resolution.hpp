// nnU-Net's SimulateLowResolution: a channel is shrunk by a random zoom with nearest
// sampling and brought back to its size with linear interpolation, which mimics scans taken
// at a coarser resolution. Sampling follows PyTorch's interpolate (nearest-exact, then
// trilinear with align_corners=False), as batchgenerators v2 does; the label is untouched.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "concepts.hpp"

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
};

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {
inline void check_resize(const Tensor<float>& x, const Index3& size, const char* where) {
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
}  // namespace detail

inline Tensor<float> resize_nearest_exact(const Tensor<float>& x, const Index3& size) {
  detail::check_resize(x, size, "transforms::resize_nearest_exact");
  const std::int64_t channels = x.size(0);
  const Index3 in{x.size(1), x.size(2), x.size(3)};
  std::array<std::vector<std::int64_t>, 3> index;
  for (int k = 0; k < 3; ++k) {
    const double scale = static_cast<double>(in[k]) / static_cast<double>(size[k]);
    for (std::int64_t o = 0; o < size[k]; ++o)
      index[k].push_back(std::min(static_cast<std::int64_t>(std::floor((static_cast<double>(o) + 0.5) * scale)), in[k] - 1));
  }
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
      for (std::size_t i = 0; i < static_cast<std::size_t>(size[2]); ++i) {
        const std::int64_t a = tx.i0[i], bb = tx.i1[i];
        const float wx = tx.t[i];
        const float c00 = r00[a] + wx * (r00[bb] - r00[a]), c01 = r01[a] + wx * (r01[bb] - r01[a]);
        const float c10 = r10[a] + wx * (r10[bb] - r10[a]), c11 = r11[a] + wx * (r11[bb] - r11[a]);
        const float c0 = c00 + wy * (c01 - c00), c1 = c10 + wy * (c11 - c10);
        o[i] = c0 + wz * (c1 - c0);
      }
    }
  });
  return out;
}

template <class L>
void SimulateLowResolution::apply(BasicSample<L>& s, RandomStream& rng) const {
  check_sample(s, "transforms::SimulateLowResolution");
  if (!rng.bernoulli(p)) return;
  const Index3 n = s.spatial();
  Tensor<float> out;
  for (std::int64_t c = 0; c < s.channels(); ++c) {
    const bool fire = rng.bernoulli(p_per_channel);
    const float z = zoom.draw(rng);
    if (!fire) continue;
    Index3 low{};
    for (int k = 0; k < 3; ++k)
      low[k] = std::max<std::int64_t>(1, static_cast<std::int64_t>(std::lround(static_cast<double>(n[k]) * z)));
    if (!out.defined()) out = s.image.clone();
    auto channel = out.slice(0, c, c + 1);
    channel.copy_from(resize_trilinear(resize_nearest_exact(channel, low), n));
  }
  if (out.defined()) s.image = out;
}

}  // namespace medseg::transforms
