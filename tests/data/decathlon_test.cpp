// The Medical Segmentation Decathlon layout: 4-D multi-modal images, the label map, the
// test split, and errors for numTraining, missing files and modality counts.
#include "fixtures.hpp"

using namespace medseg;
using namespace medseg::data;

namespace {
std::filesystem::path make_msd(const std::string& name, int modalities_in_json = 2) {
  const auto root = test::scratch_dir(name);
  for (int i = 0; i < 2; ++i) {
    const std::string c = "BRATS_00" + std::to_string(i) + ".nii.gz";
    test::save(test::volume({2, 3, 4, 5}, static_cast<float>(i)), root / "imagesTr" / c);
    test::save(test::label({3, 4, 5}, 3), root / "labelsTr" / c);
  }
  test::save(test::volume({2, 3, 4, 5}, 7), root / "imagesTs" / "BRATS_100.nii.gz");
  std::string modality = modalities_in_json == 2 ? R"({"0": "FLAIR", "1": "T1w"})" : R"({"0": "FLAIR"})";
  test::write_text(root / "dataset.json", R"({"name": "BrainTumour", "modality": )" + modality + R"(,
    "labels": {"0": "background", "1": "edema", "2": "tumour"}, "numTraining": 2, "numTest": 1,
    "training": [{"image": "./imagesTr/BRATS_000.nii.gz", "label": "./labelsTr/BRATS_000.nii.gz"},
                 {"image": "./imagesTr/BRATS_001.nii.gz", "label": "./labelsTr/BRATS_001.nii.gz"}],
    "test": ["./imagesTs/BRATS_100.nii.gz"]})");
  return root;
}
}  // namespace

TEST_CASE("decathlon: training and test splits load multi-modal cases") {
  const auto root = make_msd("msd_ok");
  const auto train = DecathlonDataset::open(root);
  REQUIRE(train.size() == 2);
  CHECK(train.name(0) == "BRATS_000");
  CHECK(train.modalities() == std::vector<std::string>{"FLAIR", "T1w"});
  const Case c = train.load(1);
  CHECK(c.image.voxels.shape() == Shape{2, 3, 4, 5});
  CHECK(c.image.voxels.at(1, 0, 0, 0) == 61.0f);  // channel 1 starts at voxel 60: (1 + 60 % 101)
  REQUIRE(c.label);
  CHECK(c.label->voxels.shape() == Shape{3, 4, 5});
  const auto test_split = DecathlonDataset::open(root, Split::test);
  REQUIRE(test_split.size() == 1);
  CHECK_FALSE(test_split.load(0).label);
  std::filesystem::remove_all(root);
}

TEST_CASE("decathlon: numTraining missing files and modality counts fail naming dataset.json") {
  auto root = make_msd("msd_bad", 1);
  CHECK_THAT(test::error_of([&] { DecathlonDataset::open(root).load(0); }),
             Catch::Contains("BRATS_000.nii.gz") && Catch::Contains("channels") && Catch::Contains("dataset.json"));
  std::filesystem::remove(root / "labelsTr" / "BRATS_001.nii.gz");
  CHECK_THAT(test::error_of([&] { DecathlonDataset::open(root); }),
             Catch::Contains("dataset.json") && Catch::Contains("training[1].label") && Catch::Contains("missing"));
  std::filesystem::remove_all(root);
  root = make_msd("msd_num");
  auto text = std::string(std::istreambuf_iterator<char>(std::ifstream(root / "dataset.json").rdbuf()), {});
  text.replace(text.find("\"numTraining\": 2"), 16, "\"numTraining\": 5");
  test::write_text(root / "dataset.json", text);
  CHECK_THAT(test::error_of([&] { DecathlonDataset::open(root); }), Catch::Contains("numTraining") && Catch::Contains("5"));
  CHECK_THAT(test::error_of([&] { DecathlonDataset::open(root / "none"); }), Catch::Contains("dataset.json"));
  std::filesystem::remove_all(root);
}
