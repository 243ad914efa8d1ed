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

namespace detail {

/// Rejects keys of `j` outside `known`, naming the first unknown one.
inline void check_keys(const nlohmann::json& j, const std::set<std::string>& known, const std::string& where,
                       const std::string& prefix) {
  for (const auto& [key, value] : j.items()) {
    if (known.count(key)) continue;
    std::string list;
    for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
    throw Error{{.where = where, .field = prefix + key, .expected = "one of " + list, .actual = "an unknown key"}};
  }
}

inline std::string json_kind(const nlohmann::json& v) { return std::string(v.type_name()) + " " + v.dump(); }

}  // namespace detail

inline DeployConfig parse_deploy(const nlohmann::json& j, const std::string& where) {
  using nlohmann::json;
  auto fail = [&](const std::string& field, const std::string& expected, const json& actual) {
    throw Error{{.where = where, .field = field, .expected = expected, .actual = detail::json_kind(actual)}};
  };
  if (!j.is_object()) fail("(document)", "a JSON object", j);
  detail::check_keys(j, {"format", "version", "model", "image_ops", "inference", "postprocess", "labels", "weights"},
                     where, "");
  if (!j.contains("format") || j.at("format") != deploy_format)
    fail("format", std::string("\"") + deploy_format + "\"", j.value("format", json()));
  if (!j.contains("version") || !j.at("version").is_number_integer() || j.at("version").get<int>() != deploy_version)
    fail("version", std::to_string(deploy_version) + " (this medseg reads version 1)", j.value("version", json()));

  DeployConfig c;
  if (!j.contains("model") || !j.at("model").is_object() || !j.at("model").contains("type") ||
      !j.at("model").at("type").is_string())
    fail("model", "an object with a \"type\" string, as models::AnyModel reads", j.value("model", json()));
  c.model = j.at("model");

  c.image_ops = j.value("image_ops", json::array());
  if (!c.image_ops.is_array()) fail("image_ops", "a list of {\"op\": ...} objects", c.image_ops);
  c.image_steps = preprocess::parse_steps(c.image_ops, where + ": image_ops");

  if (!j.contains("inference") || !j.at("inference").is_object())
    fail("inference", "an object with at least \"roi\"", j.value("inference", json()));
  const json& inf = j.at("inference");
  detail::check_keys(inf, {"roi", "overlap", "blend", "mirror_axes", "batch"}, where, "inference.");
  const json roi = inf.value("roi", json());
  if (!roi.is_array() || roi.size() != 3 ||
      !std::all_of(roi.begin(), roi.end(), [](const json& v) { return v.is_number_integer() && v.get<std::int64_t>() > 0; }))
    fail("inference.roi", "3 positive integers [D, H, W]", roi);
  for (std::size_t a = 0; a < 3; ++a) c.inference.roi[a] = roi[a].get<std::int64_t>();
  if (inf.contains("overlap")) {
    const json& v = inf.at("overlap");
    if (!v.is_number() || !(v.get<double>() >= 0 && v.get<double>() < 1)) fail("inference.overlap", "a number in [0, 1)", v);
    c.inference.overlap = v.get<double>();
  }
  if (inf.contains("blend")) {
    const json& v = inf.at("blend");
    if (!v.is_string() || (v != "gaussian" && v != "constant")) fail("inference.blend", "\"gaussian\" or \"constant\"", v);
    c.inference.blend = v.get<std::string>();
  }
  if (inf.contains("mirror_axes")) {
    const json& v = inf.at("mirror_axes");
    std::set<int> seen;
    bool ok = v.is_array();
    if (ok)
      for (const json& a : v) {
        ok = ok && a.is_number_integer() && a.get<int>() >= 0 && a.get<int>() <= 2 && seen.insert(a.get<int>()).second;
        if (ok) c.inference.mirror_axes.push_back(a.get<int>());
      }
    if (!ok) fail("inference.mirror_axes", "a list of distinct axes from 0, 1, 2 (D, H, W)", v);
  }
  if (inf.contains("batch")) {
    const json& v = inf.at("batch");
    if (!v.is_number_integer() || v.get<std::int64_t>() < 1) fail("inference.batch", "a positive integer", v);
    c.inference.batch = v.get<std::int64_t>();
  }

  if (j.contains("postprocess")) {
    const json& p = j.at("postprocess");
    if (!p.is_object()) fail("postprocess", "an object", p);
    detail::check_keys(p, {"largest_component"}, where, "postprocess.");
    if (p.contains("largest_component")) {
      if (!p.at("largest_component").is_boolean()) fail("postprocess.largest_component", "true or false", p.at("largest_component"));
      c.postprocess.largest_component = p.at("largest_component").get<bool>();
    }
  }

  if (j.contains("labels")) {
    const json& l = j.at("labels");
    if (!l.is_array() || !std::all_of(l.begin(), l.end(), [](const json& v) { return v.is_string(); }))
      fail("labels", "a list of class names, background first", l);
    c.labels = l.get<std::vector<std::string>>();
    const json classes = c.model.value("num_classes", json());
    if (!c.labels.empty() && classes.is_number_integer() && classes.get<std::size_t>() != c.labels.size())
      throw Error{{.where = where, .field = "labels",
                   .expected = "one name per class: model.num_classes = " + classes.dump(),
                   .actual = std::to_string(c.labels.size()) + " names"}};
  }

  if (!j.contains("weights") || !j.at("weights").is_string() || j.at("weights").get<std::string>().empty())
    fail("weights", "the weights file name (safetensors), relative to the folder", j.value("weights", json()));
  c.weights = j.at("weights").get<std::string>();
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
  io::write_file_atomic(dir / deploy_file_name,
                        {io::ByteSpan(reinterpret_cast<const std::uint8_t*>(text.data()), text.size())});
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
