// nnU-Net's predictor over trained folders: every image of an input folder (nnU-Net naming,
// CASE_0000.nii.gz, CASE_0001.nii.gz, ... per channel) through every chosen fold of every
// chosen configuration, their probabilities averaged on the input's grid (each model's own
// preprocessing inverted first, as nnU-Net's ensembling does), the label map written with
// the input's geometry; then find_best's postprocessing (postprocessing.json) when there is
// one, and optionally the probabilities saved.
//   nnunet::predict_folder("imagesTs", "pred", {{.folder = results / "nnUNetTrainer__nnUNetPlans__3d_fullres"}});
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "../core/progress.hpp"
#include "../data/case.hpp"
#include "../data/nnunet.hpp"
#include "../infer/postprocess.hpp"
#include "../infer/predictor.hpp"
#include "../io/npy.hpp"
#include "../models/any_model.hpp"
#include "../nn/state_dict.hpp"

namespace medseg::nnunet {

/// One trained configuration: its folder (.../nnUNetTrainer__nnUNetPlans__3d_fullres) and folds.
struct TrainedModel {
  std::filesystem::path folder;
  std::vector<std::string> folds{};  // empty: every fold_* with the checkpoint
  std::string checkpoint = "checkpoint_final";
};

struct PredictSettings {
  bool mirror = true;              // test-time mirroring on every axis (nnU-Net's default)
  bool save_probabilities = false;  // CASE.npy [K, D, H, W] beside CASE.nii.gz
  /// The postprocessing; unset: postprocessing.json of the first model's folder when there is
  /// one (find_best writes it), else none.
  std::optional<infer::PostprocessOptions> postprocessing{};
  std::ostream* progress = nullptr;
};

/// The deploy folders (fold_K/checkpoint) of `m`.
std::vector<std::filesystem::path> model_folders(const TrainedModel& m);

/// Cases of an nnU-Net image folder: name -> its channel files in channel order.
std::map<std::string, std::vector<std::filesystem::path>> image_cases(const std::filesystem::path& folder,
                                                                      const std::string& file_ending = ".nii.gz");

/// Averaged probabilities [K, D, H, W] of `image` over `predictors`.
Tensor<float> ensemble_probabilities(std::vector<std::unique_ptr<infer::Predictor<>>>& predictors, const io::Image<float>& image);

/// Predicts every case of `input` into `output`. Returns the case names.
std::vector<std::string> predict_folder(const std::filesystem::path& input, const std::filesystem::path& output,
                                        const std::vector<TrainedModel>& models, const PredictSettings& settings = {});

// ----------------------------------------------------------------------------------------
// Implementation

inline std::vector<std::filesystem::path> model_folders(const TrainedModel& m) {
  namespace fs = std::filesystem;
  std::vector<fs::path> out;
  if (!m.folds.empty()) {
    for (const auto& f : m.folds) {
      const fs::path dir = m.folder / ("fold_" + f) / m.checkpoint;
      data::require_file(dir / infer::deploy_file_name, m.folder.string(), "fold " + f + " (" + m.checkpoint + ")");
      out.push_back(dir);
    }
    return out;
  }
  if (fs::is_directory(m.folder))
    for (const auto& e : fs::directory_iterator(m.folder))
      if (e.path().filename().string().starts_with("fold_") && fs::exists(e.path() / m.checkpoint / infer::deploy_file_name))
        out.push_back(e.path() / m.checkpoint);
  std::sort(out.begin(), out.end());
  require(!out.empty(), [&] {
    return ErrorInfo{.where = m.folder.string(), .field = "folds", .expected = "fold_*/" + m.checkpoint + "/deploy.json (a trained fold)",
                     .actual = "none"};
  });
  return out;
}

inline std::map<std::string, std::vector<std::filesystem::path>> image_cases(const std::filesystem::path& folder,
                                                                             const std::string& file_ending) {
  namespace fs = std::filesystem;
  require(fs::is_directory(folder), [&] {
    return ErrorInfo{.where = "nnunet predict", .field = "input", .expected = "a folder of CASE_0000" + file_ending + " images",
                     .actual = folder.string() + " is not a folder"};
  });
  std::map<std::string, std::map<int, fs::path>> found;
  for (const auto& e : fs::directory_iterator(folder)) {
    if (const auto c = data::parse_channel_file(e.path().filename().string(), file_ending)) found[c->case_name][c->channel] = e.path();
  }
  std::map<std::string, std::vector<fs::path>> out;
  for (auto& entry : found)
    for (int c = 0; c < static_cast<int>(entry.second.size()); ++c) {
      const std::string& name = entry.first;
      auto& channels = entry.second;
      require(channels.count(c) > 0, [&] {
        return ErrorInfo{.where = folder.string(), .field = "channel " + std::to_string(c) + " of case " + name,
                         .expected = "a file", .actual = "missing"};
      });
      out[name].push_back(channels[c]);
    }
  return out;
}

inline Tensor<float> ensemble_probabilities(std::vector<std::unique_ptr<infer::Predictor<>>>& predictors,
                                            const io::Image<float>& image) {
  Tensor<float> sum;
  for (auto& p : predictors) {
    const Tensor<float> probs = p->predict(io::AnyImage{image}).probabilities;
    if (!sum.defined()) {
      sum = probs.clone();
      continue;
    }
    require(probs.shape() == sum.shape(), [&] {
      return ErrorInfo{.where = "nnunet::ensemble_probabilities", .field = "probabilities",
                       .expected = sum.shape().to_string() + " (every model's classes)", .actual = probs.shape().to_string()};
    });
    for (std::int64_t i = 0; i < sum.numel(); ++i) sum.data()[i] += probs.data()[i];
  }
  const float scale = 1.0f / static_cast<float>(predictors.size());
  for (std::int64_t i = 0; i < sum.numel(); ++i) sum.data()[i] *= scale;
  return sum;
}

namespace detail {

/// postprocessing.json (find_best's choice), when `folder` has one.
inline std::optional<infer::PostprocessOptions> saved_postprocessing(const std::filesystem::path& folder) {
  const auto file = folder / "postprocessing.json";
  if (!std::filesystem::exists(file)) return std::nullopt;
  const auto j = data::detail::read_json(file);
  JsonReader r(j, file.string());
  infer::PostprocessOptions o;
  r.read("largest_foreground_component", o.largest_foreground_component);
  r.read("largest_component_classes", o.largest_component_classes, {.min = 1});
  r.finish();
  return o;
}

}  // namespace detail

inline std::vector<std::string> predict_folder(const std::filesystem::path& input, const std::filesystem::path& output,
                                               const std::vector<TrainedModel>& models, const PredictSettings& settings) {
  namespace fs = std::filesystem;
  require(!models.empty(), [] {
    return ErrorInfo{.where = "nnunet predict", .field = "models", .expected = "at least one trained configuration", .actual = "none"};
  });
  std::vector<std::unique_ptr<infer::Predictor<>>> predictors;
  std::vector<std::string> class_names;
  for (const auto& m : models)
    for (const auto& dir : model_folders(m)) {
      auto config = infer::read_deploy(dir);
      if (!settings.mirror) config.inference.mirror_axes.clear();
      auto model = models::AnyModel<Cpu>::from_json(config.model, (dir / infer::deploy_file_name).string() + ": model");
      nn::load_state_dict(model, dir / config.weights);
      if (class_names.empty()) class_names = config.labels;
      require(config.labels == class_names, [&] {
        return ErrorInfo{.where = (dir / infer::deploy_file_name).string(), .field = "labels",
                         .expected = "the classes of the other models", .actual = std::to_string(config.labels.size()) + " classes"};
      });
      config.postprocess.largest_component = false;  // decided once, on the ensemble
      predictors.push_back(std::make_unique<infer::Predictor<>>(std::move(model), std::move(config)));
    }
  const auto post = settings.postprocessing ? settings.postprocessing : detail::saved_postprocessing(models.front().folder);
  const auto cases = image_cases(input);
  require(!cases.empty(), [&] {
    return ErrorInfo{.where = "nnunet predict", .field = "input", .expected = "CASE_0000.nii.gz images", .actual = "none in " + input.string()};
  });
  fs::create_directories(output);
  ProgressBar bar(settings.progress, static_cast<std::int64_t>(cases.size()), "cases");
  std::vector<std::string> names;
  for (const auto& [name, files] : cases) {
    const io::Image<float> image = data::load_channels(files);
    const Tensor<float> probabilities = ensemble_probabilities(predictors, image);
    Tensor<std::uint8_t> labels = infer::argmax(probabilities);
    if (post) labels = infer::postprocess(labels, *post);
    io::write_image(io::AnyImage{io::Image<std::uint8_t>{labels, image.geometry}}, output / (name + ".nii.gz"));
    if (settings.save_probabilities) io::write_npy(io::AnyImage{io::Image<float>{probabilities, image.geometry}}, output / (name + ".npy"));
    names.push_back(name);
    bar.advance();
  }
  return names;
}

}  // namespace medseg::nnunet
