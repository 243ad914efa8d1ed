// PaddleSeg MedicalSeg's layout: a dataset root holding images/ and labels/ (usually .npy,
// saved as SimpleITK's [D, H, W] arrays), list files train_list.txt / val_list.txt /
// test_list.txt with one case per line, "images/x.npy labels/x.npy" relative to the root
// (test lists may omit the label), and an optional dataset.json beside them with the label
// map ("labels") and per-case geometry, which .npy files cannot carry:
//   {"labels": {"0": "background", "1": "lung"},
//    "training": {"x": {"spacing": [0.7, 0.7, 2.5], "origin": [...], "direction": [9 values]}}}
// Geometry entries may sit under any top-level object ("training", "validation", "test");
// spacing and origin are in (x, y, z) order, direction row-major, as SimpleITK gives them.
#pragma once

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "case.hpp"

namespace medseg::data {

class ListDataset {
 public:
  /// Reads `list_file` (its folder is the dataset root) and the root's dataset.json if any;
  /// throws Error naming the list, line and path when a listed file is missing.
  static ListDataset open(const std::filesystem::path& list_file);

  std::size_t size() const { return entries_.size(); }
  std::string name(std::size_t i) const { return entries_.at(i).name; }
  LabelMap labels() const { return labels_; }
  Case load(std::size_t i) const;

 private:
  struct Entry {
    std::string name;
    std::filesystem::path image;
    std::filesystem::path label;  // empty for test cases
    std::string where;            // "train_list.txt:3", for errors
  };
  std::vector<Entry> entries_;
  LabelMap labels_;
  std::map<std::string, io::Geometry> geometry_;
};

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

/// "x" for "images/x.npy" or "imagesTr/x.nii.gz": the file name without its extensions.
inline std::string case_name(const std::filesystem::path& p) {
  const std::string f = p.filename().string();
  const auto dot = f.find('.', 1);
  return dot == std::string::npos ? f : f.substr(0, dot);
}

inline io::Vec3 json_vec3(const nlohmann::json& v, const std::string& where, const std::string& field) {
  require(v.is_array() && v.size() == 3 && v[0].is_number() && v[1].is_number() && v[2].is_number(), [&] {
    return ErrorInfo{.where = where, .field = field, .expected = "3 numbers", .actual = v.dump().substr(0, 80)};
  });
  return {v[0].get<double>(), v[1].get<double>(), v[2].get<double>()};
}

inline nlohmann::json read_json(const std::filesystem::path& path) {
  require_file(path, path.parent_path().string(), "dataset.json");
  std::ifstream f(path);
  try {
    return nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    throw Error{{.where = path.string(), .field = "JSON", .expected = "valid JSON", .actual = "a syntax error",
                 .detail = e.what()}};
  }
}

}  // namespace detail

inline ListDataset ListDataset::open(const std::filesystem::path& list_file) {
  ListDataset d;
  const auto root = list_file.parent_path();
  std::ifstream list(list_file);
  require(list.good(), [&] {
    return ErrorInfo{.where = list_file.string(), .field = "list file", .expected = "a readable file",
                     .actual = "missing"};
  });
  std::string line;
  for (int number = 1; std::getline(list, line); ++number) {
    std::istringstream fields(line);
    std::vector<std::string> parts;
    for (std::string p; fields >> p;) parts.push_back(p);
    if (parts.empty()) continue;
    const std::string where = list_file.filename().string() + ":" + std::to_string(number);
    require(parts.size() <= 2, [&] {
      return ErrorInfo{.where = list_file.string(), .field = "line " + std::to_string(number),
                       .expected = "\"images/x.npy labels/x.npy\" or \"images/x.npy\"", .actual = "\"" + line + "\""};
    });
    Entry e{detail::case_name(parts[0]), root / parts[0], parts.size() == 2 ? root / parts[1] : std::filesystem::path(),
            where};
    require_file(e.image, list_file.string(), "line " + std::to_string(number) + " image");
    if (!e.label.empty()) require_file(e.label, list_file.string(), "line " + std::to_string(number) + " label");
    d.entries_.push_back(std::move(e));
  }
  const auto json_path = root / "dataset.json";
  if (std::filesystem::exists(json_path)) {
    const auto j = detail::read_json(json_path);
    if (j.contains("labels")) d.labels_ = parse_label_map(j["labels"], json_path.string());
    for (const auto& [group, cases] : j.items()) {
      if (!cases.is_object()) continue;
      for (const auto& [name, info] : cases.items()) {
        if (!info.is_object() || !info.contains("spacing")) continue;
        const std::string field = group + "." + name;
        io::Geometry g;
        g.spacing = detail::json_vec3(info["spacing"], json_path.string(), field + ".spacing");
        if (info.contains("origin")) g.origin = detail::json_vec3(info["origin"], json_path.string(), field + ".origin");
        if (info.contains("direction")) {
          const auto& dir = info["direction"];
          require(dir.is_array() && dir.size() == 9, [&] {
            return ErrorInfo{.where = json_path.string(), .field = field + ".direction", .expected = "9 numbers",
                             .actual = dir.dump().substr(0, 80)};
          });
          for (int k = 0; k < 9; ++k) g.direction[k] = dir[k].get<double>();
        }
        io::validate(g, json_path.string() + ": " + field);
        d.geometry_[name] = g;
      }
    }
  }
  return d;
}

inline Case ListDataset::load(std::size_t i) const {
  const Entry& e = entries_.at(i);
  Case c{e.name, load_channels({e.image}), std::nullopt};
  const auto g = geometry_.find(e.name);
  // .npy carries no geometry: dataset.json's applies. Other formats keep their own.
  const bool npy = io::format_of(e.image) == io::ImageFormat::npy;
  if (g != geometry_.end() && npy) c.image.geometry = g->second;
  if (!e.label.empty()) {
    auto label = load_label(e.label, labels_);
    if (g != geometry_.end() && io::format_of(e.label) == io::ImageFormat::npy) label.geometry = g->second;
    check_same_grid(c.image, label, e.where + " (" + e.label.string() + " against " + e.image.filename().string() + ")");
    c.label = std::move(label);
  }
  return c;
}

}  // namespace medseg::data
