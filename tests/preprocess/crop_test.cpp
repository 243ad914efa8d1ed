// Nonzero bounding box, crop and restore round trips (exact), padding against numpy.pad, and
// the image versions keeping every voxel's world position.
#include <catch2/catch.hpp>

#include "medseg/preprocess/crop.hpp"
#include "reference.hpp"

using namespace medseg;
using namespace medseg::preprocess;

TEST_CASE("nonzero_box finds the tight box over all channels") {
  auto x = Tensor<float>::zeros({2, 6, 7, 8});
  x.at(0, 1, 2, 3) = 1;
  x.at(1, 4, 5, 1) = -2;
  x.at(0, 2, 6, 6) = 3;
  const Box b = nonzero_box(x);
  CHECK(b == Box{{1, 2, 1}, {5, 7, 7}});
  CHECK(nonzero_box(Tensor<float>::zeros({3, 4, 5})) == Box{{0, 0, 0}, {3, 4, 5}});
  auto y = Tensor<std::int16_t>::full({3, 4, 5}, -1024);
  y.at(2, 0, 4) = 0;
  CHECK(nonzero_box(y, std::int16_t(-1024)) == Box{{2, 0, 4}, {3, 1, 5}});
}

TEST_CASE("crop then restore gives back the image exactly") {
  auto x = Tensor<std::int32_t>::zeros({2, 9, 10, 11});
  for (std::int64_t c = 0; c < 2; ++c)
    for (std::int64_t d = 2; d < 7; ++d)
      for (std::int64_t h = 1; h < 9; ++h)
        for (std::int64_t w = 3; w < 10; ++w) x.at(c, d, h, w) = static_cast<std::int32_t>(c * 10000 + d * 1000 + h * 10 + w);
  const Box b = nonzero_box(x);
  CHECK(b == Box{{2, 1, 3}, {7, 9, 10}});
  const auto small = crop(x, b);
  CHECK(small.shape() == Shape{2, 5, 8, 7});
  CHECK(small.at(1, 0, 0, 0) == 12013);
  CHECK(restore(small, b, {9, 10, 11}).to_vector() == x.to_vector());
}

TEST_CASE("pad matches numpy.pad in every mode") {
  const Shape shape{4, 5, 6};
  const std::vector<preprocess_test::Case> cases = {
      {"pad_constant", "pad in=4,5,6 before=1,0,3 after=2,4,0 mode=constant value=7"},
      {"pad_edge", "pad in=4,5,6 before=2,3,1 after=1,2,5 mode=edge"},
      {"pad_reflect", "pad in=4,5,6 before=3,2,4 after=2,4,5 mode=reflect"},
  };
  const auto dir = preprocess_test::make_references(cases, "pad");
  auto x = preprocess_test::read_raw<float>(dir / "pad_constant.in", shape);
  CHECK(pad(x, {{1, 0, 3}, {2, 4, 0}}, PadMode::constant, 7.0f).to_vector() ==
        preprocess_test::read_raw<float>(dir / "pad_constant.ref", {7, 9, 9}).to_vector());
  x = preprocess_test::read_raw<float>(dir / "pad_edge.in", shape);
  CHECK(pad(x, {{2, 3, 1}, {1, 2, 5}}, PadMode::edge).to_vector() ==
        preprocess_test::read_raw<float>(dir / "pad_edge.ref", {7, 10, 12}).to_vector());
  x = preprocess_test::read_raw<float>(dir / "pad_reflect.in", shape);
  CHECK(pad(x, {{3, 2, 4}, {2, 4, 5}}, PadMode::reflect).to_vector() ==
        preprocess_test::read_raw<float>(dir / "pad_reflect.ref", {9, 11, 15}).to_vector());
  preprocess_test::remove_references(dir);
}

TEST_CASE("padding_to centres as nnU-Net does and pad then crop is the identity") {
  const Padding p = padding_to({5, 8, 3}, {8, 8, 6});
  CHECK(p.before == Extent3{1, 0, 1});
  CHECK(p.after == Extent3{2, 0, 2});
  auto x = Tensor<float>::empty({5, 8, 3});
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] = static_cast<float>(i);
  const auto padded = pad(x, p, PadMode::edge);
  CHECK(padded.shape() == Shape{8, 8, 6});
  CHECK(crop(padded, Box{p.before, {6, 8, 4}}).to_vector() == x.to_vector());
}

TEST_CASE("image crop and pad keep world positions") {
  io::Image<float> image{Tensor<float>::zeros({6, 7, 8}), {}};
  image.geometry.spacing = {0.5, 0.75, 2.0};
  image.geometry.origin = {10, -5, 3};
  image.geometry.direction = {0, 0, 1, 1, 0, 0, 0, 1, 0};
  const Box b{{1, 2, 3}, {5, 6, 7}};
  const auto c = crop(image, b);
  const auto w_full = image.geometry.index_to_world({4, 3, 2});
  const auto w_crop = c.geometry.index_to_world({1, 1, 1});
  for (std::size_t i = 0; i < 3; ++i) CHECK(w_crop[i] == Approx(w_full[i]));
  const auto p = pad(image, {{1, 2, 3}, {0, 0, 0}});
  const auto w_pad = p.geometry.index_to_world({3, 2, 1});
  const auto w_orig = image.geometry.index_to_world({0, 0, 0});
  for (std::size_t i = 0; i < 3; ++i) CHECK(w_pad[i] == Approx(w_orig[i]));
}

TEST_CASE("crop restore and pad reject bad boxes") {
  auto x = Tensor<float>::zeros({4, 5, 6});
  CHECK_THROWS_WITH(crop(x, Box{{0, 0, 0}, {5, 5, 6}}), Catch::Contains("box") && Catch::Contains("[0:5,0:5,0:6]"));
  CHECK_THROWS_WITH(crop(x, Box{{2, 0, 0}, {2, 5, 6}}), Catch::Contains("non-empty"));
  CHECK_THROWS_WITH(restore(x, Box{{0, 0, 0}, {4, 5, 6}}, {3, 5, 6}), Catch::Contains("restore"));
  CHECK_THROWS_WITH(pad(x, {{-1, 0, 0}, {0, 0, 0}}), Catch::Contains("padding of axis D"));
}
