// MedicalSeg's list layout: .npy images and labels listed relative to the root, geometry
// and label map from dataset.json, and the errors for missing files and bad lines.
#include "fixtures.hpp"

using namespace medseg;
using namespace medseg::data;

namespace {
std::filesystem::path make_medicalseg(const std::string& name) {
  const auto root = test::scratch_dir(name);
  std::filesystem::create_directories(root / "images");
  std::filesystem::create_directories(root / "labels");
  for (int i = 0; i < 3; ++i) {
    const std::string c = "lung_" + std::to_string(i);
    io::write_image(test::volume({4, 5, 6}, static_cast<float>(10 * i), {}), root / "images" / (c + ".npy"));
    io::write_image(test::label({4, 5, 6}, 3, {}), root / "labels" / (c + ".npy"));
  }
  test::write_text(root / "train_list.txt", "images/lung_0.npy labels/lung_0.npy\nimages/lung_1.npy labels/lung_1.npy\n\n");
  test::write_text(root / "val_list.txt", "images/lung_2.npy labels/lung_2.npy\n");
  test::write_text(root / "test_list.txt", "images/lung_2.npy\n");
  test::write_text(root / "dataset.json", R"({
    "labels": {"0": "background", "1": "left lung", "2": "right lung"},
    "training": {"lung_0": {"spacing": [0.7, 0.7, 2.5], "origin": [1, 2, 3], "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1]}}
  })");
  return root;
}
}  // namespace

TEST_CASE("medicalseg: lists load npy cases with dataset.json geometry and labels") {
  const auto root = make_medicalseg("ms_ok");
  const auto train = ListDataset::open(root / "train_list.txt");
  REQUIRE(train.size() == 2);
  CHECK(train.name(1) == "lung_1");
  CHECK(train.labels().size() == 3);
  const Case c = train.load(0);
  CHECK(c.image.voxels.shape() == Shape{1, 4, 5, 6});
  CHECK(c.image.geometry.spacing == io::Vec3{0.7, 0.7, 2.5});
  REQUIRE(c.label);
  CHECK(c.label->geometry.origin == io::Vec3{1, 2, 3});
  CHECK(c.label->voxels.at(0, 0, 2) == 2);
  CHECK(train.load(1).image.geometry == io::Geometry{});  // no entry: default geometry
  const auto test_set = ListDataset::open(root / "test_list.txt");
  CHECK_FALSE(test_set.load(0).label.has_value());
  CHECK(ListDataset::open(root / "val_list.txt").load(0).image.voxels.at(0, 0, 0, 0) == 20.0f);
  std::filesystem::remove_all(root);
}

TEST_CASE("medicalseg: missing files bad lines and bad labels fail naming list and line") {
  const auto root = make_medicalseg("ms_bad");
  test::write_text(root / "a.txt", "images/lung_0.npy labels/lung_0.npy\nimages/lung_9.npy labels/lung_9.npy\n");
  CHECK_THAT(test::error_of([&] { ListDataset::open(root / "a.txt"); }),
             Catch::Contains("a.txt") && Catch::Contains("line 2 image") && Catch::Contains("lung_9.npy is missing"));
  test::write_text(root / "b.txt", "images/lung_0.npy labels/lung_0.npy extra\n");
  CHECK_THAT(test::error_of([&] { ListDataset::open(root / "b.txt"); }), Catch::Contains("line 1"));
  CHECK_THAT(test::error_of([&] { ListDataset::open(root / "nope.txt"); }), Catch::Contains("nope.txt"));
  io::write_image(test::label({4, 5, 7}, 3, {}), root / "labels" / "lung_1.npy");
  CHECK_THAT(test::error_of([&] { ListDataset::open(root / "train_list.txt").load(1); }),
             Catch::Contains("train_list.txt:2") && Catch::Contains("label shape"));
  io::write_image(test::label({4, 5, 6}, 5, {}), root / "labels" / "lung_1.npy");
  CHECK_THAT(test::error_of([&] { ListDataset::open(root / "train_list.txt").load(1); }),
             Catch::Contains("lung_1.npy") && Catch::Contains("declared labels"));
  test::write_text(root / "dataset.json", R"({"training": {"lung_0": {"spacing": [0.7, 0, 2.5]}}})");
  CHECK_THAT(test::error_of([&] { ListDataset::open(root / "train_list.txt"); }),
             Catch::Contains("dataset.json") && Catch::Contains("training.lung_0") && Catch::Contains("spacing of axis j"));
  std::filesystem::remove_all(root);
}
