// nnU-Net v2 raw: channel files stacked in order, labels with regions, numTraining, and
// errors for missing channels and labels.
#include "fixtures.hpp"

using namespace medseg;
using namespace medseg::data;

namespace {
std::filesystem::path make_nnunet(const std::string& name) {
  const auto root = test::scratch_dir(name);
  for (const char* c : {"liver_0", "liver_1", "liver_2"}) {
    for (int ch = 0; ch < 2; ++ch)
      test::save(test::volume({3, 4, 5}, static_cast<float>(100 * ch)),
                      root / "imagesTr" / (std::string(c) + "_000" + std::to_string(ch) + ".nii.gz"));
    test::save(test::label({3, 4, 5}, 3), root / "labelsTr" / (std::string(c) + ".nii.gz"));
  }
  test::save(test::volume({3, 4, 5}, 0), root / "imagesTs" / "liver_9_0000.nii.gz");
  test::save(test::volume({3, 4, 5}, 0), root / "imagesTs" / "liver_9_0001.nii.gz");
  test::write_text(root / "dataset.json", R"({"channel_names": {"0": "CT", "1": "CT_delayed"},
    "labels": {"background": 0, "liver": 1, "tumour": 2, "whole": [1, 2]},
    "numTraining": 3, "file_ending": ".nii.gz"})");
  return root;
}
}  // namespace

TEST_CASE("nnunet: channel files stack in channel order with their labels") {
  const auto root = make_nnunet("nn_ok");
  const auto d = NnunetRawDataset::open(root);
  REQUIRE(d.size() == 3);
  CHECK(d.name(2) == "liver_2");
  CHECK(d.channel_names() == std::vector<std::string>{"CT", "CT_delayed"});
  CHECK(d.labels().size() == 3);
  const Case c = d.load(0);
  CHECK(c.image.voxels.shape() == Shape{2, 3, 4, 5});
  CHECK(c.image.voxels.at(1, 0, 0, 0) == 100.0f);
  CHECK(c.label->voxels.at(0, 0, 2) == 2);
  const auto ts = NnunetRawDataset::open(root, Split::test);
  REQUIRE(ts.size() == 1);
  CHECK_FALSE(ts.load(0).label);
  std::filesystem::remove_all(root);
}

TEST_CASE("nnunet: missing channels labels and a wrong numTraining fail naming the file") {
  const auto root = make_nnunet("nn_bad");
  std::filesystem::remove(root / "imagesTr" / "liver_1_0001.nii.gz");
  CHECK_THAT(test::error_of([&] { NnunetRawDataset::open(root); }),
             Catch::Contains("dataset.json") && Catch::Contains("channel 1 of case liver_1") &&
                 Catch::Contains("liver_1_0001.nii.gz"));
  std::filesystem::remove(root / "imagesTr" / "liver_1_0000.nii.gz");
  CHECK_THAT(test::error_of([&] { NnunetRawDataset::open(root); }), Catch::Contains("numTraining") && Catch::Contains("2"));
  std::filesystem::remove(root / "labelsTr" / "liver_2.nii.gz");
  CHECK_THAT(test::error_of([&] { NnunetRawDataset::open(root); }),
             Catch::Contains("label of case liver_2") && Catch::Contains("missing"));
  test::write_text(root / "dataset.json", R"({"labels": {"background": 0}})");
  CHECK_THAT(test::error_of([&] { NnunetRawDataset::open(root); }), Catch::Contains("channel_names"));
  std::filesystem::remove_all(root);
}
