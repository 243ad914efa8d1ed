// deploy.json: the self-contained description of an exported model folder (the model's
// architecture, the preprocessing recipe, sliding-window settings, post-processing, label
// names and the weights file), which `medseg export` writes and `medseg infer` reads. It is
// validated strictly on read, so a hand-edited file fails with the key that is wrong rather
// than with a silently different prediction. docs/deploy.md documents the format.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../io/file.hpp"
#include "../io/json_fields.hpp"
#include "../preprocess/pipeline.hpp"
#include "sliding_window.hpp"

namespace medseg::infer {

/// How `medseg infer` runs the network over a volume (see SlidingWindowOptions).
struct InferenceSettings {
  Index3 roi{128, 128, 128};  // window (D, H, W): the training patch size
  double overlap = 0.5;
  std::string blend = "gaussian";  // "gaussian" or "constant"
  std::vector<int> mirror_axes{};  // subset of {0, 1, 2} = (D, H, W)
  std::int64_t batch = 1;          // windows per network call
};

struct PostprocessSettings {
  bool largest_component = false;  // keep each class's largest connected component
};

struct DeployConfig {
  /// The model's JSON as models::AnyModel<B>::from_json reads it ({"type": "VNet", ...}).
  nlohmann::json model = nlohmann::json::object();
  /// The image preprocessing recipe as JSON (a prep.json's image_ops), and the same parsed.
  /// write_deploy writes image_ops; read_deploy fills both.
  nlohmann::json image_ops = nlohmann::json::array();
  std::vector<preprocess::Step> image_steps{};
  InferenceSettings inference{};
  PostprocessSettings postprocess{};
  std::vector<std::string> labels{};  // class names, background first
  std::string weights = "model.safetensors";  // relative to the folder
};

inline constexpr const char* deploy_file_name = "deploy.json";
inline constexpr const char* deploy_format = "medseg-deploy";
inline constexpr int deploy_version = 1;

/// The config in `dir`/deploy.json. Throws Error naming the file, the key (dotted, e.g.
/// "inference.overlap"), what was expected and what was found for: a missing or unparsable
/// file, an unknown key, a wrong JSON type, a value out of range, an invalid image op, a
/// label count that differs from the model's num_classes, or a missing weights file.
DeployConfig read_deploy(const std::filesystem::path& dir);

/// Writes `dir`/deploy.json atomically (creating `dir`), after the same validation as
/// read_deploy except the weights file, which may be written after it.
void write_deploy(const std::filesystem::path& dir, const DeployConfig& config);

/// The config in a parsed deploy.json (no file checks); `where` names it in errors.
DeployConfig parse_deploy(const nlohmann::json& j, const std::string& where);
/// The deploy.json document of `config`.
nlohmann::json to_json(const DeployConfig& config);

/// The sliding-window options the settings describe (probabilities out).
SlidingWindowOptions sliding_window_options(const InferenceSettings& settings);

// ----------------------------------------------------------------------------------------
// Implementation

inline DeployConfig parse_deploy(const nlohmann::json& j, const std::string& where) {
  using nlohmann::json;
  JsonReader r(j, where);
  r.accept({"format", "version", "model", "image_ops", "inference", "postprocess", "labels", "weights"});
  r.finish();
  const json* format = r.find("format");
  if (!format || *format != deploy_format)
    format ? r.fail("format", std::string("\"") + deploy_format + "\"", *format)
           : r.fail_missing("format", std::string("\"") + deploy_format + "\"");
  const json* version = r.find("version");
  const std::string version_expected = std::to_string(deploy_version) + " (this medseg reads version 1)";
  if (!version) r.fail_missing("version", version_expected);
  if (!version->is_number_integer() || version->get<std::int64_t>() != deploy_version) r.fail("version", version_expected, *version);

  DeployConfig c;
  const std::string model_expected = "an object with a \"type\" string, as models::AnyModel reads";
  const json* model = r.find("model");
  if (!model) r.fail_missing("model", model_expected);
  if (!model->is_object() || !model->contains("type") || !model->at("type").is_string()) r.fail("model", model_expected, *model);
  c.model = *model;

  c.image_ops = r.opt<json>("image_ops").value_or(json::array());
  if (!c.image_ops.is_array()) r.fail("image_ops", "a list of {\"op\": ...} objects", c.image_ops);
  c.image_steps = preprocess::parse_steps(c.image_ops, where + ": image_ops");

  JsonReader inf = r.object("inference");
  c.inference.roi = inf.get<Index3>("roi", {.min = 1, .broadcast = false});
  inf.read("overlap", c.inference.overlap, {.min = 0, .below = 1});
  if (auto blend = inf.opt_choice("blend", {"gaussian", "constant"})) c.inference.blend = *blend;
  if (inf.read("mirror_axes", c.inference.mirror_axes, {.min = 0, .max = 2})) {
    std::set<int> seen(c.inference.mirror_axes.begin(), c.inference.mirror_axes.end());
    if (seen.size() != c.inference.mirror_axes.size())
      inf.fail("mirror_axes", "a list of distinct axes from 0, 1, 2 (D, H, W)", *inf.find("mirror_axes"));
  }
  inf.read("batch", c.inference.batch, {.min = 1});
  inf.finish();

  if (auto p = r.opt_object("postprocess")) {
    p->read("largest_component", c.postprocess.largest_component);
    p->finish();
  }

  if (r.read("labels", c.labels)) {
    const json classes = c.model.value("num_classes", json());
    if (!c.labels.empty() && classes.is_number_integer() && classes.get<std::size_t>() != c.labels.size())
      r.fail_text("labels", "one name per class: model.num_classes = " + classes.dump(),
                  std::to_string(c.labels.size()) + " names");
  }

  const std::string weights_expected = "the weights file name (safetensors), relative to the folder";
  const json* weights = r.find("weights");
  if (!weights) r.fail_missing("weights", weights_expected);
  if (!weights->is_string() || weights->get<std::string>().empty()) r.fail("weights", weights_expected, *weights);
  c.weights = weights->get<std::string>();
  return c;
}

inline nlohmann::json to_json(const DeployConfig& c) {
  return {{"format", deploy_format},
          {"version", deploy_version},
          {"model", c.model},
          {"image_ops", c.image_ops},
          {"inference",
           {{"roi", c.inference.roi},
            {"overlap", c.inference.overlap},
            {"blend", c.inference.blend},
            {"mirror_axes", c.inference.mirror_axes},
            {"batch", c.inference.batch}}},
          {"postprocess", {{"largest_component", c.postprocess.largest_component}}},
          {"labels", c.labels},
          {"weights", c.weights}};
}

inline DeployConfig read_deploy(const std::filesystem::path& dir) {
  const std::filesystem::path file = dir / deploy_file_name;
  const std::string where = file.string();
  const io::Bytes bytes = io::read_file(file);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(bytes.begin(), bytes.end());
  } catch (const nlohmann::json::exception& e) {
    throw Error{{.where = where, .field = "(document)", .expected = "valid JSON", .actual = "a syntax error",
                 .detail = e.what()}};
  }
  DeployConfig c = parse_deploy(j, where);
  const std::filesystem::path weights = dir / c.weights;
  require(std::filesystem::is_regular_file(weights), [&] {
    return ErrorInfo{.where = where, .field = "weights", .expected = "a file next to deploy.json",
                     .actual = weights.string() + " is missing"};
  });
  return c;
}

inline void write_deploy(const std::filesystem::path& dir, const DeployConfig& config) {
  const nlohmann::json j = to_json(config);
  parse_deploy(j, (dir / deploy_file_name).string() + " (being written)");  // the reader must accept it
  std::filesystem::create_directories(dir);
  const std::string text = j.dump(2) + "\n";
  io::write_text_atomic(dir / deploy_file_name, text);
}

inline SlidingWindowOptions sliding_window_options(const InferenceSettings& s) {
  SlidingWindowOptions o;
  o.roi = s.roi;
  o.overlap = s.overlap;
  o.blend = s.blend == "constant" ? Blend::constant : Blend::gaussian;
  o.batch = s.batch;
  o.mirror_axes = s.mirror_axes;
  return o;
}

}  // namespace medseg::infer
