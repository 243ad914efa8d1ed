// Rotations: exact quarter turns (a permutation of voxels, no interpolation) and rotations by
// any angle in chosen planes (MedicalSeg's RandomRotation3D), the latter through the one-pass
// sampler of spatial.hpp so the label is never interpolated linearly as ids.
#pragma once

#include <array>
#include <concepts>
#include <cstdint>
#include <optional>
#include <numbers>
#include <vector>

#include "concepts.hpp"
#include "flip.hpp"
#include "spatial.hpp"

namespace medseg::transforms {

/// A plane of two spatial axes (0 = D, 1 = H, 2 = W).
using Plane = std::array<int, 2>;

/// np.rot90(x, k, axes=plane) on every channel of x [C,D,H,W]: k quarter turns from axis
/// plane[0] towards plane[1]. Any integer k (taken mod 4).
template <class T, class B>
Tensor<T, B> rot90(const Tensor<T, B>& x, int k, const Plane& plane);

/// With probability p, k in {1, 2, 3} quarter turns in one of `planes`, each equally likely.
/// With square_only, planes whose two extents differ are never chosen, so the shape is kept
/// (a batch needs equal shapes).
struct RandomQuarterTurn3D {
  float p = 0.5f;
  std::vector<Plane> planes{{0, 1}, {0, 2}, {1, 2}};
  bool square_only = true;

  template <class L, class B>
  void apply(BasicSample<L, B>& s, RandomStream& rng) const;
  /// One apply's draws for a sample of extent `spatial`: whether it turns, by k quarter turns in `plane`.
  struct Draw {
    bool turn = false;
    int k = 0;
    Plane plane{0, 1};
  };
  Draw draw(const Index3& spatial, RandomStream& rng) const;
};

/// MedicalSeg's RandomRotation3D: with probability p, one plane of `planes` chosen at random
/// and a rotation about the volume centre by an angle uniform in [-degrees, degrees]; the
/// size is kept, corners that come from outside read 0. Image linear, label nearest (as
/// MedicalSeg's scipy.ndimage.rotate with order 1 and 0).
struct RandomRotation3D {
  float degrees = 90.0f;
  std::vector<Plane> planes{{0, 1}, {0, 2}, {1, 2}};
  float p = 1.0f;
  ImageInterpolation image_interpolation = ImageInterpolation::linear;
  LabelInterpolation label_interpolation = LabelInterpolation::nearest;

  template <class L, class B>
  void apply(BasicSample<L, B>& s, RandomStream& rng) const;
  /// One apply's draws for a sample of extent `spatial`: the grid to resample on, none when
  /// it does not fire.
  std::optional<SamplingGrid> draw(const Index3& spatial, RandomStream& rng) const;
};

namespace detail {
/// rot90's voxel move: output axis k reads input axis source[k], reversed when reverse[k].
struct QuarterTurn {
  std::array<int, 3> source{0, 1, 2};
  std::array<bool, 3> reverse{false, false, false};
  bool identity = true;
};
QuarterTurn quarter_turn(int k, const Plane& plane);
}  // namespace detail

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {
inline void check_plane(const Plane& plane, const char* where) {
  require(plane[0] != plane[1] && plane[0] >= 0 && plane[0] < 3 && plane[1] >= 0 && plane[1] < 3, [&] {
    return ErrorInfo{.where = where, .field = "plane", .expected = "two different spatial axes in {0, 1, 2}",
                     .actual = str("{", plane[0], ", ", plane[1], "}")};
  });
}
}  // namespace detail

inline detail::QuarterTurn detail::quarter_turn(int k, const Plane& plane) {
  check_plane(plane, "transforms::rot90");
  k = ((k % 4) + 4) % 4;
  const int a = plane[0], b = plane[1];
  QuarterTurn q;
  if (k == 0) return q;
  q.identity = false;
  if (k == 2) {
    q.reverse[a] = q.reverse[b] = true;
  } else {
    // numpy: k = 1 is transpose(flip(x, b)), so out[.., i@a, j@b, ..] = x[.., j@a, (n_b - 1 - i)@b, ..];
    // k = 3 is flip(transpose(x), b), so out[i@a, j@b] = x[(n_a - 1 - j)@a, i@b].
    q.source[a] = b;
    q.source[b] = a;
    q.reverse[k == 1 ? a : b] = true;
  }
  return q;
}

template <class T, class B>
Tensor<T, B> rot90(const Tensor<T, B>& x, int k, const Plane& plane) {
  const detail::QuarterTurn q = detail::quarter_turn(k, plane);
  return q.identity ? x.clone() : permute_reverse(x, q.source, q.reverse);
}

inline RandomQuarterTurn3D::Draw RandomQuarterTurn3D::draw(const Index3& size, RandomStream& rng) const {
  const bool fire = rng.bernoulli(p);
  const std::uint32_t pick = rng.next_u32();
  const int k = 1 + static_cast<int>(rng.below(3));
  if (!fire) return {};
  std::vector<Plane> eligible;
  for (const auto& plane : planes) {
    detail::check_plane(plane, "transforms::RandomQuarterTurn3D");
    if (!square_only || size[plane[0]] == size[plane[1]]) eligible.push_back(plane);
  }
  if (eligible.empty()) return {};
  const Plane plane = eligible[static_cast<std::size_t>((static_cast<std::uint64_t>(pick) * eligible.size()) >> 32)];
  return {true, k, plane};
}

template <class L, class B>
void RandomQuarterTurn3D::apply(BasicSample<L, B>& s, RandomStream& rng) const {
  check_sample(s, "transforms::RandomQuarterTurn3D");
  const Draw d = draw(s.spatial(), rng);
  if (!d.turn) return;
  s.image = rot90(s.image, d.k, d.plane);
  if (s.label.defined()) s.label = rot90(s.label, d.k, d.plane);
}

inline std::optional<SamplingGrid> RandomRotation3D::draw(const Index3& spatial, RandomStream& rng) const {
  require(!planes.empty(), [&] {
    return ErrorInfo{.where = "transforms::RandomRotation3D", .field = "planes", .expected = "at least one plane",
                     .actual = "none"};
  });
  const bool fire = rng.bernoulli(p);
  const Plane plane = planes[rng.below(static_cast<std::uint32_t>(planes.size()))];
  const double angle = rng.uniform(-degrees, degrees) * std::numbers::pi / 180.0;
  if (!fire) return std::nullopt;
  detail::check_plane(plane, "transforms::RandomRotation3D");
  // The grid maps output to input, so the image turns by +angle when the grid turns by -angle.
  return SamplingGrid::centered(spatial, spatial, Mat3::plane_rotation(plane[0], plane[1], -angle));
}

template <class L, class B>
void RandomRotation3D::apply(BasicSample<L, B>& s, RandomStream& rng) const {
  check_sample(s, "transforms::RandomRotation3D");
  if (const auto grid = draw(s.spatial(), rng)) resample(s, *grid, image_interpolation, label_interpolation);
}

}  // namespace medseg::transforms
