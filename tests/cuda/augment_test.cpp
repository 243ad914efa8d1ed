// The transforms on GPU samples (their Cuda kernels, backends/cuda/augment.hpp) against the
// CPU transforms on the same samples and the same RandomStreams: the fused spatial transform (rotation, scaling, elastic, a
// foreground crop, the exact crop when nothing fires; image nearest and linear, labels nearest
// and per-class linear, uint8 and int16) over several seeds, each intensity transform, the
// voxel moves (flips, quarter turns, crops, pads), rotations, scaling, resized crops, low
// resolution and bias field, a composition, and the three preset chains. Images within 1e-5
// of the data's scale (the kernels round as the CPU does, so only noise, gamma and the bias
// field are expected to differ at all), labels exactly, and both sides must have consumed
// the same random words.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <random>
#include <string>

#include "compare.hpp"
#include "medseg/cuda.hpp"
#include "medseg/transforms.hpp"

using namespace medseg;
using namespace medseg::transforms;
using cuda_test::check_close;
using cuda_test::check_equal;

namespace {

Tensor<float> random_image(const Shape& shape, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-200.0f, 900.0f);
  auto t = Tensor<float>::empty(shape);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = u(rng);
  return t;
}

/// Blobs of ids 0..3: runs along W, so per-class votes meet mixed neighbourhoods.
template <class L>
Tensor<L> random_label(const Shape& shape, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> id(0, 3), run(1, 7);
  auto t = Tensor<L>::empty(shape);
  std::int64_t i = 0;
  while (i < t.numel()) {
    const auto v = static_cast<L>(id(rng));
    for (int r = run(rng); r > 0 && i < t.numel(); --r) t.data()[i++] = v;
  }
  return t;
}

/// Applies `t` to the same sample on the CPU and on the GPU with equal streams; compares.
template <class L, class T>
void check_transform(const T& t, const Tensor<float>& image, const Tensor<L>& label, std::uint64_t seed) {
  BasicSample<L> cpu{image.clone(), label.defined() ? label.clone() : Tensor<L>{}};
  BasicSample<L, Cuda> gpu{image.to<Cuda>(), label.defined() ? label.template to<Cuda>() : Tensor<L, Cuda>{}};
  const auto gpu_input = gpu.image;  // shared: the transform must copy it, not write it
  RandomStream on_cpu(seed, 17), on_gpu(seed, 17);
  t.apply(cpu, on_cpu);
  t.apply(gpu, on_gpu);
  CHECK(on_cpu.position() == on_gpu.position());
  check_close(cpu.image, gpu.image);
  if (label.defined()) check_equal(cpu.label, gpu.label);
  check_equal(image, gpu_input.template to<Cpu>());
}

}  // namespace

TEST_CASE("cuda augment: SpatialTransform equals the CPU's, image and label, for several seeds") {
  const Shape shape{2, 14, 17, 19};
  const auto image = random_image(shape, 1);
  const auto label8 = random_label<std::uint8_t>({1, 14, 17, 19}, 2);
  const auto label16 = random_label<std::int16_t>({1, 14, 17, 19}, 3);
  struct Case {
    std::string name;
    SpatialTransform t;
  };
  const std::vector<Case> cases = {
      {"rotation + scale, patch smaller", {.patch_size = {10, 12, 13}, .p_rotation = 1.0f, .p_scale = 1.0f}},
      {"rotation + anisotropic scale + elastic",
       {.patch_size = {12, 15, 16}, .p_rotation = 1.0f, .p_scale = 1.0f, .anisotropic_scale = true, .p_elastic = 1.0f,
        .elastic_alpha = {2.0f, 8.0f}, .elastic_sigma = {1.5f, 3.0f}}},
      {"elastic only, full size", {.p_rotation = 0.0f, .p_scale = 0.0f, .p_elastic = 1.0f,
                                   .elastic_alpha = {5.0f, 20.0f}, .elastic_sigma = {2.0f, 4.0f}}},
      {"zoom out past the border", {.patch_size = {16, 20, 22}, .p_rotation = 0.0f, .p_scale = 1.0f, .scale = {1.3f, 1.6f}}},
      {"foreground crop fused", {.patch_size = {8, 9, 10}, .crop_size = {11, 12, 13}, .foreground_fraction = 0.7f,
                                 .p_rotation = 0.5f, .p_scale = 0.5f, .p_elastic = 0.5f, .elastic_alpha = {2.0f, 5.0f},
                                 .elastic_sigma = {1.0f, 2.0f}}},
      {"nothing fires: the exact crop", {.patch_size = {9, 20, 11}, .p_rotation = 0.0f, .p_scale = 0.0f}},
      {"random mix", {.patch_size = {12, 12, 12}, .p_rotation = 0.5f, .p_scale = 0.5f, .p_elastic = 0.3f,
                      .elastic_alpha = {0.0f, 10.0f}, .elastic_sigma = {1.0f, 3.0f}}},
  };
  for (const auto& c : cases) {
    for (auto im : {ImageInterpolation::nearest, ImageInterpolation::linear})
      for (auto lm : {LabelInterpolation::nearest, LabelInterpolation::per_class_linear}) {
        SpatialTransform t = c.t;
        t.image_interpolation = im;
        t.label_interpolation = lm;
        for (std::uint64_t seed = 0; seed < 4; ++seed) {
          INFO(c.name << ", image " << (im == ImageInterpolation::linear ? "linear" : "nearest") << ", label "
                      << (lm == LabelInterpolation::nearest ? "nearest" : "per-class linear") << ", seed " << seed);
          check_transform(t, image, label8, seed);
          check_transform(t, image, label16, seed);
          check_transform(t, image, Tensor<std::uint8_t>{}, seed);  // unlabelled
        }
      }
  }
}

TEST_CASE("cuda augment: the building blocks equal the CPU's") {
  const auto image = random_image({2, 9, 13, 11}, 4);
  SECTION("gaussian_filter, sigmas that reach past the volume") {
    for (const std::array<double, 3> sigma : {std::array<double, 3>{0.7, 1.3, 2.1}, {4.0, 0.0, 9.0}})
      check_close(gaussian_filter(image, sigma), gaussian_filter(image.to<Cuda>(), sigma));
  }
  SECTION("elastic_displacement") {
    for (std::uint64_t seed = 0; seed < 3; ++seed) {
      RandomStream a(seed, 5), b(seed, 5);
      const auto cpu = elastic_displacement({7, 8, 9}, 12.0, 2.5, a);
      const auto gpu = elastic_displacement<Cuda>({7, 8, 9}, 12.0, 2.5, b);
      CHECK(a.position() == b.position());
      check_close(cpu, gpu);
    }
  }
}

TEST_CASE("cuda augment: intensity transforms equal the CPU's") {
  const auto image = random_image({2, 10, 12, 14}, 5);
  const auto label = random_label<std::uint8_t>({1, 10, 12, 14}, 6);
  auto each_seed = [&](const char* name, const auto& t) {
    for (std::uint64_t seed = 0; seed < 5; ++seed) {
      INFO(name << ", seed " << seed);
      check_transform(t, image, label, seed);
    }
  };
  each_seed("GaussianNoise", GaussianNoise{.p = 1.0f, .sigma = {5.0f, 50.0f}});
  each_seed("GaussianNoise, may not fire", GaussianNoise{.p = 0.5f});
  each_seed("GaussianBlur", GaussianBlur{.p = 1.0f, .sigma = {0.5f, 1.5f}, .p_per_channel = 0.5f});
  each_seed("MultiplicativeBrightness", MultiplicativeBrightness{.p = 1.0f});
  each_seed("Contrast, preserve range", Contrast{.p = 1.0f});
  each_seed("Contrast, free range", Contrast{.p = 1.0f, .preserve_range = false});
  each_seed("Gamma, retain stats", Gamma{.p = 1.0f});
  each_seed("Gamma, invert, no retain", Gamma{.p = 1.0f, .invert = true, .retain_stats = false});
  each_seed("Normalize z-score", Normalize{});
  each_seed("Normalize divide by max", Normalize{.mode = Normalize::Mode::divide_by_max});
}

TEST_CASE("cuda augment: a composed GPU pipeline equals the CPU's") {
  const auto image = random_image({1, 16, 18, 20}, 7);
  const auto label = random_label<std::uint8_t>({1, 16, 18, 20}, 8);
  const auto aug = SpatialTransform{.patch_size = {12, 14, 16}, .p_rotation = 0.7f, .p_scale = 0.7f, .p_elastic = 0.5f,
                                    .elastic_alpha = {2.0f, 6.0f}, .elastic_sigma = {1.5f, 2.5f}} |
                   GaussianNoise{.p = 0.8f, .sigma = {1.0f, 10.0f}} | GaussianBlur{.p = 0.5f} |
                   MultiplicativeBrightness{.p = 0.5f} | Contrast{.p = 0.5f} | Gamma{.p = 0.5f} |
                   maybe(0.5f, Normalize{});
  static_assert(Transform<decltype(aug), std::uint8_t, Cuda>, "the composition takes GPU samples");
  for (std::uint64_t seed = 0; seed < 8; ++seed) {
    INFO("seed " << seed);
    check_transform(aug, image, label, seed);
  }
}

TEST_CASE("cuda augment: voxel moves and resizes equal the CPU's") {
  const auto image = random_image({2, 5, 6, 7}, 9);
  const auto label8 = random_label<std::uint8_t>({1, 5, 6, 7}, 10);
  const auto label16 = random_label<std::int16_t>({1, 5, 6, 7}, 11);
  const auto label64 = random_label<std::int64_t>({1, 5, 6, 7}, 12);
  SECTION("permute_reverse: every permutation and reversal, elements of 1, 2, 4 and 8 bytes, exactly") {
    std::array<int, 3> source{0, 1, 2};
    do {
      for (int mask = 0; mask < 8; ++mask) {
        const std::array<bool, 3> reverse{(mask & 1) != 0, (mask & 2) != 0, (mask & 4) != 0};
        INFO("source " << source[0] << source[1] << source[2] << ", reverse mask " << mask);
        check_equal(permute_reverse(image, source, reverse), permute_reverse(image.to<Cuda>(), source, reverse));
        check_equal(permute_reverse(label8, source, reverse), permute_reverse(label8.to<Cuda>(), source, reverse));
        check_equal(permute_reverse(label16, source, reverse), permute_reverse(label16.to<Cuda>(), source, reverse));
        check_equal(permute_reverse(label64, source, reverse), permute_reverse(label64.to<Cuda>(), source, reverse));
      }
    } while (std::next_permutation(source.begin(), source.end()));
  }
  SECTION("rot90 and flip") {
    for (const Plane plane : {Plane{0, 1}, Plane{2, 0}, Plane{1, 2}})
      for (int k = -1; k <= 4; ++k) {
        INFO("k " << k << ", plane " << plane[0] << plane[1]);
        check_equal(rot90(image, k, plane), rot90(image.to<Cuda>(), k, plane));
        check_equal(rot90(label16, k, plane), rot90(label16.to<Cuda>(), k, plane));
      }
    for (int mask = 0; mask < 8; ++mask) {
      const std::array<bool, 3> axes{(mask & 1) != 0, (mask & 2) != 0, (mask & 4) != 0};
      BasicSample<std::uint8_t> cpu{image, label8};
      BasicSample<std::uint8_t, Cuda> gpu{image.to<Cuda>(), label8.to<Cuda>()};
      flip(cpu, axes);
      flip(gpu, axes);
      check_equal(cpu.image, gpu.image);
      check_equal(cpu.label, gpu.label);
    }
  }
  SECTION("resize_nearest_exact exactly, resize_trilinear to the CPU's rounding") {
    for (const Index3 size : {Index3{3, 4, 5}, Index3{5, 6, 7}, Index3{9, 3, 13}, Index3{1, 1, 1}, Index3{2, 12, 4}}) {
      INFO("size " << index3_text(size));
      check_equal(resize_nearest_exact(image, size), resize_nearest_exact(image.to<Cuda>(), size));
      check_close(resize_trilinear(image, size), resize_trilinear(image.to<Cuda>(), size));
      // A channel of a larger tensor (a slice, as SimulateLowResolution passes it).
      const auto gpu = image.to<Cuda>();
      check_close(resize_trilinear(image.slice(0, 1, 2).contiguous(), size),
                  resize_trilinear(gpu.slice(0, 1, 2), size));
    }
  }
}

TEST_CASE("cuda augment: flips, turns, rotations, crops, resizes, low resolution and bias field equal the CPU's") {
  const auto image = random_image({2, 9, 10, 11}, 13);
  const auto label8 = random_label<std::uint8_t>({1, 9, 10, 11}, 14);
  const auto label16 = random_label<std::int16_t>({1, 9, 10, 11}, 15);
  const auto cube = random_image({2, 8, 8, 8}, 16);
  const auto cube_label = random_label<std::uint8_t>({1, 8, 8, 8}, 17);
  auto each_seed = [&](const char* name, const auto& t) {
    for (std::uint64_t seed = 0; seed < 6; ++seed) {
      INFO(name << ", seed " << seed);
      check_transform(t, image, label8, seed);
      check_transform(t, image, label16, seed);
      check_transform(t, image, Tensor<std::uint8_t>{}, seed);  // unlabelled
      check_transform(t, cube, cube_label, seed);
    }
  };
  each_seed("RandomFlip3D", RandomFlip3D{});
  each_seed("RandomFlip3D, two axes", RandomFlip3D{.p = 0.7f, .axes = {true, false, true}});
  each_seed("RandomQuarterTurn3D", RandomQuarterTurn3D{.p = 0.8f});
  each_seed("RandomQuarterTurn3D, any plane", RandomQuarterTurn3D{.p = 0.8f, .square_only = false});
  each_seed("RandomRotation3D", RandomRotation3D{.degrees = 45.0f});
  each_seed("RandomRotation3D, nearest image, per-class label",
            RandomRotation3D{.degrees = 90.0f, .planes = {{0, 2}}, .p = 0.7f,
                             .image_interpolation = ImageInterpolation::nearest,
                             .label_interpolation = LabelInterpolation::per_class_linear});
  each_seed("RandomScale", RandomScale{.p = 0.8f});
  each_seed("RandomScale, anisotropic", RandomScale{.p = 1.0f, .scale = {0.6f, 1.5f}, .anisotropic = true});
  each_seed("RandomCrop", RandomCrop{.size = {5, 12, 7}});
  each_seed("CenterCrop", CenterCrop{.size = {5, 12, 7}});
  each_seed("PadToSize", PadToSize{.size = {12, 6, 14}});
  each_seed("PadToSize, nothing to pad", PadToSize{.size = {4, 4, 4}});
  each_seed("ForegroundCrop", ForegroundCrop{.size = {5, 6, 7}, .foreground_fraction = 0.7f, .margin = {2, 2, 2}});
  each_seed("ForegroundCrop, random only", ForegroundCrop{.size = {12, 6, 7}});
  each_seed("RandomResizedCrop3D", RandomResizedCrop3D{.size = {7, 8, 12}});
  each_seed("RandomResizedCrop3D, torchvision's fallback",
            RandomResizedCrop3D{.size = {6, 6, 6}, .scale = {3.0f, 4.0f}, .ratio = {2.0f, 3.0f}});
  each_seed("SimulateLowResolution", SimulateLowResolution{.p = 1.0f, .zoom = {0.3f, 1.0f}});
  each_seed("SimulateLowResolution, every channel", SimulateLowResolution{.p = 0.8f, .p_per_channel = 1.0f});
  each_seed("RandomBiasField", RandomBiasField{.p = 0.8f});
  each_seed("RandomBiasField, degree 6, signed", RandomBiasField{.degree = 6, .coefficients = {-0.3f, 0.3f}});
}

TEST_CASE("cuda augment: the preset chains run on the GPU and equal the CPU's") {
  static_assert(Transform<decltype(nnunet_3d({8, 8, 8})), std::uint8_t, Cuda> &&
                    Transform<decltype(medicalseg_lung()), std::uint8_t, Cuda> &&
                    Transform<decltype(medicalseg_spine()), std::int16_t, Cuda>,
                "the presets take GPU samples");
  const auto image = random_image({2, 18, 20, 22}, 18);
  const auto label = random_label<std::uint8_t>({1, 18, 20, 22}, 19);
  const auto label16 = random_label<std::int16_t>({1, 18, 20, 22}, 20);
  const auto ct = random_image({1, 18, 20, 22}, 21);  // the lung chain's CT: one channel
  const auto nnunet = nnunet_3d({10, 12, 14});
  const auto lung = medicalseg_lung({12, 12, 12});
  const auto spine = medicalseg_spine();
  for (std::uint64_t seed = 0; seed < 10; ++seed) {
    INFO("seed " << seed);
    {
      INFO("nnunet_3d");
      check_transform(nnunet, image, label, seed);
    }
    {
      INFO("medicalseg_lung");
      check_transform(lung, ct, label, seed);
    }
    {
      INFO("medicalseg_spine");
      check_transform(spine, image, label16, seed);
    }
  }
}
