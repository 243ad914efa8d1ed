// A model scored on a dataset: sliding-window inference on every case, then every metric of
// metrics/report.hpp (hard Dice, IoU, HD95 and surface distance in mm from the case's own
// spacing, MedicalSeg's soft Dice), per case and aggregated; optionally the predicted label
// maps written next to the report. What `medseg val` runs and the trainer's evaluator calls.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../data/dataset.hpp"
#include "../io/format.hpp"
#include "../metrics/report.hpp"
#include "postprocess.hpp"
#include "sliding_window.hpp"

namespace medseg::infer {

struct EvaluateOptions {
  SlidingWindowOptions window{};
  int num_classes = 2;
  bool surface_distances = true;     // HD95 and ASSD (the costly part on large volumes)
  bool largest_component = false;    // keep each foreground class's largest component first
  std::filesystem::path predictions_dir{};  // non-empty: NAME.nii.gz label maps written there
  std::ostream* progress = nullptr;  // a line per case
};

struct Evaluation {
  std::vector<metrics::CaseMetrics> cases;
  metrics::Summary summary;
};

/// Scores `model` (anything with forward(Tensor<float>) -> logits and eval()/train(bool); its
/// training mode is restored afterwards) on every labelled case of `dataset`. Spacing for
/// the surface distances comes from each case's geometry.
///   auto e = infer::evaluate(net, val, {.window = {.roi = {128, 128, 128}}, .num_classes = 3});
///   metrics::write_json("val.json", e.cases, e.summary);
template <class Model, data::Dataset D>
Evaluation evaluate(Model& model, const D& dataset, const EvaluateOptions& options);

/// 1, ..., num_classes - 1.
std::vector<int> foreground_classes(int num_classes);

/// `model` (in eval mode) as sliding_window's predictor: a host batch in, its logits out as a
/// host tensor of their own (the model's eval-mode output buffer is reused by its next call).
template <class Model>
auto host_predictor(Model& model) {
  return [&model](const Tensor<float>& x) {
    using B = typename Model::backend;
    if constexpr (std::is_same_v<B, Cpu>)
      return model.forward(x).clone();
    else
      return model.forward(x.template to<B>()).template to<Cpu>();
  };
}

// ----------------------------------------------------------------------------------------
// Implementation

inline std::vector<int> foreground_classes(int num_classes) {
  std::vector<int> classes;
  for (int c = 1; c < num_classes; ++c) classes.push_back(c);
  return classes;
}

template <class Model, data::Dataset D>
Evaluation evaluate(Model& model, const D& dataset, const EvaluateOptions& options) {
  const bool was_training = model.training();
  model.eval();
  auto predict = host_predictor(model);
  if (!options.predictions_dir.empty()) std::filesystem::create_directories(options.predictions_dir);
  Evaluation out;
  for (std::size_t i = 0; i < dataset.size(); ++i) {
    const data::Case c = dataset.load(i);
    if (!c.label) continue;
    const Tensor<float> probabilities = sliding_window(c.image.voxels, predict, options.window);
    Tensor<std::uint8_t> labels = argmax(probabilities);
    if (options.largest_component) labels = postprocess(labels, {.largest_component_classes = foreground_classes(options.num_classes)});
    const auto& sp = c.image.geometry.spacing;  // (x, y, z); metrics take (D, H, W)
    metrics::EvaluationOptions m{.num_classes = options.num_classes,
                                 .surface_distances = options.surface_distances,
                                 .surface = {.spacing = {sp[2], sp[1], sp[0]}}};
    out.cases.push_back(metrics::evaluate_case(c.name, labels, c.label->voxels, m, probabilities));
    if (!options.predictions_dir.empty())
      io::write_image(io::AnyImage{io::Image<std::uint8_t>{labels, c.image.geometry}},
                      options.predictions_dir / (c.name + ".nii.gz"));
    if (options.progress)
      *options.progress << "  " << c.name << ": mean foreground Dice " << out.cases.back().mean_foreground_dice() << "\n";
  }
  require(!out.cases.empty(), [&] {
    return ErrorInfo{.where = "infer::evaluate", .field = "dataset", .expected = "at least one case with a label",
                     .actual = std::to_string(dataset.size()) + " cases, none labelled"};
  });
  out.summary = metrics::summarize(out.cases);
  model.train(was_training);
  return out;
}

}  // namespace medseg::infer
