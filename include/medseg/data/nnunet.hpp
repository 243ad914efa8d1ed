// nnU-Net v2's raw layout (nnUNet_raw/DatasetXXX_Name): dataset.json with "channel_names"
// ({"0": "CT"}), "labels" ({"background": 0, "liver": 1}, regions as lists), "numTraining"
// and "file_ending" (".nii.gz"); imagesTr/{case}_{0000}{file_ending}, one file per channel;
// labelsTr/{case}{file_ending}; imagesTs/ the same without labels. Channels are stacked in
// channel order into [C, D, H, W] and must share one grid.
#pragma once

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "case.hpp"
#include "decathlon.hpp"
#include "medicalseg.hpp"

namespace medseg::data {

/// A channel file's name parts: "liver_7_0001.nii.gz" -> {"liver_7", 1}.
struct ChannelFile {
  std::string case_name;
  int channel = 0;
};
/// The parts of `file_name` when it is {case}_{XXXX}{file_ending}, else nothing.
std::optional<ChannelFile> parse_channel_file(const std::string& file_name, const std::string& file_ending);

class NnunetRawDataset {
 public:
  /// Scans imagesTr (or imagesTs) against root/dataset.json; throws Error naming the file
  /// and field for a missing channel or label file or a numTraining that does not match.
  static NnunetRawDataset open(const std::filesystem::path& root, Split split = Split::training);

  std::size_t size() const { return cases_.size(); }
  std::string name(std::size_t i) const { return cases_.at(i).name; }
  LabelMap labels() const { return labels_; }
  const std::vector<std::string>& channel_names() const { return channel_names_; }
  const std::string& file_ending() const { return file_ending_; }
  Case load(std::size_t i) const;

 private:
  struct Entry {
    std::string name;
    std::vector<std::filesystem::path> channels;
    std::filesystem::path label;
  };
  std::vector<Entry> cases_;
  LabelMap labels_;
  std::vector<std::string> channel_names_;
  std::string file_ending_;
};

// ----------------------------------------------------------------------------------------
// Implementation

inline std::optional<ChannelFile> parse_channel_file(const std::string& file_name, const std::string& file_ending) {
  if (!file_name.ends_with(file_ending) || file_name.size() < file_ending.size() + 6) return std::nullopt;
  const std::string stem = file_name.substr(0, file_name.size() - file_ending.size());
  const std::string digits = stem.substr(stem.size() - 4);
  if (stem[stem.size() - 5] != '_' || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  return ChannelFile{stem.substr(0, stem.size() - 5), std::stoi(digits)};
}

inline NnunetRawDataset NnunetRawDataset::open(const std::filesystem::path& root, Split split) {
  NnunetRawDataset d;
  const auto json_path = root / "dataset.json";
  const std::string where = json_path.string();
  const auto j = detail::read_json(json_path);
  for (const char* key : {"channel_names", "labels", "numTraining", "file_ending"})
    require(j.contains(key), [&] {
      return ErrorInfo{.where = where, .field = key, .expected = "present (nnU-Net v2 dataset.json)", .actual = "missing"};
    });
  d.labels_ = parse_label_map(j["labels"], where);
  const auto& names = j["channel_names"];
  for (std::size_t c = 0; c < names.size(); ++c) {
    const auto key = std::to_string(c);
    require(names.contains(key), [&] {
      return ErrorInfo{.where = where, .field = "channel_names", .expected = "keys \"0\".." + std::to_string(names.size() - 1),
                       .actual = names.dump().substr(0, 80)};
    });
    d.channel_names_.push_back(names[key].get<std::string>());
  }
  d.file_ending_ = j["file_ending"].get<std::string>();
  const auto images = root / (split == Split::training ? "imagesTr" : "imagesTs");
  require(std::filesystem::is_directory(images), [&] {
    return ErrorInfo{.where = where, .field = "folder", .expected = images.string(), .actual = "missing"};
  });
  // {case}_{XXXX}{file_ending}: group the channel files by case.
  std::map<std::string, std::map<int, std::filesystem::path>> found;
  for (const auto& f : std::filesystem::directory_iterator(images)) {
    if (const auto c = parse_channel_file(f.path().filename().string(), d.file_ending_)) found[c->case_name][c->channel] = f.path();
  }
  const auto channels = static_cast<int>(d.channel_names_.size());
  for (auto& entry : found) {
    const std::string& name = entry.first;
    auto& files = entry.second;
    Entry e{name, {}, {}};
    for (int c = 0; c < channels; ++c) {
      char suffix[16];
      std::snprintf(suffix, sizeof suffix, "_%04d", c);
      require(files.count(c) > 0, [&] {
        return ErrorInfo{.where = where, .field = "channel " + std::to_string(c) + " of case " + name,
                         .expected = (images / (name + suffix + d.file_ending_)).string(), .actual = "missing"};
      });
      e.channels.push_back(files[c]);
    }
    require(static_cast<int>(files.size()) == channels, [&] {
      return ErrorInfo{.where = where, .field = "channels of case " + name,
                       .expected = std::to_string(channels) + " (channel_names)", .actual = std::to_string(files.size()) + " files"};
    });
    if (split == Split::training) {
      e.label = root / "labelsTr" / (name + d.file_ending_);
      require_file(e.label, where, "label of case " + name);
    }
    d.cases_.push_back(std::move(e));
  }
  if (split == Split::training)
    require(j["numTraining"].is_number_integer() && j["numTraining"].get<std::size_t>() == d.cases_.size(), [&] {
      return ErrorInfo{.where = where, .field = "numTraining",
                       .expected = std::to_string(d.cases_.size()) + " (cases in " + images.string() + ")",
                       .actual = j["numTraining"].dump()};
    });
  return d;
}

inline Case NnunetRawDataset::load(std::size_t i) const {
  const Entry& e = cases_.at(i);
  Case c{e.name, load_channels(e.channels), std::nullopt};
  if (!e.label.empty()) {
    auto label = load_label(e.label, labels_);
    check_same_grid(c.image, label, e.label.string() + " against " + e.channels.front().filename().string());
    c.label = std::move(label);
  }
  return c;
}

}  // namespace medseg::data
