// What one plans configuration means in medseg's own terms, so the plans drive the same
// machinery as a hand-written recipe: `medseg prepare`'s image and label ops (nnU-Net's
// DefaultPreprocessor: crop to the nonzero box, each channel normalised by its scheme, then
// resampled to the target spacing, images cubic and labels per-label linear, the coarse axis
// of anisotropic data separately with order 0), the DynamicUNet's JSON and the sliding-window
// settings of nnU-Net's predictor (patch-sized Gaussian windows, half overlap, mirroring on
// every axis).
// Plans list per-axis values in transposed order (the coarsest axis first); a recipe is in the
// images' own axis order (D, H, W), the transpose undone, so nothing is transposed at run time.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../infer/deploy.hpp"
#include "../models/any_model.hpp"
#include "dataset.hpp"
#include "fingerprint.hpp"
#include "plans.hpp"

namespace medseg::nnunet {

struct Recipe {
  nlohmann::json image_ops = nlohmann::json::array(), label_ops = nlohmann::json::array();
  nlohmann::json model;               // models::AnyModel's JSON ({"type": "DynamicUNet", ...})
  infer::InferenceSettings inference;  // the sliding window
  infer::Index3 patch{};               // (D, H, W)
  std::int64_t batch_size = 2;
  bool batch_dice = false;
  std::vector<std::string> class_names;  // one per output channel, background first
};

/// The recipe of configuration `c` of `plans` for a dataset described by `d`.
Recipe make_recipe(const Plans& plans, const Configuration& c, const DatasetJson& d);

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

/// v given in transposed order, back in the images' axis order.
template <class T>
std::vector<T> untransposed(const std::vector<T>& v, const std::vector<int>& transpose_forward) {
  std::vector<T> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[static_cast<std::size_t>(transpose_forward[i])] = v[i];
  return out;
}

}  // namespace detail

inline Recipe make_recipe(const Plans& plans, const Configuration& c, const DatasetJson& d) {
  const std::string where = plans.source + ": configurations." + c.name;
  require(c.patch_size.size() == 3, [&] {
    return ErrorInfo{.where = where, .field = "patch_size", .expected = "a 3-D configuration (3d_fullres, 3d_lowres, ...)",
                     .actual = std::to_string(c.patch_size.size()) + "-D"};
  });
  require(c.normalization_schemes.size() == d.channel_names.size(), [&] {
    return ErrorInfo{.where = where, .field = "normalization_schemes",
                     .expected = std::to_string(d.channel_names.size()) + " entries (dataset.json's channels)",
                     .actual = std::to_string(c.normalization_schemes.size())};
  });
  for (const auto& item : d.labels.items())
    require(!item.value().is_array(), [&, name = item.key(), value = item.value()] {
      return ErrorInfo{.where = where, .field = "dataset.json labels." + name,
                       .expected = "plain labels (region-based training, sigmoid outputs per region, is not built yet)",
                       .actual = value.dump()};
    });
  const auto& tf = plans.transpose_forward;
  Recipe r;
  const auto patch = detail::untransposed(c.patch_size, tf);
  r.patch = {patch[0], patch[1], patch[2]};
  r.batch_size = c.batch_size;
  r.batch_dice = c.batch_dice;

  // Preprocessing: crop, normalise each channel, resample (spacing (z, y, x) -> (x, y, z)).
  r.image_ops.push_back({{"op", "crop_nonzero"}});
  const bool several = d.channel_names.size() > 1;
  for (std::size_t ch = 0; ch < c.normalization_schemes.size(); ++ch) {
    const std::string& scheme = c.normalization_schemes[ch];
    nlohmann::json op;
    if (scheme == "ZScoreNormalization") {
      op = {{"op", "zscore"}, {"nonzero", static_cast<bool>(c.use_mask_for_norm[ch])}};
    } else if (scheme == "CTNormalization") {
      const auto& props = plans.foreground_intensity_properties_per_channel;
      const std::string key = std::to_string(ch);
      require(props.contains(key), [&] {
        return ErrorInfo{.where = plans.source, .field = "foreground_intensity_properties_per_channel." + key,
                         .expected = "the CT statistics of channel " + key, .actual = "missing"};
      });
      JsonReader p(props[key], plans.source, "foreground_intensity_properties_per_channel." + key);
      op = {{"op", "ct_normalize"}, {"mean", p.get<double>("mean")}, {"std", p.get<double>("std", {.above = 0})},
            {"lower", p.get<double>("percentile_00_5")}, {"upper", p.get<double>("percentile_99_5")}};
    } else if (scheme == "NoNormalization") {
      continue;
    } else if (scheme == "RescaleTo01Normalization") {
      op = {{"op", "normalize"}};
    } else {
      throw Error{ErrorInfo{.where = where, .field = "normalization_schemes[" + std::to_string(ch) + "]",
                            .expected = "ZScoreNormalization, CTNormalization, NoNormalization or RescaleTo01Normalization",
                            .actual = "\"" + scheme + "\""}};
    }
    if (several) op["channel"] = ch;
    r.image_ops.push_back(op);
  }
  const auto spacing = detail::untransposed(c.spacing, tf);  // (D, H, W) = (z, y, x)
  r.image_ops.push_back({{"op", "resample"},
                         {"spacing", {spacing[2], spacing[1], spacing[0]}},
                         {"order", c.resampling_data.order},
                         {"grid", "extent"},
                         {"separate_z", true}});
  r.label_ops = {{{"op", "crop_nonzero"}}, {{"op", "resample"}, {"order", c.resampling_seg.order}}};

  // The network, in the images' axis order.
  Configuration in_order = c;
  auto& a = in_order.architecture;
  for (auto& k : a.kernel_sizes) k = detail::untransposed(k, tf);
  for (auto& s : a.strides) s = detail::untransposed(s, tf);
  const auto classes = d.num_label_keys();
  r.model = models::detail::write_options(in_order.network(static_cast<std::int64_t>(d.channel_names.size()), classes));
  r.model["type"] = "DynamicUNet";

  r.inference.roi = r.patch;
  r.inference.overlap = 0.5;
  r.inference.blend = "gaussian";
  r.inference.mirror_axes = {0, 1, 2};
  for (const auto& [value, name] : d.label_values) r.class_names.push_back(name);
  return r;
}

}  // namespace medseg::nnunet
