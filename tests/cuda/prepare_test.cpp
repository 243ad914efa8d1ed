// `medseg prepare --device cuda` (preprocess/prepare_cuda.hpp) against the CPU's prepare on a
// tiny NIfTI dataset written here: the same configs on both devices, then every .npy compared
// (images within 1e-5 of their scale, labels exactly), and the geometry each case's meta
// records. The configs cover the fused window + resample load, resampling to a shape and to a
// spacing at orders 0, 1 and 3, crop to nonzero, every normalisation (the dataset-fingerprint
// ct_normalize too), per-label resampling, remapping, and the steps that run on the host
// (pad, keep_largest).
#include <catch2/catch.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "compare.hpp"
#include "medseg/io/format.hpp"
#include "medseg/preprocess/prepare.hpp"
#include "medseg/preprocess/prepare_cuda.hpp"

using namespace medseg;
using namespace medseg::preprocess;
using cuda_test::check_close;
using cuda_test::check_equal;
namespace fs = std::filesystem;

namespace {

/// Three CT-like cases of different shapes and spacings: air (0 after the +1024 shift, so
/// crop_nonzero finds a body) around a box of tissue with noise and a brighter core; labels
/// 1 and 2 inside the box, plus a stray island of 1 for keep_largest to remove.
fs::path write_dataset(const std::string& tag) {
  const fs::path root = fs::temp_directory_path() / ("medseg_cuda_prepare_" + tag + "_" + std::to_string(getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "raw/images");
  fs::create_directories(root / "raw/labels");
  const std::vector<std::array<std::int64_t, 3>> shapes{{18, 23, 27}, {21, 19, 30}, {15, 26, 22}};
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> noise(-40, 40);
  for (std::size_t c = 0; c < shapes.size(); ++c) {
    const auto [D, H, W] = shapes[c];
    auto ct = Tensor<std::int16_t>::zeros({D, H, W});
    auto lb = Tensor<std::uint8_t>::zeros({D, H, W});
    for (std::int64_t d = 2; d < D - 3; ++d)
      for (std::int64_t h = 3; h < H - 2; ++h)
        for (std::int64_t w = 2 + static_cast<std::int64_t>(c); w < W - 4; ++w) {
          const bool core = d > D / 3 && d < 2 * D / 3 && h > H / 3 && h < 2 * H / 3;
          ct(d, h, w) = static_cast<std::int16_t>((core ? 1400 : 1060) + noise(rng));
          lb(d, h, w) = core ? 2 : (w % 5 == 0 ? 0 : 1);
        }
    lb(0, 0, 0) = 1;  // an island of one voxel
    io::Geometry g;
    g.spacing = {0.8 + 0.1 * static_cast<double>(c), 0.9, 2.0 + 0.5 * static_cast<double>(c)};
    g.origin = {-10.0 * static_cast<double>(c), 5.0, 3.0};
    const std::string name = "case_" + std::to_string(c) + ".nii.gz";
    io::write_image(io::Image<std::int16_t>{ct, g}, root / "raw/images" / name);
    io::write_image(io::Image<std::uint8_t>{lb, g}, root / "raw/labels" / name);
  }
  return root;
}

PrepareConfig config_for(const fs::path& root, const nlohmann::json& image_ops, const nlohmann::json& label_ops,
                         const std::string& out) {
  const nlohmann::json j = {{"input", {{"layout", "folders"}, {"images", "raw/images"}, {"labels", "raw/labels"}}},
                            {"output", out},
                            {"image_ops", image_ops},
                            {"label_ops", label_ops},
                            {"split", {{"val", 0.34}, {"seed", 3}}}};
  return parse_prepare_config(j, root, "prepare_test");
}

/// Prepares `root` with the ops on the CPU and on the GPU and compares what they wrote.
void check_prepare(const fs::path& root, const nlohmann::json& image_ops, const nlohmann::json& label_ops,
                   bool images_exact) {
  const auto cpu_config = config_for(root, image_ops, label_ops, "cpu");
  const auto gpu_config = config_for(root, image_ops, label_ops, "gpu");
  fs::remove_all(root / "cpu");
  fs::remove_all(root / "gpu");
  const auto cpu = prepare_dataset(cpu_config);
  const auto gpu = prepare_dataset_on_device(gpu_config);
  REQUIRE(cpu.count(CaseReport::Status::prepared) == 3);
  std::string errors;
  for (const auto& c : gpu.cases) errors += c.error.empty() ? "" : c.name + ": " + c.error + "\n";
  INFO(errors);
  REQUIRE(gpu.count(CaseReport::Status::prepared) == 3);
  for (const auto& e : fs::directory_iterator(root / "cpu/images")) {
    const auto name = e.path().filename();
    INFO("case " << name.string() << ", image_ops " << image_ops.dump() << ", label_ops " << label_ops.dump());
    const auto a = io::read_image_as<float>(e.path()).voxels;
    const auto b = io::read_image_as<float>(root / "gpu/images" / name).voxels;
    if (images_exact) check_equal(a, b);
    else check_close(a, b);
    check_equal(io::read_image_as<std::int32_t>(root / "cpu/labels" / name).voxels,
                io::read_image_as<std::int32_t>(root / "gpu/labels" / name).voxels);
    const std::string meta = name.stem().string() + ".json";
    std::ifstream fa(root / "cpu/meta" / meta), fb(root / "gpu/meta" / meta);
    const auto ma = nlohmann::json::parse(fa), mb = nlohmann::json::parse(fb);
    CHECK(ma.at("prepared").at("shape") == mb.at("prepared").at("shape"));
    CHECK(ma.at("prepared").at("spacing") == mb.at("prepared").at("spacing"));
    CHECK(ma.at("prepared").at("origin") == mb.at("prepared").at("origin"));
  }
  std::ifstream la(root / "cpu/train_list.txt"), lb(root / "gpu/train_list.txt");
  CHECK(std::string(std::istreambuf_iterator<char>(la), {}) == std::string(std::istreambuf_iterator<char>(lb), {}));
}

}  // namespace

TEST_CASE("cuda prepare: the GPU writes the CPU's files") {
  const fs::path root = write_dataset("files");
  SECTION("window + resample to a shape (fused load), labels order 0") {
    check_prepare(root,
                  {{{"op", "hu_window"}, {"lo", -200}, {"hi", 600}}, {{"op", "resample"}, {"shape", {16, 20, 24}}}},
                  {{{"op", "resample"}, {"shape", {16, 20, 24}}, {"order", 0}}}, false);
  }
  SECTION("order 0 everywhere: exact") {
    check_prepare(root, {{{"op", "resample"}, {"shape", {11, 31, 17}}, {"order", 0}}},
                  {{{"op", "resample"}, {"order", 0}}, {{"op", "remap"}, {"mapping", {{1, 3}, {2, 1}}}}}, true);
  }
  SECTION("crop, spacing order 3, z-score of the nonzero; labels per-label order 1, remapped") {
    check_prepare(root,
                  {{{"op", "crop_nonzero"}},
                   {{"op", "resample"}, {"spacing", {1.0, 1.0, 2.5}}, {"order", 3}},
                   {{"op", "zscore"}, {"nonzero", true}}},
                  {{{"op", "crop_nonzero"}},
                   {{"op", "resample"}, {"order", 1}},
                   {{"op", "remap"}, {"mapping", {{2, 5}}}, {"unmapped", 255}}},
                  false);
  }
  SECTION("clip + min-max, then a pad and keep_largest (host steps)") {
    check_prepare(root,
                  {{{"op", "clip_minmax"}, {"lo", 900}, {"hi", 1500}},
                   {{"op", "resample"}, {"shape", {14, 18, 20}}, {"order", 1}},
                   {{"op", "pad"}, {"to", {16, 20, 24}}, {"mode", "edge"}}},
                  {{{"op", "resample"}, {"shape", {14, 18, 20}}, {"order", 3}},
                   {{"op", "pad"}, {"to", {16, 20, 24}}},
                   {{"op", "keep_largest"}}},
                  false);
  }
  SECTION("ct_normalize from the dataset fingerprint, normalize with bounds fused") {
    check_prepare(root, {{{"op", "ct_normalize"}}, {{"op", "resample"}, {"spacing", {1.2, 1.2, 3.0}}}},
                  {{{"op", "resample"}, {"order", 0}}}, false);
    check_prepare(root, {{{"op", "normalize"}, {"min", 800}, {"max", 1600}}, {{"op", "resample"}, {"shape", {9, 9, 9}}}},
                  {{{"op", "resample"}, {"shape", {9, 9, 9}}, {"order", 1}}}, false);
  }
  fs::remove_all(root);
}

TEST_CASE("cuda prepare: a failing case is reported, the others are written") {
  const fs::path root = write_dataset("failing");
  // A label-only op in image_ops fails every case on both devices, by name, with the CPU's message.
  const auto cpu = prepare_dataset(config_for(root, {{{"op", "remap"}, {"mapping", {{1, 2}}}}}, {}, "cpu"));
  const auto gpu = prepare_dataset_on_device(config_for(root, {{{"op", "remap"}, {"mapping", {{1, 2}}}}}, {}, "gpu"));
  REQUIRE(cpu.cases.size() == gpu.cases.size());
  for (std::size_t i = 0; i < cpu.cases.size(); ++i) {
    CHECK(gpu.cases[i].status == CaseReport::Status::failed);
    CHECK(gpu.cases[i].error == cpu.cases[i].error);
  }
  fs::remove_all(root);
}
