// `medseg nnunet run DATASET_DIR --minutes N`: the whole of nnU-Net on a time budget, what a
// newcomer types first. Checks the dataset, extracts the fingerprint, plans for the machine it
// runs on (the CPU: patch and batch sized so an iteration fits the budget, see
// plan_for_time_budget), preprocesses 3d_fullres (the configuration nnU-Net finds best on most
// datasets), then
//   - with a small budget: trains one model on every training case;
//   - with a large one (at least large_budget_minutes): trains the five folds, runs find_best
//     (postprocessing included) and predicts with the five-fold ensemble;
// and predicts imagesTs, scoring it against labelsTs when the dataset has them.
#pragma once

#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>
#include <optional>
#include <ostream>
#include <string>

#include "dataset.hpp"
#include "evaluation.hpp"
#include "find_best.hpp"
#include "fingerprint.hpp"
#include "planner.hpp"
#include "predict.hpp"
#include "preprocessing.hpp"
#include "training.hpp"

namespace medseg::nnunet {

struct RunSettings {
  double minutes = 60;                 // everything, planning to the last prediction
  double large_budget_minutes = 300;   // from here on: five folds, find_best, the ensemble
  double iterations_wanted = 300;      // a small budget's schedule: patch and batch sized for it
  std::uint64_t seed = 0;
  std::ostream* progress = nullptr;
};

struct RunResult {
  Plans plans;
  std::string configuration;
  std::vector<std::string> folds;
  std::optional<BestConfiguration> best;
  std::optional<FolderEvaluation> test;  // imagesTs scored against labelsTs
  std::filesystem::path predictions;     // imagesTs predicted
};

/// Seconds one training iteration of configuration `c` takes on this machine (forward and
/// backward of a batch of random patches, after a warm-up pass).
double measure_iteration_seconds(const Plans& plans, const Configuration& c, const DatasetJson& d);

/// nnU-Net's plans with the memory target scaled until a 3d_fullres iteration takes about
/// `seconds_per_iteration` here (nnU-Net's memory estimate is also its compute estimate: both
/// grow with the feature-map voxels of a batch). Never above nnU-Net's default target.
Plans plan_for_time_budget(const Fingerprint& f, const DatasetJson& d, const std::string& dataset_name,
                           double seconds_per_iteration, std::ostream* progress = nullptr);

RunResult run(const Folders& folders, const RunSettings& settings);

// ----------------------------------------------------------------------------------------
// Implementation

inline double measure_iteration_seconds(const Plans& plans, const Configuration& c, const DatasetJson& d) {
  using Clock = std::chrono::steady_clock;
  const Recipe r = make_recipe(plans, c, d);
  auto model = models::AnyModel<Cpu>::from_json(r.model, "nnunet::measure_iteration_seconds");
  auto loss = loss::dice_ce({.include_background = false, .batch = r.batch_dice});
  const auto channels = static_cast<std::int64_t>(d.channel_names.size());
  auto image = Tensor<float>::empty({r.batch_size, channels, r.patch[0], r.patch[1], r.patch[2]});
  auto label = Tensor<data::LabelValue>::zeros({r.batch_size, 1, r.patch[0], r.patch[1], r.patch[2]});
  for (std::int64_t i = 0; i < image.numel(); ++i) image.data()[i] = static_cast<float>((i * 7919) % 101) / 50.0f - 1.0f;
  for (std::int64_t i = 0; i < label.numel(); i += 3) label.data()[i] = 1;
  double t = 0;
  for (int pass = 0; pass < 2; ++pass) {
    const auto t0 = Clock::now();
    loss.forward(model.forward(image), label);
    model.backward(loss.backward());
    if (pass > 0) t = std::chrono::duration<double>(Clock::now() - t0).count();
  }
  return t;
}

inline Plans plan_for_time_budget(const Fingerprint& f, const DatasetJson& d, const std::string& dataset_name,
                                  double seconds_per_iteration, std::ostream* progress) {
  PlannerSettings s;
  const double most = s.gpu_memory_target_gb;
  Plans plans = plan_experiment(f, d, dataset_name, s);
  for (int attempt = 0; attempt < 5 && plans.has("3d_fullres"); ++attempt) {
    const Configuration c = plans.configuration("3d_fullres");
    const double measured = measure_iteration_seconds(plans, c, d);
    if (progress)
      *progress << "  plan for the CPU: memory target " << s.gpu_memory_target_gb << " GB -> patch " << c.patch_size[0] << "x"
                << c.patch_size[1] << "x" << c.patch_size[2] << ", batch " << c.batch_size << ": " << measured
                << " s per iteration (want " << seconds_per_iteration << ")\n";
    const double ratio = seconds_per_iteration / measured;
    if (std::abs(std::log(ratio)) < std::log(1.3) || (ratio > 1 && s.gpu_memory_target_gb >= most)) break;
    s.gpu_memory_target_gb = std::clamp(s.gpu_memory_target_gb * ratio, 0.01, most);
    Plans next = plan_experiment(f, d, dataset_name, s);
    const Configuration n = next.configuration("3d_fullres");
    const bool same = n.patch_size == c.patch_size && n.batch_size == c.batch_size;
    plans = std::move(next);
    if (same) break;  // the planner's floors (batch 2, the median case) reached
  }
  return plans;
}

inline RunResult run(const Folders& folders, const RunSettings& settings) {
  namespace fs = std::filesystem;
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const auto minutes_left = [&] {
    return settings.minutes - std::chrono::duration<double>(Clock::now() - start).count() / 60;
  };
  std::ostream* log = settings.progress;
  const bool large = settings.minutes >= settings.large_budget_minutes;
  RunResult result;

  // 1. Check, fingerprint, plan for this machine.
  verify_dataset(folders.raw, large ? 5 : 0);
  const Fingerprint fingerprint = extract_fingerprint(folders.raw, log);
  const DatasetJson dataset = DatasetJson::load(folders.raw / "dataset.json");
  fs::path name = fs::absolute(folders.raw).lexically_normal();
  if (name.filename().empty()) name = name.parent_path();
  // The schedule a small budget affords: about iterations_wanted iterations in ~70% of it.
  const double train_seconds = settings.minutes * 60 * 0.7 / (large ? 5 : 1);
  const double per_iteration = std::max(0.2, train_seconds / settings.iterations_wanted);
  result.plans = plan_for_time_budget(fingerprint, dataset, name.filename().string(), per_iteration, log);
  require(result.plans.has("3d_fullres"), [&] {
    return ErrorInfo{.where = "medseg nnunet run", .field = "configuration", .expected = "a 3-D dataset (3d_fullres)",
                     .actual = "only 2d", .detail = "2-D networks are not built yet"};
  });
  fs::create_directories(folders.preprocessed);
  fingerprint.save(folders.preprocessed / "dataset_fingerprint.json");
  result.plans.save(folders.plans_file());
  io::copy_file_atomic(folders.raw / "dataset.json", folders.preprocessed / "dataset.json");
  const auto raw = data::NnunetRawDataset::open(folders.raw);
  std::vector<std::string> names;
  for (std::size_t i = 0; i < raw.size(); ++i) names.push_back(raw.name(i));
  const fs::path own_splits = folders.raw / "splits_final.json";
  if (fs::exists(own_splits)) save_folds(folders.preprocessed / "splits_final.json", load_folds(own_splits, names));
  else if (names.size() >= min_cases_for_folds) save_folds(folders.preprocessed / "splits_final.json", make_folds(names));
  else save_folds(folders.preprocessed / "splits_final.json", {Fold{names, {}}});  // no folds: everything trains

  // 2. Preprocess, 3. train, on what is left of the budget.
  result.configuration = "3d_fullres";
  preprocess_configuration(folders, result.configuration, log);
  TrainerSettings train;
  train.seed = settings.seed;
  train.progress = log;
  const double predict_reserve = 0.08 * settings.minutes;
  if (large) {
    for (int k = 0; k < 5; ++k) {
      train.minutes = (minutes_left() - predict_reserve) / (5 - k);
      result.folds.push_back(std::to_string(k));
      train_fold(folders, result.configuration, result.folds.back(), train);
    }
    result.best = find_best(folders, {result.configuration}, log);
  } else {
    train.minutes = minutes_left() - predict_reserve;
    train.validate = false;
    result.folds = {"all"};
    train_fold(folders, result.configuration, "all", train);
  }

  // 4. The test images.
  if (fs::is_directory(folders.raw / "imagesTs")) {
    result.predictions = folders.results / "imagesTs_predictions";
    predict_folder(folders.raw / "imagesTs", result.predictions,
                   {{.folder = folders.trained(result.configuration), .folds = result.folds}}, {.progress = log});
    if (fs::is_directory(folders.raw / "labelsTs")) {
      std::vector<std::string> classes;
      for (const auto& [v, n] : dataset.label_values) classes.push_back(n);
      result.test = evaluate_folders(result.predictions, folders.raw / "labelsTs", classes, result.predictions / "summary",
                                     dataset.file_ending);
    }
  }
  return result;
}

}  // namespace medseg::nnunet
