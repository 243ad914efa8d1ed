// Mirroring, and the exact axis permutation + reversal kernel that quarter turns share.
// These move voxels without interpolating, so image and label stay aligned exactly and a
// flip applied twice is the identity. nnU-Net mirrors each spatial axis with probability 0.5.
// The plan is made here; the move is the backend's (ops::permute_reverse).
#pragma once

#include <array>
#include <concepts>
#include <cstdint>

#include "../backends/ops.hpp"
#include "concepts.hpp"

namespace medseg::transforms {

/// out[o0, o1, o2] = in[...] where output axis k reads input axis source[k] (spatial axes,
/// 0 = D, 1 = H, 2 = W), reversed when reverse[k]. Every channel moves alike.
///   permute_reverse(x, {0, 1, 2}, {false, false, true})   // flip W
///   permute_reverse(x, {1, 0, 2}, {true, false, false})   // np.rot90(x, 1, axes=(0, 1))
/// Precondition: x is contiguous [C,D,H,W] and source is a permutation of {0, 1, 2}.
template <class T, class B>
Tensor<T, B> permute_reverse(const Tensor<T, B>& x, const std::array<int, 3>& source, const std::array<bool, 3>& reverse);

/// Reverses the spatial axes marked in `axes` (0 = D, 1 = H, 2 = W) of image and label.
template <class L, class B>
void flip(BasicSample<L, B>& s, const std::array<bool, 3>& axes);

/// Mirrors each enabled axis independently with probability p (nnU-Net's mirroring, and
/// MedicalSeg's RandomFlip3D with flip_axis unset).
struct RandomFlip3D {
  float p = 0.5f;                               // per axis
  std::array<bool, 3> axes{true, true, true};   // D, H, W

  template <class L, class B>
  void apply(BasicSample<L, B>& s, RandomStream& rng) const;
  /// One apply's draws: the axes it reverses.
  std::array<bool, 3> draw(RandomStream& rng) const;
};

namespace detail {
/// permute_reverse's checks, then its plan.
template <class T, class B>
ops::voxel::PermutePlan checked_permute_plan(const Tensor<T, B>& x, const std::array<int, 3>& source,
                                        const std::array<bool, 3>& reverse);
}  // namespace detail

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {
template <class T, class B>
ops::voxel::PermutePlan checked_permute_plan(const Tensor<T, B>& x, const std::array<int, 3>& source,
                                        const std::array<bool, 3>& reverse) {
  require(x.rank() == 4 && x.is_contiguous(), [&] {
    return ErrorInfo{.where = "transforms::permute_reverse", .field = "x", .expected = "a contiguous [C,D,H,W] tensor",
                     .actual = x.layout().to_string()};
  });
  require(source[0] != source[1] && source[0] != source[2] && source[1] != source[2] && source[0] >= 0 &&
              source[1] >= 0 && source[2] >= 0 && source[0] < 3 && source[1] < 3 && source[2] < 3,
          [&] {
            return ErrorInfo{.where = "transforms::permute_reverse", .field = "source",
                             .expected = "a permutation of {0, 1, 2}",
                             .actual = str("{", source[0], ", ", source[1], ", ", source[2], "}")};
          });
  const std::int64_t in[3] = {x.size(1), x.size(2), x.size(3)};
  return ops::voxel::permute_plan(in, source.data(), reverse.data());
}
}  // namespace detail

template <class T, class B>
Tensor<T, B> permute_reverse(const Tensor<T, B>& x, const std::array<int, 3>& source, const std::array<bool, 3>& reverse) {
  const ops::voxel::PermutePlan plan = detail::checked_permute_plan(x, source, reverse);
  auto out = Tensor<T, B>::empty({x.size(0), plan.out[0], plan.out[1], plan.out[2]});
  ops::permute_reverse(x, plan, out);
  return out;
}

template <class L, class B>
void flip(BasicSample<L, B>& s, const std::array<bool, 3>& axes) {
  check_sample(s, "transforms::flip");
  if (!axes[0] && !axes[1] && !axes[2]) return;
  s.image = permute_reverse(s.image, {0, 1, 2}, axes);
  if (s.label.defined()) s.label = permute_reverse(s.label, {0, 1, 2}, axes);
}

inline std::array<bool, 3> RandomFlip3D::draw(RandomStream& rng) const {
  std::array<bool, 3> chosen{};
  // Three draws always, so the stream's position does not depend on which axes are enabled.
  for (int a = 0; a < 3; ++a) chosen[a] = rng.bernoulli(p) && axes[a];
  return chosen;
}

template <class L, class B>
void RandomFlip3D::apply(BasicSample<L, B>& s, RandomStream& rng) const {
  flip(s, draw(rng));
}

}  // namespace medseg::transforms
