// `medseg prepare` end to end on small synthetic datasets written in NIfTI, MetaImage and
// DICOM (a series written by pydicom), plus one broken case: outputs in MedicalSeg's layout,
// per-case geometry, seeded splits, a rerun that skips finished cases, the config errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <mutex>
#include <sstream>

#include <unistd.h>

#include "medseg/io/format.hpp"
#include "medseg/preprocess/prepare.hpp"

using namespace medseg;
using namespace medseg::preprocess;
namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& tag) {
  const fs::path d = fs::current_path() / ("prepare_" + tag + "_" + std::to_string(getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

/// A small CT-like case: a box of tissue in air with a labelled blob, anisotropic spacing.
void write_case(const fs::path& images, const fs::path& labels, const std::string& name, const std::string& ext,
                std::int64_t depth) {
  io::Image<std::int16_t> ct{Tensor<std::int16_t>::full({depth, 24, 20}, -1024), {}};
  io::Image<std::uint8_t> seg{Tensor<std::uint8_t>::zeros({depth, 24, 20}), {}};
  ct.geometry.spacing = {0.8, 0.8, 2.5};
  ct.geometry.origin = {-10, 5, 30};
  seg.geometry = ct.geometry;
  for (std::int64_t d = 1; d < depth - 1; ++d)
    for (std::int64_t h = 3; h < 21; ++h)
      for (std::int64_t w = 2; w < 18; ++w) {
        ct.voxels.at(d, h, w) = static_cast<std::int16_t>(40 + (d * 7 + h * 3 + w) % 50);
        if (h > 8 && h < 15 && w > 6 && w < 13) {
          ct.voxels.at(d, h, w) = -700;
          seg.voxels.at(d, h, w) = w < 10 ? 1 : 2;
        }
      }
  io::write_image(ct, images / (name + ext));
  io::write_image(seg, labels / (name + ext));
}

nlohmann::json read_json(const fs::path& p) {
  std::ifstream f(p);
  return nlohmann::json::parse(f);
}

std::vector<std::string> read_lines(const fs::path& p) {
  std::ifstream f(p);
  std::vector<std::string> lines;
  for (std::string l; std::getline(f, l);) lines.push_back(l);
  return lines;
}

}  // namespace

TEST_CASE("prepare runs end to end on NIfTI and MetaImage cases and resumes") {
  const fs::path root = fresh_dir("folders");
  fs::create_directories(root / "raw/images");
  fs::create_directories(root / "raw/labels");
  write_case(root / "raw/images", root / "raw/labels", "lung_001", ".nii.gz", 10);
  write_case(root / "raw/images", root / "raw/labels", "lung_002", ".nii.gz", 12);
  write_case(root / "raw/images", root / "raw/labels", "lung_003", ".mha", 9);
  write_case(root / "raw/images", root / "raw/labels", "lung_004", ".mhd", 11);
  std::ofstream(root / "raw/images/lung_005.nii.gz") << "not an image";  // a broken case

  const auto config_json = nlohmann::json::parse(R"({
    "input": {"layout": "folders", "images": "raw/images", "labels": "raw/labels"},
    "output": "prepared",
    "image_ops": [{"op": "hu_window", "lo": -1250, "hi": 250},
                  {"op": "resample", "shape": [8, 16, 16], "order": 1}],
    "label_ops": [{"op": "resample", "order": 0}],
    "split": {"val": 0.25, "test": 0.25, "seed": 3},
    "labels": {"0": "background", "1": "left lung", "2": "right lung"}
  })");
  std::ofstream(root / "prep.json") << config_json.dump();
  const PrepareConfig config = load_prepare_config(root / "prep.json");
  std::ostringstream progress;
  const PrepareReport first = prepare_dataset(config, &progress);
  CHECK(progress.str().find("5/5 cases") != std::string::npos);
  CHECK(first.count(CaseReport::Status::prepared) == 4);
  REQUIRE(first.count(CaseReport::Status::failed) == 1);
  CHECK(first.cases.back().name == "lung_005");
  CHECK(first.cases.back().error.find("lung_005") != std::string::npos);

  const fs::path out = root / "prepared";
  // The image is float32 [8,16,16], the window then zoom of the raw volume.
  const auto image = io::read_image_as<float>(out / "images/lung_003.npy");
  CHECK(image.voxels.shape() == Shape{8, 16, 16});
  const auto raw = io::read_image_as<std::int16_t>(root / "raw/images/lung_003.mha");
  const auto expected = resize(hu_window(raw.voxels, {.lo = -1250, .hi = 250}), {8, 16, 16}, {.order = 1});
  CHECK(image.voxels.to_vector() == expected.to_vector());
  const auto label = io::read_image(out / "labels/lung_003.npy");
  CHECK(io::dtype(label) == DType::uint8);
  CHECK(io::shape(label) == Shape{8, 16, 16});

  // Lists: the MedicalSeg format, every good case in exactly one list.
  std::vector<std::string> listed;
  for (const char* l : {"train_list.txt", "val_list.txt", "test_list.txt"})
    for (const auto& line : read_lines(out / l)) listed.push_back(line);
  std::sort(listed.begin(), listed.end());
  REQUIRE(listed.size() == 4);
  CHECK(listed[0] == "images/lung_001.npy labels/lung_001.npy");

  // dataset.json: per-case geometry (original and prepared) and the resample.
  const auto dataset = read_json(out / "dataset.json");
  CHECK(dataset.at("resample").at("shape") == nlohmann::json::array({8, 16, 16}));
  const auto& c1 = dataset.at("cases").at("lung_001");
  CHECK(c1.at("original").at("shape") == nlohmann::json::array({10, 24, 20}));
  CHECK(c1.at("original").at("spacing")[2].get<double>() == Approx(2.5));
  CHECK(c1.at("prepared").at("spacing")[2].get<double>() == Approx(2.5 * 9 / 7));  // corners: (n-1)/(m-1)
  CHECK(dataset.at("labels").at("1") == "left lung");
  CHECK(!dataset.at("cases").contains("lung_005"));

  // A rerun skips the finished cases and retries only the broken one.
  const auto before = fs::last_write_time(out / "images/lung_001.npy");
  const PrepareReport second = prepare_dataset(config, nullptr);
  CHECK(second.count(CaseReport::Status::skipped) == 4);
  CHECK(second.count(CaseReport::Status::failed) == 1);
  CHECK(fs::last_write_time(out / "images/lung_001.npy") == before);
  CHECK(read_json(out / "dataset.json") == dataset);
  std::ostringstream summary;
  print_summary(second, summary);
  CHECK(summary.str().find("4 skipped") != std::string::npos);
  CHECK(summary.str().find("lung_005: ") != std::string::npos);
  // No partial files are left behind.
  for (const auto& e : fs::recursive_directory_iterator(out)) CHECK(e.path().filename().string().rfind(".partial", 0) != 0);
  fs::remove_all(root);
}

TEST_CASE("prepare reads nnU-Net and MSD layouts and follows the image's spacing") {
  const fs::path root = fresh_dir("layouts");
  fs::create_directories(root / "Dataset001/imagesTr");
  fs::create_directories(root / "Dataset001/labelsTr");
  for (const char* n : {"case_a", "case_b"}) {
    write_case(root / "Dataset001/imagesTr", root / "Dataset001/labelsTr", n, ".nii.gz", 8);
    fs::rename(root / "Dataset001/imagesTr" / (std::string(n) + ".nii.gz"),
               root / "Dataset001/imagesTr" / (std::string(n) + "_0000.nii.gz"));
  }
  auto cases = discover_cases({.layout = DatasetInput::Layout::nnunet, .root = root / "Dataset001"});
  REQUIRE(cases.size() == 2);
  CHECK(cases[0].name == "case_a");
  CHECK(cases[0].label.has_value());

  // MSD: dataset.json's training list.
  fs::create_directories(root / "Task09/imagesTr");
  fs::create_directories(root / "Task09/labelsTr");
  write_case(root / "Task09/imagesTr", root / "Task09/labelsTr", "spleen_2", ".nii.gz", 8);
  std::ofstream(root / "Task09/dataset.json")
      << R"({"training": [{"image": "./imagesTr/spleen_2.nii.gz", "label": "./labelsTr/spleen_2.nii.gz"}]})";
  const auto config = parse_prepare_config(nlohmann::json::parse(R"({
    "input": {"layout": "msd", "root": "Task09"}, "output": "out",
    "image_ops": [{"op": "crop_nonzero"}, {"op": "resample", "spacing": [1.6, 1.6, 2.5], "order": 3},
                  {"op": "zscore", "nonzero": true}],
    "label_ops": [{"op": "crop_nonzero"}, {"op": "resample", "order": 1}, {"op": "keep_largest"}]
  })"),
                                            root, "test");
  const auto report = prepare_dataset(config);
  INFO((report.cases.empty() ? std::string() : report.cases[0].error));
  REQUIRE(report.count(CaseReport::Status::prepared) == 1);
  const auto image = io::read_image_as<float>(root / "out/images/spleen_2.npy");
  const auto label = io::read_image_as<std::uint8_t>(root / "out/labels/spleen_2.npy");
  CHECK(image.voxels.shape() == label.voxels.shape());
  // The crop (a -1024 background is nonzero, so the whole grid) and a 2x coarser in-plane grid.
  CHECK(image.voxels.shape() == Shape{8, 12, 10});
  CHECK(unique_labels(label.voxels) == std::vector<std::uint8_t>{0, 1, 2});
  fs::remove_all(root);
}

TEST_CASE("ct_normalize without statistics uses the dataset fingerprint") {
  const fs::path root = fresh_dir("fingerprint");
  fs::create_directories(root / "raw/images");
  fs::create_directories(root / "raw/labels");
  write_case(root / "raw/images", root / "raw/labels", "a", ".nii.gz", 8);
  write_case(root / "raw/images", root / "raw/labels", "b", ".mha", 10);
  const auto config = parse_prepare_config(nlohmann::json::parse(R"({
    "input": {"images": "raw/images", "labels": "raw/labels"}, "output": "out",
    "image_ops": [{"op": "ct_normalize"}], "label_ops": []
  })"),
                                            root, "test");
  const auto report = prepare_dataset(config);
  REQUIRE(report.count(CaseReport::Status::prepared) == 2);
  std::ifstream f(root / "out/fingerprint.json");
  const auto fp = nlohmann::json::parse(f).at("foreground_intensity_properties_per_channel").at("0");
  // The labelled voxels are all -700 HU in write_case.
  CHECK(fp.at("mean").get<double>() == Approx(-700));
  const auto image = io::read_image_as<float>(root / "out/images/a.npy");
  // Clipped to [-700, -700] and centred on -700 with std 0 (-> 1e-8): all zeros.
  for (std::int64_t i = 0; i < image.voxels.numel(); ++i) REQUIRE(image.voxels.data()[i] == 0.0f);
  fs::remove_all(root);
}

TEST_CASE("prepare reads a DICOM series case next to NIfTI ones") {
  const fs::path root = fresh_dir("dicom");
  fs::create_directories(root / "raw/images");
  fs::create_directories(root / "raw/labels");
  fs::create_directories(root / "tmp");
  write_case(root / "raw/images", root / "raw/labels", "ct_a", ".nii.gz", 8);
  // ct_b: the same kind of volume as a DICOM series (written by pydicom), its label in NIfTI.
  write_case(root / "tmp", root / "raw/labels", "ct_b", ".nii.gz", 9);
  const auto volume = io::read_image_as<std::int16_t>(root / "tmp/ct_b.nii.gz");
  std::ofstream(root / "tmp/ct_b.raw", std::ios::binary)
      .write(reinterpret_cast<const char*>(volume.voxels.data()), static_cast<std::streamsize>(volume.voxels.nbytes()));
  const std::string cmd = "/usr/bin/python3 " + std::string(MEDSEG_SOURCE_DIR) + "/tests/preprocess/write_dicom_series.py " +
                          (root / "tmp/ct_b.raw").string() + " 9 24 20 0.8 0.8 2.5 " + (root / "raw/images/ct_b").string();
  REQUIRE(std::system(cmd.c_str()) == 0);

  const auto config = parse_prepare_config(nlohmann::json::parse(R"({
    "input": {"images": "raw/images", "labels": "raw/labels"}, "output": "out",
    "image_ops": [{"op": "hu_window", "lo": -1250, "hi": 250}, {"op": "resample", "spacing": [1.6, 1.6, 2.5]}],
    "label_ops": [{"op": "resample", "order": 0}]
  })"),
                                            root, "test");
  const auto report = prepare_dataset(config);
  std::string errors;
  for (const auto& c : report.cases) errors += c.name + ": " + c.error + "; ";
  INFO(errors);
  REQUIRE(report.count(CaseReport::Status::prepared) == 2);
  // The DICOM case reads as the same voxels and spacing as its NIfTI twin.
  const auto image = io::read_image_as<float>(root / "out/images/ct_b.npy");
  const auto expected = resample_to_spacing(hu_window(volume, {.lo = -1250, .hi = 250}), {1.6, 1.6, 2.5});
  CHECK(image.voxels.shape() == Shape{9, 12, 10});
  CHECK(image.voxels.to_vector() == expected.voxels.to_vector());
  std::ifstream f(root / "out/dataset.json");
  const auto dataset = nlohmann::json::parse(f);
  CHECK(dataset.at("cases").at("ct_b").at("original").at("spacing")[2].get<double>() == Approx(2.5));
  fs::remove_all(root);
}

TEST_CASE("prepare config errors name the field") {
  auto parse = [](const char* text) { return parse_prepare_config(nlohmann::json::parse(text), "/tmp", "prep.json"); };
  CHECK_THROWS_WITH(parse(R"({"output": "x"})"), Catch::Contains("prep.json: input"));
  CHECK_THROWS_WITH(parse(R"({"input": {"layout": "zip"}, "output": "x"})"), Catch::Contains("layout"));
  CHECK_THROWS_WITH(parse(R"({"input": {"images": "i"}, "output": "x", "image_ops": [{"op": "blur"}]})"),
                    Catch::Contains("image_ops[0]") && Catch::Contains("\"blur\""));
  CHECK_THROWS_WITH(parse(R"({"input": {"images": "i"}, "output": "x", "image_ops": [{"op": "resample", "order": 2, "shape": [1,1,1]}]})"),
                    Catch::Contains("order"));
  CHECK_THROWS_WITH(parse(R"({"input": {"images": "i"}, "output": "x", "split": {"val": 0.8, "test": 0.5}})"),
                    Catch::Contains("split"));
  CHECK_THROWS_WITH(parse(R"({"input": {"images": "i"}, "output": "x", "image_ops": [{"op": "hu_window", "lo": "a", "hi": 1}]})"),
                    Catch::Contains("lo") && Catch::Contains("\"a\""));
}

TEST_CASE("splits are seeded and cover every case once") {
  std::vector<std::string> names;
  for (int i = 0; i < 20; ++i) names.push_back("case_" + std::to_string(100 + i));
  const Split a = split_cases(names, {.val = 0.2, .test = 0.1, .seed = 7});
  const Split b = split_cases(names, {.val = 0.2, .test = 0.1, .seed = 7});
  const Split c = split_cases(names, {.val = 0.2, .test = 0.1, .seed = 8});
  CHECK(a.train == b.train);
  CHECK(a.val.size() == 4);
  CHECK(a.test.size() == 2);
  CHECK(a.train.size() == 14);
  CHECK(a.val != c.val);
}

TEST_CASE("labels next to their images are matched by suffix or prefix") {
  const fs::path root = fresh_dir("suffix");
  for (const char* d : {"data", "img", "lab"}) fs::create_directories(root / d);
  write_case(root / "img", root / "lab", "Case00", ".mha", 6);
  fs::rename(root / "img/Case00.mha", root / "data/Case00.mha");
  fs::rename(root / "lab/Case00.mha", root / "data/Case00_segmentation.mha");
  const auto cases = discover_cases({.layout = DatasetInput::Layout::folders, .images = root / "data",
                                     .labels = {}, .root = {}, .label_prefix = "", .label_suffix = "_segmentation"});
  REQUIRE(cases.size() == 1);
  CHECK(cases[0].name == "Case00");
  REQUIRE(cases[0].label.has_value());
  CHECK(cases[0].label->filename() == "Case00_segmentation.mha");
  fs::remove_all(root);
}

TEST_CASE("the ready-made prepare configs parse") {
  int n = 0;
  for (const auto& e : fs::directory_iterator(fs::path(MEDSEG_SOURCE_DIR) / "configs/prepare")) {
    INFO(e.path());
    const auto c = load_prepare_config(e.path());
    CHECK(!c.image_steps.empty());
    ++n;
  }
  CHECK(n >= 4);
}

TEST_CASE("prepare_dataset with its own per-case function: called once per case to do, resumes the same") {
  // The seam `medseg prepare --device cuda` plugs into: the function prepares what is not done
  // yet, and its meta drives lists and dataset.json as the CPU's does.
  const fs::path root = fresh_dir("preparer");
  fs::create_directories(root / "raw/images");
  fs::create_directories(root / "raw/labels");
  for (const char* name : {"a_001", "a_002", "a_003"}) write_case(root / "raw/images", root / "raw/labels", name, ".nii", 6);
  const PrepareConfig config = parse_prepare_config(
      nlohmann::json::parse(R"({"input": {"images": "raw/images", "labels": "raw/labels"}, "output": "out",
                                "image_ops": [{"op": "resample", "shape": [4, 8, 8]}],
                                "label_ops": [{"op": "resample", "order": 0}], "split": {"val": 0, "test": 0}})"),
      root, "test");
  std::mutex mutex;
  std::vector<std::string> called;
  const CasePreparer counting = [&](const PrepareConfig& c, const CaseSource& src, CaseReport& report,
                                    const std::optional<CtStats>& ct) {
    {
      std::lock_guard lock(mutex);
      called.push_back(src.name);
    }
    if (src.name == "a_002") throw Error{{.where = "case a_002", .field = "test", .expected = "-", .actual = "a failure"}};
    return preprocess::detail::prepare_case(c, src, report, ct);
  };
  const PrepareReport first = prepare_dataset(config, nullptr, counting);
  std::sort(called.begin(), called.end());
  CHECK(called == std::vector<std::string>{"a_001", "a_002", "a_003"});
  CHECK(first.count(CaseReport::Status::prepared) == 2);
  CHECK(first.count(CaseReport::Status::failed) == 1);
  CHECK(read_lines(root / "out/train_list.txt").size() == 2);
  // The same files as the CPU's own path.
  const PrepareReport plain = prepare_dataset(parse_prepare_config(
      nlohmann::json::parse(R"({"input": {"images": "raw/images", "labels": "raw/labels"}, "output": "plain",
                                "image_ops": [{"op": "resample", "shape": [4, 8, 8]}],
                                "label_ops": [{"op": "resample", "order": 0}], "split": {"val": 0, "test": 0}})"),
      root, "test"));
  CHECK(plain.count(CaseReport::Status::prepared) == 3);
  CHECK(io::read_image_as<float>(root / "out/images/a_003.npy").voxels.to_vector() ==
        io::read_image_as<float>(root / "plain/images/a_003.npy").voxels.to_vector());
  // A rerun asks only for the case that failed.
  called.clear();
  const PrepareReport second = prepare_dataset(config, nullptr, counting);
  CHECK(called == std::vector<std::string>{"a_002"});
  CHECK(second.count(CaseReport::Status::skipped) == 2);
  fs::remove_all(root);
}

TEST_CASE("image ops for nnU-Net's plans: one channel normalised at a time, and the separate-z resampling of images") {
  // [2, 4, 6, 6]: channel 0 a ramp, channel 1 ten times it plus 50.
  CaseData data;
  data.image = {Tensor<float>::empty({2, 4, 6, 6}), {}};
  data.image.geometry.spacing = {1.0, 1.0, 5.0};  // (x, y, z): z five times coarser
  for (std::int64_t i = 0; i < 144; ++i) {
    data.image.voxels.data()[i] = static_cast<float>(i % 144 + 1);
    data.image.voxels.data()[144 + i] = 10.0f * static_cast<float>(i + 1) + 50.0f;
  }
  const auto steps = parse_steps(nlohmann::json::parse(R"([{"op": "zscore", "channel": 1},
                                                           {"op": "ct_normalize", "mean": 10, "std": 2, "lower": 0, "upper": 100, "channel": 0}])"),
                                 "test");
  CaseData one = data;
  one.image.voxels = data.image.voxels.clone();
  apply_steps(one, steps, {}, "test");
  // Channel 1 z-scored on its own, channel 0 through the CT statistics: (clip(v, 0, 100) - 10) / 2.
  double sum = 0, sq = 0;
  for (std::int64_t i = 0; i < 144; ++i) sum += one.image.voxels.data()[144 + i];
  for (std::int64_t i = 0; i < 144; ++i) sq += std::pow(one.image.voxels.data()[144 + i] - sum / 144, 2);
  CHECK(sum / 144 == Approx(0).margin(1e-5));
  CHECK(std::sqrt(sq / 144) == Approx(1).epsilon(1e-3));
  CHECK(one.image.voxels.at(0, 0, 0, 0) == Approx((1.0f - 10.0f) / 2.0f));
  CHECK(one.image.voxels.at(0, 3, 5, 5) == Approx((100.0f - 10.0f) / 2.0f));  // 144 clipped to 100
  CHECK_THROWS_WITH(apply_steps(one, parse_steps(nlohmann::json::parse(R"([{"op": "zscore", "channel": 2}])"), "t"), {}, "case"),
                    Catch::Contains("channel") && Catch::Contains("[2,4,6,6]"));

  // Resampled to 2.5 mm along z: with separate_z the coarse axis takes nearest neighbours
  // (nnU-Net's order_z 0), so every output slice is an input slice; without, cubic mixes them.
  auto resampled = [&](bool separate) {
    CaseData c = data;
    c.image.voxels = data.image.voxels.clone();
    nlohmann::json op = {{"op", "resample"}, {"spacing", {1.0, 1.0, 2.5}}, {"order", 3}, {"separate_z", separate}};
    apply_steps(c, parse_steps(nlohmann::json::array({op}), "test"), {}, "test");
    return c.image.voxels;
  };
  const Tensor<float> sep = resampled(true), mixed = resampled(false);
  REQUIRE(sep.shape() == Shape{2, 8, 6, 6});
  bool every_slice_is_an_input_slice = true, mixed_has_new_values = false;
  for (std::int64_t z = 0; z < 8; ++z) {
    bool found = false;
    for (std::int64_t s = 0; s < 4; ++s) found = found || std::abs(sep.at(0, z, 2, 3) - data.image.voxels.at(0, s, 2, 3)) < 1e-4f;
    every_slice_is_an_input_slice = every_slice_is_an_input_slice && found;
    bool input = false;
    for (std::int64_t s = 0; s < 4; ++s) input = input || std::abs(mixed.at(0, z, 2, 3) - data.image.voxels.at(0, s, 2, 3)) < 1e-4f;
    mixed_has_new_values = mixed_has_new_values || !input;
  }
  CHECK(every_slice_is_an_input_slice);
  CHECK(mixed_has_new_values);
}
