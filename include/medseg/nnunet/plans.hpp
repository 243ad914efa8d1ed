// nnU-Net v2's plans (nnUNetPlans.json): the dataset-wide choices (transpose, intensity
// properties) and one entry per configuration ("2d", "3d_fullres", "3d_lowres",
// "3d_cascade_fullres") with its spacing, patch and batch size, normalisation, resampling and
// network. Written in nnU-Net's schema and key order, so nnU-Net reads medseg's plans; read
// from either tool's file, with nnU-Net's "inherits_from" resolved as its PlansManager does.
//   auto plans = nnunet::Plans::load("nnUNetPlans.json");
//   nnunet::Configuration c = plans.configuration("3d_fullres");   // c.patch_size, c.network()
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../io/file.hpp"
#include "../io/json_fields.hpp"
#include "../models/dynamic_unet.hpp"

namespace medseg::nnunet {

/// nnU-Net's plans keep keys in the order they were written.
using PlansJson = nlohmann::ordered_json;

/// One resampling function of a configuration, as nnU-Net names it, with its keyword arguments.
struct Resampling {
  std::string function = "resample_data_or_seg_to_shape";
  bool is_seg = false;
  int order = 3;
  int order_z = 0;
  std::optional<bool> force_separate_z{};  // null: decided per case by the anisotropy rule
};

/// PlainConvUNet's (or ResidualEncoderUNet's) arguments, as the plans' "architecture" holds them.
struct Architecture {
  std::string network_class_name = "dynamic_network_architectures.architectures.unet.PlainConvUNet";
  std::vector<std::int64_t> features_per_stage;
  std::vector<std::vector<std::int64_t>> kernel_sizes, strides;  // per stage, per axis
  std::vector<std::int64_t> n_conv_per_stage, n_conv_per_stage_decoder;
  bool conv_bias = true;
  double norm_eps = 1e-5;
  bool residual_encoder() const { return network_class_name.ends_with("ResidualEncoderUNet"); }
  std::size_t dims() const { return kernel_sizes.empty() ? 3 : kernel_sizes.front().size(); }
};

/// One configuration, its "inherits_from" already resolved.
struct Configuration {
  std::string name;
  std::string data_identifier, preprocessor_name = "DefaultPreprocessor";
  std::int64_t batch_size = 2;
  std::vector<std::int64_t> patch_size;           // per axis, in transposed order
  std::vector<double> median_image_size_in_voxels;  // after resampling, transposed
  std::vector<double> spacing;                      // the target spacing, transposed
  std::vector<std::string> normalization_schemes;   // per channel: "ZScoreNormalization", "CTNormalization", ...
  std::vector<bool> use_mask_for_norm;              // per channel
  Resampling resampling_data{}, resampling_seg{.is_seg = true, .order = 1}, resampling_probabilities{.order = 1};
  Architecture architecture;
  bool batch_dice = false;
  std::optional<std::string> next_stage, previous_stage;  // the cascade's links

  /// The DynamicUNet this configuration trains (3-D configurations; the 2-D network is a
  /// separate model). Deep supervision on, as nnU-Net trains.
  models::DynamicUNetOptions network(std::int64_t in_channels, std::int64_t num_classes) const;
  PlansJson to_json() const;
};

struct Plans {
  std::string dataset_name, plans_name = "nnUNetPlans";
  std::vector<double> original_median_spacing_after_transp;
  std::vector<std::int64_t> original_median_shape_after_transp;
  std::string image_reader_writer = "SimpleITKIO";
  std::vector<int> transpose_forward{0, 1, 2}, transpose_backward{0, 1, 2};
  std::string experiment_planner_used = "ExperimentPlanner", label_manager = "LabelManager";
  nlohmann::json foreground_intensity_properties_per_channel = nlohmann::json::object();
  /// The configurations as written (nnU-Net's own keys kept, inheritance unresolved).
  PlansJson configurations = PlansJson::object();
  /// Where the plans came from, for errors (the file, or "nnUNetPlans.json" when made here).
  std::string source = "nnUNetPlans.json";

  std::vector<std::string> configuration_names() const;
  bool has(const std::string& name) const { return configurations.contains(name); }
  /// The configuration `name` with "inherits_from" merged as nnU-Net's PlansManager does
  /// (the parent's keys, then the child's); throws naming the known ones when absent.
  Configuration configuration(const std::string& name) const;
  void set(const Configuration& c) { configurations[c.name] = c.to_json(); }

  PlansJson to_json() const;
  static Plans from_json(const nlohmann::json& j, const std::string& where);
  static Plans load(const std::filesystem::path& file);
  /// Written atomically, indented as nnU-Net's save_json does.
  void save(const std::filesystem::path& file) const;
};

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

inline PlansJson resampling_kwargs(const Resampling& r) {
  PlansJson k;
  k["is_seg"] = r.is_seg;
  k["order"] = r.order;
  k["order_z"] = r.order_z;
  k["force_separate_z"] = r.force_separate_z ? PlansJson(*r.force_separate_z) : PlansJson(nullptr);
  return k;
}

inline Resampling read_resampling(JsonReader& r, const std::string& fn_key, const std::string& kwargs_key) {
  Resampling out;
  r.read(fn_key, out.function);
  if (auto k = r.opt_object(kwargs_key)) {
    k->nulls_absent();
    k->read("is_seg", out.is_seg);
    k->read("order", out.order, {.min = 0, .max = 5});
    k->read("order_z", out.order_z, {.min = 0, .max = 5});
    out.force_separate_z = k->opt<bool>("force_separate_z");
  }
  return out;
}

/// A per-stage list of per-axis integers ("kernel_sizes": [[3, 3, 3], ...]); nnU-Net also
/// accepts a plain integer per stage.
inline std::vector<std::vector<std::int64_t>> read_per_stage(JsonReader& r, std::string_view key, std::size_t stages,
                                                              std::size_t dims) {
  const auto* x = r.find(key);
  if (!x) r.fail_missing(key, "a list of per-axis integer lists");
  std::vector<std::vector<std::int64_t>> out;
  if (!x->is_array() || (stages && x->size() != stages))
    r.fail(key, "a list of " + std::to_string(stages) + " per-stage entries (n_stages)", *x);
  for (const auto& e : *x) {
    if (e.is_number_integer()) {
      out.emplace_back(dims, e.get<std::int64_t>());
      continue;
    }
    if (!e.is_array() || e.size() != dims || !std::all_of(e.begin(), e.end(), [](const auto& v) { return v.is_number_integer(); }))
      r.fail(key, "per-stage lists of " + std::to_string(dims) + " integers", e);
    out.push_back(e.get<std::vector<std::int64_t>>());
  }
  return out;
}

inline std::size_t dims_of_conv_op(const std::string& conv_op) {
  if (conv_op.ends_with("Conv2d")) return 2;
  if (conv_op.ends_with("Conv1d")) return 1;
  return 3;
}

}  // namespace detail

inline models::DynamicUNetOptions Configuration::network(std::int64_t in_channels, std::int64_t num_classes) const {
  const Architecture& a = architecture;
  require(a.dims() == 3, [&] {
    return ErrorInfo{.where = "nnunet::Configuration::network", .field = name + ".architecture.kernel_sizes",
                     .expected = "3-D kernels (a 3-D configuration)", .actual = std::to_string(a.dims()) + "-D"};
  });
  models::DynamicUNetOptions o;
  o.in_channels = in_channels;
  o.num_classes = num_classes;
  o.features = a.features_per_stage;
  o.kernels.clear();
  o.strides.clear();
  for (const auto& k : a.kernel_sizes) o.kernels.push_back({k[0], k[1], k[2]});
  for (const auto& s : a.strides) o.strides.push_back({s[0], s[1], s[2]});
  o.convs_per_stage = a.n_conv_per_stage;
  o.convs_per_stage_decoder = a.n_conv_per_stage_decoder;
  o.conv_bias = a.conv_bias;
  o.residual_encoder = a.residual_encoder();
  o.deep_supervision = true;
  return o;
}

inline PlansJson Configuration::to_json() const {
  const Architecture& a = architecture;
  const std::size_t dims = a.dims();
  const std::string conv = dims == 2 ? "Conv2d" : "Conv3d", norm = dims == 2 ? "InstanceNorm2d" : "InstanceNorm3d";
  PlansJson arch;
  arch["n_stages"] = a.features_per_stage.size();
  arch["features_per_stage"] = a.features_per_stage;
  arch["conv_op"] = "torch.nn.modules.conv." + conv;
  arch["kernel_sizes"] = a.kernel_sizes;
  arch["strides"] = a.strides;
  arch[a.residual_encoder() ? "n_blocks_per_stage" : "n_conv_per_stage"] = a.n_conv_per_stage;
  arch["n_conv_per_stage_decoder"] = a.n_conv_per_stage_decoder;
  arch["conv_bias"] = a.conv_bias;
  arch["norm_op"] = "torch.nn.modules.instancenorm." + norm;
  arch["norm_op_kwargs"] = {{"eps", a.norm_eps}, {"affine", true}};
  arch["dropout_op"] = nullptr;
  arch["dropout_op_kwargs"] = nullptr;
  arch["nonlin"] = "torch.nn.LeakyReLU";
  arch["nonlin_kwargs"] = {{"inplace", true}};

  PlansJson j;
  j["data_identifier"] = data_identifier;
  j["preprocessor_name"] = preprocessor_name;
  j["batch_size"] = batch_size;
  j["patch_size"] = patch_size;
  j["median_image_size_in_voxels"] = median_image_size_in_voxels;
  j["spacing"] = spacing;
  j["normalization_schemes"] = normalization_schemes;
  j["use_mask_for_norm"] = use_mask_for_norm;
  j["resampling_fn_data"] = resampling_data.function;
  j["resampling_fn_seg"] = resampling_seg.function;
  j["resampling_fn_data_kwargs"] = detail::resampling_kwargs(resampling_data);
  j["resampling_fn_seg_kwargs"] = detail::resampling_kwargs(resampling_seg);
  j["resampling_fn_probabilities"] = resampling_probabilities.function;
  j["resampling_fn_probabilities_kwargs"] = detail::resampling_kwargs(resampling_probabilities);
  j["architecture"] = {{"network_class_name", a.network_class_name},
                       {"arch_kwargs", arch},
                       {"_kw_requires_import", {"conv_op", "norm_op", "dropout_op", "nonlin"}}};
  j["batch_dice"] = batch_dice;
  if (next_stage) j["next_stage"] = *next_stage;
  if (previous_stage) j["previous_stage"] = *previous_stage;
  return j;
}

inline std::vector<std::string> Plans::configuration_names() const {
  std::vector<std::string> names;
  for (const auto& [k, v] : configurations.items()) names.push_back(k);
  return names;
}

inline Configuration Plans::configuration(const std::string& name) const {
  const std::string& where = source;
  // Merge the inheritance chain, root first (PlansManager._internal_resolve_configuration_inheritance).
  std::vector<std::string> chain{name};
  for (;;) {
    const std::string& c = chain.back();
    if (!configurations.contains(c)) {
      std::string known;
      for (const auto& n : configuration_names()) known += (known.empty() ? "" : ", ") + n;
      throw Error{ErrorInfo{.where = where, .field = "configurations." + c, .expected = "one of " + known, .actual = "missing"}};
    }
    const auto& j = configurations[c];
    require(j.is_object(), [&] {
      return ErrorInfo{.where = where, .field = "configurations." + c, .expected = "a JSON object", .actual = j.dump().substr(0, 60)};
    });
    if (!j.contains("inherits_from")) break;
    require(j["inherits_from"].is_string(), [&] {
      return ErrorInfo{.where = where, .field = "configurations." + c + ".inherits_from", .expected = "a configuration's name",
                       .actual = j["inherits_from"].dump().substr(0, 60)};
    });
    const std::string parent = j["inherits_from"].get<std::string>();
    require(std::find(chain.begin(), chain.end(), parent) == chain.end(), [&] {
      return ErrorInfo{.where = where, .field = "configurations." + c + ".inherits_from", .expected = "no cycle",
                       .actual = parent + " inherits back"};
    });
    chain.push_back(parent);
  }
  nlohmann::json merged = nlohmann::json::object();
  for (auto it = chain.rbegin(); it != chain.rend(); ++it)
    for (const auto& [k, v] : configurations[*it].items()) merged[k] = nlohmann::json::parse(v.dump());
  merged.erase("inherits_from");

  Configuration c;
  c.name = name;
  JsonReader r(merged, where, "configurations." + name);
  r.nulls_absent();
  r.read("data_identifier", c.data_identifier);
  r.read("preprocessor_name", c.preprocessor_name);
  c.batch_size = r.get<std::int64_t>("batch_size", {.min = 1});
  c.patch_size = r.get<std::vector<std::int64_t>>("patch_size", {.min = 1});
  r.read("median_image_size_in_voxels", c.median_image_size_in_voxels);
  c.spacing = r.get<std::vector<double>>("spacing", {.above = 0, .size = c.patch_size.size()});
  c.normalization_schemes = r.get<std::vector<std::string>>("normalization_schemes");
  const auto* mask = r.find("use_mask_for_norm");
  if (!mask || !mask->is_array() || mask->size() != c.normalization_schemes.size() ||
      !std::all_of(mask->begin(), mask->end(), [](const auto& v) { return v.is_boolean(); }))
    r.fail("use_mask_for_norm", "a list of " + std::to_string(c.normalization_schemes.size()) + " booleans (one per channel)",
           mask ? *mask : nlohmann::json());
  for (const auto& v : *mask) c.use_mask_for_norm.push_back(v.get<bool>());
  c.resampling_data = detail::read_resampling(r, "resampling_fn_data", "resampling_fn_data_kwargs");
  c.resampling_seg = detail::read_resampling(r, "resampling_fn_seg", "resampling_fn_seg_kwargs");
  c.resampling_probabilities = detail::read_resampling(r, "resampling_fn_probabilities", "resampling_fn_probabilities_kwargs");
  r.read("batch_dice", c.batch_dice);
  c.next_stage = r.opt<std::string>("next_stage");
  c.previous_stage = r.opt<std::string>("previous_stage");

  JsonReader arch = r.object("architecture");
  Architecture& a = c.architecture;
  arch.read("network_class_name", a.network_class_name);
  JsonReader k = arch.object("arch_kwargs");
  k.nulls_absent();
  const auto stages = k.get<std::size_t>("n_stages", {.min = 1});
  const std::size_t dims = detail::dims_of_conv_op(k.get<std::string>("conv_op"));
  require(dims == c.patch_size.size(), [&] {
    return ErrorInfo{.where = where, .field = k.field("conv_op"),
                     .expected = std::to_string(c.patch_size.size()) + "-D (as patch_size)", .actual = std::to_string(dims) + "-D"};
  });
  a.features_per_stage = k.get<std::vector<std::int64_t>>("features_per_stage", {.min = 1, .size = stages});
  a.kernel_sizes = detail::read_per_stage(k, "kernel_sizes", stages, dims);
  a.strides = detail::read_per_stage(k, "strides", stages, dims);
  a.n_conv_per_stage = a.residual_encoder() ? k.get<std::vector<std::int64_t>>("n_blocks_per_stage", {.min = 1, .size = stages})
                                            : k.get<std::vector<std::int64_t>>("n_conv_per_stage", {.min = 1, .size = stages});
  a.n_conv_per_stage_decoder = k.get<std::vector<std::int64_t>>("n_conv_per_stage_decoder", {.min = 1, .size = stages - 1});
  k.read("conv_bias", a.conv_bias);
  if (auto n = k.opt_object("norm_op_kwargs")) n->read("eps", a.norm_eps, {.above = 0});
  return c;
}

inline PlansJson Plans::to_json() const {
  PlansJson j;
  j["dataset_name"] = dataset_name;
  j["plans_name"] = plans_name;
  j["original_median_spacing_after_transp"] = original_median_spacing_after_transp;
  j["original_median_shape_after_transp"] = original_median_shape_after_transp;
  j["image_reader_writer"] = image_reader_writer;
  j["transpose_forward"] = transpose_forward;
  j["transpose_backward"] = transpose_backward;
  j["configurations"] = configurations;
  j["experiment_planner_used"] = experiment_planner_used;
  j["label_manager"] = label_manager;
  j["foreground_intensity_properties_per_channel"] = PlansJson::parse(foreground_intensity_properties_per_channel.dump());
  return j;
}

inline Plans Plans::from_json(const nlohmann::json& j, const std::string& where) {
  Plans p;
  p.source = where;
  JsonReader r(j, where);
  r.read("dataset_name", p.dataset_name);
  r.read("plans_name", p.plans_name);
  r.read("original_median_spacing_after_transp", p.original_median_spacing_after_transp);
  r.read("original_median_shape_after_transp", p.original_median_shape_after_transp);
  r.read("image_reader_writer", p.image_reader_writer);
  p.transpose_forward = r.get<std::vector<int>>("transpose_forward", {.min = 0, .max = 2, .size = 3});
  p.transpose_backward = r.get<std::vector<int>>("transpose_backward", {.min = 0, .max = 2, .size = 3});
  r.read("experiment_planner_used", p.experiment_planner_used);
  r.read("label_manager", p.label_manager);
  if (const auto* f = r.find("foreground_intensity_properties_per_channel")) p.foreground_intensity_properties_per_channel = *f;
  const auto* c = r.find("configurations");
  if (!c || !c->is_object() || c->empty()) r.fail("configurations", "an object of configurations", c ? *c : nlohmann::json());
  p.configurations = PlansJson::parse(c->dump());
  return p;
}

inline Plans Plans::load(const std::filesystem::path& file) {
  std::ifstream in(file);
  require(in.good(), [&] {
    return ErrorInfo{.where = file.string(), .field = "file", .expected = "a readable nnUNetPlans.json", .actual = "cannot open"};
  });
  // Parsed in order so the configurations keep theirs; typed fields read from a plain copy.
  PlansJson ordered;
  try {
    ordered = PlansJson::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error{ErrorInfo{.where = file.string(), .field = "JSON", .expected = "valid JSON", .actual = e.what()}};
  }
  Plans p = from_json(nlohmann::json::parse(ordered.dump()), file.string());
  p.source = file.string();
  p.configurations = ordered["configurations"];
  for (const auto& name : p.configuration_names()) p.configuration(name);  // every one is readable
  return p;
}

inline void Plans::save(const std::filesystem::path& file) const {
  const std::string text = to_json().dump(4) + "\n";
  io::write_text_atomic(file, text);
}

}  // namespace medseg::nnunet
