// medseg val --config CFG --model_path WEIGHTS [--save_dir DIR] [--save_predictions] [--threads N]
// MedicalSeg's val.py: a trained model scored on the config's val_dataset by sliding window:
// per-class Dice, IoU, HD95, average surface distance (mm) and MedicalSeg's soft Dice, per
// case and averaged, printed and written as val_metrics.csv / .json.
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <string>
#include <vector>

#include "any_model.hpp"
#include "command.hpp"
#include "medseg/core/parallel.hpp"
#include "medseg/infer/evaluate.hpp"
#include "medseg/nn/state_dict.hpp"
#include "workflow.hpp"

namespace medseg::tool {

int val_command(Args args) {
  std::string config_path;
  fs::path model_path, save_dir;
  bool save_predictions = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto value = [&]() -> std::string {
      require(i + 1 < args.size(), [&] {
        return ErrorInfo{.where = "medseg val", .field = std::string(args[i]), .expected = "a value", .actual = "none"};
      });
      return std::string(args[++i]);
    };
    if (args[i] == "--config") config_path = value();
    else if (args[i] == "--model_path") model_path = value();
    else if (args[i] == "--save_dir") save_dir = value();
    else if (args[i] == "--save_predictions") save_predictions = true;
    else if (args[i] == "--threads") set_num_threads(std::stoi(value()));
    else if (args[i] == "--help" || args[i] == "-h") {
      std::cout << "usage: medseg val --config CFG --model_path WEIGHTS [--save_dir DIR] [--save_predictions] [--threads N]\n"
                   "Scores the model of CFG with WEIGHTS (a .safetensors file or a checkpoint folder such as\n"
                   "output/best_model) on CFG's val_dataset by sliding window (CFG's inference settings):\n"
                   "Dice, IoU, HD95 and average surface distance in mm per class, and MedicalSeg's soft Dice.\n"
                   "Writes DIR/val_metrics.csv and .json (DIR: the weights' folder by default); with\n"
                   "--save_predictions also DIR/predictions/NAME.nii.gz.\n";
      return 0;
    } else {
      throw Error{{.where = "medseg val", .field = "argument",
                   .expected = "--config, --model_path, --save_dir, --save_predictions, --threads or --help",
                   .actual = "\"" + std::string(args[i]) + "\""}};
    }
  }
  require(!config_path.empty() && !model_path.empty(), [&] {
    return ErrorInfo{.where = "medseg val", .field = config_path.empty() ? "--config" : "--model_path",
                     .expected = "a path", .actual = "none given"};
  });
  const train::Config config = train::load_config(config_path);
  auto model = models::AnyModel<Cpu>::from_json(config.json.at("model"), config.source_of("model") + ": model");
  nn::name_root(model);
  const fs::path weights = weights_file(model_path, "medseg val");
  nn::load_state_dict(model, weights);
  if (save_dir.empty()) save_dir = weights.parent_path();
  fs::create_directories(save_dir);

  const auto settings = inference_settings(config);
  const auto labels = deploy_config(config).labels;
  const auto e = infer::evaluate(model, open_dataset(config, "val_dataset"),
                                 {.window = infer::sliding_window_options(settings),
                                  .num_classes = static_cast<int>(num_classes(config)),
                                  .predictions_dir = save_predictions ? save_dir / "predictions" : fs::path(),
                                  .progress = &std::cout});
  metrics::write_csv(save_dir / "val_metrics.csv", e.cases, e.summary, labels);
  metrics::write_json(save_dir / "val_metrics.json", e.cases, e.summary, labels);
  std::cout << std::fixed << std::setprecision(4) << "[EVAL] #Images: " << e.summary.cases << "  mDice: " << e.summary.mean_dice
            << "  mIoU: " << e.summary.mean_iou << "  HD95: " << e.summary.mean_hd95 << " mm  ASSD: " << e.summary.mean_assd
            << " mm  soft mDice (MedicalSeg, with background): " << e.summary.mean_soft_dice << "\n[EVAL] Class Dice:";
  for (std::size_t c = 0; c < e.summary.dice.size(); ++c) std::cout << " " << labels.at(c) << " " << e.summary.dice[c];
  std::cout << "\nwrote " << (save_dir / "val_metrics.csv").string() << " and val_metrics.json\n";
  return 0;
}

}  // namespace medseg::tool
