// Configs: _base_ inheritance, overrides, every validation error (file, key, expected), the
// shipped configs, and the runtime objects built from them (optimizer, schedule, loss and
// transform chain) against the same objects built in C++.
#include <catch2/catch.hpp>

#include <fstream>

#include "fixtures.hpp"
#include "medseg/train/runtime.hpp"
#include "medseg/train/transform_chain.hpp"
#include "medseg/transforms/crop.hpp"
#include "medseg/transforms/rotate.hpp"

using namespace medseg;
namespace fs = std::filesystem;

namespace {
fs::path write(const fs::path& file, const std::string& text) {
  fs::create_directories(file.parent_path());
  std::ofstream(file) << text;
  return file;
}

const char* minimal = R"({"iters": 10, "optimizer": {"type": "sgd", "momentum": 0.9},
  "lr_scheduler": {"type": "PolynomialDecay", "learning_rate": 0.1, "power": 0.9},
  "loss": {"types": [{"type": "MixedLoss", "losses": [{"type": "CrossEntropyLoss"}, {"type": "DiceLoss"}],
                      "coef": [1, 1]}], "coef": [1]}})";

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}
}  // namespace

TEST_CASE("_base_ chains merge objects key by key and the child wins") {
  const auto dir = test::fresh_dir("config_inherit");
  write(dir / "_base_" / "global.json", R"({"batch_size": 2, "iters": 100, "seed": 1,
      "optimizer": {"type": "sgd", "momentum": 0.9, "weight_decay": 1e-4},
      "inference": {"roi": [64, 64, 64], "overlap": 0.5}})");
  write(dir / "mid" / "mid.json", R"({"_base_": "../_base_/global.json", "iters": 200,
      "optimizer": {"momentum": 0.99, "nesterov": true}})");
  const auto top = write(dir / "top.json", R"({"_base_": "mid/mid.json", "batch_size": 4,
      "inference": {"_inherited_": false, "overlap": 0.25}})");
  const auto c = train::read_config(top);
  CHECK(c.json["batch_size"] == 4);
  CHECK(c.json["iters"] == 200);
  CHECK(c.json["seed"] == 1);
  CHECK(c.json["optimizer"] == nlohmann::json{{"type", "sgd"}, {"momentum", 0.99}, {"weight_decay", 1e-4}, {"nesterov", true}});
  CHECK(c.json["inference"] == nlohmann::json{{"overlap", 0.25}});  // replaced, not merged
  CHECK_FALSE(c.json.contains("_base_"));
  CHECK(c.source_of("seed") == (dir / "mid" / "../_base_/global.json").string());
  CHECK(c.source_of("optimizer.momentum") == (dir / "mid" / "mid.json").string());
  CHECK(c.source_of("optimizer.type") == (dir / "mid" / "../_base_/global.json").string());
  CHECK(c.source_of("batch_size") == top.string());
}

TEST_CASE("A _base_ cycle or a missing file is an error naming the files") {
  const auto dir = test::fresh_dir("config_cycle");
  write(dir / "a.json", R"({"_base_": "b.json"})");
  write(dir / "b.json", R"({"_base_": "a.json"})");
  const std::string cycle = message_of([&] { train::read_config(dir / "a.json"); });
  CHECK_THAT(cycle, Catch::Contains("_base_: expected no cycle, got ") && Catch::Contains("a.json -> ") &&
                        Catch::Contains("b.json -> "));
  write(dir / "c.json", R"({"_base_": "nowhere.json"})");
  CHECK(message_of([&] { train::read_config(dir / "c.json"); }) ==
        "config " + (dir / "c.json").string() + ": _base_: expected an existing JSON file, got " +
            (dir / "nowhere.json").string() + " (missing)");
  CHECK_THAT(message_of([&] { train::read_config(dir / "none.json"); }),
             Catch::Contains("config: file: expected an existing JSON file") && Catch::Contains("none.json (missing)"));
  write(dir / "bad.json", R"({"iters": 10,})");
  CHECK_THAT(message_of([&] { train::read_config(dir / "bad.json"); }),
             Catch::StartsWith("config " + (dir / "bad.json").string() + ": JSON: expected valid JSON, got a syntax error"));
}

TEST_CASE("Command-line overrides set keys and name themselves in errors") {
  const auto dir = test::fresh_dir("config_override");
  const auto file = write(dir / "run.json", minimal);
  std::vector<std::string> rest;
  const auto overrides = train::parse_overrides(
      {"--iters", "20", "--config", "x.json", "--learning_rate=0.5", "--save_dir", "out/run 1", "--set",
       "optimizer.nesterov=true", "--set=inference.roi=[32,32,32]"},
      &rest);
  CHECK(rest == std::vector<std::string>{"--config", "x.json"});
  const auto c = train::load_config(file, overrides);
  CHECK(c.json["iters"] == 20);
  CHECK(c.json["lr_scheduler"]["learning_rate"] == 0.5);
  CHECK(c.json["save_dir"] == "out/run 1");
  CHECK(c.json["optimizer"]["nesterov"] == true);
  CHECK(c.json["inference"]["roi"] == nlohmann::json::array({32, 32, 32}));
  CHECK(c.json["optimizer"]["momentum"] == 0.9);
  const auto o = train::trainer_options(c);
  CHECK(o.iters == 20);
  CHECK(o.save_dir == "out/run 1");

  CHECK(message_of([&] { train::load_config(file, train::parse_overrides({"--batch_size", "0"})); }) ==
        "config command line --batch_size: batch_size: expected an integer >= 1, got 0");
  CHECK(message_of([&] { train::load_config(file, train::parse_overrides({"--set", "optimizer.momentun=0.5"})); }) ==
        "config command line --set optimizer.momentun=0.5: optimizer.momentun: expected a known key, got unknown key "
        "\"momentun\" (did you mean \"momentum\"?)");
  CHECK(message_of([&] { train::parse_overrides({"--set", "iters"}); }) ==
        "command line: --set: expected KEY=VALUE (a.b=3), got iters");
  CHECK(message_of([&] { train::parse_overrides({"--iters"}); }) ==
        "command line: --iters: expected a value after it, got nothing");
}

TEST_CASE("Validation names the file the key came from its path and what was expected") {
  const auto dir = test::fresh_dir("config_validate");
  write(dir / "base.json", R"({"batch_size": "2", "optimizer": {"type": "sgd"}})");
  auto check = [&](const std::string& child, const std::string& expected) {
    const auto file = write(dir / "child.json", child);
    INFO(child);
    CHECK(message_of([&] { train::load_config(file); }) == expected);
  };
  const std::string base = "config " + (dir / "base.json").string() + ": ";
  const std::string here = "config " + (dir / "child.json").string() + ": ";
  check(R"({"_base_": "base.json"})", base + "batch_size: expected an integer >= 1, got \"2\"");
  check(R"({"_base_": "base.json", "batch_size": 2, "iter": 5})",
        here + "iter: expected a known key, got unknown key \"iter\" (did you mean \"iters\"?)");
  check(R"({"_base_": "base.json", "batch_size": 2, "optimizer": {"type": "sgdd"}})",
        here + "optimizer.type: expected one of \"sgd\", \"adam\", \"adamw\", got \"sgdd\" (did you mean \"sgd\"?)");
  check(R"({"_base_": "base.json", "batch_size": 2, "optimizer": {"momentum": "high"}})",
        here + "optimizer.momentum: expected a number >= 0, got \"high\"");
  check(R"({"batch_size": 2, "zzz_unrelated": 1})",
        here + "zzz_unrelated: expected a known key, got unknown key \"zzz_unrelated\" (known keys here: batch_size, "
               "iters, train_dataset, val_dataset, model, optimizer, lr_scheduler, loss, export, inference, save_dir, "
               "resume, seed, log_iters, save_interval, eval_interval, keep_checkpoint_max, do_eval, num_workers, "
               "accumulation_steps, amp, clip_grad_norm, data_root)");
  check(R"({"train_dataset": {"type": "MedicalDataset", "num_classes": 0}})",
        here + "train_dataset.num_classes: expected an integer >= 1, got 0");
  check(R"({"train_dataset": {"type": "Medical", "num_classes": 2}})",
        here + "train_dataset.type: expected one of \"MedicalDataset\", \"Decathlon\", \"nnUNet\", got \"Medical\"");
  check(R"({"lr_scheduler": {"type": "PolynomialDecay"}})",
        here + "lr_scheduler.learning_rate: expected a number >= 0, got missing");
  check(R"({"loss": {"types": [{"type": "MixedLoss", "losses": [{"type": "DiceLos"}]}]}})",
        here + "loss.types[0].losses[0].type: expected one of \"MixedLoss\", \"CrossEntropyLoss\", \"DiceLoss\", got "
               "\"DiceLos\" (did you mean \"DiceLoss\"?)");
  check(R"({"loss": {"types": [{"type": "DiceLoss"}], "coef": [1, 2]}})", here + "loss.coef: expected a list of 1 numbers, got [1,2]");
  check(R"({"inference": {"roi": [128, 128], "overlap": 0.5}})",
        here + "inference.roi: expected an integer or [d, h, w] of integers, each >= 1, got [128,128]");
  check(R"({"inference": {"overlap": 1.5}})", here + "inference.overlap: expected a number in [0, 1), got 1.5");
  check(R"({"model": {"in_channels": 1}})",
        here + "model: expected an object with a \"type\" (VNet, DynamicUNet, ...), got {\"in_channels\":1}");
  check(R"({"optimizer": {"type": "sgd", "betas": [0.9]}})", here + "optimizer.betas: expected a list of 2 numbers, got [0.9]");
  check(R"({"train_dataset": {"type": "MedicalDataset", "transforms": [{"type": "RandomFlip3D"}, {"p": 1}]}})",
        here + "train_dataset.transforms[1].type: expected a string, got missing");
  check(R"({"loss": {"types": [{"type": "DiceLoss", "smooth": -1}]}})",
        here + "loss.types[0].smooth: expected a number >= 0, got -1");
  check(R"({"clip_grad_norm": null, "optimizer": 3})", here + "optimizer: expected a JSON object, got 3");
  CHECK(train::nearest_name("batchsize", {"batch_size", "iters"}) == "batch_size");
  CHECK(train::nearest_name("optimizer", {"batch_size", "iters"}).empty());
  CHECK(train::edit_distance("kitten", "sitting") == 3);
}

TEST_CASE("Every shipped config parses validates and builds its runtime objects") {
  std::size_t checked = 0;
  for (const auto& e : fs::recursive_directory_iterator(fs::path(MEDSEG_SOURCE_DIR) / "configs")) {
    const auto rel = fs::relative(e.path(), fs::path(MEDSEG_SOURCE_DIR) / "configs").string();
    if (e.path().extension() != ".json" || rel.rfind("prepare", 0) == 0 || rel.rfind("_base_", 0) == 0) continue;
    INFO(rel);
    const auto c = train::load_config(e.path());
    REQUIRE(c.json.contains("model"));
    CHECK(c.json["iters"].get<std::int64_t>() > 0);
    auto net = test::make_tiny_net(1);
    auto opt = train::make_optimizer(c, nn::parameters(net));
    const auto sched = train::make_schedule(c, opt);
    CHECK(sched.iteration() == 0);
    CHECK(opt.lr() == c.json["lr_scheduler"]["learning_rate"].get<double>());
    const auto loss = train::make_loss<Cpu>(c);
    CHECK(loss.size() == 2);
    const auto chain = train::make_transforms(c, "train_dataset");
    CHECK(chain.size() == c.json["train_dataset"]["transforms"].size());
    CHECK(train::trainer_options(c).iters == c.json["iters"].get<std::int64_t>());
    ++checked;
  }
  CHECK(checked >= 2);
  const auto lung = train::load_config(fs::path(MEDSEG_SOURCE_DIR) / "configs/lung_coronavirus/vnet_lung_coronavirus_128_128_128_15k.json");
  CHECK(lung.json["batch_size"] == 6);
  CHECK(lung.json["iters"] == 15000);
  CHECK(lung.json["keep_checkpoint_max"] == 5);  // from _base_/global.json
  CHECK(lung.json["optimizer"]["momentum"] == 0.9);
  CHECK(lung.json["optimizer"]["weight_decay"] == 1e-4);
}

TEST_CASE("Runtime optimizer schedule and loss equal the C++ objects they stand for") {
  const auto dir = test::fresh_dir("config_runtime");
  const auto c = train::load_config(write(dir / "run.json", minimal));
  auto a = test::make_tiny_net(3), b = test::make_tiny_net(3);
  auto opt = train::make_optimizer(c, nn::parameters(a));
  auto sched = train::make_schedule(c, opt);
  optim::SGD ref_opt{nn::parameters(b), {.lr = 0.1, .momentum = 0.9}};
  optim::PolyLR ref_sched{ref_opt, {.total_iters = 10, .power = 0.9}};
  auto loss = train::make_loss<Cpu>(c);
  loss::Mixed ref_loss{loss::CrossEntropy<Cpu>{}, loss::Dice<Cpu>{{.batch = true}}};
  const test::SphereDataset data{.cases = 2};
  std::vector<transforms::BasicSample<std::uint8_t>> samples;
  for (std::size_t i = 0; i < 2; ++i) {
    auto cs = data.load(i);
    samples.push_back({cs.image.voxels, cs.label->voxels.reshape({1, 16, 16, 16})});
  }
  const auto batch = data::collate(samples);
  for (int it = 0; it < 3; ++it) {
    opt.zero_grad();
    ref_opt.zero_grad();
    a.eval(), b.eval();  // no dropout: the two nets see the same function
    const float la = loss.forward(a.forward(batch.image), batch.label);
    const float lb = ref_loss.forward(b.forward(batch.image), batch.label);
    CHECK(la == lb);
    a.train(true), b.train(true);
    a.forward(batch.image), b.forward(batch.image);
    a.backward(loss.backward());
    b.backward(ref_loss.backward());
    opt.step(), ref_opt.step();
    sched.step(), ref_sched.step();
    CHECK(opt.lr() == ref_opt.lr());
  }
  CHECK(test::bit_identical(test::snapshot(a), test::snapshot(b)));
  CHECK(sched.lr_at(5) == ref_sched.lr_at(5));

  // Adam from betas, cosine with a warm-up.
  train::Config adam = c;
  adam.json["optimizer"] = {{"type", "adamw"}, {"betas", {0.8, 0.95}}, {"weight_decay", 0.05}};
  adam.json["lr_scheduler"] = {{"type", "CosineAnnealingDecay"}, {"learning_rate", 0.01}, {"warmup_iters", 2}};
  train::validate(adam);
  auto opt2 = train::make_optimizer(adam, nn::parameters(a));
  auto sched2 = train::make_schedule(adam, opt2);
  CHECK(opt2.kind() == "optim::AdamW");
  CHECK(sched2.lr_at(0) == Approx(0.01 * 1e-3));
  CHECK(sched2.lr_at(2) == Approx(0.01));
  CHECK(sched2.lr_at(10) == Approx(0.0).margin(1e-12));
}

TEST_CASE("A transform chain from JSON augments exactly like the composed transforms") {
  const auto list = nlohmann::json::parse(R"([
    {"type": "RandomResizedCrop3D", "size": [8, 12, 12], "scale": [0.8, 1.2]},
    {"type": "RandomRotation3D", "degrees": 30, "rotate_planes": [[1, 2]]},
    {"type": "RandomFlip3D", "prob": 0.5, "flip_axis": [0, 2]}])");
  const auto chain = train::make_transforms(list, "test");
  const auto composed = transforms::RandomResizedCrop3D{{8, 12, 12}, {0.8f, 1.2f}} |
                        transforms::RandomRotation3D{.degrees = 30, .planes = {{1, 2}}} |
                        transforms::RandomFlip3D{0.5f, {true, false, true}};
  const test::SphereDataset data{.cases = 1};
  const auto c = data.load(0);
  for (std::uint64_t seed = 0; seed < 4; ++seed) {
    transforms::BasicSample<std::uint8_t> x{c.image.voxels, c.label->voxels.reshape({1, 16, 16, 16})}, y = x;
    RandomStream r1(seed, 9), r2(seed, 9);
    chain.apply(x, r1);
    composed.apply(y, r2);
    REQUIRE(x.image.shape() == Shape{1, 8, 12, 12});
    CHECK(x.image.to_vector() == y.image.to_vector());
    CHECK(x.label.to_vector() == y.label.to_vector());
  }
  // The shared JsonReader wording: the file, the entry's path and key, what was expected.
  CHECK(message_of([] { train::make_transforms(nlohmann::json::parse(R"([{"type": "RandomFlip"}])"), "cfg", "t"); }) ==
        "cfg: t[0].type: expected one of \"RandomResizedCrop3D\", \"RandomRotation3D\", \"RandomFlip3D\", "
        "\"RandomCrop\", \"CenterCrop\", \"GaussianNoise\", \"GaussianBlur\", \"MultiplicativeBrightness\", "
        "\"Contrast\", \"Gamma\", \"RandomScale\", \"Normalize\", \"SpatialTransform\", got \"RandomFlip\" "
        "(did you mean \"RandomFlip3D\"?)");
  CHECK(message_of([] {
          train::make_transforms(nlohmann::json::parse(R"([{"type": "RandomFlip3D", "flip_axes": 1}])"), "cfg", "t");
        }) == "cfg: t[0].flip_axes: expected a known key, got unknown key \"flip_axes\" (did you mean \"flip_axis\"?)");
  CHECK(message_of([] {
          train::make_transforms(nlohmann::json::parse(R"([{"type": "RandomResizedCrop3D", "scale": [1.2, 0.8]}])"), "cfg",
                                 "t");
        }) == "cfg: t[0].scale: expected [low, high] with low <= high, got [1.2,0.8]");
  CHECK(message_of([] { train::make_transforms(nlohmann::json::parse(R"([{"type": "GaussianNoise", "p": 2}])"), "cfg", "t"); }) ==
        "cfg: t[0].p: expected " + JsonReader::expected<float>({.min = 0, .max = 1}) + ", got 2");
  CHECK(message_of([] {
          train::make_transforms(nlohmann::json::parse(R"([{"type": "RandomCrop", "size": [4, 0, 4]}])"), "cfg", "t");
        }) == "cfg: t[0].size: expected " + JsonReader::expected<transforms::Index3>({.min = 1}) + ", got [4,0,4]");
}

TEST_CASE("A trainer built from a config resumes exactly through the runtime objects") {
  const auto dir = test::fresh_dir("config_trainer");
  const auto file = write(dir / "run.json", R"({"iters": 4, "batch_size": 2, "save_interval": 2, "log_iters": 1,
      "train_dataset": {"type": "MedicalDataset", "num_classes": 2,
                        "transforms": [{"type": "RandomFlip3D"}, {"type": "GaussianNoise", "p": 0.5}]},
      "optimizer": {"type": "adamw", "weight_decay": 0.01},
      "lr_scheduler": {"type": "PolynomialDecay", "learning_rate": 0.01, "warmup_iters": 1},
      "loss": {"types": [{"type": "MixedLoss", "losses": [{"type": "CrossEntropyLoss"}, {"type": "DiceLoss"}],
                          "coef": [1, 0.5]}], "coef": [1]}})");
  auto go = [&](const std::string& save_dir, const std::vector<std::string>& args, std::uint64_t init_seed) {
    const auto c = train::load_config(file, train::parse_overrides(args));
    auto net = test::make_tiny_net(init_seed);
    auto opt = train::make_optimizer(c, nn::parameters(net));
    auto sched = train::make_schedule(c, opt);
    auto loss = train::make_loss<Cpu>(c);
    data::Loader loader{test::SphereDataset{.cases = 4, .extent = 8}, train::make_transforms(c, "train_dataset"),
                        {.batch_size = c.json["batch_size"].get<std::int64_t>(), .workers = 1}};
    auto options = train::trainer_options(c);
    options.save_dir = dir / save_dir;
    options.progress = nullptr;
    train::Trainer trainer{net, loss, opt, sched, options};
    trainer.fit(loader);
    return test::snapshot(net);
  };
  const auto straight = go("a", {}, 1);
  const auto first = go("b", {}, 1);
  CHECK(test::bit_identical(straight, first));  // a run repeats exactly
  fs::remove_all(dir / "b" / "iter_4");        // as if killed after step 3: iter_2 is the latest
  const auto resumed = go("b", {"--resume", "latest"}, 7);
  CHECK(test::bit_identical(straight, resumed));
  const auto moved = go("c", {"--learning_rate", "0.02"}, 1);
  CHECK_FALSE(test::bit_identical(straight, moved));  // the override reached the optimizer
}
