// Cases: label maps in both dataset.json spellings, channel stacking, and the checks on
// labels (values outside the map, shape and geometry different from the image).
#include "fixtures.hpp"

using namespace medseg;
using namespace medseg::data;

TEST_CASE("case: label maps read in MSD and nnU-Net v2 spellings") {
  const auto msd = parse_label_map(nlohmann::json::parse(R"({"0": "background", "1": "edema", "2": "tumour"})"), "d.json");
  CHECK(msd == LabelMap{{0, "background"}, {1, "edema"}, {2, "tumour"}});
  const auto nn = parse_label_map(nlohmann::json::parse(R"({"background": 0, "liver": 1, "whole": [1, 3]})"), "d.json");
  CHECK(nn.size() == 3);
  CHECK(nn.at(0) == "background");
  CHECK(nn.at(3) == "whole");
  CHECK_THROWS_WITH(parse_label_map(nlohmann::json::parse(R"({"liver": 300})"), "d.json"),
                    Catch::Contains("d.json") && Catch::Contains("labels.liver") && Catch::Contains("300"));
  CHECK_THROWS_WITH(parse_label_map(nlohmann::json::parse(R"({"one": "liver"})"), "d.json"), Catch::Contains("labels.one"));
}

TEST_CASE("case: channel files stack into C D H W and must share a grid") {
  const auto dir = test::scratch_dir("case_channels");
  io::write_image(test::volume({3, 4, 5}, 0), dir / "a.nii.gz");
  io::write_image(test::volume({2, 3, 4, 5}, 100), dir / "b.nii.gz");
  const auto im = load_channels({dir / "a.nii.gz", dir / "b.nii.gz"});
  CHECK(im.voxels.shape() == Shape{3, 3, 4, 5});
  CHECK(im.voxels.at(0, 0, 0, 1) == 1.0f);
  CHECK(im.voxels.at(1, 0, 0, 1) == 101.0f);
  io::write_image(test::volume({3, 4, 6}, 0), dir / "wide.nii.gz");
  CHECK_THAT(test::error_of([&] { load_channels({dir / "a.nii.gz", dir / "wide.nii.gz"}); }),
             Catch::Contains("wide.nii.gz") && Catch::Contains("shape"));
  auto moved = test::ct_geometry();
  moved.origin[2] += 5;
  io::write_image(test::volume({3, 4, 5}, 0, moved), dir / "moved.nii.gz");
  CHECK_THAT(test::error_of([&] { load_channels({dir / "a.nii.gz", dir / "moved.nii.gz"}); }),
             Catch::Contains("moved.nii.gz") && Catch::Contains("origin z"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("case: label values outside the map and mismatched grids fail naming the file") {
  const auto dir = test::scratch_dir("case_labels");
  io::write_image(test::label({3, 4, 5}, 4), dir / "l.nii.gz");
  CHECK(load_label(dir / "l.nii.gz", {{0, "bg"}, {1, "a"}, {2, "b"}, {3, "c"}}).voxels.at(0, 0, 3) == 3);
  CHECK_THAT(test::error_of([&] { load_label(dir / "l.nii.gz", {{0, "bg"}, {1, "a"}, {2, "b"}}); }),
             Catch::Contains("l.nii.gz") && Catch::Contains("label value at voxel 3") && Catch::Contains("{0, 1, 2}") &&
                 Catch::Contains("got 3"));
  io::write_image(test::volume({3, 4, 5}, 0.5f), dir / "f.nii.gz");
  CHECK_THAT(test::error_of([&] { load_label(dir / "f.nii.gz", {}); }), Catch::Contains("0.5"));
  const auto image = test::volume({1, 3, 4, 5}, 0);
  CHECK_NOTHROW(check_same_grid(image, test::label({3, 4, 5}, 2), "case x"));
  CHECK_THAT(test::error_of([&] { check_same_grid(image, test::label({3, 4, 6}, 2), "case x"); }),
             Catch::Contains("case x") && Catch::Contains("label shape") && Catch::Contains("[3,4,5]"));
  auto g = test::ct_geometry();
  g.spacing[0] = 0.8;
  CHECK_THAT(test::error_of([&] { check_same_grid(image, test::label({3, 4, 5}, 2, g), "case x"); }),
             Catch::Contains("spacing of axis i") && Catch::Contains("0.75"));
  std::filesystem::remove_all(dir);
}
