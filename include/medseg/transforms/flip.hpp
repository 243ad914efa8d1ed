// Mirroring, and the exact axis permutation + reversal kernel that quarter turns share.
// These move voxels without interpolating, so image and label stay aligned exactly and a
// flip applied twice is the identity. nnU-Net mirrors each spatial axis with probability 0.5.
#pragma once

#include <array>
#include <concepts>
#include <cstdint>

#include "concepts.hpp"
#include "voxel_sampling.hpp"

namespace medseg::transforms {

/// out[o0, o1, o2] = in[...] where output axis k reads input axis source[k] (spatial axes,
/// 0 = D, 1 = H, 2 = W), reversed when reverse[k]. Every channel moves alike.
///   permute_reverse(x, {0, 1, 2}, {false, false, true})   // flip W
///   permute_reverse(x, {1, 0, 2}, {true, false, false})   // np.rot90(x, 1, axes=(0, 1))
/// Precondition: x is contiguous [C,D,H,W] and source is a permutation of {0, 1, 2}.
template <class T>
Tensor<T> permute_reverse(const Tensor<T>& x, const std::array<int, 3>& source, const std::array<bool, 3>& reverse);

/// Reverses the spatial axes marked in `axes` (0 = D, 1 = H, 2 = W) of image and label.
template <class L>
void flip(BasicSample<L>& s, const std::array<bool, 3>& axes);

/// Mirrors each enabled axis independently with probability p (nnU-Net's mirroring, and
/// MedicalSeg's RandomFlip3D with flip_axis unset).
struct RandomFlip3D {
  float p = 0.5f;                               // per axis
  std::array<bool, 3> axes{true, true, true};   // D, H, W

  template <class L>
  void apply(BasicSample<L>& s, RandomStream& rng) const;
  /// The same on a GPU sample (transforms/cuda.hpp): draws made here, voxels moved on the device.
  template <class L, class B>
    requires(!std::same_as<B, Cpu>)
  void apply(BasicSample<L, B>& s, RandomStream& rng) const {
    apply_on_device(*this, s, rng);
  }
  /// One apply's draws: the axes it reverses.
  std::array<bool, 3> draw(RandomStream& rng) const;
};

namespace detail {
/// permute_reverse's checks, then its plan (shared by the CPU and the GPU versions).
template <class T, class B>
voxel::PermutePlan checked_permute_plan(const Tensor<T, B>& x, const std::array<int, 3>& source,
                                        const std::array<bool, 3>& reverse);
}  // namespace detail

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {
template <class T, class B>
voxel::PermutePlan checked_permute_plan(const Tensor<T, B>& x, const std::array<int, 3>& source,
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
  return voxel::permute_plan(in, source.data(), reverse.data());
}
}  // namespace detail

template <class T>
Tensor<T> permute_reverse(const Tensor<T>& x, const std::array<int, 3>& source, const std::array<bool, 3>& reverse) {
  const voxel::PermutePlan plan = detail::checked_permute_plan(x, source, reverse);
  const std::int64_t channels = x.size(0);
  const Index3 out_size{plan.out[0], plan.out[1], plan.out[2]};
  auto out = Tensor<T>::empty({channels, out_size[0], out_size[1], out_size[2]});
  if (out.numel() == 0) return out;
  const T* src = x.data();
  T* dst = out.data();
  const std::int64_t rows = channels * out_size[0] * out_size[1], step = plan.step[2];
  parallel_for(0, rows, 16, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t r = b; r < e; ++r) {
      const T* in = src + voxel::permuted_source(plan, r * out_size[2]);  // the row's first voxel
      T* o = dst + r * out_size[2];
      if (step == 1) {
        std::copy(in, in + out_size[2], o);
      } else {
        for (std::int64_t i = 0; i < out_size[2]; ++i) o[i] = in[i * step];
      }
    }
  });
  return out;
}

template <class L>
void flip(BasicSample<L>& s, const std::array<bool, 3>& axes) {
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

template <class L>
void RandomFlip3D::apply(BasicSample<L>& s, RandomStream& rng) const {
  flip(s, draw(rng));
}

}  // namespace medseg::transforms
