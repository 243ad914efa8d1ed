// nnU-Net's SimulateLowResolution: a channel is shrunk by a random zoom with nearest
// sampling and brought back to its size with linear interpolation, which mimics scans taken
// at a coarser resolution. Sampling follows PyTorch's interpolate (nearest-exact, then
// trilinear with align_corners=False), as batchgenerators v2 does; the label is untouched.
// The index and weight tables are made here; the resizes are the backend's (ops::resize_separable).
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <vector>

#include "../backends/ops.hpp"
#include "concepts.hpp"

namespace medseg::transforms {

/// torch.nn.functional.interpolate(x[None], size, mode='nearest-exact') per channel of x [C,D,H,W].
template <class B>
Tensor<float, B> resize_nearest_exact(const Tensor<float, B>& x, const Index3& size);
/// torch.nn.functional.interpolate(x[None], size, mode='trilinear', align_corners=False).
template <class B>
Tensor<float, B> resize_trilinear(const Tensor<float, B>& x, const Index3& size);

/// With probability p, each channel with probability p_per_channel resampled to
/// round(n * zoom) per axis (one zoom uniform in `zoom` for all axes) and back.
struct SimulateLowResolution {
  float p = 0.25f;
  Range zoom{0.5f, 1.0f};
  float p_per_channel = 0.5f;
  template <class L, class B>
  void apply(BasicSample<L, B>& s, RandomStream& rng) const;
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
/// ops::resize_separable reads them: nearest_exact_index's indices (linear false; i1 and t stay
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

/// resize_nearest_exact (linear false) or resize_trilinear.
template <class B>
Tensor<float, B> resize_separable(const Tensor<float, B>& x, const Index3& size, bool linear, const char* where) {
  check_resize(x, size, where);
  const Taps taps = separable_taps({x.size(1), x.size(2), x.size(3)}, size, linear);
  auto out = Tensor<float, B>::empty({x.size(0), size[0], size[1], size[2]});
  ops::resize_separable(x, out, taps.i0, taps.i1, taps.t, linear);
  return out;
}
}  // namespace detail

template <class B>
Tensor<float, B> resize_nearest_exact(const Tensor<float, B>& x, const Index3& size) {
  return detail::resize_separable(x, size, false, "transforms::resize_nearest_exact");
}

template <class B>
Tensor<float, B> resize_trilinear(const Tensor<float, B>& x, const Index3& size) {
  return detail::resize_separable(x, size, true, "transforms::resize_trilinear");
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

template <class L, class B>
void SimulateLowResolution::apply(BasicSample<L, B>& s, RandomStream& rng) const {
  check_sample(s, "transforms::SimulateLowResolution");
  const Index3 n = s.spatial();
  const auto draws = draw(n, s.channels(), rng);
  Tensor<float, B> out;
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
