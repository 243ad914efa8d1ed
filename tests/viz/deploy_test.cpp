// deploy.json: write then read gives the same config; every kind of mistake (unknown key,
// wrong type, value out of range, bad image op, label count, missing weights, bad JSON)
// fails with an Error naming deploy.json, the dotted key, what was expected and what was found.
#include <catch2/catch.hpp>

#include <fstream>

#include "medseg/infer/deploy.hpp"
#include "viz_test_util.hpp"

using namespace medseg;
using namespace medseg::infer;
using nlohmann::json;

namespace {

DeployConfig example() {
  DeployConfig c;
  c.model = {{"type", "VNet"}, {"num_classes", 3}, {"width", 8}};
  c.image_ops = json::parse(R"([{"op": "hu_window", "lo": -1250, "hi": 250}, {"op": "resample", "spacing": [2, 2, 2]}])");
  c.inference = {.roi = {64, 96, 96}, .overlap = 0.25, .blend = "constant", .mirror_axes = {0, 2}, .batch = 2};
  c.postprocess.largest_component = true;
  c.labels = {"background", "left lung", "right lung"};
  return c;
}

void touch(const std::filesystem::path& p) { std::ofstream(p) << "weights"; }

/// Writes `j` as dir/deploy.json with a weights file, and reads it back.
DeployConfig read_json(const std::filesystem::path& dir, const json& j) {
  std::ofstream(dir / "deploy.json") << j.dump();
  touch(dir / "model.safetensors");
  return read_deploy(dir);
}

}  // namespace

TEST_CASE("deploy.json round trip keeps every setting") {
  viz_test::ScratchDir dir("deploy");
  write_deploy(dir.path / "model", example());
  touch(dir.path / "model" / "model.safetensors");
  const DeployConfig c = read_deploy(dir.path / "model");
  CHECK(c.model == example().model);
  CHECK(c.image_ops == example().image_ops);
  REQUIRE(c.image_steps.size() == 2);
  CHECK(std::holds_alternative<preprocess::WindowStep>(c.image_steps[0]));
  CHECK(std::get<preprocess::ResampleStep>(c.image_steps[1]).spacing == io::Vec3{2, 2, 2});
  CHECK(c.inference.roi == Index3{64, 96, 96});
  CHECK(c.inference.overlap == 0.25);
  CHECK(c.inference.blend == "constant");
  CHECK(c.inference.mirror_axes == std::vector<int>{0, 2});
  CHECK(c.inference.batch == 2);
  CHECK(c.postprocess.largest_component);
  CHECK(c.labels == example().labels);
  CHECK(c.weights == "model.safetensors");
  int entries = 0;  // deploy.json and the weights, no temporary file
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path / "model")) ++entries;
  CHECK(entries == 2);

  const SlidingWindowOptions o = sliding_window_options(c.inference);
  CHECK(o.roi == Index3{64, 96, 96});
  CHECK(o.overlap == 0.25);
  CHECK(o.blend == Blend::constant);
  CHECK(o.batch == 2);
  CHECK(o.mirror_axes == std::vector<int>{0, 2});
}

TEST_CASE("deploy.json defaults fill what a minimal file leaves out") {
  viz_test::ScratchDir dir("deploy_min");
  const DeployConfig c = read_json(dir.path, json::parse(R"({"format": "medseg-deploy", "version": 1,
      "model": {"type": "UNet3D"}, "inference": {"roi": [32, 32, 32]}, "weights": "model.safetensors"})"));
  CHECK(c.image_steps.empty());
  CHECK(c.inference.overlap == 0.5);
  CHECK(c.inference.blend == "gaussian");
  CHECK(c.inference.batch == 1);
  CHECK_FALSE(c.postprocess.largest_component);
  CHECK(c.labels.empty());
}

TEST_CASE("deploy.json mistakes name the file and the key") {
  viz_test::ScratchDir dir("deploy_bad");
  const json good = to_json(example());
  auto expect_error = [&](json j, const std::string& field, const std::string& expected) {
    INFO(j.dump());
    CHECK_THROWS_WITH(read_json(dir.path, j), Catch::Contains("deploy.json") && Catch::Contains(field) &&
                                                  Catch::Contains(expected));
  };
  CHECK_NOTHROW(read_json(dir.path, good));
  json j = good;
  j["inference"]["overlapp"] = 0.5;
  expect_error(j, "inference.overlapp", "expected a known key, got unknown key \"overlapp\"");
  j = good;
  j["extra"] = 1;
  expect_error(j, "extra", "known keys here: format, version, model, image_ops");
  j = good;
  j["inference"]["overlap"] = "0.5";
  expect_error(j, "inference.overlap", "a number in [0, 1)");
  j = good;
  j["inference"]["overlap"] = 1.0;
  expect_error(j, "inference.overlap", "got 1.0");
  j = good;
  j["inference"]["roi"] = {64, 96};
  expect_error(j, "inference.roi", "expected [d, h, w] of integers, each >= 1, got [64,96]");
  j = good;
  j["inference"].erase("roi");
  expect_error(j, "inference.roi", "got missing");
  j = good;
  j["inference"]["mirror_axes"] = {0, 0};
  expect_error(j, "inference.mirror_axes", "distinct axes");
  j = good;
  j["inference"]["blend"] = "mean";
  expect_error(j, "inference.blend", "one of \"gaussian\", \"constant\"");
  j = good;
  j["inference"]["batch"] = 0;
  expect_error(j, "inference.batch", "an integer >= 1");
  j = good;
  j["postprocess"]["largest_component"] = "yes";
  expect_error(j, "postprocess.largest_component", "true or false");
  j = good;
  j["image_ops"][1]["op"] = "resize";
  expect_error(j, "image_ops[1]", "\"hu_window\", \"normalize\"");
  j = good;
  j["labels"] = {"background", "lung"};
  expect_error(j, "labels", "model.num_classes = 3");
  j = good;
  j["model"] = "VNet";
  expect_error(j, "model", "\"type\" string");
  j = good;
  j["version"] = 2;
  expect_error(j, "version", "this medseg reads version 1");
  j = good;
  j.erase("format");
  expect_error(j, "format", "\"medseg-deploy\"");
  j = good;
  j["weights"] = 7;
  expect_error(j, "weights", "weights file name");
}

TEST_CASE("deploy.json without its weights or with broken JSON fails clearly") {
  viz_test::ScratchDir dir("deploy_files");
  write_deploy(dir.path, example());
  CHECK_THROWS_WITH(read_deploy(dir.path), Catch::Contains("deploy.json") && Catch::Contains("weights") &&
                                               Catch::Contains("model.safetensors is missing"));
  std::ofstream(dir.path / "deploy.json") << "{\"format\": ";
  touch(dir.path / "model.safetensors");
  CHECK_THROWS_WITH(read_deploy(dir.path), Catch::Contains("deploy.json") && Catch::Contains("valid JSON"));
  CHECK_THROWS_WITH(read_deploy(dir.path / "nowhere"), Catch::Contains("nowhere/deploy.json"));
}

TEST_CASE("write_deploy refuses a config read_deploy would reject and writes nothing") {
  viz_test::ScratchDir dir("deploy_write");
  DeployConfig c = example();
  c.inference.overlap = 1.5;
  CHECK_THROWS_WITH(write_deploy(dir.path / "m", c), Catch::Contains("inference.overlap"));
  CHECK_FALSE(std::filesystem::exists(dir.path / "m" / "deploy.json"));
  c = example();
  c.image_ops = json::parse(R"([{"op": "remap_typo"}])");
  CHECK_THROWS_WITH(write_deploy(dir.path / "m", c), Catch::Contains("image_ops[0]"));
}
