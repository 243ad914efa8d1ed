// nnU-Net's nnUNetTrainer on medseg's trainer: one fold of one configuration, from the
// preprocessed data to a results folder laid out as nnU-Net's:
//   RESULTS/nnUNetTrainer__nnUNetPlans__3d_fullres/
//     plans.json, dataset.json, dataset_fingerprint.json
//     fold_0/checkpoint_final/   deploy.json + model.safetensors (`medseg infer --model` runs it)
//     fold_0/checkpoint_best/    the same with the best validation weights
//     fold_0/progress.png, fold_0/training/ (resumable checkpoints, metrics.jsonl)
//     fold_0/validation/         CASE.nii.gz on the raw grid, CASE.npy probabilities, summary.json/.csv
// Defaults are nnUNetTrainer's (nnunetv2/training/nnUNetTrainer/nnUNetTrainer.py,
// MIC-DKFZ/nnUNet@0e495086): SGD lr 0.01, Nesterov momentum 0.99, weight decay 3e-5, poly 0.9,
// 1000 epochs of 250 iterations, the plans' batch and patch, 33% foreground oversampling,
// the full augmentation, deep supervision with nnU-Net's weights, Dice + CE (batch Dice as
// the plans say, background not scored). A time budget (minutes) scales the schedule to the
// iterations that fit, measured on this machine: the learning rate still decays to 0.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "../data/loader.hpp"
#include "../data/medicalseg.hpp"
#include "../infer/evaluate.hpp"
#include "../infer/predictor.hpp"
#include "../loss/mixed.hpp"
#include "../metrics/report.hpp"
#include "../models/any_model.hpp"
#include "../nn/state_dict.hpp"
#include "../optim/schedules.hpp"
#include "../optim/sgd.hpp"
#include "../train/trainer.hpp"
#include "../transforms/presets.hpp"
#include "dataset.hpp"
#include "plans.hpp"
#include "recipe.hpp"
#include "splits.hpp"

namespace medseg::nnunet {

/// nnUNetTrainer's values, then medseg's run controls.
struct TrainerSettings {
  double initial_lr = 1e-2;
  double weight_decay = 3e-5;
  double momentum = 0.99;  // Nesterov
  double poly_exponent = 0.9;
  std::int64_t epochs = 1000;
  std::int64_t iterations_per_epoch = 250;
  // Foreground oversampling (33%) and the augmentation are transforms::nnunet_3d's.
  std::int64_t save_every_epochs = 50;

  std::optional<double> minutes{};       // a time budget: as many iterations as fit
  std::optional<std::int64_t> iters{};   // exactly this many iterations
  std::int64_t evaluations = 5;          // sliding-window validations during training (for checkpoint_best)
  bool resume = false;                   // continue the fold's latest checkpoint
  bool validate = true;                  // predict and score the fold's validation cases after training
  bool save_probabilities = true;        // validation/CASE.npy, what find_best ensembles
  std::uint64_t seed = 0;
  int workers = 2;
  std::ostream* progress = &std::cout;
};

/// Where a configuration's data and results live.
struct Folders {
  std::filesystem::path raw;           // nnUNet_raw/DatasetXXX (images and labels as given)
  std::filesystem::path preprocessed;  // nnUNet_preprocessed/DatasetXXX (plans, splits, data)
  std::filesystem::path results;       // nnUNet_results/DatasetXXX
  std::string plans_name = "nnUNetPlans";

  std::filesystem::path plans_file() const { return preprocessed / (plans_name + ".json"); }
  /// The preprocessed cases of a configuration (its data_identifier).
  std::filesystem::path data(const Configuration& c) const { return preprocessed / c.data_identifier; }
  /// RESULTS/nnUNetTrainer__PLANS__CONFIGURATION.
  std::filesystem::path trained(const std::string& configuration) const {
    return results / ("nnUNetTrainer__" + plans_name + "__" + configuration);
  }
};

struct FoldResult {
  std::filesystem::path folder;  // .../fold_K
  std::int64_t iterations = 0;
  double seconds_per_iteration = 0;
  std::optional<metrics::Summary> validation;
};

/// Trains fold `fold` ("0".."4", or "all": every training case, no validation) of
/// `configuration`. Needs the plans, splits and preprocessed data (`medseg nnunet plan` and
/// `preprocess`).
FoldResult train_fold(const Folders& folders, const std::string& configuration, const std::string& fold,
                      const TrainerSettings& settings = {});

/// The fold's cases: train and val names ("all": every case in train, none in val).
Fold fold_cases(const Folders& folders, const std::string& fold);

/// Predicts and scores cases `names` of the raw training set with `model_dir` (a deploy
/// folder), writing NAME.nii.gz (and NAME.npy) and summary.json/.csv into `out`.
metrics::Summary validate_cases(const Folders& folders, const std::filesystem::path& model_dir,
                                const std::vector<std::string>& names, const std::filesystem::path& out,
                                bool save_probabilities, std::ostream* progress);

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

inline void write_list(const std::filesystem::path& file, const std::vector<std::string>& names) {
  std::string text;
  for (const auto& n : names) text += "images/" + n + ".npy labels/" + n + ".npy\n";
  io::write_text_atomic(file, text);
}

/// A deploy folder: the recipe's model, preprocessing and sliding window, with `weights`.
inline void write_model_folder(const std::filesystem::path& dir, const Recipe& r, const std::filesystem::path& weights) {
  infer::DeployConfig deploy;
  deploy.model = r.model;
  deploy.image_ops = r.image_ops;
  deploy.inference = r.inference;
  deploy.labels = r.class_names;
  std::filesystem::create_directories(dir);
  io::copy_file_atomic(weights, dir / deploy.weights);
  infer::write_deploy(dir, deploy);
}

inline std::int64_t digits_only(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }) ? std::stoll(s) : -1;
}

}  // namespace detail

inline Fold fold_cases(const Folders& folders, const std::string& fold) {
  const auto folds = load_folds(folders.preprocessed / "splits_final.json");
  if (fold == "all") {
    Fold all = folds.front();
    all.train.insert(all.train.end(), all.val.begin(), all.val.end());
    std::sort(all.train.begin(), all.train.end());
    all.val.clear();
    return all;
  }
  const std::int64_t k = detail::digits_only(fold);
  require(k >= 0 && k < static_cast<std::int64_t>(folds.size()), [&] {
    return ErrorInfo{.where = (folders.preprocessed / "splits_final.json").string(), .field = "fold",
                     .expected = "0.." + std::to_string(folds.size() - 1) + " or all", .actual = "\"" + fold + "\""};
  });
  return folds[static_cast<std::size_t>(k)];
}

inline metrics::Summary validate_cases(const Folders& folders, const std::filesystem::path& model_dir,
                                       const std::vector<std::string>& names, const std::filesystem::path& out,
                                       bool save_probabilities, std::ostream* progress) {
  namespace fs = std::filesystem;
  const auto raw = data::NnunetRawDataset::open(folders.raw);
  std::map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < raw.size(); ++i) index[raw.name(i)] = i;
  infer::Predictor<> predictor{model_dir};
  const auto deploy = infer::read_deploy(model_dir);
  const int classes = static_cast<int>(deploy.labels.size());
  fs::create_directories(out);
  std::vector<metrics::CaseMetrics> cases;
  ProgressBar bar(progress, static_cast<std::int64_t>(names.size()), "validation cases");
  for (const auto& name : names) {
    require(index.count(name) > 0, [&] {
      return ErrorInfo{.where = folders.raw.string(), .field = "case", .expected = "a training case", .actual = name};
    });
    const data::Case c = raw.load(index[name]);
    const auto p = predictor.predict(io::AnyImage{c.image});
    io::write_image(io::AnyImage{p.labels}, out / (name + ".nii.gz"));
    if (save_probabilities) io::write_npy(io::AnyImage{io::Image<float>{p.probabilities, c.image.geometry}}, out / (name + ".npy"));
    const auto& s = c.image.geometry.spacing;  // (x, y, z); metrics take (D, H, W)
    cases.push_back(metrics::evaluate_case(name, p.labels.voxels, c.label->voxels,
                                           {.num_classes = classes, .surface = {.spacing = {s[2], s[1], s[0]}}}));
    bar.advance();
  }
  const auto summary = metrics::summarize(cases);
  metrics::write_json(out / "summary.json", cases, summary, deploy.labels);
  metrics::write_csv(out / "summary.csv", cases, summary, deploy.labels);
  return summary;
}

inline FoldResult train_fold(const Folders& folders, const std::string& configuration, const std::string& fold,
                             const TrainerSettings& settings) {
  namespace fs = std::filesystem;
  using Clock = std::chrono::steady_clock;
  const Plans plans = Plans::load(folders.plans_file());
  const Configuration c = plans.configuration(configuration);
  const DatasetJson dataset = DatasetJson::load(folders.preprocessed / "dataset.json");
  const Recipe recipe = make_recipe(plans, c, dataset);
  const fs::path data_dir = folders.data(c);
  require(fs::exists(data_dir / "dataset.json"), [&] {
    return ErrorInfo{.where = "nnunet::train_fold", .field = "preprocessed data", .expected = data_dir.string(),
                     .actual = "missing", .detail = "run medseg nnunet preprocess first"};
  });
  const Fold cases = fold_cases(folders, fold);

  // The configuration folder holds what predicting needs besides the weights (nnU-Net's copies).
  const fs::path trained = folders.trained(configuration);
  const fs::path out = trained / ("fold_" + fold);
  fs::create_directories(out);
  for (const auto& [from, to] : {std::pair{folders.plans_file(), trained / "plans.json"},
                                 std::pair{folders.preprocessed / "dataset.json", trained / "dataset.json"},
                                 std::pair{folders.preprocessed / "dataset_fingerprint.json", trained / "dataset_fingerprint.json"}})
    if (fs::exists(from)) io::copy_file_atomic(from, to);

  detail::write_list(data_dir / ("fold_" + fold + "_train.txt"), cases.train);
  const auto train_set = data::ListDataset::open(data_dir / ("fold_" + fold + "_train.txt"));
  std::optional<data::ListDataset> val_set;
  if (!cases.val.empty()) {
    detail::write_list(data_dir / ("fold_" + fold + "_val.txt"), cases.val);
    val_set = data::ListDataset::open(data_dir / ("fold_" + fold + "_val.txt"));
  }

  auto model = models::AnyModel<Cpu>::from_json(recipe.model, folders.plans_file().string() + ": " + configuration);
  nn::name_root(model);
  auto loss = loss::dice_ce({.include_background = false, .batch = recipe.batch_dice});
  optim::SGD optimizer{nn::parameters(model), {.lr = settings.initial_lr, .momentum = settings.momentum, .nesterov = true,
                                               .weight_decay = settings.weight_decay}};
  data::Loader loader{train_set, transforms::nnunet_3d(recipe.patch), {.batch_size = recipe.batch_size, .workers = settings.workers, .seed = settings.seed}};

  // The schedule: nnU-Net's epochs, exactly `iters`, or what fits the time budget.
  FoldResult result;
  result.folder = out;
  {  // seconds per iteration: two timed forward + backward passes after a warm-up one
    const auto batch = loader.batch(0);
    double t = 0;
    for (int pass = 0; pass < 3; ++pass) {
      const auto t0 = Clock::now();
      loss.forward(model.forward(batch.image), batch.label);
      model.backward(loss.backward());
      if (pass > 0) t += std::chrono::duration<double>(Clock::now() - t0).count();
    }
    nn::zero_grad(model);
    result.seconds_per_iteration = t / 2;
  }
  // A resumed run keeps the schedule it started with (the poly decay depends on its length).
  const fs::path schedule_file = out / "training" / "schedule.json";
  if (settings.resume && fs::exists(schedule_file)) {
    result.iterations = data::detail::read_json(schedule_file).at("iterations").get<std::int64_t>();
  } else if (settings.iters) {
    result.iterations = *settings.iters;
  } else if (settings.minutes) {
    // A fifth of the budget for validation and export, the rest for iterations.
    const double seconds = *settings.minutes * 60 * (settings.validate && val_set ? 0.8 : 0.9);
    result.iterations = std::max<std::int64_t>(10, static_cast<std::int64_t>(seconds / result.seconds_per_iteration));
  } else {
    result.iterations = settings.epochs * settings.iterations_per_epoch;
  }
  if (settings.progress)
    *settings.progress << "nnunet train " << configuration << " fold " << fold << ": " << cases.train.size() << " training, "
                       << cases.val.size() << " validation cases; patch " << recipe.patch[0] << "x" << recipe.patch[1] << "x"
                       << recipe.patch[2] << ", batch " << recipe.batch_size << "; " << result.iterations << " iterations (~"
                       << std::fixed << std::setprecision(2) << result.seconds_per_iteration << " s each)\n";

  fs::create_directories(out / "training");
  io::write_text_atomic(schedule_file, nlohmann::json{{"iterations", result.iterations}}.dump() + "\n");
  optim::PolyLR schedule{optimizer, {.total_iters = result.iterations, .power = settings.poly_exponent}};
  const std::int64_t save_every = std::min(result.iterations, settings.save_every_epochs * settings.iterations_per_epoch);
  train::Trainer trainer{model, loss, optimizer, schedule,
                         {.iters = result.iterations,
                          .log_every = std::max<std::int64_t>(1, std::min<std::int64_t>(50, result.iterations / 20)),
                          .save_every = std::max<std::int64_t>(1, std::min(save_every, std::max<std::int64_t>(1, result.iterations / 4))),
                          // At most `evaluations` sliding-window validations, at most one per nnU-Net epoch.
                          .eval_every = val_set ? std::max({std::int64_t{1}, result.iterations / std::max<std::int64_t>(1, settings.evaluations),
                                                            std::min(result.iterations, settings.iterations_per_epoch)})
                                                : 0,
                          .keep_checkpoint_max = 1,
                          .save_dir = out / "training",
                          .resume = settings.resume ? "latest" : "",
                          .seed = settings.seed,
                          .progress = settings.progress}};
  if (val_set) {
    const infer::EvaluateOptions options{.window = infer::sliding_window_options({.roi = recipe.patch, .overlap = 0.5}),
                                         .num_classes = static_cast<int>(recipe.class_names.size()),
                                         .surface_distances = false};
    trainer.set_evaluator([&val_set, options](models::AnyModel<Cpu>& m) {
      const auto e = infer::evaluate(m, *val_set, options);
      return train::EvalResult{.mean_dice = e.summary.mean_dice, .per_class_dice = e.summary.dice};
    });
  }
  const bool resumed = settings.resume && trainer.resume();
  if (resumed && settings.progress)
    *settings.progress << "resumed at iteration " << trainer.state().iteration << " of " << result.iterations << "\n";
  // A finished fold asked to resume has nothing left to do once its validation is there.
  const bool finished = resumed && trainer.state().iteration >= result.iterations &&
                        fs::exists(out / "checkpoint_final" / infer::deploy_file_name) &&
                        (cases.val.empty() || !settings.validate || fs::exists(out / "validation" / "summary.json"));
  if (finished) return result;
  trainer.fit(loader);

  // checkpoint_final and checkpoint_best as deploy folders; progress.png.
  const fs::path final_weights = out / "training" / "final.safetensors";
  nn::save_state_dict(model, final_weights);
  detail::write_model_folder(out / "checkpoint_final", recipe, final_weights);
  const fs::path best = out / "training" / "best_model" / "model.safetensors";
  detail::write_model_folder(out / "checkpoint_best", recipe, fs::exists(best) ? best : final_weights);
  if (fs::exists(out / "training" / "curves.png"))
    io::copy_file_atomic(out / "training" / "curves.png", out / "progress.png");

  if (settings.validate && !cases.val.empty())
    result.validation = validate_cases(folders, out / "checkpoint_final", cases.val, out / "validation",
                                       settings.save_probabilities, settings.progress);
  return result;
}

}  // namespace medseg::nnunet
