// Checkpoint folders: atomic writes (a crash mid-write leaves the previous latest intact),
// leftovers of killed processes, rotation, the trainer state's JSON, dropout counters, and the
// errors a bad checkpoint gives.
#include <catch2/catch.hpp>

#include <fstream>

#include "fixtures.hpp"

using namespace medseg;
namespace fs = std::filesystem;

namespace {
struct Crash {};

void touch(const fs::path& file, const std::string& text = "x") {
  fs::create_directories(file.parent_path());
  std::ofstream(file) << text;
}

/// A complete-looking checkpoint folder (what list_checkpoints requires).
void fake_checkpoint(const fs::path& dir) { touch(dir / train::trainer_file, "{}"); }
}  // namespace

TEST_CASE("A write that fails midway leaves the previous latest checkpoint intact") {
  const auto dir = test::fresh_dir("atomic");
  fake_checkpoint(dir / "iter_4");
  CHECK_THROWS_AS(train::write_atomically(dir / "iter_6",
                                          [](const fs::path& tmp) {
                                            touch(tmp / train::model_file, "half a model");
                                            throw Crash{};
                                          }),
                  Crash);
  CHECK(train::latest_checkpoint(dir) == dir / "iter_4");
  CHECK_FALSE(fs::exists(dir / "iter_6"));
  for (const auto& e : fs::directory_iterator(dir)) CHECK(e.path().filename() == "iter_4");

  // Replacing a folder that exists: a failure keeps the old contents.
  touch(dir / "iter_4" / "marker", "old");
  CHECK_THROWS_AS(train::write_atomically(dir / "iter_4", [](const fs::path&) { throw Crash{}; }), Crash);
  CHECK(fs::exists(dir / "iter_4" / "marker"));
  train::write_atomically(dir / "iter_4", [](const fs::path& tmp) { fake_checkpoint(tmp); });
  CHECK_FALSE(fs::exists(dir / "iter_4" / "marker"));
  CHECK(fs::exists(dir / "iter_4" / train::trainer_file));
}

TEST_CASE("Leftovers of a killed writer are ignored and cleaned") {
  const auto dir = test::fresh_dir("killed");
  fake_checkpoint(dir / "iter_2");
  touch(dir / ".tmp-iter_4-123" / train::model_file);  // killed while writing iter_4
  touch(dir / "iter_6" / train::model_file);           // copied by hand, no trainer state: not a checkpoint
  touch(dir / ".old-best_model-77" / "best.json");     // killed between the two renames of a replacement
  CHECK(train::latest_checkpoint(dir) == dir / "iter_2");
  train::write_atomically(dir / "iter_8", [](const fs::path& tmp) { fake_checkpoint(tmp); });
  CHECK_FALSE(fs::exists(dir / ".tmp-iter_4-123"));
  CHECK(fs::exists(dir / "best_model" / "best.json"));  // put back, not lost
  CHECK_FALSE(fs::exists(dir / ".old-best_model-77"));
  CHECK(train::latest_checkpoint(dir) == dir / "iter_8");
}

TEST_CASE("Rotation keeps the newest checkpoints by iteration number") {
  const auto dir = test::fresh_dir("rotate");
  for (int i : {100, 20, 3, 1000}) fake_checkpoint(dir / ("iter_" + std::to_string(i)));
  touch(dir / "iter_x" / "trainer.json");
  CHECK(train::checkpoint_iteration("iter_12") == 12);
  CHECK_FALSE(train::checkpoint_iteration("iter_").has_value());
  CHECK_FALSE(train::checkpoint_iteration("iter_1a").has_value());
  CHECK_FALSE(train::checkpoint_iteration("best_model").has_value());
  train::rotate_checkpoints(dir, 2);
  std::vector<std::string> names;
  for (const auto& p : train::list_checkpoints(dir)) names.push_back(p.filename().string());
  CHECK(names == std::vector<std::string>{"iter_100", "iter_1000"});
  CHECK(fs::exists(dir / "iter_x"));  // not ours: never deleted
  train::rotate_checkpoints(dir, 0);  // 0 keeps everything
  CHECK(train::list_checkpoints(dir).size() == 2);
}

TEST_CASE("Trainer state round-trips through JSON and names bad fields") {
  train::TrainerState s{.iteration = 12, .batches = 24, .best_mean_dice = 0.75, .best_iteration = 10, .seed = 9,
                        .random_counters = {{"down.dropout", 24}}};
  const auto back = train::TrainerState::from_json(s.to_json(), "t.json");
  CHECK(back.iteration == 12);
  CHECK(back.batches == 24);
  CHECK(back.best_mean_dice == 0.75);
  CHECK(back.best_iteration == 10);
  CHECK(back.seed == 9);
  CHECK(back.random_counters == s.random_counters);
  auto j = s.to_json();
  j.erase("batches");
  CHECK_THROWS_WITH(train::TrainerState::from_json(j, "iter_3/trainer.json"),
                    "iter_3/trainer.json: batches: expected a number, got missing");
  j = s.to_json();
  j["random_counters"]["down.dropout"] = -1;
  CHECK_THROWS_WITH(train::TrainerState::from_json(j, "t.json"),
                    "t.json: random_counters.down.dropout: expected a count >= 0, got -1");
}

TEST_CASE("A checkpoint restores weights optimizer schedule and dropout counters") {
  const auto dir = test::fresh_dir("restore");
  auto net = test::make_tiny_net(1);
  optim::SGD opt{nn::parameters(net), {.lr = 0.1, .momentum = 0.9}};
  optim::PolyLR sched{opt, {.total_iters = 10}};
  auto x = Tensor<float>::ones({1, 1, 4, 4, 4});
  for (int i = 0; i < 3; ++i) {  // three steps: momentum, running statistics and dropout counts move
    opt.zero_grad();
    net.backward(net.forward(x));
    opt.step();
    sched.step();
  }
  train::save_checkpoint(dir / "iter_3", net, opt, sched, {.iteration = 3, .batches = 3});
  CHECK(train::random_counters(net) == std::map<std::string, std::uint64_t>{{"3", 3}});

  auto other = test::make_tiny_net(2);
  optim::SGD opt2{nn::parameters(other), {.lr = 0.1, .momentum = 0.9}};
  optim::PolyLR sched2{opt2, {.total_iters = 10}};
  const auto state = train::load_checkpoint(dir / "iter_3", other, opt2, sched2);
  CHECK(state.iteration == 3);
  CHECK(sched2.iteration() == 3);
  CHECK(opt2.lr() == opt.lr());
  CHECK(train::random_counters(other) == train::random_counters(net));
  CHECK(test::bit_identical(test::snapshot(net), test::snapshot(other)));
  // The next step is the same in both: the momentum buffers came back too.
  for (auto* m : {&net, &other}) {
    auto& o = m == &net ? opt : opt2;
    o.zero_grad();
    m->backward(m->forward(x));
    o.step();
  }
  CHECK(test::bit_identical(test::snapshot(net), test::snapshot(other)));

  // A model without dropout has no counter to restore; one with a dropout the checkpoint lacks fails.
  nlohmann::json j = nlohmann::json::parse(std::ifstream(dir / "iter_3" / train::trainer_file));
  j["random_counters"] = nlohmann::json::object();
  std::ofstream(dir / "iter_3" / train::trainer_file) << j.dump();
  CHECK_THROWS_WITH(train::load_checkpoint(dir / "iter_3", other, opt2, sched2),
                    Catch::Contains("trainer.json: random_counters: expected a counter for layer \"3\""));
  fs::remove(dir / "iter_3" / train::optimizer_file);
  CHECK_THROWS_WITH(train::load_checkpoint(dir / "iter_3", other, opt2, sched2), Catch::Contains("optimizer.safetensors"));
  CHECK_THROWS_WITH(train::load_checkpoint(dir / "iter_9", other, opt2, sched2),
                    Catch::Contains("iter_9 does not exist"));
}
