// medseg train --config CFG [--iters N] [--batch_size N] [--learning_rate X] [--save_dir DIR]
//              [--resume latest|DIR] [--seed N] [--set KEY=VALUE] [--threads N]
// MedicalSeg's train.py: a JSON config (configs/, `_base_` inheritance) in, checkpoints,
// best_model/, metrics.jsonl and curves.png under save_dir out. See include/medseg/train/.
#include <iostream>
#include <string>
#include <vector>

#include "any_model.hpp"
#include "command.hpp"
#include "medseg/core/parallel.hpp"
#include "medseg/data/loader.hpp"
#include "medseg/infer/evaluate.hpp"
#include "medseg/train.hpp"
#include "workflow.hpp"

namespace medseg::tool {

namespace {
const char* train_help =
    "usage: medseg train --config CFG [--iters N] [--batch_size N] [--learning_rate X] [--save_dir DIR]\n"
    "                    [--resume latest|DIR] [--seed N] [--set KEY=VALUE ...] [--threads N]\n"
    "Trains the model of a JSON config (MedicalSeg's keys; `_base_` inherits another file; see configs/)\n"
    "on its prepared train_dataset, evaluating on val_dataset by sliding window when do_eval is true.\n"
    "Writes save_dir/iter_N checkpoints (atomically; keep_checkpoint_max kept), best_model/ by validation\n"
    "mean Dice, metrics.jsonl and curves.png. --resume latest continues the newest checkpoint exactly.\n"
    "Flags override the config's keys; --set a.b=VALUE overrides any key. \"amp\": true trains with bfloat16\n"
    "convolutions (float32 weights and everything else; pays on CPUs with AMX; docs/architecture.md).\n";
}  // namespace

int train_command(Args args) {
  std::vector<std::string> rest;
  std::string config_path;
  std::vector<std::string> words;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--help" || args[i] == "-h") {
      std::cout << train_help;
      return 0;
    }
    if (args[i] == "--config" && i + 1 < args.size()) config_path = std::string(args[++i]);
    else if (args[i] == "--threads" && i + 1 < args.size()) set_num_threads(std::stoi(std::string(args[++i])));
    else words.emplace_back(args[i]);
  }
  const auto overrides = train::parse_overrides(words, &rest);
  require(rest.empty(), [&] {
    return ErrorInfo{.where = "medseg train", .field = "argument",
                     .expected = "--config, --iters, --batch_size, --learning_rate, --save_dir, --resume, --seed, --set, --threads",
                     .actual = "\"" + (rest.empty() ? std::string() : rest.front()) + "\""};
  });
  require(!config_path.empty(), [] {
    return ErrorInfo{.where = "medseg train", .field = "--config", .expected = "a config file (configs/*.json)", .actual = "none given"};
  });
  const train::Config config = train::load_config(config_path, overrides);
  const auto& j = config.json;

  auto model = models::AnyModel<Cpu>::from_json(j.at("model"), config.source_of("model") + ": model");
  nn::name_root(model);
  auto optimizer = train::make_optimizer<Cpu>(config, nn::parameters(model));
  auto schedule = train::make_schedule(config, optimizer);
  auto loss = train::make_loss<Cpu>(config);

  const auto train_set = open_dataset(config, "train_dataset");
  data::Loader loader{train_set, train::make_transforms<data::LabelValue>(config, "train_dataset"),
                      {.batch_size = j.value("batch_size", std::int64_t{2}),
                       .workers = j.value("num_workers", 2),
                       .seed = j.value("seed", std::uint64_t{0})}};
  train::Trainer trainer{model, loss, optimizer, schedule, train::trainer_options(config)};

  if (j.value("do_eval", true) && j.contains("val_dataset")) {
    const auto val_set = open_dataset(config, "val_dataset");
    const auto window = infer::sliding_window_options(inference_settings(config));
    const int classes = static_cast<int>(num_classes(config));
    trainer.set_evaluator([val_set, window, classes](models::AnyModel<Cpu>& m) {
      const auto e = infer::evaluate(m, val_set, {.window = window, .num_classes = classes, .surface_distances = false});
      train::EvalResult r{.mean_dice = e.summary.mean_dice, .per_class_dice = e.summary.dice};
      r.extra["mean_soft_dice"] = e.summary.mean_soft_dice;
      r.extra["mean_iou"] = e.summary.mean_iou;
      return r;
    });
  }
  trainer.fit(loader);
  std::cout << "checkpoints and logs: " << trainer.options().save_dir.string() << "\n";
  return 0;
}

}  // namespace medseg::tool
