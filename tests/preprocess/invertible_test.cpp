// Inverse preprocessing: crop and pad invert exactly; with resampling, probabilities still
// sum to 1 and labels come back onto the raw grid; the forward pass equals `medseg prepare`'s
// own; labels written as NIfTI carry the input's affine (checked with nibabel).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>

#include "medseg/io/format.hpp"
#include "medseg/preprocess/invertible.hpp"
#include "reference.hpp"

using namespace medseg;
using namespace medseg::preprocess;

namespace {

constexpr std::int64_t D = 20, H = 26, W = 30;

io::Geometry tilted_geometry() {
  io::Geometry g;
  g.spacing = {0.8, 0.9, 2.5};
  const double c = std::cos(0.5), s = std::sin(0.5);
  g.direction = {-c, s, 0, -s, -c, 0, 0, 0, 1};  // rotated about z and stored right-to-left
  g.origin = {31.5, -12.25, 7};
  return g;
}

/// Zero outside a box, a smooth positive body inside, and a label ellipsoid (1) with a core (2).
struct Phantom {
  io::Image<std::int16_t> image;
  io::Image<std::int32_t> label;
};

Phantom phantom(const io::Geometry& g) {
  Phantom p{{Tensor<std::int16_t>::zeros({D, H, W}), g}, {Tensor<std::int32_t>::zeros({D, H, W}), g}};
  for (std::int64_t k = 3; k < 17; ++k)
    for (std::int64_t j = 4; j < 23; ++j)
      for (std::int64_t i = 5; i < 26; ++i) {
        p.image.voxels.at(k, j, i) = static_cast<std::int16_t>(50 + 3 * i + 2 * j + k);
        const double r = std::pow((k - 10) / 5.0, 2) + std::pow((j - 13) / 7.0, 2) + std::pow((i - 15) / 8.0, 2);
        p.label.voxels.at(k, j, i) = r < 0.3 ? 2 : r < 1 ? 1 : 0;
      }
  return p;
}

/// The network-grid label the training pipeline makes for the same recipe.
Tensor<std::uint8_t> network_label(const Phantom& p, const std::vector<Step>& image_steps, const std::vector<Step>& label_steps) {
  CaseData data;
  data.image = io::image_cast<float>(io::AnyImage{p.image});
  data.label = p.label;
  apply_steps(data, image_steps, label_steps, "test");
  return data.label->voxels.astype<std::uint8_t>();
}

Tensor<float> one_hot(const Tensor<std::uint8_t>& labels, std::int64_t classes) {
  auto t = Tensor<float>::zeros({classes, labels.size(0), labels.size(1), labels.size(2)});
  const std::int64_t n = labels.numel();
  for (std::int64_t v = 0; v < n; ++v) t.data()[labels.data()[v] * n + v] = 1;
  return t;
}

Tensor<std::uint8_t> argmax(const Tensor<float>& p) {
  const std::int64_t k = p.size(0), n = p.numel() / k;
  auto t = Tensor<std::uint8_t>::empty({p.size(1), p.size(2), p.size(3)});
  for (std::int64_t v = 0; v < n; ++v) {
    std::int64_t best = 0;
    for (std::int64_t c = 1; c < k; ++c)
      if (p.data()[c * n + v] > p.data()[best * n + v]) best = c;
    t.data()[v] = static_cast<std::uint8_t>(best);
  }
  return t;
}

double dice(const Tensor<std::uint8_t>& a, const Tensor<std::int32_t>& b, int label) {
  double both = 0, sa = 0, sb = 0;
  for (std::int64_t v = 0; v < a.numel(); ++v) {
    const bool x = a.data()[v] == label, y = b.data()[v] == label;
    both += x && y, sa += x, sb += y;
  }
  return 2 * both / (sa + sb);
}

}  // namespace

TEST_CASE("crop and pad invert exactly for labels and probabilities") {
  const Phantom p = phantom(tilted_geometry());
  const auto steps = parse_steps(nlohmann::json::parse(R"([{"op": "zscore", "nonzero": true}, {"op": "crop_nonzero"},
                                                           {"op": "pad", "to": [24, 24, 24]}])"), "test");
  const auto label_steps = parse_steps(nlohmann::json::parse(R"([{"op": "crop_nonzero"}, {"op": "pad", "to": [24, 24, 24]}])"), "test");
  const Forward f = prepare_for_inference(p.image, steps);
  CHECK(f.image.voxels.shape() == Shape{1, 24, 24, 24});
  CHECK(f.record.network_shape == Extent3{24, 24, 24});
  CHECK(f.record.ops.size() == 2);
  // The forward pass is the training pipeline's.
  CaseData prepared;
  prepared.image = io::image_cast<float>(io::AnyImage{p.image});
  apply_steps(prepared, steps, {}, "test");
  CHECK(f.image.voxels.reshape({24, 24, 24}).to_vector() == prepared.image.voxels.to_vector());
  CHECK(f.image.geometry == prepared.image.geometry);

  const auto net = network_label(p, steps, label_steps);
  const io::Image<std::uint8_t> back = invert_labels(net, f.record);
  CHECK(back.voxels.astype<std::int32_t>().to_vector() == p.label.voxels.to_vector());
  CHECK(back.geometry == p.image.geometry);

  const Tensor<float> probs = invert_probabilities(one_hot(net, 3), f.record);
  REQUIRE(probs.shape() == Shape{3, D, H, W});
  CHECK(argmax(probs).astype<std::int32_t>().to_vector() == p.label.voxels.to_vector());
  CHECK(probs.at(0, 0, 0, 0) == 1.0f);  // outside the crop: background, certainly
  CHECK(probs.at(1, 0, 0, 0) == 0.0f);
  CHECK(probs.at(0, D - 1, H - 1, W - 1) == 1.0f);
}

TEST_CASE("with resampling probabilities stay normalised and labels return to the raw grid") {
  const Phantom p = phantom(tilted_geometry());
  const char* recipe = R"([{"op": "normalize", "min": 0, "max": 200}, {"op": "crop_nonzero"},
                           {"op": "resample", "spacing": [1.2, 1.2, 1.2]}, {"op": "pad", "to": [32, 16, 32]}])";
  const auto steps = parse_steps(nlohmann::json::parse(recipe), "test");
  const auto label_steps = parse_steps(nlohmann::json::parse(R"([{"op": "crop_nonzero"}, {"op": "resample", "spacing": [1.2, 1.2, 1.2]},
                                                                 {"op": "pad", "to": [32, 16, 32]}])"), "test");
  const Forward f = prepare_for_inference(p.image, steps);
  REQUIRE(f.record.ops.size() == 3);
  const auto& rs = std::get<ResampleRecord>(f.record.ops[1]);
  CHECK(rs.from == Extent3{14, 19, 21});  // the crop box's extent
  CHECK(rs.to == Extent3{29, 14, 14});    // round(n * spacing / 1.2)
  CHECK(f.image.voxels.shape() == Shape{1, 32, 16, 32});

  const auto net = network_label(p, steps, label_steps);
  const Tensor<float> probs = invert_probabilities(one_hot(net, 3), f.record);
  REQUIRE(probs.shape() == Shape{3, D, H, W});
  const std::int64_t n = D * H * W;
  double worst = 0;
  for (std::int64_t v = 0; v < n; ++v)
    worst = std::max(worst, std::abs(double(probs.data()[v]) + probs.data()[n + v] + probs.data()[2 * n + v] - 1.0));
  CHECK(worst < 1e-5);
  const auto hard = argmax(probs);
  CHECK(dice(hard, p.label.voxels, 1) > 0.85);
  CHECK(dice(hard, p.label.voxels, 2) > 0.7);

  const io::Image<std::uint8_t> back = invert_labels(net, f.record);
  CHECK(back.voxels.shape() == Shape{D, H, W});
  CHECK(back.geometry == p.image.geometry);
  CHECK(dice(back.voxels, p.label.voxels, 1) > 0.85);
  // The fused window + resample path (as prepare runs it) records its resample too.
  const auto fused = parse_steps(nlohmann::json::parse(R"([{"op": "hu_window", "lo": 0, "hi": 200},
                                                          {"op": "resample", "shape": [10, 13, 15]}])"), "test");
  const Forward g = prepare_for_inference(p.image, fused);
  REQUIRE(g.record.ops.size() == 1);
  CHECK(std::get<ResampleRecord>(g.record.ops[0]).from == Extent3{D, H, W});
  CHECK(invert_probabilities(Tensor<float>::full({2, 10, 13, 15}, 0.5f), g.record).shape() == Shape{2, D, H, W});
}

TEST_CASE("inverted labels written as NIfTI carry the input's affine") {
  const Phantom p = phantom(tilted_geometry());
  const auto dir = std::filesystem::current_path() / ("invertible_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  io::write_image(io::AnyImage{p.image}, dir / "case.nii.gz");
  const io::AnyImage raw = io::read_image(dir / "case.nii.gz");
  const auto steps = parse_steps(nlohmann::json::parse(R"([{"op": "zscore"}, {"op": "crop_nonzero"},
                                                           {"op": "resample", "spacing": [1.5, 1.5, 1.5]},
                                                           {"op": "pad", "to": [16, 24, 24]}])"), "test");
  const Forward f = prepare_for_inference(raw, steps);
  const auto net = Tensor<std::uint8_t>::zeros({f.record.network_shape[0], f.record.network_shape[1], f.record.network_shape[2]});
  for (std::int64_t k = 4; k < 10; ++k) net.at(k, 8, 8) = 1;
  const io::Image<std::uint8_t> back = invert_labels(net, f.record);
  io::write_image(io::AnyImage{back}, dir / "prediction.nii.gz");
  const std::string check =
      "/usr/bin/python3 -c \"import sys, nibabel as nib, numpy as np; a = nib.load(sys.argv[1]); b = nib.load(sys.argv[2]); "
      "ok = a.shape == b.shape and np.allclose(a.affine, b.affine, atol=1e-5) and np.asarray(b.dataobj).any(); "
      "sys.exit(0 if ok else 1)\" " +
      (dir / "case.nii.gz").string() + " " + (dir / "prediction.nii.gz").string();
  CHECK(std::system(check.c_str()) == 0);
  std::filesystem::remove_all(dir);
}

TEST_CASE("inverse preprocessing rejects outputs of the wrong grid and label-only steps") {
  const Phantom p = phantom(io::Geometry{});
  const auto steps = parse_steps(nlohmann::json::parse(R"([{"op": "pad", "to": [24, 30, 30]}])"), "test");
  const Forward f = prepare_for_inference(p.image, steps);
  CHECK_THROWS_WITH(invert_probabilities(Tensor<float>::zeros({2, 20, 30, 30}), f.record),
                    Catch::Contains("invert_probabilities") && Catch::Contains("[24,30,30]") &&
                        Catch::Contains("[2,20,30,30]"));
  CHECK_THROWS_WITH(invert_labels(Tensor<std::uint8_t>::zeros({2, 24, 30, 30}), f.record), Catch::Contains("invert_labels"));
  const auto label_only = parse_steps(nlohmann::json::parse(R"([{"op": "remap", "mapping": [[1, 2]]}])"), "test");
  CHECK_THROWS_WITH(prepare_for_inference(p.image, label_only), Catch::Contains("image_ops[0]"));
}
