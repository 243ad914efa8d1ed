// nnU-Net v2's default experiment planner: from a dataset fingerprint and dataset.json to the
// plans of the "2d", "3d_fullres", "3d_lowres" and "3d_cascade_fullres" configurations.
// The rules and constants follow, step by step, MIC-DKFZ/nnUNet@0e495086
// nnunetv2/experiment_planning/experiment_planners/default_experiment_planner.py
// (ExperimentPlanner) and network_topology.py (get_pool_and_conv_props), with the memory
// estimate of dynamic-network-architectures@d35f85c7 (PlainConvUNet.compute_conv_feature_map_size).
// Numbers go through the same roundings as NumPy's (numpy_math.hpp), so the same fingerprint
// gives the same plans as nnU-Net's planner, as tests/nnunet checks against plans that
// nnU-Net's own code wrote.
//   nnunet::Plans plans = nnunet::plan_experiment(fingerprint, dataset_json, "Dataset001_Brain");
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dataset.hpp"
#include "fingerprint.hpp"
#include "numpy_math.hpp"
#include "plans.hpp"

namespace medseg::nnunet {

/// The planner's constants, nnU-Net's ExperimentPlanner.__init__ values.
struct PlannerSettings {
  double gpu_memory_target_gb = 8;  // nnUNetv2_plan_experiment -gpu_memory_target
  double anisotropy_threshold = 3;  // nnunetv2/configuration.py ANISO_THRESHOLD
  std::int64_t base_features = 32;
  std::int64_t max_features_3d = 320, max_features_2d = 512;
  // Feature-map voxels a batch of reference_batch_* fits in reference_gb (nnU-Net v1's sizes).
  double reference_3d = 560000000, reference_2d = 85000000, reference_gb = 8;
  double reference_batch_3d = 2, reference_batch_2d = 12;
  std::int64_t featuremap_min_edge_length = 4;
  std::int64_t convs_per_stage = 2;  // encoder and decoder
  std::int64_t min_batch_size = 2;
  double max_dataset_covered = 0.05;      // a batch sees at most 5% of the dataset's voxels
  double lowres_creation_threshold = 0.25;  // a 3d_lowres when the fullres patch covers less
  double lowres_spacing_increase = 1.03;
  std::string plans_name = "nnUNetPlans";
  std::optional<std::array<double, 3>> overwrite_target_spacing{};  // 3d_fullres (and lowres from it)
};

/// get_pool_and_conv_props' result: per pooling stage the strides (stage 0: all 1) and per
/// stage the conv kernels; the patch padded to a multiple of 2^pools per axis.
struct Topology {
  std::vector<std::int64_t> pools_per_axis;
  std::vector<std::vector<std::int64_t>> strides, kernels;
  std::vector<std::int64_t> patch_size, must_be_divisible_by;
};

/// Pools an axis while its feature map keeps >= 2 * min_edge voxels and its spacing is within
/// 2x of the finest; kernels are 1 on an axis until its spacing comes within 2x of the finest.
Topology pool_and_conv_props(const std::vector<double>& spacing, const std::vector<double>& patch_size,
                             std::int64_t min_edge, std::int64_t max_pools = 999999);

/// PlainConvUNet.compute_conv_feature_map_size (deep supervision off): the voxels of every
/// conv, transposed-conv and final segmentation output for one patch: nnU-Net's memory proxy.
std::int64_t feature_map_voxels(const Architecture& a, const std::vector<std::int64_t>& patch_size, std::int64_t num_classes);

/// The 3d_fullres target spacing, (z, y, x): the median, except on an axis much coarser than
/// the others with much fewer voxels, which gets its 10th percentile.
std::array<double, 3> fullres_target_spacing(const Fingerprint& f, const PlannerSettings& s = {});

/// Normalisation scheme per channel name ("CT" -> CTNormalization, else ZScoreNormalization, ...).
std::string normalization_scheme(const std::string& channel_name);

/// One configuration at `spacing` for cases of `median_shape` (both transposed; 2 or 3 axes).
Configuration plan_configuration(const std::string& name, const std::vector<double>& spacing,
                                 const std::vector<double>& median_shape, double dataset_voxels,
                                 const Fingerprint& f, const DatasetJson& d, const PlannerSettings& s);

/// Every configuration nnU-Net would plan for this dataset.
Plans plan_experiment(const Fingerprint& f, const DatasetJson& d, const std::string& dataset_name,
                      const PlannerSettings& s = {});

// ----------------------------------------------------------------------------------------
// Implementation

inline Topology pool_and_conv_props(const std::vector<double>& spacing, const std::vector<double>& patch_size,
                                    std::int64_t min_edge, std::int64_t max_pools) {
  const std::size_t dims = spacing.size();
  std::vector<double> current_spacing = spacing, current_size = patch_size;
  Topology t;
  t.strides.push_back(std::vector<std::int64_t>(dims, 1));
  t.pools_per_axis.assign(dims, 0);
  std::vector<std::int64_t> kernel(dims, 1);
  const auto min_of = [](const std::vector<double>& v, const std::vector<std::size_t>& axes) {
    double m = v[axes.front()];
    for (auto a : axes) m = std::min(m, v[a]);
    return m;
  };
  for (;;) {
    std::vector<std::size_t> valid;
    for (std::size_t a = 0; a < dims; ++a)
      if (current_size[a] >= 2.0 * static_cast<double>(min_edge)) valid.push_back(a);
    if (valid.empty()) break;
    const double finest_valid = min_of(current_spacing, valid);
    std::erase_if(valid, [&](std::size_t a) { return !(current_spacing[a] / finest_valid < 2); });
    std::erase_if(valid, [&](std::size_t a) { return !(t.pools_per_axis[a] < max_pools); });
    if (valid.size() == 1 && !(current_size[valid.front()] >= 3.0 * static_cast<double>(min_edge))) break;
    if (valid.empty()) break;
    const double finest = *std::min_element(current_spacing.begin(), current_spacing.end());
    for (std::size_t a = 0; a < dims; ++a)
      if (kernel[a] != 3 && current_spacing[a] / finest < 2) kernel[a] = 3;
    std::vector<std::int64_t> stride(dims, 1);
    for (auto a : valid) {
      stride[a] = 2;
      ++t.pools_per_axis[a];
      current_spacing[a] *= 2;
      current_size[a] = std::ceil(current_size[a] / 2);
    }
    t.strides.push_back(stride);
    t.kernels.push_back(kernel);
  }
  // pad_shape: up to the next multiple (a multiple already stays), then truncated to int.
  for (std::size_t a = 0; a < dims; ++a) {
    const std::int64_t m = std::int64_t{1} << t.pools_per_axis[a];
    t.must_be_divisible_by.push_back(m);
    const double md = static_cast<double>(m), rest = std::fmod(patch_size[a], md);
    double padded = patch_size[a] + md - rest;
    if (rest == 0) padded -= md;
    t.patch_size.push_back(static_cast<std::int64_t>(padded));
  }
  t.kernels.push_back(std::vector<std::int64_t>(dims, 3));  // the bottleneck
  return t;
}

inline std::int64_t feature_map_voxels(const Architecture& a, const std::vector<std::int64_t>& patch_size,
                                       std::int64_t num_classes) {
  const std::size_t stages = a.features_per_stage.size();
  auto voxels = [](const std::vector<std::int64_t>& size) {
    std::int64_t v = 1;
    for (auto x : size) v *= x;
    return v;
  };
  // Encoder: stage s's convs run at the size after its stride; it is also skip s.
  std::vector<std::vector<std::int64_t>> sizes;
  std::vector<std::int64_t> size = patch_size;
  std::int64_t total = 0;
  for (std::size_t s = 0; s < stages; ++s) {
    for (std::size_t k = 0; k < size.size(); ++k) size[k] /= a.strides[s][k];
    sizes.push_back(size);
    total += a.n_conv_per_stage[s] * a.features_per_stage[s] * voxels(size);
  }
  // Decoder stage j (0 = deepest) works at skip n - 2 - j with that skip's channels: its
  // convs, the transposed conv's output, and the segmentation output of the last stage.
  for (std::size_t j = 0; j + 1 < stages; ++j) {
    const std::size_t skip = stages - 2 - j;
    const std::int64_t v = voxels(sizes[skip]), channels = a.features_per_stage[skip];
    total += a.n_conv_per_stage_decoder[j] * channels * v + channels * v;
    if (j + 2 == stages) total += num_classes * v;
  }
  return total;
}

namespace detail {

/// Every case's spacing and cropped size along axis `a`.
struct AxisColumn {
  std::vector<double> spacings, sizes;
};
inline AxisColumn axis_column(const Fingerprint& f, std::size_t a) {
  AxisColumn c;
  for (std::size_t k = 0; k < f.spacings.size(); ++k) {
    c.spacings.push_back(f.spacings[k][a]);
    c.sizes.push_back(static_cast<double>(f.shapes_after_crop[k][a]));
  }
  return c;
}

}  // namespace detail

inline std::array<double, 3> fullres_target_spacing(const Fingerprint& f, const PlannerSettings& s) {
  if (s.overwrite_target_spacing) return *s.overwrite_target_spacing;
  std::array<double, 3> target{}, target_size{};
  for (std::size_t a = 0; a < 3; ++a) {
    const auto column = detail::axis_column(f, a);
    target[a] = numpy::percentile(column.spacings, 50);
    target_size[a] = numpy::percentile(column.sizes, 50);
  }
  const auto worst = static_cast<std::size_t>(std::max_element(target.begin(), target.end()) - target.begin());
  double other_spacing = 0, other_size = std::numeric_limits<double>::infinity();
  for (std::size_t a = 0; a < 3; ++a)
    if (a != worst) {
      other_spacing = std::max(other_spacing, target[a]);
      other_size = std::min(other_size, target_size[a]);
    }
  const bool aniso_spacing = target[worst] > s.anisotropy_threshold * other_spacing;
  const bool aniso_voxels = target_size[worst] * s.anisotropy_threshold < other_size;
  if (aniso_spacing && aniso_voxels) {
    double t = numpy::percentile(detail::axis_column(f, worst).spacings, 10);
    if (t < other_spacing) t = std::max(other_spacing, t) + 1e-5;  // never finer than the other axes
    target[worst] = t;
  }
  return target;
}

inline std::string normalization_scheme(const std::string& channel_name) {
  std::string n = channel_name;
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (n == "ct") return "CTNormalization";
  if (n == "nonorm") return "NoNormalization";
  if (n == "rescale_to_0_1") return "RescaleTo01Normalization";
  if (n == "rgb_to_0_1") return "RGBTo01Normalization";
  return "ZScoreNormalization";
}

inline Configuration plan_configuration(const std::string& name, const std::vector<double>& spacing,
                                        const std::vector<double>& median_shape, double dataset_voxels,
                                        const Fingerprint& f, const DatasetJson& d, const PlannerSettings& s) {
  const std::size_t dims = spacing.size();
  const bool two_d = dims == 2;
  const std::int64_t max_features = two_d ? s.max_features_2d : s.max_features_3d;
  const std::int64_t num_classes = d.num_label_keys();

  // Initial patch: the spacing's aspect ratio at the volume of 256^3 (2048^2 in 2-D), then
  // no larger than the median case.
  std::vector<double> inverse;
  for (double x : spacing) inverse.push_back(1 / x);
  const double scale = two_d ? std::pow(2048.0 * 2048.0 / numpy::product(inverse), 1.0 / 2)
                             : std::pow(256.0 * 256.0 * 256.0 / numpy::product(inverse), 1.0 / 3);
  std::vector<double> initial;
  for (std::size_t a = 0; a < dims; ++a)
    initial.push_back(std::min(static_cast<double>(numpy::round_half_even(inverse[a] * scale)), median_shape[a]));

  Configuration c;
  c.name = name;
  c.data_identifier = s.plans_name + "_" + name;
  Architecture& arch = c.architecture;
  const auto set_topology = [&](const Topology& t) {
    const std::size_t stages = t.strides.size();
    arch.features_per_stage.clear();
    for (std::size_t i = 0; i < stages; ++i)
      arch.features_per_stage.push_back(std::min(max_features, s.base_features << std::min<std::size_t>(i, 30)));
    arch.kernel_sizes = t.kernels;
    arch.strides = t.strides;
    arch.n_conv_per_stage.assign(stages, s.convs_per_stage);
    arch.n_conv_per_stage_decoder.assign(stages - 1, s.convs_per_stage);
    c.patch_size = t.patch_size;
  };
  Topology t = pool_and_conv_props(spacing, initial, s.featuremap_min_edge_length);
  set_topology(t);
  std::int64_t estimate = feature_map_voxels(arch, c.patch_size, num_classes);

  const double reference = (two_d ? s.reference_2d : s.reference_3d) * (s.gpu_memory_target_gb / s.reference_gb);
  const double reference_batch = two_d ? s.reference_batch_2d : s.reference_batch_3d;
  // Shrink the axis largest relative to the median case until a batch of 2 fits.
  while (static_cast<double>(estimate) / reference_batch * 2 > reference) {
    std::size_t axis = 0;
    double worst = -1;
    for (std::size_t a = 0; a < dims; ++a) {
      const double ratio = static_cast<double>(c.patch_size[a]) / median_shape[a];
      if (ratio >= worst) worst = ratio, axis = a;  // ties: the last axis, as np.argsort(...)[-1]
    }
    // Step down by the divisor the smaller patch would have, so no valid size is skipped.
    std::vector<double> smaller(c.patch_size.begin(), c.patch_size.end());
    smaller[axis] -= static_cast<double>(t.must_be_divisible_by[axis]);
    const Topology step = pool_and_conv_props(spacing, smaller, s.featuremap_min_edge_length);
    std::vector<double> patch(c.patch_size.begin(), c.patch_size.end());
    patch[axis] -= static_cast<double>(step.must_be_divisible_by[axis]);
    t = pool_and_conv_props(spacing, patch, s.featuremap_min_edge_length);
    set_topology(t);
    estimate = feature_map_voxels(arch, c.patch_size, num_classes);
  }

  double patch_voxels = 1;
  for (auto x : c.patch_size) patch_voxels *= static_cast<double>(x);
  const std::int64_t batch = numpy::round_half_even(reference / static_cast<double>(estimate) * reference_batch);
  const std::int64_t five_percent = numpy::round_half_even(dataset_voxels * s.max_dataset_covered / patch_voxels);
  c.batch_size = std::max(std::min(batch, five_percent), s.min_batch_size);

  c.median_image_size_in_voxels = median_shape;
  c.spacing = spacing;
  const bool mask_allowed = f.median_relative_size_after_cropping < 3.0 / 4;
  for (const auto& channel : d.channel_names) {
    c.normalization_schemes.push_back(normalization_scheme(channel));
    // Only z-scoring leaves the voxels outside the nonzero mask at 0 when normalising within it.
    c.use_mask_for_norm.push_back(mask_allowed && c.normalization_schemes.back() == "ZScoreNormalization");
  }
  return c;
}

inline Plans plan_experiment(const Fingerprint& f, const DatasetJson& d, const std::string& dataset_name,
                             const PlannerSettings& s) {
  require(!f.spacings.empty(), [] {
    return ErrorInfo{.where = "nnunet::plan_experiment", .field = "fingerprint.spacings", .expected = "at least one case",
                     .actual = "none"};
  });
  Plans plans;
  plans.dataset_name = dataset_name;
  plans.plans_name = s.plans_name;
  const std::array<double, 3> target = fullres_target_spacing(f, s);
  // Transpose: the coarsest axis first (ExperimentPlanner.determine_transpose).
  const int coarsest = static_cast<int>(std::max_element(target.begin(), target.end()) - target.begin());
  plans.transpose_forward = {coarsest};
  for (int a = 0; a < 3; ++a)
    if (a != coarsest) plans.transpose_forward.push_back(a);
  for (int a = 0; a < 3; ++a)
    plans.transpose_backward[a] = static_cast<int>(
        std::find(plans.transpose_forward.begin(), plans.transpose_forward.end(), a) - plans.transpose_forward.begin());
  const auto transposed = [&](const auto& v) {
    std::vector<double> out;
    for (int a : plans.transpose_forward) out.push_back(static_cast<double>(v[static_cast<std::size_t>(a)]));
    return out;
  };

  // The median case after resampling to the target spacing (compute_new_shape).
  std::array<double, 3> new_median{};
  for (std::size_t a = 0; a < 3; ++a) {
    auto column = detail::axis_column(f, a);
    for (std::size_t c = 0; c < column.sizes.size(); ++c)
      column.sizes[c] = static_cast<double>(numpy::round_half_even(column.spacings[c] / target[a] * column.sizes[c]));
    new_median[a] = numpy::median(column.sizes);
  }
  const std::vector<double> spacing = transposed(target), median_shape = transposed(new_median);
  const double dataset_voxels = numpy::product(median_shape) * static_cast<double>(d.num_training);

  std::optional<Configuration> fullres, lowres;
  if (median_shape[0] != 1) {
    fullres = plan_configuration("3d_fullres", spacing, median_shape, dataset_voxels, f, d, s);
    // 3d_lowres: coarsen the spacing (anisotropic axes first) until a patch covers a quarter
    // of the median case.
    const double fullres_voxels = numpy::product(median_shape);
    double median_voxels = fullres_voxels;
    double patch_voxels = 1;
    for (auto x : fullres->patch_size) patch_voxels *= static_cast<double>(x);
    std::vector<double> lowres_spacing = spacing;
    while (patch_voxels / median_voxels < s.lowres_creation_threshold) {
      const double coarsest_spacing = *std::max_element(lowres_spacing.begin(), lowres_spacing.end());
      const bool any_fine = std::any_of(lowres_spacing.begin(), lowres_spacing.end(),
                                        [&](double x) { return coarsest_spacing / x > 2; });
      for (auto& x : lowres_spacing)
        if (!any_fine || coarsest_spacing / x > 2) x *= s.lowres_spacing_increase;
      std::vector<double> shape, rounded;
      for (std::size_t a = 0; a < 3; ++a) {
        shape.push_back(spacing[a] / lowres_spacing[a] * median_shape[a]);
        rounded.push_back(static_cast<double>(numpy::round_half_even(shape.back())));
      }
      median_voxels = numpy::product(shape);
      lowres = plan_configuration("3d_lowres", lowres_spacing, rounded, median_voxels * static_cast<double>(d.num_training),
                                  f, d, s);
      patch_voxels = 1;
      for (auto x : lowres->patch_size) patch_voxels *= static_cast<double>(x);
    }
    if (fullres_voxels / median_voxels < 2) lowres.reset();  // too close to fullres to be worth it
    fullres->batch_dice = lowres.has_value();
    if (lowres) lowres->batch_dice = false;
  }
  Configuration two_d = plan_configuration("2d", {spacing[1], spacing[2]}, {median_shape[1], median_shape[2]},
                                           dataset_voxels, f, d, s);
  two_d.batch_dice = true;

  std::array<double, 3> median_spacing{}, original_shape{};
  for (std::size_t a = 0; a < 3; ++a) {
    const auto column = detail::axis_column(f, a);
    median_spacing[a] = numpy::median(column.spacings);
    original_shape[a] = numpy::median(column.sizes);
  }
  plans.original_median_spacing_after_transp = transposed(median_spacing);
  for (double x : transposed(original_shape)) plans.original_median_shape_after_transp.push_back(numpy::round_half_even(x));
  plans.foreground_intensity_properties_per_channel = f.to_json()["foreground_intensity_properties_per_channel"];

  plans.set(two_d);
  if (lowres) {
    if (fullres) lowres->next_stage = "3d_cascade_fullres";
    plans.set(*lowres);
  }
  if (fullres) {
    plans.set(*fullres);
    if (lowres) plans.configurations["3d_cascade_fullres"] = {{"inherits_from", "3d_fullres"}, {"previous_stage", "3d_lowres"}};
  }
  return plans;
}

}  // namespace medseg::nnunet
