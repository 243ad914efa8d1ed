// Label-map resampling against nnU-Net's recipe written with SciPy (per-label one-hot linear,
// thresholded at 0.5; order 0 along the coarse axis of anisotropic data), nearest neighbour,
// and the anisotropy rule.
#include <catch2/catch.hpp>

#include "medseg/preprocess/segmentation_resample.hpp"
#include "reference.hpp"

using namespace medseg;
using namespace medseg::preprocess;

TEST_CASE("per-label resampling matches nnU-Net's recipe") {
  const std::vector<preprocess_test::Case> cases = {
      {"seg_down", "seg in=12,15,17 out=7,8,9 order=1 data=labels labels=4 dtype=uint8"},
      {"seg_up", "seg in=6,7,5 out=11,13,9 order=1 data=labels labels=3 dtype=int16"},
      {"seg_separate_d", "seg in=5,16,14 out=9,9,8 order=1 data=labels labels=3 dtype=uint8 separate_axis=0"},
      {"seg_separate_w", "seg in=10,9,4 out=6,7,9 order=1 data=labels labels=5 dtype=uint8 separate_axis=2"},
  };
  const auto dir = preprocess_test::make_references(cases, "seg");
  auto check = [&]<class L>(const char* name, const Shape& in, const Extent3& out, int axis, L) {
    INFO(name);
    auto x = preprocess_test::read_raw<L>(dir / (std::string(name) + ".in"), in);
    auto ref = preprocess_test::read_raw<L>(dir / (std::string(name) + ".ref"), {out[0], out[1], out[2]});
    auto ties = preprocess_test::read_raw<std::uint8_t>(dir / (std::string(name) + ".ties"), {out[0], out[1], out[2]});
    const auto ours = resample_segmentation(x, out, {.order = 1}, axis);
    std::int64_t differ = 0, tied = 0;
    for (std::int64_t i = 0; i < ref.numel(); ++i) {
      tied += ties.data()[i];
      differ += ties.data()[i] == 0 && ours.data()[i] != ref.data()[i];
    }
    CHECK(differ == 0);
    CHECK(tied < ref.numel() / 10);  // the comparison must not be vacuous
  };
  check("seg_down", {12, 15, 17}, {7, 8, 9}, -1, std::uint8_t{});
  check("seg_up", {6, 7, 5}, {11, 13, 9}, -1, std::int16_t{});
  check("seg_separate_d", {5, 16, 14}, {9, 9, 8}, 0, std::uint8_t{});
  check("seg_separate_w", {10, 9, 4}, {6, 7, 9}, 2, std::uint8_t{});
  preprocess_test::remove_references(dir);
}

TEST_CASE("nearest label resampling keeps the label set and type") {
  auto x = Tensor<std::uint8_t>::zeros({8, 8, 8});
  for (std::int64_t d = 2; d < 6; ++d)
    for (std::int64_t h = 2; h < 6; ++h)
      for (std::int64_t w = 0; w < 8; ++w) x.at(d, h, w) = w < 4 ? 1 : 2;
  const auto y = resample_segmentation(x, {16, 16, 16}, {.order = 0});
  CHECK(unique_labels(y) == std::vector<std::uint8_t>{0, 1, 2});
  CHECK(y.at(7, 7, 0) == 1);
  CHECK(y.at(7, 7, 15) == 2);
}

TEST_CASE("anisotropy picks the coarse axis as nnU-Net does") {
  CHECK(separate_axis({0.8, 0.8, 5.0}) == 0);   // z coarse: tensor axis D
  CHECK(separate_axis({4.0, 1.0, 1.0}) == 2);   // x coarse: W
  CHECK(separate_axis({1.0, 1.0, 2.9}) == -1);  // ratio under 3
  CHECK(separate_axis({4.0, 4.0, 1.0}) == -1);  // two coarse axes: no separate axis
  io::Image<std::uint8_t> image{Tensor<std::uint8_t>::zeros({10, 32, 32}), {}};
  image.geometry.spacing = {0.7, 0.7, 5.0};
  const auto r = resample_segmentation(image, {20, 16, 16});
  CHECK(r.voxels.shape() == Shape{20, 16, 16});
  CHECK(r.geometry.spacing[2] == Approx(2.5));
}

TEST_CASE("unique_labels sorts and handles negative labels") {
  auto x = Tensor<std::int16_t>::from({3, 3, -1, 0, 7, 3, 0, -1}, {2, 2, 2});
  CHECK(unique_labels(x) == std::vector<std::int16_t>{-1, 0, 3, 7});
  const auto y = resample_segmentation(x, {2, 2, 2});  // identity shape keeps every label
  CHECK(y.to_vector() == x.to_vector());
  CHECK_THROWS_WITH(resample_segmentation(x, {2, 2, 2}, {.order = 2}), Catch::Contains("order"));
}
