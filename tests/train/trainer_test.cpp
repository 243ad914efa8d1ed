// The trainer: an interrupted-and-resumed run ends bit-identical to an uninterrupted one
// (dropout, BatchNorm, momentum SGD, PolyLR, gradient accumulation, a loader with workers);
// the JSONL log, rotation and best_model/ it leaves; learning on spheres; deep supervision;
// mixed precision (amp: bfloat16 convolutions), which learns and resumes exactly too.
#include <catch2/catch.hpp>

#include <fstream>
#include <optional>
#include <sstream>

#include "fixtures.hpp"
#include "medseg/nnunet.hpp"

using namespace medseg;
namespace fs = std::filesystem;

namespace {

struct Interrupted {};

struct RunResult {
  std::vector<std::pair<std::string, std::vector<float>>> weights;
  std::vector<train::IterationInfo> iterations;
};

/// 8 steps of 2 accumulated batches of 2 on the tiny net; `crash_at` throws from the
/// iteration hook after that step (before its checkpoint, as a kill would).
RunResult run(const fs::path& dir, std::optional<std::int64_t> crash_at, const std::string& resume,
              std::uint64_t init_seed, bool amp = false) {
  auto net = test::make_tiny_net(init_seed);
  auto loss = loss::dice_ce<Cpu>({.include_background = false, .batch = true});
  optim::SGD opt{nn::parameters(net), {.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-4}};
  optim::PolyLR sched{opt, {.total_iters = 8, .power = 0.9}};
  const test::SphereDataset data{.cases = 6};
  data::Loader loader{data, transforms::RandomFlip3D{}, {.batch_size = 2, .workers = 2, .seed = 5}};
  train::Trainer trainer{net, loss, opt, sched,
                         {.iters = 8, .accumulation = 2, .log_every = 1, .save_every = 2, .eval_every = 3,
                          .keep_checkpoint_max = 2, .save_dir = dir, .resume = resume, .seed = 3, .amp = amp,
                          .progress = nullptr}};
  RunResult result;
  trainer.on_iteration([&](const train::IterationInfo& i) {
    result.iterations.push_back(i);
    if (crash_at && i.iteration == *crash_at) throw Interrupted{};
  });
  const test::SphereDataset val{.cases = 2, .seed = 77};
  try {
    trainer.fit(loader, [&](test::TinyNet& m) { return test::sphere_eval(m, val, 0, 2); });
  } catch (const Interrupted&) {
  }
  result.weights = test::snapshot(net);
  return result;
}

std::vector<nlohmann::json> read_jsonl(const fs::path& file) {
  std::vector<nlohmann::json> out;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

}  // namespace

TEST_CASE("A run interrupted and resumed from latest ends bit-identical to an uninterrupted one") {
  const auto straight_dir = test::fresh_dir("straight"), resumed_dir = test::fresh_dir("resumed");
  const RunResult straight = run(straight_dir, std::nullopt, "", 11);
  const RunResult first_half = run(resumed_dir, 5, "latest", 11);  // dies after step 5; iter_4 is the latest
  REQUIRE(first_half.iterations.size() == 5);
  REQUIRE(train::latest_checkpoint(resumed_dir) == resumed_dir / "iter_4");
  // A different initialisation: everything the continuation uses must come from the checkpoint.
  const RunResult second_half = run(resumed_dir, std::nullopt, "latest", 12345);
  REQUIRE(second_half.iterations.size() == 4);
  CHECK(second_half.iterations.front().iteration == 5);

  CHECK(test::bit_identical(straight.weights, second_half.weights));
  // The dropout layer really drew masks: its counter is the number of training forwards.
  const auto counters = train::random_counters(*std::make_unique<test::TinyNet>(test::make_tiny_net(1)));
  CHECK(counters.size() == 1);
  const auto saved = nlohmann::json::parse(std::ifstream(straight_dir / "iter_8" / "trainer.json"));
  CHECK(saved["random_counters"]["3"].get<std::uint64_t>() == 16);  // 8 steps x 2 batches
  CHECK(saved["batches"].get<std::uint64_t>() == 16);

  // The log of the resumed run is the uninterrupted run's, loss for loss.
  const auto a = read_jsonl(straight_dir / "metrics.jsonl"), b = read_jsonl(resumed_dir / "metrics.jsonl");
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    INFO("line " << i << ": " << a[i].dump() << " vs " << b[i].dump());
    CHECK(a[i]["type"] == b[i]["type"]);
    CHECK(a[i]["iter"] == b[i]["iter"]);
    if (a[i]["type"] == "train") {
      CHECK(a[i]["loss"].get<double>() == b[i]["loss"].get<double>());
      CHECK(a[i]["lr"].get<double>() == b[i]["lr"].get<double>());
    } else {
      CHECK(a[i]["mean_dice"].get<double>() == b[i]["mean_dice"].get<double>());
    }
  }
}

TEST_CASE("The metrics log rotation and best_model of a run") {
  const auto dir = test::fresh_dir("log");
  const RunResult r = run(dir, std::nullopt, "", 11);
  const auto lines = read_jsonl(dir / "metrics.jsonl");
  std::vector<std::int64_t> train_iters, eval_iters;
  double best = -1;
  std::int64_t best_iter = -1;
  for (const auto& j : lines) {
    REQUIRE(j.contains("type"));
    if (j["type"] == "train") {
      train_iters.push_back(j["iter"].get<std::int64_t>());
      CHECK(std::isfinite(j["loss"].get<double>()));
      CHECK(j["lr"].get<double>() > 0);
      CHECK(j.contains("samples_per_s"));
    } else {
      REQUIRE(j["type"] == "eval");
      eval_iters.push_back(j["iter"].get<std::int64_t>());
      CHECK(j["per_class_dice"].size() == 1);
      CHECK(j["cases"] == 2);  // the evaluator's extra fields are kept
      if (j["mean_dice"].get<double>() > best) best = j["mean_dice"].get<double>(), best_iter = j["iter"];
    }
  }
  CHECK(train_iters == std::vector<std::int64_t>{1, 2, 3, 4, 5, 6, 7, 8});
  CHECK(eval_iters == std::vector<std::int64_t>{3, 6, 8});  // every 3 steps and once at the end
  // The first step runs at PolyLR's lr(0), the learning rate falls from there.
  CHECK(lines.front()["lr"].get<double>() == Approx(0.05));

  // keep_checkpoint_max = 2 of iter_2, 4, 6, 8.
  std::vector<std::string> names;
  for (const auto& p : train::list_checkpoints(dir)) names.push_back(p.filename().string());
  CHECK(names == std::vector<std::string>{"iter_6", "iter_8"});
  for (const auto& f : {"model.safetensors", "optimizer.safetensors", "trainer.json"})
    CHECK(fs::exists(dir / "iter_8" / f));
  const auto best_json = nlohmann::json::parse(std::ifstream(dir / "best_model" / "best.json"));
  CHECK(best_json["mean_dice"].get<double>() == best);
  CHECK(best_json["iteration"].get<std::int64_t>() == best_iter);
  CHECK(fs::exists(dir / "best_model" / "model.safetensors"));
  CHECK(fs::file_size(dir / "curves.png") > 1000);  // loss and Dice panels, drawn by viz::plot_panels
  for (const auto& e : fs::directory_iterator(dir)) CHECK(e.path().filename().string().front() != '.');
  CHECK(r.iterations.size() == 8);
}

TEST_CASE("The progress line names iteration loss Dice lr throughput and ETA") {
  const auto dir = test::fresh_dir("progress");
  auto net = test::make_tiny_net(2);
  auto loss = loss::dice_ce<Cpu>({.include_background = false, .batch = true});
  optim::SGD opt{nn::parameters(net), {.lr = 0.01}};
  optim::StepLR sched{opt, {.step_size = 100}};
  data::Loader loader{test::SphereDataset{}, transforms::RandomFlip3D{}, {.batch_size = 2, .workers = 0}};
  std::ostringstream plain, tty;
  for (auto* out : {&plain, &tty}) {
    train::Trainer trainer{net, loss, opt, sched,
                           {.iters = 2, .log_every = 1, .save_every = 0, .save_dir = dir, .progress = out, .tty = out == &tty}};
    const test::SphereDataset val{.cases = 2, .seed = 77};
    trainer.fit(loader, [&](test::TinyNet& m) { return test::sphere_eval(m, val, 0, 2); });
  }
  INFO(plain.str());
  CHECK(plain.str().find("[iter 1/2] loss ") == 0);
  CHECK(plain.str().find("lr 1.000e-02") != std::string::npos);
  CHECK(plain.str().find("samples/s  ETA ") != std::string::npos);
  CHECK(plain.str().find("[eval iter 2] mean Dice ") != std::string::npos);
  CHECK(plain.str().find('\r') == std::string::npos);
  CHECK(tty.str().find("\r[iter 2/2]") != std::string::npos);
}

TEST_CASE("fit learns to segment spheres") {
  const auto dir = test::fresh_dir("learn");
  auto net = test::make_tiny_net(4, 0.0f);
  auto loss = loss::dice_ce<Cpu>({.include_background = false, .batch = true});
  optim::SGD opt{nn::parameters(net), {.lr = 0.05, .momentum = 0.9, .nesterov = true}};
  optim::PolyLR sched{opt, {.total_iters = 60, .power = 0.9}};
  data::Loader loader{test::SphereDataset{.cases = 8}, transforms::RandomFlip3D{}, {.batch_size = 2, .workers = 1}};
  train::Trainer trainer{net, loss, opt, sched, {.iters = 60, .eval_every = 30, .save_dir = dir, .progress = nullptr}};
  std::vector<double> dice;
  trainer.on_eval([&](const train::EvalResult& r) { dice.push_back(r.mean_dice); });
  const test::SphereDataset val{.cases = 4, .seed = 99};
  net.eval();
  const double before = test::sphere_eval(net, val, 0, 4).mean_dice;
  trainer.fit(loader, [&](test::TinyNet& m) { return test::sphere_eval(m, val, 0, 4); });
  INFO("Dice before " << before << ", after 30 and 60 steps " << dice.at(0) << " " << dice.at(1));
  CHECK(dice.back() > 0.8);
  CHECK(dice.back() > before + 0.2);
  CHECK(trainer.state().best_mean_dice == *std::max_element(dice.begin(), dice.end()));
}

namespace {
bool bf16_convolutions_here() { return cpu::bf16_convolutions() != cpu::Bf16Convolutions::none; }
}  // namespace

TEST_CASE("With amp a resumed run ends bit-identical too, and differs from float32") {
  if (!bf16_convolutions_here()) return;  // refused there: see "Trainer options are checked"
  const auto straight_dir = test::fresh_dir("amp_straight"), resumed_dir = test::fresh_dir("amp_resumed");
  const RunResult straight = run(straight_dir, std::nullopt, "", 11, true);
  CHECK_FALSE(cpu::autocast_bf16());  // the trainer's scopes end with their passes
  run(resumed_dir, 5, "latest", 11, true);
  const RunResult second_half = run(resumed_dir, std::nullopt, "latest", 12345, true);
  CHECK(test::bit_identical(straight.weights, second_half.weights));
  // bfloat16 convolutions really ran: the same run in float32 ends elsewhere.
  const RunResult f32 = run(test::fresh_dir("amp_f32"), std::nullopt, "", 11, false);
  CHECK_FALSE(test::bit_identical(straight.weights, f32.weights));
}

TEST_CASE("fit learns to segment spheres with amp") {
  if (!bf16_convolutions_here()) return;
  const auto dir = test::fresh_dir("learn_amp");
  auto net = test::make_tiny_net(4, 0.0f);
  auto loss = loss::dice_ce<Cpu>({.include_background = false, .batch = true});
  optim::SGD opt{nn::parameters(net), {.lr = 0.05, .momentum = 0.9, .nesterov = true}};
  optim::PolyLR sched{opt, {.total_iters = 60, .power = 0.9}};
  data::Loader loader{test::SphereDataset{.cases = 8}, transforms::RandomFlip3D{}, {.batch_size = 2, .workers = 1}};
  train::Trainer trainer{net, loss, opt, sched,
                         {.iters = 60, .eval_every = 30, .save_dir = dir, .amp = true, .progress = nullptr}};
  std::vector<double> dice;
  trainer.on_eval([&](const train::EvalResult& r) { dice.push_back(r.mean_dice); });
  const test::SphereDataset val{.cases = 4, .seed = 99};
  net.eval();
  const double before = test::sphere_eval(net, val, 0, 4).mean_dice;
  bool evaluated_under_autocast = true;
  trainer.fit(loader, [&](test::TinyNet& m) {
    evaluated_under_autocast = evaluated_under_autocast && cpu::autocast_bf16();
    return test::sphere_eval(m, val, 0, 4);
  });
  INFO("Dice before " << before << ", after 30 and 60 steps " << dice.at(0) << " " << dice.at(1));
  CHECK(dice.back() > 0.8);
  CHECK(dice.back() > before + 0.2);
  CHECK(evaluated_under_autocast);
  CHECK_FALSE(cpu::autocast_bf16());
}

TEST_CASE("Deep supervision trains every head of a DynamicUNet and resumes exactly") {
  auto make = [](std::uint64_t seed) {
    nn::init::manual_seed(seed);
    return models::DynamicUNet<Cpu>{{.in_channels = 1, .num_classes = 2, .features = {4, 8, 8},
                                     .kernels = {{3, 3, 3}, {3, 3, 3}, {3, 3, 3}},
                                     .strides = {{1, 1, 1}, {2, 2, 2}, {2, 2, 2}},
                                     .convs_per_stage = {1, 1, 1}, .convs_per_stage_decoder = {1, 1}}};
  };
  auto go = [&](const fs::path& dir, std::int64_t iters, std::uint64_t seed, const std::string& resume) {
    auto net = make(seed);
    train::AnyLoss<Cpu> loss;  // the config's runtime loss, wrapped by loss::DeepSupervision
    loss.add(1.0, loss::Dice<Cpu>{{.include_background = false, .batch = true}});
    loss.add(1.0, loss::CrossEntropy<Cpu>{});
    optim::SGD opt{nn::parameters(net), {.lr = 0.01, .momentum = 0.99, .nesterov = true, .weight_decay = 3e-5}};
    optim::PolyLR sched{opt, {.total_iters = 4, .power = 0.9}};
    data::Loader loader{test::SphereDataset{.extent = 8}, transforms::RandomFlip3D{}, {.batch_size = 2, .workers = 0, .seed = 2}};
    train::Trainer trainer{net, loss, opt, sched,
                           {.iters = iters, .save_every = 2, .save_dir = dir, .resume = resume, .progress = nullptr}};
    trainer.fit(loader);
    return test::snapshot(net);
  };
  const auto straight = go(test::fresh_dir("ds_straight"), 4, 1, "");
  const auto dir = test::fresh_dir("ds_resumed");
  go(dir, 2, 1, "");
  const auto resumed = go(dir, 4, 99, "latest");
  CHECK(test::bit_identical(straight, resumed));
  // Every head's weights moved: the low-resolution heads got a gradient.
  const auto initial = [&] {
    auto net = make(1);
    return test::snapshot(net);
  }();
  for (std::size_t i = 0; i < initial.size(); ++i)
    if (initial[i].first.find("seg_layers") != std::string::npos) {
      INFO(initial[i].first);
      CHECK(initial[i].second != straight[i].second);
    }
}

TEST_CASE("Labels for a lower-resolution head are nearest-downsampled") {
  auto labels = Tensor<std::uint8_t>::zeros({1, 1, 4, 4, 4});
  for (std::int64_t i = 0; i < 64; ++i) labels.data()[i] = static_cast<std::uint8_t>(i % 4 >= 2 ? 1 : 0);
  const auto half = train::nearest_labels(labels, Shape{1, 2, 2, 2, 2});
  REQUIRE(half.shape() == Shape{1, 1, 2, 2, 2});
  // x = 0 of the half grid reads x = 1 of the full one (label 0), x = 1 reads x = 3 (label 1).
  for (std::int64_t i = 0; i < 8; ++i) CHECK(half.data()[i] == (i % 2));
  CHECK(train::nearest_labels(labels, Shape{1, 2, 4, 4, 4}).data() == labels.data());
}

TEST_CASE("Trainer options are checked") {
  auto net = test::make_tiny_net(1);
  auto loss = loss::dice_ce<Cpu>();
  optim::SGD opt{nn::parameters(net), {.lr = 0.01}};
  optim::StepLR sched{opt, {.step_size = 10}};
  auto make = [&](train::TrainerOptions o) {
    o.progress = nullptr;
    o.save_dir = test::fresh_dir("options");
    train::Trainer t{net, loss, opt, sched, o};
  };
  CHECK_THROWS_WITH(make({.iters = 0}), Catch::Contains("train::Trainer: iters: expected >= 1, got 0"));
  CHECK_THROWS_WITH(make({.accumulation = 0}), Catch::Contains("accumulation: expected >= 1"));
  CHECK_THROWS_WITH(make({.clip_grad_norm = -1.0}), Catch::Contains("clip_grad_norm: expected > 0"));
  if (cpu::bf16_convolutions() == cpu::Bf16Convolutions::none)
    CHECK_THROWS_WITH(make({.amp = true}), Catch::Contains("amp: expected a CPU with bfloat16 convolutions"));
  else
    CHECK_NOTHROW(make({.amp = true}));
  const auto dir = test::fresh_dir("missing");
  train::Trainer t{net, loss, opt, sched, {.save_dir = dir, .resume = (dir / "iter_7").string(), .progress = nullptr}};
  CHECK_THROWS_WITH(t.resume(), Catch::Contains("iter_7 does not exist"));
}
