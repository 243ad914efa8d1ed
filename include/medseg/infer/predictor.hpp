// The deploy-time predictor: an exported model folder (deploy.json + weights) in, a label map
// on the input's own grid out. It runs the recorded preprocessing, sliding-window inference
// with the recorded settings, undoes the preprocessing (probabilities resampled back, crop
// re-embedded) and optionally keeps each class's largest component: nnU-Net's predict
// step as a library call, needing nothing but the folder.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "../io/format.hpp"
#include "../io/image.hpp"
#include "../models/any_model.hpp"
#include "../nn/state_dict.hpp"
#include "../preprocess/invertible.hpp"
#include "../preprocess/pipeline.hpp"
#include "deploy.hpp"
#include "evaluate.hpp"
#include "postprocess.hpp"
#include "sliding_window.hpp"

namespace medseg::infer {

/// Seconds spent in each phase of the latest prediction (`medseg infer --benchmark`).
struct PredictTiming {
  double preprocess = 0, inference = 0, postprocess = 0;
};

/// What one prediction gives: class probabilities [K, D, H, W] and the label map, both on the
/// input's grid (the label map carries the input's geometry).
struct Prediction {
  Tensor<float> probabilities;
  io::Image<std::uint8_t> labels;
};

///   infer::Predictor<> predictor{"out/vnet/export"};
///   auto p = predictor.predict(io::read_image("case.nii.gz"));
///   io::write_image(io::AnyImage{p.labels}, "case_seg.nii.gz");
template <class B = Cpu>
class Predictor {
 public:
  /// Reads dir/deploy.json, builds the model it names and loads its weights (strictly: every
  /// tensor present, shapes and dtypes equal). Throws Error naming the file and field.
  explicit Predictor(const std::filesystem::path& dir);
  /// A predictor over a model already in memory (the trainer's, before export): the same
  /// path an exported folder takes, so in-process and exported outputs are equal.
  Predictor(models::AnyModel<B> model, DeployConfig config);

  Prediction predict(const io::AnyImage& image);
  /// Reads `input`, predicts, writes the label map to `output` (NIfTI when it ends in .nii or
  /// .nii.gz; any format io::write_image knows), atomically.
  void predict_file(const std::filesystem::path& input, const std::filesystem::path& output);

  /// The network's probabilities [K, d, h, w] for an already preprocessed image [C, d, h, w].
  Tensor<float> sliding_window_probabilities(const Tensor<float>& image);

  const DeployConfig& config() const { return config_; }
  models::AnyModel<B>& model() { return model_; }
  const PredictTiming& last_timing() const { return timing_; }

 private:
  /// The folder's model built from its already-read deploy description (read once).
  Predictor(const std::filesystem::path& dir, const DeployConfig& config);

  DeployConfig config_;
  models::AnyModel<B> model_;
  std::vector<preprocess::Step> steps_;
  PredictTiming timing_;
};

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {
inline double seconds_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}
}  // namespace detail

template <class B>
Predictor<B>::Predictor(const std::filesystem::path& dir) : Predictor(dir, read_deploy(dir)) {}

template <class B>
Predictor<B>::Predictor(const std::filesystem::path& dir, const DeployConfig& config)
    : Predictor(models::AnyModel<B>::from_json(config.model, (dir / deploy_file_name).string() + ": model"), config) {
  nn::load_state_dict(model_, dir / config_.weights);
}

template <class B>
Predictor<B>::Predictor(models::AnyModel<B> model, DeployConfig config)
    : config_(std::move(config)),
      model_(std::move(model)),
      steps_(preprocess::parse_steps(config_.image_ops, "deploy.json: image_ops")) {
  model_.eval();
}

template <class B>
Tensor<float> Predictor<B>::sliding_window_probabilities(const Tensor<float>& image) {
  model_.eval();
  return sliding_window(image, host_predictor(model_), sliding_window_options(config_.inference));
}

template <class B>
Prediction Predictor<B>::predict(const io::AnyImage& image) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  const auto forward = preprocess::prepare_for_inference(image, steps_);
  const auto t1 = clock::now();
  const Tensor<float> scores = sliding_window_probabilities(forward.image.voxels);
  const auto t2 = clock::now();
  Prediction p;
  p.probabilities = preprocess::invert_probabilities(scores, forward.record);
  Tensor<std::uint8_t> labels = argmax(p.probabilities);
  if (config_.postprocess.largest_component)
    labels = postprocess(labels, {.largest_component_classes = foreground_classes(static_cast<int>(p.probabilities.size(0)))});
  p.labels = {labels, forward.record.geometry};  // argmax on the raw grid: only the geometry to attach
  const auto t3 = clock::now();
  timing_ = {detail::seconds_between(t0, t1), detail::seconds_between(t1, t2), detail::seconds_between(t2, t3)};
  return p;
}

template <class B>
void Predictor<B>::predict_file(const std::filesystem::path& input, const std::filesystem::path& output) {
  const Prediction p = predict(io::read_image(input));
  io::write_image(io::AnyImage{p.labels}, output);
}

}  // namespace medseg::infer
