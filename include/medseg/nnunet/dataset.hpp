// An nnU-Net v2 raw dataset folder checked before any work starts, as nnU-Net's
// verify_dataset_integrity does (nnunetv2/experiment_planning/verify_dataset_integrity.py,
// MIC-DKFZ/nnUNet@0e495086): dataset.json's keys, every case's channel and label files, the
// file ending, numTraining, label values declared and consecutive, and each label on its
// image's grid (shape, spacing, origin, direction) with no NaN in the images. Unlike nnU-Net,
// every problem is collected and reported at once, each naming its case and file, and an
// origin or direction mismatch is an error (nnU-Net only warns; training on a misregistered
// label silently costs accuracy).
//   nnunet::verify_dataset(root);   // throws one Error listing every problem
#pragma once

#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../data/nnunet.hpp"
#include "../io/file.hpp"
#include "../io/json_fields.hpp"

namespace medseg::nnunet {

/// Every problem found, each a full error message.
class Problems {
 public:
  void add(ErrorInfo info) {
    std::lock_guard lock(*mutex_);
    list_.push_back(Error(std::move(info)).what());
  }
  bool empty() const { return list_.empty(); }
  const std::vector<std::string>& list() const { return list_; }
  /// Throws one Error naming `where` and listing every problem, one per line.
  void throw_if_any(const std::string& where) const;

 private:
  std::vector<std::string> list_;
  std::unique_ptr<std::mutex> mutex_ = std::make_unique<std::mutex>();  // cases are checked in parallel
};

/// dataset.json's fields nnU-Net plans and trains from.
struct DatasetJson {
  std::vector<std::string> channel_names;  // in channel order
  nlohmann::json labels;                   // as written: {"background": 0, "a": 1, "region": [1, 2]}
  data::LabelMap label_values;             // every value a label file may hold
  std::int64_t num_training = 0;
  std::string file_ending = ".nii.gz";

  /// Output channels of the network: one per key of "labels" (background, classes, regions).
  std::int64_t num_label_keys() const { return static_cast<std::int64_t>(labels.size()); }
  static DatasetJson from_json(const nlohmann::json& j, const std::string& where);
  static DatasetJson load(const std::filesystem::path& file);
};

/// The folds nnU-Net trains need at least this many training cases.
inline constexpr std::size_t min_cases_for_folds = 5;

/// Checks the whole folder (reading every training image and label, cases in parallel);
/// throws one Error listing every problem. `folds`: the cross-validation the dataset must
/// allow (0 skips the count check; a splits_final.json in the folder takes precedence).
void verify_dataset(const std::filesystem::path& root, std::size_t folds = 5);
/// The same, returning the problems instead of throwing.
Problems find_problems(const std::filesystem::path& root, std::size_t folds = 5);

// ----------------------------------------------------------------------------------------
// Implementation

inline void Problems::throw_if_any(const std::string& where) const {
  if (list_.empty()) return;
  std::string all;
  for (const auto& p : list_) all += "\n  - " + p;
  throw Error{ErrorInfo{.where = where, .field = "dataset", .expected = "a valid nnU-Net v2 raw dataset",
                        .actual = std::to_string(list_.size()) + (list_.size() == 1 ? " problem:" : " problems:") + all}};
}

inline DatasetJson DatasetJson::load(const std::filesystem::path& file) {
  return from_json(data::detail::read_json(file), file.string());
}

inline DatasetJson DatasetJson::from_json(const nlohmann::json& j, const std::string& where) {
  JsonReader r(j, where);
  DatasetJson d;
  JsonReader names = r.object("channel_names");
  for (std::size_t c = 0; c < names.json().size(); ++c) d.channel_names.push_back(names.get<std::string>(std::to_string(c)));
  names.finish();
  require(!d.channel_names.empty(), [&] {
    return ErrorInfo{.where = where, .field = "channel_names", .expected = "at least one channel ({\"0\": \"CT\"})", .actual = "{}"};
  });
  const auto* labels = r.find("labels");
  if (!labels) r.fail_missing("labels", "an object of label names and values");
  d.labels = *labels;
  d.label_values = data::parse_label_map(d.labels, where);
  d.num_training = r.get<std::int64_t>("numTraining", {.min = 1});
  d.file_ending = r.get<std::string>("file_ending");
  return d;
}

namespace detail {

/// Problems with one loaded training case: NaN voxels, label values not declared, and the
/// label off the image's grid.
inline void check_case(const std::string& name, const std::vector<std::filesystem::path>& channels,
                       const std::filesystem::path& label_file, const data::LabelMap& declared, Problems& problems) {
  const auto& first = channels.front();
  try {
    const io::Image<float> image = data::load_channels(channels);
    const float* v = image.voxels.data();
    std::int64_t nans = 0;
    for (std::int64_t i = 0; i < image.voxels.numel(); ++i) nans += std::isnan(v[i]);
    if (nans)
      problems.add({.where = first.string(), .field = "voxels of case " + name, .expected = "no NaN",
                    .actual = std::to_string(nans) + " NaN voxels"});
    const io::Image<data::LabelValue> label = data::load_label(label_file, {});
    std::set<int> unexpected;
    const data::LabelValue* l = label.voxels.data();
    for (std::int64_t i = 0; i < label.voxels.numel(); ++i)
      if (!declared.count(l[i])) unexpected.insert(l[i]);
    if (!unexpected.empty()) {
      std::string found, known;
      for (int u : unexpected) found += (found.empty() ? "" : ", ") + std::to_string(u);
      for (const auto& [k, n] : declared) known += (known.empty() ? "" : ", ") + std::to_string(k);
      problems.add({.where = label_file.string(), .field = "label values of case " + name,
                    .expected = "only the values dataset.json declares {" + known + "}", .actual = "{" + found + "}"});
    }
    data::check_same_grid(image, label, label_file.string() + " (case " + name + ", against " + first.filename().string() + ")");
  } catch (const std::exception& e) {
    problems.add({.detail = e.what()});
  }
}

}  // namespace detail

inline Problems find_problems(const std::filesystem::path& root, std::size_t folds) {
  namespace fs = std::filesystem;
  Problems problems;
  const fs::path json_file = root / "dataset.json";
  DatasetJson d;
  try {
    d = DatasetJson::load(json_file);
  } catch (const std::exception& e) {
    problems.add({.detail = e.what()});
    return problems;  // nothing else can be checked without it
  }
  // nnU-Net's labels must be 0, 1, 2, ... (regions reuse them).
  std::int64_t expected_value = 0;
  for (const auto& [value, name] : d.label_values) {
    if (value != expected_value)
      problems.add({.where = json_file.string(), .field = "labels", .expected = "consecutive values 0, 1, 2, ...",
                    .actual = "value " + std::to_string(value) + " (\"" + name + "\") after " + std::to_string(expected_value - 1)});
    expected_value = value + 1;
  }
  bool folders = true;
  for (const char* folder : {"imagesTr", "labelsTr"})
    if (!fs::is_directory(root / folder)) {
      problems.add({.where = root.string(), .field = folder, .expected = "a folder", .actual = "missing"});
      folders = false;
    }
  if (!folders) return problems;

  // Files by case: imagesTr/{case}_{XXXX}{file_ending}.
  std::map<std::string, std::set<int>> found;
  std::set<std::string> other_endings;
  for (const auto& f : fs::directory_iterator(root / "imagesTr")) {
    const std::string n = f.path().filename().string();
    if (n.starts_with(".")) continue;
    if (!n.ends_with(d.file_ending)) {
      other_endings.insert(io::lower_extensions(f.path()));
      continue;
    }
    const auto file = data::parse_channel_file(n, d.file_ending);
    if (!file) {
      problems.add({.where = (root / "imagesTr" / n).string(), .field = "file name", .expected = "{case}_{0000}" + d.file_ending,
                    .actual = n});
      continue;
    }
    found[file->case_name].insert(file->channel);
  }
  if (found.empty() && !other_endings.empty()) {
    std::string endings;
    for (const auto& e : other_endings) endings += (endings.empty() ? "" : ", ") + e;
    problems.add({.where = json_file.string(), .field = "file_ending", .expected = "the ending of the files in imagesTr (" + endings + ")",
                  .actual = "\"" + d.file_ending + "\""});
    return problems;
  }
  const int channels = static_cast<int>(d.channel_names.size());
  struct Entry {
    std::string name;
    std::vector<fs::path> channels;
    fs::path label;
  };
  std::vector<Entry> complete;
  for (const auto& [name, indices] : found) {
    Entry e{name, {}, root / "labelsTr" / (name + d.file_ending)};
    bool ok = true;
    for (int c = 0; c < channels; ++c) {
      char suffix[16];
      std::snprintf(suffix, sizeof suffix, "_%04d", c);
      const fs::path file = root / "imagesTr" / (name + suffix + d.file_ending);
      if (!indices.count(c)) {
        problems.add({.where = file.string(), .field = "channel " + std::to_string(c) + " (" + d.channel_names[c] + ") of case " + name,
                      .expected = "a file", .actual = "missing"});
        ok = false;
      }
      e.channels.push_back(file);
    }
    for (int c : indices)
      if (c >= channels)
        problems.add({.where = (root / "imagesTr").string(), .field = "channels of case " + name,
                      .expected = std::to_string(channels) + " (channel_names)", .actual = "a file for channel " + std::to_string(c)});
    if (!fs::exists(e.label)) {
      problems.add({.where = e.label.string(), .field = "label of case " + name, .expected = "a file", .actual = "missing"});
      ok = false;
    }
    if (ok) complete.push_back(std::move(e));
  }
  for (const auto& f : fs::directory_iterator(root / "labelsTr")) {
    const std::string n = f.path().filename().string();
    if (n.ends_with(d.file_ending) && !found.count(n.substr(0, n.size() - d.file_ending.size())))
      problems.add({.where = f.path().string(), .field = "label without images", .expected = "imagesTr/" +
                    n.substr(0, n.size() - d.file_ending.size()) + "_0000" + d.file_ending, .actual = "missing"});
  }
  if (static_cast<std::int64_t>(found.size()) != d.num_training)
    problems.add({.where = json_file.string(), .field = "numTraining",
                  .expected = std::to_string(found.size()) + " (the cases in imagesTr)", .actual = std::to_string(d.num_training)});
  if (folds > 0 && !fs::exists(root / "splits_final.json") && found.size() < std::max(folds, min_cases_for_folds))
    problems.add({.where = (root / "imagesTr").string(), .field = "training cases",
                  .expected = "at least " + std::to_string(std::max(folds, min_cases_for_folds)) + " for " + std::to_string(folds) +
                              "-fold cross-validation (or a splits_final.json)",
                  .actual = std::to_string(found.size())});

  parallel_for(0, static_cast<std::int64_t>(complete.size()), 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) {
      const Entry& c = complete[static_cast<std::size_t>(i)];
      detail::check_case(c.name, c.channels, c.label, d.label_values, problems);
    }
  });
  return problems;
}

inline void verify_dataset(const std::filesystem::path& root, std::size_t folds) {
  find_problems(root, folds).throw_if_any(root.string());
}

}  // namespace medseg::nnunet
