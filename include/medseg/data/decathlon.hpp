// The Medical Segmentation Decathlon layout (Task01_BrainTumour ... Task10_Colon): a root
// with dataset.json, imagesTr/, labelsTr/ and imagesTs/. dataset.json lists the cases
// ("training": [{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}],
// "test": ["./imagesTs/y.nii.gz"]), the label map ("labels": {"0": "background", ...}) and
// the modalities ("modality": {"0": "FLAIR", ...}); multi-modal images are single 4-D files,
// read as [C, D, H, W] with one channel per modality.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "case.hpp"
#include "medicalseg.hpp"

namespace medseg::data {

enum class Split { training, test };

class DecathlonDataset {
 public:
  /// Reads root/dataset.json; throws Error naming it and the field when numTraining does not
  /// match the list or a listed file is missing.
  static DecathlonDataset open(const std::filesystem::path& root, Split split = Split::training);

  std::size_t size() const { return entries_.size(); }
  std::string name(std::size_t i) const { return entries_.at(i).name; }
  LabelMap labels() const { return labels_; }
  /// Modality names in channel order ("FLAIR", "T1w", ...).
  const std::vector<std::string>& modalities() const { return modalities_; }
  Case load(std::size_t i) const;

 private:
  struct Entry {
    std::string name;
    std::filesystem::path image, label;
  };
  std::vector<Entry> entries_;
  LabelMap labels_;
  std::vector<std::string> modalities_;
  std::string json_;
};

// ----------------------------------------------------------------------------------------
// Implementation

inline DecathlonDataset DecathlonDataset::open(const std::filesystem::path& root, Split split) {
  DecathlonDataset d;
  const auto json_path = root / "dataset.json";
  d.json_ = json_path.string();
  const auto j = detail::read_json(json_path);
  auto need = [&](const char* key) -> const nlohmann::json& {
    require(j.contains(key), [&] {
      return ErrorInfo{.where = d.json_, .field = key, .expected = "present", .actual = "missing"};
    });
    return j[key];
  };
  d.labels_ = parse_label_map(need("labels"), d.json_);
  const auto& modality = need("modality");
  for (std::size_t c = 0; c < modality.size(); ++c) {
    const auto key = std::to_string(c);
    require(modality.contains(key) && modality[key].is_string(), [&] {
      return ErrorInfo{.where = d.json_, .field = "modality", .expected = "names for channels \"0\".." +
                                                                       std::to_string(modality.size() - 1),
                       .actual = modality.dump().substr(0, 80)};
    });
    d.modalities_.push_back(modality[key].get<std::string>());
  }
  if (split == Split::training) {
    const auto& training = need("training");
    if (j.contains("numTraining"))
      require(j["numTraining"].is_number_integer() && j["numTraining"].get<std::size_t>() == training.size(), [&] {
        return ErrorInfo{.where = d.json_, .field = "numTraining",
                         .expected = std::to_string(training.size()) + " (the length of \"training\")",
                         .actual = j["numTraining"].dump()};
      });
    for (std::size_t i = 0; i < training.size(); ++i) {
      const auto& t = training[i];
      const std::string field = "training[" + std::to_string(i) + "]";
      require(t.is_object() && t.contains("image") && t.contains("label") && t["image"].is_string() &&
                  t["label"].is_string(),
              [&] {
                return ErrorInfo{.where = d.json_, .field = field, .expected = "{\"image\": ..., \"label\": ...}",
                                 .actual = t.dump().substr(0, 80)};
              });
      Entry e{"", root / t["image"].get<std::string>(), root / t["label"].get<std::string>()};
      e.name = detail::case_name(e.image);
      require_file(e.image, d.json_, field + ".image");
      require_file(e.label, d.json_, field + ".label");
      d.entries_.push_back(std::move(e));
    }
  } else {
    const auto& test = need("test");
    for (std::size_t i = 0; i < test.size(); ++i) {
      const std::string field = "test[" + std::to_string(i) + "]";
      const auto& t = test[i];
      require(t.is_string() || (t.is_object() && t.contains("image")), [&] {
        return ErrorInfo{.where = d.json_, .field = field, .expected = "an image path", .actual = t.dump().substr(0, 80)};
      });
      Entry e{"", root / (t.is_string() ? t.get<std::string>() : t["image"].get<std::string>()), {}};
      e.name = detail::case_name(e.image);
      require_file(e.image, d.json_, field);
      d.entries_.push_back(std::move(e));
    }
  }
  return d;
}

inline Case DecathlonDataset::load(std::size_t i) const {
  const Entry& e = entries_.at(i);
  Case c{e.name, load_channels({e.image}), std::nullopt};
  require(modalities_.empty() || c.image.voxels.size(0) == static_cast<std::int64_t>(modalities_.size()), [&] {
    return ErrorInfo{.where = e.image.string(), .field = "channels",
                     .expected = std::to_string(modalities_.size()) + " (the modalities of " + json_ + ")",
                     .actual = std::to_string(c.image.voxels.size(0))};
  });
  if (!e.label.empty()) {
    auto label = load_label(e.label, labels_);
    check_same_grid(c.image, label, e.label.string() + " against " + e.image.filename().string());
    c.label = std::move(label);
  }
  return c;
}

}  // namespace medseg::data
