// nnU-Net v2's dataset fingerprint (dataset_fingerprint.json), what its planner plans from:
// per training case the spacing and the shape after cropping to the nonzero box, in array
// axis order (z, y, x for a NIfTI read as nnU-Net's SimpleITKIO reads it: medseg's
// [D, H, W] order); the median fraction of a case kept by that crop; per channel, the
// intensity statistics of the foreground (label > 0) over the whole dataset.
// Facts from nnunetv2/experiment_planning/dataset_fingerprint/fingerprint_extractor.py
// (MIC-DKFZ/nnUNet@0e495086). nnU-Net draws up to 10^8 / cases foreground samples per case
// at random with replacement; here a case keeps all of its foreground voxels up to a quota
// and an even stride through them above it: the same statistics without sampling noise.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/parallel.hpp"
#include "../core/progress.hpp"
#include "../data/nnunet.hpp"
#include "../io/file.hpp"
#include "../io/json_fields.hpp"
#include "../preprocess/crop.hpp"
#include "../preprocess/fingerprint.hpp"
#include "numpy_math.hpp"

namespace medseg::nnunet {

using preprocess::IntensityProperties;

struct Fingerprint {
  std::vector<std::array<double, 3>> spacings;               // per case, (z, y, x)
  std::vector<std::array<std::int64_t, 3>> shapes_after_crop;  // per case, [D, H, W]
  std::vector<IntensityProperties> foreground;               // per channel
  double median_relative_size_after_cropping = 1;

  nlohmann::json to_json() const;
  static Fingerprint from_json(const nlohmann::json& j, const std::string& where);
  static Fingerprint load(const std::filesystem::path& file);
  void save(const std::filesystem::path& file) const;
};

/// Foreground voxels kept for the statistics over the whole dataset (40 MB of floats).
inline constexpr std::int64_t fingerprint_sample_budget = 10'000'000;

/// The fingerprint of the training cases of the nnU-Net raw dataset at `root`, cases in
/// parallel; `progress` (may be null) gets a progress bar with an ETA.
Fingerprint extract_fingerprint(const std::filesystem::path& root, std::ostream* progress = nullptr);

// ----------------------------------------------------------------------------------------
// Implementation

inline nlohmann::json Fingerprint::to_json() const {
  nlohmann::json props = nlohmann::json::object();
  for (std::size_t c = 0; c < foreground.size(); ++c) {
    const auto& p = foreground[c];
    props[std::to_string(c)] = {{"max", p.max},       {"mean", p.mean},
                                {"median", p.median}, {"min", p.min},
                                {"percentile_00_5", p.percentile_00_5}, {"percentile_99_5", p.percentile_99_5},
                                {"std", p.std}};
  }
  return {{"foreground_intensity_properties_per_channel", props},
          {"median_relative_size_after_cropping", median_relative_size_after_cropping},
          {"shapes_after_crop", shapes_after_crop},
          {"spacings", spacings}};
}

inline Fingerprint Fingerprint::from_json(const nlohmann::json& j, const std::string& where) {
  JsonReader r(j, where);
  Fingerprint f;
  f.spacings = r.get<std::vector<std::array<double, 3>>>("spacings", {.above = 0});
  f.shapes_after_crop = r.get<std::vector<std::array<std::int64_t, 3>>>("shapes_after_crop", {.min = 1});
  require(f.spacings.size() == f.shapes_after_crop.size() && !f.spacings.empty(), [&] {
    return ErrorInfo{.where = where, .field = "shapes_after_crop",
                     .expected = std::to_string(f.spacings.size()) + " entries (one per spacing)",
                     .actual = std::to_string(f.shapes_after_crop.size())};
  });
  f.median_relative_size_after_cropping = r.get<double>("median_relative_size_after_cropping", {.min = 0, .max = 1});
  JsonReader props = r.object("foreground_intensity_properties_per_channel");
  for (std::size_t c = 0; c < props.json().size(); ++c) {
    JsonReader p = props.object(std::to_string(c));
    p.nulls_absent();  // a channel without foreground has NaN statistics, written as null
    IntensityProperties& q = f.foreground.emplace_back();
    p.read("mean", q.mean);
    p.read("median", q.median);
    p.read("std", q.std);
    p.read("min", q.min);
    p.read("max", q.max);
    p.read("percentile_00_5", q.percentile_00_5);
    p.read("percentile_99_5", q.percentile_99_5);
  }
  return f;
}

inline Fingerprint Fingerprint::load(const std::filesystem::path& file) {
  return from_json(data::detail::read_json(file), file.string());
}

inline void Fingerprint::save(const std::filesystem::path& file) const {
  io::write_text_atomic(file, to_json().dump(4) + "\n");
}

namespace detail {

struct CaseFingerprint {
  std::array<double, 3> spacing{};
  std::array<std::int64_t, 3> shape_after_crop{};
  double relative_size = 1;
  std::vector<std::vector<float>> samples;  // per channel
};

/// One case: the nonzero box over all channels (nnU-Net's crop_to_nonzero), then per channel
/// the voxels inside it where the label is > 0, at most `quota` of them (an even stride).
inline CaseFingerprint fingerprint_case(const data::Case& c, std::int64_t quota) {
  const Tensor<float> image = c.image.voxels.contiguous();
  const std::int64_t channels = image.size(0), d = image.size(1), h = image.size(2), w = image.size(3), n = d * h * w;
  auto nonzero = Tensor<std::uint8_t>::zeros({d, h, w});
  for (std::int64_t ch = 0; ch < channels; ++ch)
    for (std::int64_t i = 0; i < n; ++i) nonzero.data()[i] |= image.data()[ch * n + i] != 0;
  const preprocess::Box box = preprocess::nonzero_box(nonzero);
  CaseFingerprint f;
  const auto& s = c.image.geometry.spacing;
  f.spacing = {s[2], s[1], s[0]};
  const auto shape = box.shape();
  f.shape_after_crop = {shape[0], shape[1], shape[2]};
  f.relative_size = static_cast<double>(shape[0] * shape[1] * shape[2]) / static_cast<double>(n);

  const data::LabelValue* label = c.label->voxels.data();
  std::vector<std::int64_t> foreground;
  for (std::int64_t z = box.begin[0]; z < box.end[0]; ++z)
    for (std::int64_t y = box.begin[1]; y < box.end[1]; ++y)
      for (std::int64_t x = box.begin[2]; x < box.end[2]; ++x) {
        const std::int64_t i = (z * h + y) * w + x;
        if (label[i] > 0) foreground.push_back(i);
      }
  const auto count = static_cast<std::int64_t>(foreground.size());
  const std::int64_t stride = std::max<std::int64_t>(1, (count + quota - 1) / std::max<std::int64_t>(quota, 1));
  f.samples.resize(static_cast<std::size_t>(channels));
  for (std::int64_t ch = 0; ch < channels; ++ch)
    for (std::int64_t k = 0; k < count; k += stride) f.samples[ch].push_back(image.data()[ch * n + foreground[k]]);
  return f;
}

}  // namespace detail

inline Fingerprint extract_fingerprint(const std::filesystem::path& root, std::ostream* progress) {
  const auto dataset = data::NnunetRawDataset::open(root);
  const auto cases = static_cast<std::int64_t>(dataset.size());
  const std::int64_t quota = fingerprint_sample_budget / std::max<std::int64_t>(cases, 1);
  std::vector<detail::CaseFingerprint> prints(static_cast<std::size_t>(cases));
  ProgressBar bar(progress, cases, "cases");
  parallel_for(0, cases, 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) {
      prints[static_cast<std::size_t>(i)] = detail::fingerprint_case(dataset.load(static_cast<std::size_t>(i)), quota);
      bar.advance();
    }
  });
  Fingerprint f;
  std::vector<double> relative;
  std::vector<std::vector<float>> samples(dataset.channel_names().size());
  for (auto& p : prints) {
    f.spacings.push_back(p.spacing);
    f.shapes_after_crop.push_back(p.shape_after_crop);
    relative.push_back(p.relative_size);
    for (std::size_t c = 0; c < samples.size(); ++c) samples[c].insert(samples[c].end(), p.samples[c].begin(), p.samples[c].end());
  }
  f.median_relative_size_after_cropping = numpy::median(relative);
  for (auto& s : samples) f.foreground.push_back(preprocess::intensity_properties(s));
  return f;
}

}  // namespace medseg::nnunet
