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

TEST_CASE("nnunet: channel file names split into case and channel") {
  const auto c = parse_channel_file("liver_7_0012.nii.gz", ".nii.gz");
  REQUIRE(c);
  CHECK(c->case_name == "liver_7");
  CHECK(c->channel == 12);
  CHECK_FALSE(parse_channel_file("liver_7.nii.gz", ".nii.gz"));
  CHECK_FALSE(parse_channel_file("liver_7_00a1.nii.gz", ".nii.gz"));
  CHECK_FALSE(parse_channel_file("liver_7_0000.nii", ".nii.gz"));
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

// ----------------------------------------------------------------------------------------
// nnU-Net's automation (medseg/nnunet/): the planner against plans nnU-Net's own planner
// wrote for the same fingerprints, the folds against NumPy's shuffle, the dataset checks.

#include "medseg/nnunet.hpp"

namespace {

/// "" when `a` equals `b` (numbers within a relative 1e-9), else the first differing path.
std::string json_difference(const nlohmann::json& a, const nlohmann::json& b, const std::string& path = "") {
  if (a.is_number() && b.is_number()) {
    const double x = a.get<double>(), y = b.get<double>();
    return std::abs(x - y) <= 1e-9 * std::max(1.0, std::abs(y)) ? "" : path + ": " + a.dump() + " vs " + b.dump();
  }
  if (a.type() != b.type()) return path + ": " + a.dump().substr(0, 80) + " vs " + b.dump().substr(0, 80);
  if (a.is_array()) {
    if (a.size() != b.size()) return path + ": " + std::to_string(a.size()) + " vs " + std::to_string(b.size()) + " entries";
    for (std::size_t i = 0; i < a.size(); ++i)
      if (auto d = json_difference(a[i], b[i], path + "[" + std::to_string(i) + "]"); !d.empty()) return d;
    return "";
  }
  if (a.is_object()) {
    for (const auto& [k, v] : b.items())
      if (!a.contains(k)) return path + "." + k + ": missing";
    for (const auto& [k, v] : a.items()) {
      if (!b.contains(k)) return path + "." + k + ": not in the reference";
      if (auto d = json_difference(v, b[k], path + "." + k); !d.empty()) return d;
    }
    return "";
  }
  return a == b ? "" : path + ": " + a.dump() + " vs " + b.dump();
}

nlohmann::json read_json_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

const std::filesystem::path planner_data = std::filesystem::path(MEDSEG_SOURCE_DIR) / "tests/data/nnunet";

}  // namespace

TEST_CASE("nnunet plan: the same plans as nnU-Net v2's ExperimentPlanner on the same fingerprints") {
  // planner_expected_by_nnunet.json: written by nnU-Net's own plan_experiment
  // (tests/python/nnunet_planner_reference.py) from planner_cases.json.
  const auto cases = read_json_file(planner_data / "planner_cases.json");
  const auto expected = read_json_file(planner_data / "planner_expected_by_nnunet.json");
  std::ifstream in(planner_data / "planner_expected_by_nnunet.json");
  const auto expected_in_order = nnunet::PlansJson::parse(in);
  REQUIRE(cases.size() == 9);
  for (const auto& [name, c] : cases.items()) {
    INFO(name);
    const auto fingerprint = nnunet::Fingerprint::from_json(c["fingerprint"], name);
    const auto dataset = nnunet::DatasetJson::from_json(c["dataset_json"], name);
    nnunet::PlannerSettings settings;
    if (c.contains("gpu_memory_target_gb")) settings.gpu_memory_target_gb = c["gpu_memory_target_gb"].get<double>();
    const nnunet::Plans plans = nnunet::plan_experiment(fingerprint, dataset, "Dataset999_Test", settings);
    const nlohmann::json ours = nlohmann::json::parse(plans.to_json().dump());
    CHECK(json_difference(ours, expected[name]) == "");
    auto altered = expected[name];
    altered["configurations"]["2d"]["batch_size"] = 1;  // the comparison sees one changed number
    CHECK(json_difference(ours, altered) == ".configurations.2d.batch_size: " + ours["configurations"]["2d"]["batch_size"].dump() + " vs 1");
    // The configurations in nnU-Net's order too.
    std::vector<std::string> order;
    for (const auto& [k, v] : expected_in_order[name]["configurations"].items()) order.push_back(k);
    CHECK(plans.configuration_names() == order);
  }
}

TEST_CASE("nnunet plan: the rules behind the plans, on the cases that exercise each") {
  const auto cases = read_json_file(planner_data / "planner_cases.json");
  auto plan = [&](const std::string& name, double gb = 8) {
    nnunet::PlannerSettings s;
    s.gpu_memory_target_gb = gb;
    return nnunet::plan_experiment(nnunet::Fingerprint::from_json(cases[name]["fingerprint"], name),
                                   nnunet::DatasetJson::from_json(cases[name]["dataset_json"], name), "D", s);
  };
  // Anisotropic cine MRI: the coarse axis gets its 10th percentile, kernels 1 along it at first.
  const auto cardiac = plan("cardiac_anisotropic").configuration("3d_fullres");
  CHECK(cardiac.spacing[0] == 5.0);
  CHECK(cardiac.architecture.kernel_sizes[0] == std::vector<std::int64_t>{1, 3, 3});
  CHECK(cardiac.architecture.strides[1] == std::vector<std::int64_t>{1, 2, 2});
  // A large CT: a 3d_lowres and the cascade, which inherits 3d_fullres.
  const auto ct = plan("ct_liver_cascade");
  CHECK(ct.configuration_names() == std::vector<std::string>{"2d", "3d_lowres", "3d_fullres", "3d_cascade_fullres"});
  const auto cascade = ct.configuration("3d_cascade_fullres");
  CHECK(cascade.patch_size == ct.configuration("3d_fullres").patch_size);
  CHECK(cascade.previous_stage == "3d_lowres");
  CHECK(ct.configuration("3d_lowres").next_stage == "3d_cascade_fullres");
  CHECK(ct.configuration("3d_fullres").normalization_schemes == std::vector<std::string>{"CTNormalization"});
  // More memory: a larger patch; features capped at 320 (3-D) and 512 (2-D).
  const auto brain8 = plan("brain_mri_isotropic").configuration("3d_fullres");
  const auto brain24 = plan("brain_mri_isotropic", 24).configuration("3d_fullres");
  CHECK(brain24.patch_size[0] * brain24.patch_size[1] * brain24.patch_size[2] >
        brain8.patch_size[0] * brain8.patch_size[1] * brain8.patch_size[2]);
  CHECK(brain8.architecture.features_per_stage.back() == 320);
  CHECK(brain8.use_mask_for_norm == std::vector<bool>{true});  // cropping kept 62% < 75%: z-score within the mask
  // A 2-D dataset (one slice per case): only the 2d configuration.
  CHECK(plan("two_d_only").configuration_names() == std::vector<std::string>{"2d"});
  // The coarse axis last: transposed to the front.
  CHECK(plan("prostate_coarse_last_axis").transpose_forward == std::vector<int>{2, 0, 1});
  // Few small cases: the batch is capped to 5% of the dataset's voxels, but never below 2.
  CHECK(plan("tiny_few_cases").configuration("3d_fullres").batch_size == 2);
}

TEST_CASE("nnunet plans: nnU-Net-written plans load, round-trip, and give the network") {
  const auto expected = read_json_file(planner_data / "planner_expected_by_nnunet.json");
  const auto dir = test::scratch_dir("nn_plans");
  test::write_text(dir / "nnUNetPlans.json", expected["ct_liver_cascade"].dump(4));
  const auto plans = nnunet::Plans::load(dir / "nnUNetPlans.json");
  CHECK(plans.transpose_forward == std::vector<int>{0, 1, 2});
  const auto fullres = plans.configuration("3d_fullres");
  const auto net = fullres.network(1, 3);
  CHECK(net.features == fullres.architecture.features_per_stage);
  CHECK(net.strides.size() == fullres.architecture.strides.size());
  CHECK(net.kernels.front() == models::Dhw{fullres.architecture.kernel_sizes[0][0], fullres.architecture.kernel_sizes[0][1],
                                   fullres.architecture.kernel_sizes[0][2]});
  CHECK(json_difference(nlohmann::json::parse(plans.to_json().dump()), expected["ct_liver_cascade"]) == "");
  CHECK_THROWS_WITH(plans.configuration("3d"), Catch::Contains("configurations.3d") && Catch::Contains("3d_fullres"));
  CHECK_THAT(test::error_of([&] { fullres.network(1, 3), plans.configuration("2d").network(1, 3); }),
             Catch::Contains("3-D kernels") && Catch::Contains("2-D"));
  auto broken = expected["ct_liver_cascade"];
  broken["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["strides"][2] = {2, 2};
  test::write_text(dir / "broken.json", broken.dump());
  CHECK_THAT(test::error_of([&] { nnunet::Plans::load(dir / "broken.json"); }),
             Catch::Contains("broken.json") && Catch::Contains("architecture.arch_kwargs.strides") && Catch::Contains("[2,2]"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("nnunet folds: NumPy's RandomState shuffle and sklearn's KFold, as nnU-Net splits") {
  // np.random.RandomState(12345).shuffle(np.arange(n)), printed by NumPy 1.24.
  CHECK(nnunet::numpy_shuffled_indices(10, 12345) == std::vector<std::int64_t>{0, 7, 3, 9, 6, 4, 1, 8, 5, 2});
  CHECK(nnunet::numpy_shuffled_indices(7, 12345) == std::vector<std::int64_t>{6, 3, 4, 0, 1, 5, 2});
  CHECK(nnunet::numpy_shuffled_indices(23, 12345) ==
        std::vector<std::int64_t>{10, 19, 8, 17, 3, 12, 16, 0, 15, 7, 18, 11, 14, 6, 20, 13, 22, 21, 9, 4, 1, 5, 2});
  std::vector<std::string> names;
  for (int i = 6; i >= 0; --i) names.push_back("case_" + std::to_string(i));  // sorted before splitting
  const auto folds = nnunet::make_folds(names);
  REQUIRE(folds.size() == 5);
  // 7 cases: folds of 2, 2, 1, 1, 1 from the shuffled order 6, 3 | 4, 0 | 1 | 5 | 2.
  CHECK(folds[0].val == std::vector<std::string>{"case_3", "case_6"});
  CHECK(folds[1].val == std::vector<std::string>{"case_0", "case_4"});
  CHECK(folds[4].val == std::vector<std::string>{"case_2"});
  CHECK(folds[0].train == std::vector<std::string>{"case_0", "case_1", "case_2", "case_4", "case_5"});
  const auto dir = test::scratch_dir("nn_folds");
  nnunet::save_folds(dir / "splits_final.json", folds);
  const auto back = nnunet::load_folds(dir / "splits_final.json", names);
  CHECK(back[3].val == folds[3].val);
  CHECK_THAT(test::error_of([&] { nnunet::load_folds(dir / "splits_final.json", {"case_0"}); }),
             Catch::Contains("splits_final.json") && Catch::Contains("fold 0") && Catch::Contains("case_1"));
  CHECK_THAT(test::error_of([&] { nnunet::make_folds({"a", "b"}); }), Catch::Contains("at least 5"));
  std::filesystem::remove_all(dir);
}

namespace {
/// A valid single-channel nnU-Net raw dataset of `cases` cases, labels {0, 1}.
std::filesystem::path make_small_raw(const std::string& name, int cases) {
  const auto root = test::scratch_dir(name);
  for (int i = 0; i < cases; ++i) {
    const std::string c = "case_" + std::to_string(i);
    auto image = test::volume({6, 8, 10}, 0);
    auto label = test::label({6, 8, 10}, 1);
    for (std::int64_t v = 0; v < image.voxels.numel(); ++v) image.voxels.data()[v] = 0;
    // Nonzero box [1..5) x [2..7) x [1..9); foreground the 2x2x2 block at (2,3,4) with values 10 + i.
    for (std::int64_t z = 1; z < 5; ++z)
      for (std::int64_t y = 2; y < 7; ++y)
        for (std::int64_t x = 1; x < 9; ++x) image.voxels.at(z, y, x) = 1;
    for (std::int64_t z = 2; z < 4; ++z)
      for (std::int64_t y = 3; y < 5; ++y)
        for (std::int64_t x = 4; x < 6; ++x) {
          image.voxels.at(z, y, x) = static_cast<float>(10 + i);
          label.voxels.at(z, y, x) = 1;
        }
    test::save(image, root / "imagesTr" / (c + "_0000.nii.gz"));
    test::save(label, root / "labelsTr" / (c + ".nii.gz"));
  }
  test::write_text(root / "dataset.json", R"({"channel_names": {"0": "MRI"}, "labels": {"background": 0, "organ": 1},
    "numTraining": )" + std::to_string(cases) + R"(, "file_ending": ".nii.gz"})");
  return root;
}
}  // namespace

TEST_CASE("nnunet fingerprint: nnU-Net's crop, array-order spacing and foreground statistics") {
  const auto root = make_small_raw("nn_fp", 5);
  const auto f = nnunet::extract_fingerprint(root);
  REQUIRE(f.spacings.size() == 5);
  CHECK(f.spacings[0] == std::array<double, 3>{2.5, 0.75, 0.75});  // (z, y, x): ct_geometry's (0.75, 0.75, 2.5) reversed
  CHECK(f.shapes_after_crop[0] == std::array<std::int64_t, 3>{4, 5, 8});
  CHECK(f.median_relative_size_after_cropping == Approx(160.0 / 480.0));
  REQUIRE(f.foreground.size() == 1);
  CHECK(f.foreground[0].min == 10);
  CHECK(f.foreground[0].max == 14);
  CHECK(f.foreground[0].mean == Approx(12));
  CHECK(f.foreground[0].median == 12);
  const auto dir = test::scratch_dir("nn_fp_out");
  f.save(dir / "dataset_fingerprint.json");
  const auto back = nnunet::Fingerprint::load(dir / "dataset_fingerprint.json");
  CHECK(back.shapes_after_crop == f.shapes_after_crop);
  CHECK(back.foreground[0].percentile_99_5 == f.foreground[0].percentile_99_5);
  nnunet::verify_dataset(root);  // valid
  std::filesystem::remove_all(root);
  std::filesystem::remove_all(dir);
}

TEST_CASE("nnunet verify: every problem of a raw dataset at once, each naming its case and file") {
  const auto root = make_small_raw("nn_verify", 6);
  std::filesystem::remove(root / "labelsTr" / "case_1.nii.gz");  // a missing label
  auto shifted = test::label({6, 8, 10}, 1);                      // a label off its image's grid
  shifted.geometry.spacing[0] = 0.8;
  test::save(shifted, root / "labelsTr" / "case_2.nii.gz");
  test::save(test::label({6, 8, 10}, 4), root / "labelsTr" / "case_3.nii.gz");  // values 2, 3 undeclared
  test::save(test::label({6, 8, 11}, 1), root / "labelsTr" / "case_4.nii.gz");  // another shape
  const auto problems = nnunet::find_problems(root);
  std::string all;
  for (const auto& p : problems.list()) all += p + "\n";
  INFO(all);
  CHECK(problems.list().size() == 4);
  CHECK_THAT(all, Catch::Contains("label of case case_1") && Catch::Contains("case_1.nii.gz"));
  CHECK_THAT(all, Catch::Contains("case case_2") && Catch::Contains("spacing of axis i"));
  CHECK_THAT(all, Catch::Contains("label values of case case_3") && Catch::Contains("{2, 3}"));
  CHECK_THAT(all, Catch::Contains("case case_4") && Catch::Contains("label shape"));
  CHECK_THAT(test::error_of([&] { nnunet::verify_dataset(root); }), Catch::Contains("4 problems"));

  // A wrong file_ending, and too few cases for 5 folds.
  const auto small = make_small_raw("nn_verify_small", 3);
  test::write_text(small / "dataset.json", R"({"channel_names": {"0": "MRI"}, "labels": {"background": 0, "organ": 1},
    "numTraining": 3, "file_ending": ".nii"})");
  CHECK_THAT(test::error_of([&] { nnunet::verify_dataset(small); }),
             Catch::Contains("file_ending") && Catch::Contains(".nii.gz") && Catch::Contains("\".nii\""));
  test::write_text(small / "dataset.json", R"({"channel_names": {"0": "MRI"}, "labels": {"background": 0, "organ": 2},
    "numTraining": 4, "file_ending": ".nii.gz"})");
  const auto few = nnunet::find_problems(small);
  std::string text;
  for (const auto& p : few.list()) text += p + "\n";
  INFO(text);
  CHECK_THAT(text, Catch::Contains("at least 5 for 5-fold cross-validation") && Catch::Contains("numTraining") &&
                       Catch::Contains("consecutive values"));
  std::filesystem::remove_all(root);
  std::filesystem::remove_all(small);
}
