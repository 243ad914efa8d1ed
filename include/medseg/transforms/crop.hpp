// Patch selection: random, centre and foreground-oversampled crops (nnU-Net forces a third
// of its patches to contain foreground, which is what makes small structures learnable),
// padding to a minimum size, and MedicalSeg's RandomResizedCrop3D. Crops copy whole voxels,
// so image and label stay exactly aligned; regions outside the volume read 0. Draws are made
// on the host; the copies run on the sample's backend.
#pragma once

#include <algorithm>
#include <array>
#include <concepts>
#include <cstdint>
#include <vector>

#include "box.hpp"
#include "concepts.hpp"
#include "spatial.hpp"

namespace medseg::transforms {

/// A patch of `size` at a uniformly random position (padded when the volume is smaller).
struct RandomCrop {
  Index3 size{};
  template <class L, class B>
  void apply(BasicSample<L, B>& s, RandomStream& rng) const;
  /// Where one apply puts the patch in a volume of extent `spatial`.
  Index3 draw(const Index3& spatial, RandomStream& rng) const;
};

/// The central patch of `size` (padded when the volume is smaller).
struct CenterCrop {
  Index3 size{};
  template <class L, class B>
  void apply(BasicSample<L, B>& s, RandomStream& rng) const;
  /// Where the patch starts in a volume of extent `spatial` (nothing is drawn).
  Index3 begin(const Index3& spatial) const;
};

/// Pads with 0 (label 0) to at least `size` per axis, half before and the rest after (nnU-Net).
struct PadToSize {
  Index3 size{};
  template <class L, class B>
  void apply(BasicSample<L, B>& s, RandomStream& rng) const;
  /// The padded box of a volume of extent `spatial`: where it starts (<= 0) and its extent.
  /// Equal to `spatial` when nothing needs padding.
  std::array<Index3, 2> box(const Index3& spatial) const;
};

/// nnU-Net's patch sampler: with probability foreground_fraction the patch is centred on a
/// voxel of a foreground class (a class > 0 present in the label, chosen uniformly, then one
/// of its voxels uniformly), else placed uniformly at random. nnU-Net v2 oversamples 33%
/// (its probabilistic variant; the default forces the last third of each batch instead).
/// A sample with no foreground gets a random patch.
struct ForegroundCrop {
  Index3 size{};
  float foreground_fraction = 0.33f;
  /// How far past the volume the patch may reach, half before and half after (nnU-Net's
  /// need_to_pad: a crop larger than the final patch gets their difference, so the final
  /// patch's centre reaches the border).
  Index3 margin{0, 0, 0};
  template <class L, class B>
  void apply(BasicSample<L, B>& s, RandomStream& rng) const;
  /// Where one apply puts the patch in a volume of extent `spatial` labelled `label` (host
  /// memory; only read when the draw picks foreground; may be undefined).
  template <class L>
  Index3 draw(const Index3& spatial, const Tensor<L>& label, RandomStream& rng) const {
    return patch_start(spatial, label, size, foreground_fraction, rng, margin);
  }
};

/// MedicalSeg's RandomResizedCrop3D: a box of every slice (all of D) whose H x W area is
/// scale times the slice area and whose W/H ratio is log-uniform in `ratio` (10 tries, then
/// the largest centred box of clamped ratio, as torchvision), resized to `size` as
/// scipy.ndimage.zoom does (corner-aligned); image linear, label nearest.
struct RandomResizedCrop3D {
  Index3 size{128, 128, 128};
  Range scale{0.8f, 1.2f};
  Range ratio{3.0f / 4.0f, 4.0f / 3.0f};
  template <class L, class B>
  void apply(BasicSample<L, B>& s, RandomStream& rng) const;
  /// One apply's draws for a volume of extent `spatial`: the grid of its box resized to `size`.
  SamplingGrid draw(const Index3& spatial, RandomStream& rng) const;
};

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {
inline void check_size(const Index3& size, const char* where) {
  require(size[0] > 0 && size[1] > 0 && size[2] > 0, [&] {
    return ErrorInfo{.where = where, .field = "size", .expected = "three positive extents", .actual = index3_text(size)};
  });
}
/// Uniform integer in [lo, hi].
inline std::int64_t uniform_int(RandomStream& rng, std::int64_t lo, std::int64_t hi) {
  return lo + static_cast<std::int64_t>(rng.below(static_cast<std::uint32_t>(hi - lo + 1)));
}
}  // namespace detail

inline Index3 RandomCrop::draw(const Index3& n, RandomStream& rng) const {
  Index3 begin{};
  for (int k = 0; k < 3; ++k) {
    const auto r = start_range(n[k], size[k]);
    begin[k] = detail::uniform_int(rng, r[0], r[1]);
  }
  return begin;
}

template <class L, class B>
void RandomCrop::apply(BasicSample<L, B>& s, RandomStream& rng) const {
  check_sample(s, "transforms::RandomCrop");
  detail::check_size(size, "transforms::RandomCrop");
  crop_or_pad(s, draw(s.spatial(), rng), size);
}

inline Index3 CenterCrop::begin(const Index3& n) const {
  Index3 b{};
  for (int k = 0; k < 3; ++k) b[k] = n[k] >= size[k] ? (n[k] - size[k]) / 2 : start_range(n[k], size[k])[0];
  return b;
}

template <class L, class B>
void CenterCrop::apply(BasicSample<L, B>& s, RandomStream&) const {
  check_sample(s, "transforms::CenterCrop");
  detail::check_size(size, "transforms::CenterCrop");
  crop_or_pad(s, begin(s.spatial()), size);
}

inline std::array<Index3, 2> PadToSize::box(const Index3& n) const {
  Index3 begin{}, out{};
  for (int k = 0; k < 3; ++k) {
    out[k] = std::max(n[k], size[k]);
    begin[k] = -((out[k] - n[k]) / 2);
  }
  return {begin, out};
}

template <class L, class B>
void PadToSize::apply(BasicSample<L, B>& s, RandomStream&) const {
  check_sample(s, "transforms::PadToSize");
  const auto [begin, out] = box(s.spatial());
  if (out == s.spatial()) return;
  crop_or_pad(s, begin, out);
}

template <class L, class B>
void ForegroundCrop::apply(BasicSample<L, B>& s, RandomStream& rng) const {
  check_sample(s, "transforms::ForegroundCrop");
  detail::check_size(size, "transforms::ForegroundCrop");
  crop_or_pad(s, draw(s.spatial(), detail::label_for_draw(s, foreground_fraction > 0), rng), size);
}

template <class L, class B>
void RandomResizedCrop3D::apply(BasicSample<L, B>& s, RandomStream& rng) const {
  check_sample(s, "transforms::RandomResizedCrop3D");
  detail::check_size(size, "transforms::RandomResizedCrop3D");
  resample(s, draw(s.spatial(), rng), ImageInterpolation::linear, LabelInterpolation::nearest);
}

inline SamplingGrid RandomResizedCrop3D::draw(const Index3& n, RandomStream& rng) const {
  const double height = static_cast<double>(n[1]), width = static_cast<double>(n[2]), area = height * width;
  std::int64_t top = 0, left = 0, h = n[1], w = n[2];
  bool found = false;
  for (int attempt = 0; attempt < 10 && !found; ++attempt) {
    const double target = scale.draw(rng) * area;
    const double aspect = std::exp(rng.uniform(std::log(ratio.low), std::log(ratio.high)));
    const auto tw = static_cast<std::int64_t>(std::lround(std::sqrt(target * aspect)));
    const auto th = static_cast<std::int64_t>(std::lround(std::sqrt(target / aspect)));
    if (tw > 0 && tw <= n[2] && th > 0 && th <= n[1]) {
      h = th;
      w = tw;
      top = detail::uniform_int(rng, 0, n[1] - h);
      left = detail::uniform_int(rng, 0, n[2] - w);
      found = true;
    }
  }
  if (!found) {  // torchvision's fallback: the whole slice at a clamped ratio, centred
    const double in_ratio = width / height;
    if (in_ratio < ratio.low) {
      w = n[2];
      h = static_cast<std::int64_t>(std::lround(width / ratio.low));
    } else if (in_ratio > ratio.high) {
      h = n[1];
      w = static_cast<std::int64_t>(std::lround(height * ratio.high));
    }
    h = std::clamp<std::int64_t>(h, 1, n[1]);
    w = std::clamp<std::int64_t>(w, 1, n[2]);
    top = (n[1] - h) / 2;
    left = (n[2] - w) / 2;
  }
  // scipy.ndimage.zoom (grid_mode False): output o reads input begin + o * (n_in - 1) / (n_out - 1).
  const Index3 box{n[0], h, w}, box_begin{0, top, left};
  SamplingGrid grid;
  grid.out_size = size;
  double ratio_axis[3];
  for (int k = 0; k < 3; ++k) {
    ratio_axis[k] = size[k] > 1 ? static_cast<double>(box[k] - 1) / static_cast<double>(size[k] - 1) : 0.0;
    grid.out_center[k] = 0;
    grid.in_center[k] = static_cast<double>(box_begin[k]);
  }
  grid.matrix = Mat3::diagonal(ratio_axis[0], ratio_axis[1], ratio_axis[2]);
  return grid;
}

}  // namespace medseg::transforms
