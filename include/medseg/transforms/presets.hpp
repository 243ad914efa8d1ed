// Ready-made augmentation chains: nnU-Net v2's default 3D training augmentation and
// MedicalSeg's lung (COVID-19 CT) and spine (MRSpineSeg) chains. Each is one composed type,
// built from the transforms of this folder with the probabilities their sources use; each
// also runs on a GPU sample (in a program that links medseg::cuda), with the CPU's draws.
#pragma once

#include <algorithm>
#include <cmath>
#include <numbers>

#include "concepts.hpp"
#include "crop.hpp"
#include "flip.hpp"
#include "intensity.hpp"
#include "low_resolution.hpp"
#include "rotate.hpp"
#include "spatial.hpp"

namespace medseg::transforms {

/// nnU-Net's get_patch_size: the patch to cut before a rotation of up to `max_degrees`
/// about each axis and a zoom down to `min_scale`, so the final patch has no empty corners
/// where the data allow: each axis's largest extent over the three single-axis rotations,
/// divided by min_scale (nnU-Net v2 passes 0.85).
inline Index3 initial_patch_size(const Index3& patch, double max_degrees = 30.0, double min_scale = 0.85) {
  const double a = max_degrees * std::numbers::pi / 180.0, c = std::cos(a), s = std::sin(a);
  const double p[3] = {static_cast<double>(patch[0]), static_cast<double>(patch[1]), static_cast<double>(patch[2])};
  double best[3] = {p[0], p[1], p[2]};
  for (int axis = 0; axis < 3; ++axis) {  // rotation about `axis` mixes the other two
    const int u = (axis + 1) % 3, v = (axis + 2) % 3;
    best[u] = std::max(best[u], std::abs(c * p[u] - s * p[v]));
    best[v] = std::max(best[v], std::abs(s * p[u] + c * p[v]));
  }
  Index3 out{};
  for (int k = 0; k < 3; ++k) out[k] = static_cast<std::int64_t>(best[k] / min_scale);
  return out;
}

/// nnU-Net v2's default 3D training augmentation (nnUNetTrainer.get_training_transforms),
/// preceded by its data loader's foreground-oversampled crop of the larger initial patch
/// (fused into the spatial pass: no intermediate crop is made):
///   crop (33% foreground) -> rotation +-30 deg p 0.2 / scale 0.7..1.4 p 0.2 (one pass) ->
///   noise p 0.1 -> blur p 0.2 -> brightness p 0.15 -> contrast p 0.15 ->
///   low resolution p 0.25 -> inverted gamma p 0.1 -> gamma p 0.3 -> mirroring.
inline auto nnunet_3d(const Index3& patch_size) {
  return SpatialTransform{.patch_size = patch_size,
                          .crop_size = initial_patch_size(patch_size),
                          .foreground_fraction = 0.33f} |
         GaussianNoise{} | GaussianBlur{} | MultiplicativeBrightness{} |
         Contrast{} | SimulateLowResolution{} | Gamma{.p = 0.1f, .invert = true} | Gamma{.p = 0.3f} |
         RandomFlip3D{.p = 0.5f};
}

/// MedicalSeg's lung_coronavirus VNet chain: RandomResizedCrop3D(128, scale 0.8..1.2),
/// RandomRotation3D(90 degrees, any of the three planes), RandomFlip3D.
inline auto medicalseg_lung(const Index3& size = {128, 128, 128}) {
  return RandomResizedCrop3D{.size = size, .scale = {0.8f, 1.2f}} | RandomRotation3D{.degrees = 90.0f} |
         RandomFlip3D{};
}

/// MedicalSeg's MRSpineSeg chain: RandomRotation3D(30 degrees), RandomFlip3D (its data are
/// resized to the training size offline, by the prepare step).
inline auto medicalseg_spine() { return RandomRotation3D{.degrees = 30.0f} | RandomFlip3D{}; }

}  // namespace medseg::transforms
