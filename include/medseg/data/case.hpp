// One training or test case as every dataset layout delivers it: the image with all its
// channels, the label when there is one, and the case's name. Loading checks what silently
// ruins training when it is wrong: image and label of different shapes or geometry, and
// label values outside the dataset's label map.
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../io/format.hpp"
#include "../io/image.hpp"

namespace medseg::data {

/// Label voxels: class indices 0..255 (nnU-Net, MSD and MedicalSeg label maps all fit).
using LabelValue = std::uint8_t;

struct Case {
  std::string name;
  io::Image<float> image;                       // [C, D, H, W], C >= 1
  std::optional<io::Image<LabelValue>> label;   // [D, H, W]; none for test cases
};

/// The label values a dataset declares, with their names ({0: "background", 1: "liver"}).
/// Empty means "not declared": any value 0..255 is accepted.
using LabelMap = std::map<int, std::string>;

/// A label map from a dataset.json "labels" object in either spelling: MSD's
/// {"0": "background", "1": "tumour"} or nnU-Net v2's {"background": 0, "tumour": [1, 2]}
/// (a region lists the values it unites).
LabelMap parse_label_map(const nlohmann::json& labels, const std::string& where);

/// The image of one or more channel files, stacked into [C, D, H, W] as float32. Each file
/// may itself hold several channels (MSD's 4-D files). All channels must share one grid.
io::Image<float> load_channels(const std::vector<std::filesystem::path>& files);

/// The label file as LabelValue, after checking every value is an integer in `labels` (or in
/// 0..255 when `labels` is empty). A [1, D, H, W] label becomes [D, H, W].
io::Image<LabelValue> load_label(const std::filesystem::path& file, const LabelMap& labels);

/// Throws Error naming `where` unless the geometries agree within nnU-Net's tolerances
/// (relative 1e-5 on spacing, 1e-4 on origin, absolute 1e-4 on direction entries).
void check_same_geometry(const io::Geometry& expected, const io::Geometry& actual, const std::string& where);

/// Throws Error naming `where` unless `label` has the image's spatial shape and geometry.
void check_same_grid(const io::Image<float>& image, const io::Image<LabelValue>& label, const std::string& where);

/// Throws Error naming the list or dataset.json (`where`) and the field when `file` is missing.
void require_file(const std::filesystem::path& file, const std::string& where, const std::string& field);

// ----------------------------------------------------------------------------------------
// Implementation

inline LabelMap parse_label_map(const nlohmann::json& labels, const std::string& where) {
  LabelMap map;
  require(labels.is_object(), [&] {
    return ErrorInfo{.where = where, .field = "labels", .expected = "an object of label values and names",
                     .actual = labels.dump().substr(0, 80)};
  });
  for (const auto& item : labels.items()) {
    const std::string key = item.key();
    const nlohmann::json& value = item.value();
    auto add = [&](const nlohmann::json& v, const std::string& label_name) {
      require(v.is_number_integer() && v.get<int>() >= 0 && v.get<int>() <= 255, [&] {
        return ErrorInfo{.where = where, .field = "labels." + key, .expected = "an integer value in 0..255",
                         .actual = v.dump()};
      });
      map[v.get<int>()] = label_name;
    };
    if (value.is_string()) {  // MSD: "1": "liver"
      int v = -1;
      try {
        std::size_t used = 0;
        v = std::stoi(key, &used);
        if (used != key.size()) v = -1;
      } catch (const std::exception&) {
      }
      add(nlohmann::json(v), value.get<std::string>());
    } else if (value.is_array()) {  // nnU-Net region: "whole tumour": [1, 2, 3]
      for (const auto& v : value) add(v, key);
    } else {
      add(value, key);  // nnU-Net: "liver": 1
    }
  }
  return map;
}

inline void require_file(const std::filesystem::path& file, const std::string& where, const std::string& field) {
  require(std::filesystem::exists(file), [&] {
    return ErrorInfo{.where = where, .field = field, .expected = "an existing file", .actual = file.string() + " is missing"};
  });
}

inline io::Image<float> load_channels(const std::vector<std::filesystem::path>& files) {
  std::vector<io::Image<float>> parts;
  std::int64_t channels = 0;
  for (const auto& f : files) {
    auto im = io::read_image_as<float>(f);
    require(im.voxels.rank() == 3 || im.voxels.rank() == 4, [&] {
      return ErrorInfo{.where = f.string(), .field = "voxels", .expected = "[D,H,W] or [C,D,H,W]",
                       .actual = im.voxels.shape().to_string()};
    });
    if (im.voxels.rank() == 3) {
      const Shape s = im.voxels.shape();
      im.voxels = im.voxels.reshape({1, s[0], s[1], s[2]});
    }
    if (!parts.empty()) {
      const auto& first = parts.front();
      const bool same_shape = im.voxels.shape().erase(0) == first.voxels.shape().erase(0);
      require(same_shape, [&] {
        return ErrorInfo{.where = f.string(), .field = "shape",
                         .expected = first.voxels.shape().erase(0).to_string() + " as " + files.front().string(),
                         .actual = im.voxels.shape().erase(0).to_string()};
      });
      check_same_geometry(first.geometry, im.geometry, f.string() + " (against " + files.front().filename().string() + ")");
    }
    channels += im.voxels.size(0);
    parts.push_back(std::move(im));
  }
  require(!parts.empty(), [&] {
    return ErrorInfo{.where = "load_channels", .field = "files", .expected = "at least one", .actual = "none"};
  });
  if (parts.size() == 1) return parts.front();
  Shape s = parts.front().voxels.shape();
  s[0] = channels;
  auto out = Tensor<float>::empty(s);
  std::int64_t at = 0;
  for (const auto& p : parts) {
    out.slice(0, at, at + p.voxels.size(0)).copy_from(p.voxels);
    at += p.voxels.size(0);
  }
  return {out, parts.front().geometry};
}

inline io::Image<LabelValue> load_label(const std::filesystem::path& file, const LabelMap& labels) {
  const io::AnyImage any = io::read_image(file);
  Shape s = io::shape(any);
  require(s.rank() == 3 || (s.rank() == 4 && s[0] == 1), [&] {
    return ErrorInfo{.where = file.string(), .field = "label shape", .expected = "[D,H,W] (or [1,D,H,W])",
                     .actual = s.to_string()};
  });
  if (s.rank() == 4) s = s.erase(0);
  auto out = Tensor<LabelValue>::empty(s);
  std::visit(
      [&](const auto& im) {
        const auto v = im.voxels.contiguous();
        const std::int64_t n = v.numel();
        for (std::int64_t i = 0; i < n; ++i) {
          const double x = static_cast<double>(v.data()[i]);
          const bool integral = x == std::floor(x) && x >= 0 && x <= 255;
          const int value = integral ? static_cast<int>(x) : -1;
          const bool known = integral && (labels.empty() || labels.count(value) > 0);
          if (!known) [[unlikely]] {
            std::string declared;
            for (const auto& [k, name] : labels) declared += (declared.empty() ? "" : ", ") + std::to_string(k);
            throw Error{{.where = file.string(), .field = "label value at voxel " + std::to_string(i),
                         .expected = labels.empty() ? "an integer in 0..255" : "one of the declared labels {" + declared + "}",
                         .actual = str(x)}};
          }
          out.data()[i] = static_cast<LabelValue>(value);
        }
      },
      any);
  return {out, io::geometry(any)};
}

inline void check_same_geometry(const io::Geometry& a, const io::Geometry& b, const std::string& where) {
  auto close = [](double x, double y, double tolerance) { return std::abs(x - y) <= tolerance * std::max(1.0, std::abs(x)); };
  for (int i = 0; i < 3; ++i) {
    require(close(a.spacing[i], b.spacing[i], 1e-5), [&] {
      return ErrorInfo{.where = where, .field = std::string("spacing of axis ") + "ijk"[i],
                       .expected = str(a.spacing[i]) + " (the image's)", .actual = str(b.spacing[i])};
    });
    require(close(a.origin[i], b.origin[i], 1e-4), [&] {
      return ErrorInfo{.where = where, .field = std::string("origin ") + "xyz"[i],
                       .expected = str(a.origin[i]) + " (the image's)", .actual = str(b.origin[i])};
    });
  }
  for (int i = 0; i < 9; ++i)
    require(std::abs(a.direction[i] - b.direction[i]) <= 1e-4, [&] {
      return ErrorInfo{.where = where, .field = "direction[" + std::to_string(i / 3) + "][" + std::to_string(i % 3) + "]",
                       .expected = str(a.direction[i]) + " (the image's)", .actual = str(b.direction[i])};
    });
}

inline void check_same_grid(const io::Image<float>& image, const io::Image<LabelValue>& label, const std::string& where) {
  const Shape spatial = image.voxels.shape().erase(0);
  require(label.voxels.shape() == spatial, [&] {
    return ErrorInfo{.where = where, .field = "label shape", .expected = spatial.to_string() + " (the image's)",
                     .actual = label.voxels.shape().to_string()};
  });
  check_same_geometry(image.geometry, label.geometry, where);
}

}  // namespace medseg::data
