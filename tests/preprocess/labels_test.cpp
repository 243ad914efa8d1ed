// Label remapping and the ignore label, and connected components against scipy.ndimage.label
// (6- and 26-connectivity), largest component and minimum size.
#include <catch2/catch.hpp>

#include "medseg/preprocess/labels.hpp"
#include "reference.hpp"

using namespace medseg;
using namespace medseg::preprocess;

TEST_CASE("remap_labels merges labels and marks the rest as ignored") {
  auto seg = Tensor<std::uint8_t>::from({0, 1, 2, 3, 2, 0}, {1, 2, 3});
  CHECK(remap_labels(seg, {{2, 1}, {3, 2}}).to_vector() == std::vector<std::uint8_t>{0, 1, 1, 2, 1, 0});
  CHECK(remap_labels(seg, {{0, 0}, {1, 1}}, std::uint8_t{255}).to_vector() ==
        std::vector<std::uint8_t>{0, 1, 255, 255, 255, 0});
  auto mask = Tensor<float>::from({1, 1, 0, 1, 0, 1}, {1, 2, 3});
  CHECK(set_ignore_label(seg, mask, std::uint8_t{255}).to_vector() == std::vector<std::uint8_t>{0, 1, 255, 3, 255, 0});
  CHECK_THROWS_WITH(set_ignore_label(seg, Tensor<float>::zeros({6}), std::uint8_t{255}), Catch::Contains("mask"));
}

TEST_CASE("connected components match scipy.ndimage.label") {
  const Shape shape{9, 13, 11};
  const std::vector<preprocess_test::Case> cases = {
      {"cc6", "cc in=9,13,11 data=blobs density=0.35 dtype=uint8 connectivity=6"},
      {"cc26", "cc in=9,13,11 data=blobs density=0.15 dtype=uint8 connectivity=26"},
  };
  const auto dir = preprocess_test::make_references(cases, "cc");
  for (auto [name, conn] : {std::pair{"cc6", Connectivity::faces}, std::pair{"cc26", Connectivity::full}}) {
    INFO(name);
    auto x = preprocess_test::read_raw<std::uint8_t>(dir / (std::string(name) + ".in"), shape);
    auto ref = preprocess_test::read_raw<std::int32_t>(dir / (std::string(name) + ".ref"), shape);
    const auto comps = connected_components(x, conn);
    CHECK(comps.ids.to_vector() == ref.to_vector());
    CHECK(comps.count() == *std::max_element(ref.data(), ref.data() + ref.numel()));
    CHECK(comps.count() > 20);  // a real test of merging, not one blob
  }
  preprocess_test::remove_references(dir);
}

TEST_CASE("keep_largest_component and remove_small_components") {
  auto seg = Tensor<std::uint8_t>::zeros({4, 6, 6});
  // label 1: a 2x2x2 cube and a single voxel; label 2: a 3-voxel bar touching cube 1.
  for (int d = 0; d < 2; ++d)
    for (int h = 0; h < 2; ++h)
      for (int w = 0; w < 2; ++w) seg.at(d, h, w) = 1;
  seg.at(3, 5, 5) = 1;
  for (int w = 2; w < 5; ++w) seg.at(0, 0, w) = 2;
  seg.at(3, 0, 5) = 2;
  auto largest = keep_largest_component(seg, Connectivity::faces);
  CHECK(largest.at(3, 5, 5) == 0);
  CHECK(largest.at(3, 0, 5) == 0);
  CHECK(largest.at(0, 0, 0) == 1);
  CHECK(largest.at(0, 0, 4) == 2);
  // As one foreground, the cube and the bar are one component of 11 voxels.
  auto fg = keep_largest_component(seg, Connectivity::faces, ComponentsOf::foreground);
  CHECK(fg.at(0, 0, 4) == 2);
  CHECK(fg.at(3, 5, 5) == 0);
  auto pruned = remove_small_components(seg, 3, Connectivity::faces);
  CHECK(pruned.to_vector() == largest.to_vector());
  // Corners connect only with 26-connectivity.
  auto diag = Tensor<std::uint8_t>::zeros({2, 2, 2});
  diag.at(0, 0, 0) = 1;
  diag.at(1, 1, 1) = 1;
  CHECK(connected_components(diag, Connectivity::faces).count() == 2);
  CHECK(connected_components(diag, Connectivity::full).count() == 1);
  CHECK_THROWS_WITH(connected_components(Tensor<std::uint8_t>::zeros({2, 2})), Catch::Contains("[D,H,W]"));
}
