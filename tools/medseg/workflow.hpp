// What train, val and export share: a training config (configs/*.json, MedicalSeg's shape)
// turned into the datasets, sliding-window settings and deploy description it implies.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "medseg/core/error.hpp"
#include "medseg/data/medicalseg.hpp"
#include "medseg/infer/deploy.hpp"
#include "medseg/infer/sliding_window.hpp"
#include "medseg/train/config.hpp"

namespace medseg::tool {

namespace fs = std::filesystem;

/// The dataset of config[key] ("train_dataset" or "val_dataset"): a prepared MedicalSeg
/// folder (`medseg prepare` writes one), read through its list file: train_path / val_path
/// when given, else dataset_root/{train,val}_list.txt by the dataset's mode.
inline data::ListDataset open_dataset(const train::Config& config, const std::string& key) {
  const auto& j = config.json.at(key);
  const std::string type = j.value("type", "MedicalDataset");
  require(type == "MedicalDataset", [&] {
    return ErrorInfo{.where = config.source_of(key + ".type"), .field = key + ".type",
                     .expected = "\"MedicalDataset\" (a folder `medseg prepare` wrote; prepare MSD and nnU-Net raw data first)",
                     .actual = "\"" + type + "\""};
  });
  const fs::path root = j.value("dataset_root", "");
  const std::string mode = j.value("mode", key == "train_dataset" ? "train" : "val");
  const char* path_key = mode == "train" ? "train_path" : "val_path";
  const fs::path list = j.contains(path_key) ? fs::path(j.at(path_key).get<std::string>()) : root / (mode + "_list.txt");
  return data::ListDataset::open(list);
}

inline std::int64_t num_classes(const train::Config& config) {
  const auto& model = config.json.at("model");
  require(model.contains("num_classes") && model.at("num_classes").is_number_integer(), [&] {
    return ErrorInfo{.where = config.source_of("model"), .field = "model.num_classes", .expected = "an integer",
                     .actual = model.value("num_classes", nlohmann::json()).dump()};
  });
  return model.at("num_classes").get<std::int64_t>();
}

/// config["inference"] as the deploy description's settings (validated by train::validate).
inline infer::InferenceSettings inference_settings(const train::Config& config) {
  infer::InferenceSettings s;
  const auto inf = config.json.value("inference", nlohmann::json::object());
  if (inf.contains("roi")) {
    const auto& r = inf.at("roi");
    s.roi = r.is_array() ? infer::Index3{r.at(0).get<std::int64_t>(), r.at(1).get<std::int64_t>(), r.at(2).get<std::int64_t>()}
                         : infer::Index3{r.get<std::int64_t>(), r.get<std::int64_t>(), r.get<std::int64_t>()};
  }
  s.overlap = inf.value("overlap", s.overlap);
  s.blend = inf.value("gaussian", true) ? "gaussian" : "constant";
  s.mirror_axes = inf.value("mirror_axes", s.mirror_axes);
  s.batch = inf.value("sw_batch_size", s.batch);
  return s;
}

/// The deploy description of a model trained with `config`: its model JSON and inference
/// settings, the image_ops its prepared dataset records in dataset.json (the preprocessing
/// an exported model must repeat on raw images), and the class names of export.labels.
inline infer::DeployConfig deploy_config(const train::Config& config) {
  infer::DeployConfig d;
  d.model = config.json.at("model");
  d.inference = inference_settings(config);
  const auto& ds = config.json.at("train_dataset");
  const fs::path dataset_json = fs::path(ds.value("dataset_root", "")) / "dataset.json";
  if (fs::exists(dataset_json)) {
    const auto j = nlohmann::json::parse(std::ifstream(dataset_json), nullptr, false);
    require(!j.is_discarded(), [&] {
      return ErrorInfo{.where = dataset_json.string(), .field = "JSON", .expected = "a readable dataset.json", .actual = "a parse error"};
    });
    d.image_ops = j.value("image_ops", nlohmann::json::array());
  }
  const auto labels = config.json.value("export", nlohmann::json::object()).value("labels", nlohmann::json::object());
  for (std::int64_t c = 0; c < num_classes(config); ++c)
    d.labels.push_back(labels.value(std::to_string(c), c == 0 ? std::string("background") : "class " + std::to_string(c)));
  return d;
}

/// WEIGHTS may be a .safetensors file or a checkpoint folder (iter_N/, best_model/).
inline fs::path weights_file(const fs::path& model_path, const char* who) {
  const fs::path file = fs::is_directory(model_path) ? model_path / "model.safetensors" : model_path;
  require(fs::exists(file), [&] {
    return ErrorInfo{.where = who, .field = "--model_path",
                     .expected = "a .safetensors file or a checkpoint folder holding model.safetensors",
                     .actual = file.string() + " does not exist"};
  });
  return file;
}

}  // namespace medseg::tool
