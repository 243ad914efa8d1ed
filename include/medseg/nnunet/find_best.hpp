// nnU-Net's find_best_configuration (nnunetv2/evaluation/find_best_configuration.py and
// postprocessing/remove_connected_components.py, MIC-DKFZ/nnUNet@0e495086): every
// configuration trained on all folds is scored on its cross-validation (each case predicted
// by the fold that did not train on it, all folds merged), every pair of them as an ensemble
// (their saved validation probabilities averaged), and the best single model or ensemble is
// picked by mean foreground Dice. Then, on the best's cross-validation predictions, whether
// keeping only the largest foreground region helps, and then each class's largest component,
// each step kept only when it raises the mean foreground Dice. Writes
// RESULTS/inference_information.json and the postprocessing.json the predictor applies.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../infer/postprocess.hpp"
#include "../io/format.hpp"
#include "../metrics/report.hpp"
#include "training.hpp"

namespace medseg::nnunet {

struct Candidate {
  std::vector<std::string> configurations;  // one, or an ensemble
  double mean_dice = 0;
  std::string name() const;
};

struct BestConfiguration {
  std::vector<Candidate> candidates;  // every one scored, in the order scored
  Candidate best;
  infer::PostprocessOptions postprocessing;
  double mean_dice_postprocessed = 0;
};

/// Configurations of `folders.results` trained on every fold of splits_final.json.
std::vector<std::string> fully_trained_configurations(const Folders& folders);

/// Scores the configurations (all fully trained ones when empty) and their pairs, picks the
/// best, determines its postprocessing; writes inference_information.json into
/// folders.results and postprocessing.json into each configuration folder of the best.
BestConfiguration find_best(const Folders& folders, std::vector<std::string> configurations = {},
                            std::ostream* progress = nullptr);

// ----------------------------------------------------------------------------------------
// Implementation

inline std::string Candidate::name() const {
  std::string n;
  for (const auto& c : configurations) n += (n.empty() ? "" : "+") + c;
  return n;
}

inline std::vector<std::string> fully_trained_configurations(const Folders& folders) {
  namespace fs = std::filesystem;
  const auto folds = load_folds(folders.preprocessed / "splits_final.json");
  std::vector<std::string> out;
  const std::string prefix = "nnUNetTrainer__" + folders.plans_name + "__";
  if (!fs::is_directory(folders.results)) return out;
  for (const auto& e : fs::directory_iterator(folders.results)) {
    const std::string n = e.path().filename().string();
    if (!n.starts_with(prefix)) continue;
    bool complete = true;
    for (std::size_t k = 0; k < folds.size(); ++k)
      complete = complete && fs::exists(e.path() / ("fold_" + std::to_string(k)) / "validation" / "summary.json");
    if (complete) out.push_back(n.substr(prefix.size()));
  }
  std::sort(out.begin(), out.end());
  return out;
}

namespace detail {

/// The cross-validation of one configuration: case -> the validation folder holding it.
inline std::map<std::string, std::filesystem::path> cross_validation(const Folders& folders, const std::string& configuration) {
  const auto folds = load_folds(folders.preprocessed / "splits_final.json");
  std::map<std::string, std::filesystem::path> where;
  for (std::size_t k = 0; k < folds.size(); ++k)
    for (const auto& name : folds[k].val)
      where[name] = folders.trained(configuration) / ("fold_" + std::to_string(k)) / "validation";
  return where;
}

/// Mean foreground Dice of label maps against references, with `post` applied first.
inline double mean_dice(const std::map<std::string, Tensor<std::uint8_t>>& predictions,
                        const std::map<std::string, Tensor<std::uint8_t>>& references, int classes,
                        const infer::PostprocessOptions& post) {
  const bool any_post = post.largest_foreground_component || !post.largest_component_classes.empty();
  std::vector<metrics::CaseMetrics> cases;
  for (const auto& [name, p] : predictions)
    cases.push_back(metrics::evaluate_case(name, any_post ? infer::postprocess(p, post) : p, references.at(name),
                                           {.num_classes = classes, .surface_distances = false}));
  return metrics::summarize(cases).mean_dice;
}

}  // namespace detail

inline BestConfiguration find_best(const Folders& folders, std::vector<std::string> configurations, std::ostream* progress) {
  namespace fs = std::filesystem;
  if (configurations.empty()) configurations = fully_trained_configurations(folders);
  require(!configurations.empty(), [&] {
    return ErrorInfo{.where = "nnunet find_best", .field = "configurations",
                     .expected = "at least one configuration trained on every fold (with validation)",
                     .actual = "none in " + folders.results.string()};
  });
  const DatasetJson dataset = DatasetJson::load(folders.preprocessed / "dataset.json");
  const int classes = static_cast<int>(dataset.label_values.size());
  const auto raw = data::NnunetRawDataset::open(folders.raw);
  std::map<std::string, Tensor<std::uint8_t>> references;
  for (std::size_t i = 0; i < raw.size(); ++i) references[raw.name(i)] = raw.load(i).label->voxels;

  std::map<std::string, std::map<std::string, fs::path>> cv;
  for (const auto& c : configurations) {
    cv[c] = detail::cross_validation(folders, c);
    for (const auto& [name, dir] : cv[c])
      data::require_file(dir / (name + ".nii.gz"), folders.trained(c).string(), "cross-validation prediction of " + name);
  }
  auto labels_of = [&](const std::vector<std::string>& members) {
    std::map<std::string, Tensor<std::uint8_t>> out;
    for (const auto& [name, dir] : cv[members.front()]) {
      if (members.size() == 1) {
        out[name] = data::load_label(dir / (name + ".nii.gz"), {}).voxels;
        continue;
      }
      Tensor<float> sum;
      for (const auto& m : members) {
        const fs::path file = cv[m].at(name) / (name + ".npy");
        data::require_file(file, folders.trained(m).string(), "validation probabilities of " + name + " (train with them saved)");
        const Tensor<float> p = io::read_image_as<float>(file).voxels;
        if (!sum.defined()) sum = p.clone();
        else
          for (std::int64_t i = 0; i < sum.numel(); ++i) sum.data()[i] += p.data()[i];
      }
      out[name] = infer::argmax(sum);
    }
    return out;
  };

  BestConfiguration b;
  std::vector<std::vector<std::string>> members;
  for (const auto& c : configurations) members.push_back({c});
  for (std::size_t i = 0; i < configurations.size(); ++i)
    for (std::size_t j = i + 1; j < configurations.size(); ++j) members.push_back({configurations[i], configurations[j]});
  std::map<std::string, std::map<std::string, Tensor<std::uint8_t>>> predictions;
  for (const auto& m : members) {
    Candidate c{m, 0};
    predictions[c.name()] = labels_of(m);
    c.mean_dice = detail::mean_dice(predictions[c.name()], references, classes, {});
    if (progress) *progress << "  " << c.name() << ": cross-validation mean foreground Dice " << c.mean_dice << "\n";
    b.candidates.push_back(c);
    if (b.best.configurations.empty() || c.mean_dice > b.best.mean_dice) b.best = c;
  }

  // Postprocessing, greedy as nnU-Net: the foreground as one region, then class by class.
  const auto& best_predictions = predictions[b.best.name()];
  double current = b.best.mean_dice;
  infer::PostprocessOptions trial = b.postprocessing;
  trial.largest_foreground_component = true;
  if (const double d = detail::mean_dice(best_predictions, references, classes, trial); d > current) {
    b.postprocessing = trial;
    current = d;
  }
  for (int k = 1; k < classes; ++k) {
    trial = b.postprocessing;
    trial.largest_component_classes.push_back(k);
    if (const double d = detail::mean_dice(best_predictions, references, classes, trial); d > current) {
      b.postprocessing = trial;
      current = d;
    }
  }
  b.mean_dice_postprocessed = current;

  const nlohmann::json post{{"largest_foreground_component", b.postprocessing.largest_foreground_component},
                            {"largest_component_classes", b.postprocessing.largest_component_classes}};
  for (const auto& c : b.best.configurations)
    io::write_text_atomic(folders.trained(c) / "postprocessing.json", post.dump(2) + "\n");
  nlohmann::json scored = nlohmann::json::object();
  for (const auto& c : b.candidates) scored[c.name()] = c.mean_dice;
  std::string command = "medseg nnunet predict -i INPUT_DIR -o OUTPUT_DIR";
  for (const auto& c : b.best.configurations) command += " -m " + folders.trained(c).string();
  const nlohmann::json info{{"cross_validation_mean_foreground_dice", scored},
                            {"best", {{"configurations", b.best.configurations}, {"mean_dice", b.best.mean_dice}}},
                            {"postprocessing", post},
                            {"mean_dice_postprocessed", b.mean_dice_postprocessed},
                            {"predict_command", command}};
  fs::create_directories(folders.results);
  io::write_text_atomic(folders.results / "inference_information.json", info.dump(2) + "\n");
  return b;
}

}  // namespace medseg::nnunet
