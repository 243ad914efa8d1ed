// The dataset fingerprint nnU-Net plans from: each case's spacing, shape and shape after
// cropping to the nonzero box, and the intensity statistics of the foreground (label > 0)
// over the whole dataset, which CT normalisation uses (mean, std, 0.5 / 99.5 percentiles).
// Key names in to_json() are nnU-Net's dataset_fingerprint.json ones.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../io/image.hpp"
#include "crop.hpp"
#include "intensity.hpp"

namespace medseg::preprocess {

/// One case's part of the fingerprint.
struct CaseFingerprint {
  io::Vec3 spacing{};                    // (x, y, z)
  Extent3 shape{}, shape_after_crop{};   // (D, H, W)
  std::vector<float> foreground_samples;  // intensities where the label is > 0
};

/// Foreground intensity statistics (nnU-Net's foreground_intensity_properties_per_channel).
struct IntensityProperties {
  double mean = 0, median = 0, std = 0, min = 0, max = 0, percentile_00_5 = 0, percentile_99_5 = 0;
};

struct DatasetFingerprint {
  std::vector<io::Vec3> spacings;
  std::vector<Extent3> shapes_after_crop;
  IntensityProperties foreground;
  io::Vec3 median_spacing{};
  Extent3 median_shape{};                        // after cropping
  double median_relative_size_after_cropping = 1;

  /// The statistics CTNormalization uses.
  CtStats ct_stats() const { return {foreground.mean, foreground.std, foreground.percentile_00_5, foreground.percentile_99_5}; }
  nlohmann::json to_json() const;
};

/// A case's fingerprint. At most `max_samples` foreground voxels are kept, evenly strided
/// through the case (nnU-Net draws them at random; a stride keeps runs reproducible without
/// a seed). `label` may be null: then every voxel of the nonzero box counts as foreground.
template <class T, class L>
CaseFingerprint fingerprint_case(const io::Image<T>& image, const io::Image<L>* label, std::int64_t max_samples = 10000);

/// The dataset's fingerprint from its cases' (medians are numpy's, lower/upper averaged).
DatasetFingerprint summarize_fingerprints(const std::vector<CaseFingerprint>& cases);

/// nnU-Net's statistics of foreground samples (population std; percentiles numpy's linear).
/// Reorders `samples`; all zero when there are none.
IntensityProperties intensity_properties(std::vector<float>& samples);

// ----------------------------------------------------------------------------------------
// Implementation

template <class T, class L>
CaseFingerprint fingerprint_case(const io::Image<T>& image, const io::Image<L>* label, std::int64_t max_samples) {
  const auto& v = image.voxels;
  require(v.defined() && v.rank() == 3, [&] {
    return ErrorInfo{.where = "preprocess::fingerprint_case", .field = "image", .expected = "[D,H,W]",
                     .actual = v.defined() ? v.shape().to_string() : "an undefined tensor"};
  });
  if (label)
    require(label->voxels.shape() == v.shape(), [&] {
      return ErrorInfo{.where = "preprocess::fingerprint_case", .field = "label", .expected = "shape " + v.shape().to_string(),
                       .actual = label->voxels.shape().to_string()};
    });
  CaseFingerprint f;
  f.spacing = image.geometry.spacing;
  f.shape = {v.size(0), v.size(1), v.size(2)};
  const Box box = nonzero_box(v);
  f.shape_after_crop = box.shape();
  const Tensor<T, Cpu> c = v.contiguous();
  std::int64_t count = 0;
  const Tensor<L, Cpu> lab = label ? label->voxels.contiguous() : Tensor<L, Cpu>();
  auto fg = [&](std::int64_t i) { return label ? lab.data()[i] > L(0) : true; };
  for (std::int64_t i = 0; i < c.numel(); ++i) count += fg(i);
  const std::int64_t stride = std::max<std::int64_t>(1, (count + max_samples - 1) / std::max<std::int64_t>(max_samples, 1));
  std::int64_t seen = 0;
  for (std::int64_t i = 0; i < c.numel(); ++i)
    if (fg(i) && seen++ % stride == 0) f.foreground_samples.push_back(static_cast<float>(c.data()[i]));
  return f;
}

namespace detail {

inline double median_of(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace detail

inline DatasetFingerprint summarize_fingerprints(const std::vector<CaseFingerprint>& cases) {
  require(!cases.empty(), [] {
    return ErrorInfo{.where = "preprocess::summarize_fingerprints", .field = "cases", .expected = "at least one",
                     .actual = "none"};
  });
  DatasetFingerprint d;
  std::vector<float> all;
  std::vector<double> relative;
  for (const auto& c : cases) {
    d.spacings.push_back(c.spacing);
    d.shapes_after_crop.push_back(c.shape_after_crop);
    all.insert(all.end(), c.foreground_samples.begin(), c.foreground_samples.end());
    relative.push_back(static_cast<double>(c.shape_after_crop[0] * c.shape_after_crop[1] * c.shape_after_crop[2]) /
                       static_cast<double>(c.shape[0] * c.shape[1] * c.shape[2]));
  }
  for (std::size_t a = 0; a < 3; ++a) {
    std::vector<double> s, e;
    for (const auto& c : cases) {
      s.push_back(c.spacing[a]);
      e.push_back(static_cast<double>(c.shape_after_crop[a]));
    }
    d.median_spacing[a] = detail::median_of(s);
    d.median_shape[a] = static_cast<std::int64_t>(std::llround(detail::median_of(e)));
  }
  d.median_relative_size_after_cropping = detail::median_of(relative);
  d.foreground = intensity_properties(all);
  return d;
}

inline IntensityProperties intensity_properties(std::vector<float>& samples) {
  IntensityProperties p;
  if (samples.empty()) return p;
  double sum = 0;
  for (float x : samples) sum += x;
  p.mean = sum / static_cast<double>(samples.size());
  double sq = 0;
  for (float x : samples) sq += (x - p.mean) * (x - p.mean);
  p.std = std::sqrt(sq / static_cast<double>(samples.size()));
  const auto [lo, hi] = std::minmax_element(samples.begin(), samples.end());
  p.min = *lo;
  p.max = *hi;
  p.percentile_00_5 = percentile(samples, 0.5);
  p.percentile_99_5 = percentile(samples, 99.5);
  p.median = percentile(samples, 50);
  return p;
}

inline nlohmann::json DatasetFingerprint::to_json() const {
  nlohmann::json shapes = nlohmann::json::array();
  for (const auto& s : shapes_after_crop) shapes.push_back(s);
  return {{"spacings", spacings},
          {"shapes_after_crop", shapes},
          {"median_relative_size_after_cropping", median_relative_size_after_cropping},
          {"median_spacing", median_spacing},
          {"median_shape_after_crop", median_shape},
          {"foreground_intensity_properties_per_channel",
           {{"0",
             {{"mean", foreground.mean},
              {"median", foreground.median},
              {"std", foreground.std},
              {"min", foreground.min},
              {"max", foreground.max},
              {"percentile_00_5", foreground.percentile_00_5},
              {"percentile_99_5", foreground.percentile_99_5}}}}}};
}

}  // namespace medseg::preprocess
