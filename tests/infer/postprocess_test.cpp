// Largest-component post-processing per chosen class and for the foreground as a whole, on
// preprocess/labels.hpp's component labelling.
#include <catch2/catch.hpp>

#include <cstdint>

#include "medseg/infer/postprocess.hpp"

using namespace medseg;
using namespace medseg::infer;

TEST_CASE("postprocess keeps the largest component of the chosen classes") {
  auto seg = Tensor<std::uint8_t>::zeros({4, 6, 6});
  // Class 1: a 2x2x2 cube and a stray voxel; class 2: a 3-voxel bar and a stray voxel.
  for (int d = 0; d < 2; ++d)
    for (int h = 0; h < 2; ++h)
      for (int w = 0; w < 2; ++w) seg.at(d, h, w) = 1;
  seg.at(3, 5, 5) = 1;
  for (int w = 3; w < 6; ++w) seg.at(3, 0, w) = 2;
  seg.at(0, 5, 0) = 2;

  const auto only1 = postprocess(seg, {.largest_component_classes = {1}});
  CHECK(only1.at(3, 5, 5) == 0);  // stray class-1 voxel removed
  CHECK(only1.at(0, 0, 0) == 1);
  CHECK(only1.at(0, 5, 0) == 2);  // class 2 untouched
  const auto both = postprocess(seg, {.largest_component_classes = {1, 2}});
  CHECK(both.at(0, 5, 0) == 0);
  CHECK(both.at(3, 0, 4) == 2);
  CHECK(seg.at(3, 5, 5) == 1);  // the input is unchanged

  // Foreground as one region: the cube is the largest, so class 2's bar goes too.
  const auto fg = postprocess(seg, {.largest_foreground_component = true});
  CHECK(fg.at(0, 1, 1) == 1);
  CHECK(fg.at(3, 0, 4) == 0);
  CHECK(fg.at(0, 5, 0) == 0);

  // Connectivity: two voxels meeting at a corner are one component only with full connectivity.
  auto corner = Tensor<std::uint8_t>::zeros({4, 4, 4});
  corner.at(0, 0, 0) = 1;
  corner.at(1, 1, 1) = 1;
  corner.at(2, 2, 2) = 1;
  corner.at(3, 0, 0) = 1;  // touches none of the diagonal
  const auto full = postprocess(corner, {.largest_component_classes = {1}, .connectivity = Connectivity::full});
  CHECK(full.at(2, 2, 2) == 1);
  CHECK(full.at(3, 0, 0) == 0);
  const auto faces = postprocess(corner, {.largest_component_classes = {1}, .connectivity = Connectivity::faces});
  CHECK(faces.at(0, 0, 0) == 1);  // four single voxels: the first in raster order wins the tie
  CHECK(faces.at(1, 1, 1) == 0);

  CHECK_THROWS_WITH(postprocess(seg, {.largest_component_classes = {0}}), Catch::Contains("largest_component_classes"));
  CHECK_THROWS_WITH(postprocess(Tensor<std::uint8_t>::zeros({4, 5}), {}), Catch::Contains("[D,H,W]"));
}
