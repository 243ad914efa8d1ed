// The whole-voxel box copy every crop and pad reduces to: a box of the volume that may
// start before it or run past its end, with the outside read as a fill value. Shared by the
// crops of crop.hpp and the exact (nothing fired) path of the spatial transform; the copy is
// the backend's (ops::crop_or_pad), so it runs where the sample is.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "../backends/ops.hpp"
#include "concepts.hpp"

namespace medseg::transforms {

/// The box [begin, begin + size) of x [C,D,H,W]; begin may be negative and the box may pass
/// the end: voxels outside x read `fill`.
template <class T, class B>
Tensor<T, B> crop_or_pad(const Tensor<T, B>& x, const Index3& begin, const Index3& size, T fill = T(0));
/// The same box of image and label.
template <class L, class B>
void crop_or_pad(BasicSample<L, B>& s, const Index3& begin, const Index3& size);

/// Where a patch of `size` may start along an axis of extent n, as nnU-Net's get_bbox: the
/// patch may reach `pad` voxels past the volume (half before, the rest after), and at least
/// as far as it must to fit: [0, n - size] for pad 0 when it fits, else the centred start
/// -(size - n) / 2 (padded evenly). A fused crop (SpatialTransform) passes pad = its crop
/// minus its final patch, so the final patch's centre reaches the volume's border.
inline std::array<std::int64_t, 2> start_range(std::int64_t n, std::int64_t size, std::int64_t pad = 0) {
  if (n + pad < size) pad = size - n;
  return {-(pad / 2), n + pad / 2 + pad % 2 - size};
}

/// Where nnU-Net's sampler puts a patch of `size`: with probability foreground_fraction
/// centred on a voxel of a foreground class (a class > 0 present in the label, chosen
/// uniformly, then one of its voxels uniformly; clamped to start_range), else uniformly at
/// random within start_range. Shared by ForegroundCrop and the fused SpatialTransform.
template <class L>
Index3 patch_start(const BasicSample<L>& s, const Index3& size, float foreground_fraction, RandomStream& rng,
                   const Index3& pad = {0, 0, 0});
/// The same for a volume of extent `n` with label map `label` [1,D,H,W] (host memory; may be
/// undefined): the draws do not need the image.
template <class L>
Index3 patch_start(const Index3& n, const Tensor<L>& label, const Index3& size, float foreground_fraction,
                   RandomStream& rng, const Index3& pad = {0, 0, 0});

namespace detail {
/// The label on the host for a draw that centres a patch on foreground, when the draw may
/// read it (a device's label map is copied back: it is small); else undefined, which the
/// draws take as "no label to read".
template <class L, class B>
Tensor<L> label_for_draw(const BasicSample<L, B>& s, bool reads_label) {
  return reads_label && s.label.defined() ? ops::host_readable(s.label) : Tensor<L>{};
}
}  // namespace detail

// ----------------------------------------------------------------------------------------
// Implementation

template <class T, class B>
Tensor<T, B> crop_or_pad(const Tensor<T, B>& x, const Index3& begin, const Index3& size, T fill) {
  require(x.rank() == 4 && x.is_contiguous(), [&] {
    return ErrorInfo{.where = "transforms::crop_or_pad", .field = "x", .expected = "a contiguous [C,D,H,W] tensor",
                     .actual = x.layout().to_string()};
  });
  require(size[0] > 0 && size[1] > 0 && size[2] > 0, [&] {
    return ErrorInfo{.where = "transforms::crop_or_pad", .field = "size", .expected = "three positive extents",
                     .actual = index3_text(size)};
  });
  auto out = Tensor<T, B>::empty({x.size(0), size[0], size[1], size[2]});
  ops::crop_or_pad(x, begin, out, fill);
  return out;
}

template <class L, class B>
void crop_or_pad(BasicSample<L, B>& s, const Index3& begin, const Index3& size) {
  check_sample(s, "transforms::crop_or_pad");
  s.image = crop_or_pad(s.image, begin, size, 0.0f);
  if (s.label.defined()) s.label = crop_or_pad(s.label, begin, size, L(0));
}

template <class L>
Index3 patch_start(const BasicSample<L>& s, const Index3& size, float foreground_fraction, RandomStream& rng,
                   const Index3& pad) {
  return patch_start(s.spatial(), s.label, size, foreground_fraction, rng, pad);
}

template <class L>
Index3 patch_start(const Index3& n, const Tensor<L>& label, const Index3& size, float foreground_fraction,
                   RandomStream& rng, const Index3& pad) {
  const bool force = rng.bernoulli(foreground_fraction) && label.defined();
  const std::uint32_t class_pick = rng.next_u32();
  const std::uint32_t voxel_pick = rng.next_u32();
  Index3 begin{};
  for (int k = 0; k < 3; ++k) {
    const auto r = start_range(n[k], size[k], pad[k]);
    begin[k] = r[0] + static_cast<std::int64_t>(rng.below(static_cast<std::uint32_t>(r[1] - r[0] + 1)));
  }
  if (force) {
    // Count voxels per class, choose a present foreground class, then its voxel_pick-th voxel.
    const L* l = label.data();
    const std::int64_t total = label.numel();
    std::vector<std::int64_t> counts;
    for (std::int64_t i = 0; i < total; ++i) {
      const auto id = static_cast<std::int64_t>(l[i]);
      if (id <= 0) continue;
      if (static_cast<std::size_t>(id) >= counts.size()) counts.resize(static_cast<std::size_t>(id) + 1, 0);
      ++counts[static_cast<std::size_t>(id)];
    }
    std::vector<L> present;
    for (std::size_t id = 1; id < counts.size(); ++id)
      if (counts[id] > 0) present.push_back(static_cast<L>(id));
    if (!present.empty()) {
      const L cls = present[static_cast<std::size_t>((static_cast<std::uint64_t>(class_pick) * present.size()) >> 32)];
      const auto target = static_cast<std::int64_t>(
          (static_cast<std::uint64_t>(voxel_pick) * static_cast<std::uint64_t>(counts[static_cast<std::size_t>(cls)])) >> 32);
      std::int64_t seen = 0, at = 0;
      for (std::int64_t i = 0; i < total; ++i)
        if (l[i] == cls && seen++ == target) {
          at = i;
          break;
        }
      const Index3 voxel{at / (n[1] * n[2]), (at / n[2]) % n[1], at % n[2]};
      for (int k = 0; k < 3; ++k) {
        const auto r = start_range(n[k], size[k], pad[k]);
        begin[k] = std::clamp(voxel[k] - size[k] / 2, r[0], r[1]);
      }
    }
  }
  return begin;
}

}  // namespace medseg::transforms
