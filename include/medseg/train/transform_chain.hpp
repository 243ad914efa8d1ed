// A transform pipeline read from a config's "transforms" list ([{"type": "RandomFlip3D",
// "prob": 0.5}, ...]), as MedicalSeg writes it: the library's transforms behind one runtime
// type. Step i draws from rng.substream(i), exactly as `a | b | c` does, so a chain read from
// JSON augments bit for bit like the same transforms composed in C++.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../io/json_fields.hpp"
#include "../transforms/crop.hpp"
#include "../transforms/flip.hpp"
#include "../transforms/intensity.hpp"
#include "../transforms/rotate.hpp"
#include "../transforms/spatial.hpp"
#include "config.hpp"

namespace medseg::train {

/// Transforms applied in order; a transforms::Transform itself, so data::Loader takes it.
template <class L = std::uint8_t>
class TransformChain {
 public:
  using Step = std::function<void(transforms::BasicSample<L>&, RandomStream&)>;

  void add(std::string type, Step step) { steps_.push_back({std::move(type), std::move(step)}); }
  void apply(transforms::BasicSample<L>& s, RandomStream& rng) const {
    for (std::size_t i = 0; i < steps_.size(); ++i) {
      RandomStream own = rng.substream(i);
      steps_[i].second(s, own);
    }
  }
  std::size_t size() const { return steps_.size(); }
  const std::string& type(std::size_t i) const { return steps_[i].first; }

 private:
  std::vector<std::pair<std::string, Step>> steps_;
};

/// The chain of a JSON list, read with JsonReader: errors name `where` (the file) and the
/// entry's path below `path` ("config lung.json: train_dataset.transforms[1].prob: expected
/// ..."). Known types and their keys (MedicalSeg's names; "prob" and "p" are both accepted for
/// a probability):
///   RandomResizedCrop3D {size, scale, ratio}   RandomRotation3D {degrees, rotate_planes, p}
///   RandomFlip3D {p, flip_axis}                RandomCrop / CenterCrop {size}
///   GaussianNoise {p, sigma}   GaussianBlur {p, sigma, p_per_channel}
///   MultiplicativeBrightness {p, factor}       Contrast {p, factor, preserve_range}
///   Gamma {p, gamma, invert, retain_stats}     RandomScale {p, scale, anisotropic}
///   Normalize {mode: "zscore" | "divide_by_max"}
///   SpatialTransform {patch_size, p_rotation, angle_degrees, p_scale, scale, p_elastic,
///                     elastic_alpha, elastic_sigma}
template <class L = std::uint8_t>
TransformChain<L> make_transforms(const nlohmann::json& list, const JsonReader::WhereOf& where,
                                  const std::string& path);
template <class L = std::uint8_t>
TransformChain<L> make_transforms(const nlohmann::json& list, const std::string& where,
                                  const std::string& path = "transforms") {
  return make_transforms<L>(list, JsonReader::WhereOf([where](const std::string&) { return where; }), path);
}
/// The chain of config[dataset_key]["transforms"] (empty when absent).
template <class L = std::uint8_t>
TransformChain<L> make_transforms(const Config& config, const std::string& dataset_key);

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

/// One transform's parameters through JsonReader, with readers for the kinds of value the
/// transforms take.
class TransformArgs {
 public:
  explicit TransformArgs(JsonReader r) : r_(std::move(r)) { r_.accept({"type"}); }

  /// The transform's keys besides "type": any other is rejected (with the nearest name).
  void only(std::initializer_list<std::string_view> keys) {
    r_.accept(keys);
    r_.finish();
  }
  float number(const char* key, float fallback) { return r_.opt<float>(key).value_or(fallback); }
  float probability(float fallback) {
    return r_.opt<float>(r_.has("prob") ? "prob" : "p", {.min = 0, .max = 1}).value_or(fallback);
  }
  bool boolean(const char* key, bool fallback) { return r_.opt<bool>(key).value_or(fallback); }
  transforms::Range range(const char* key, transforms::Range fallback) {
    const auto v = r_.opt<std::array<float, 2>>(key);
    if (!v) return fallback;
    if (!((*v)[0] <= (*v)[1])) r_.fail(key, "[low, high] with low <= high", *r_.find(key));
    return {(*v)[0], (*v)[1]};
  }
  /// A size: [d, h, w] or one integer for all three; required when there is no fallback.
  transforms::Index3 size3(const char* key, std::optional<transforms::Index3> fallback = std::nullopt) {
    const Bounds positive{.min = 1};
    return fallback ? r_.opt<transforms::Index3>(key, positive).value_or(*fallback)
                    : r_.get<transforms::Index3>(key, positive);
  }
  std::vector<transforms::Plane> planes(const char* key, std::vector<transforms::Plane> fallback) {
    const auto v = r_.opt<std::vector<std::array<int, 2>>>(key, {.min = 0, .max = 2});
    if (!v) return fallback;
    std::vector<transforms::Plane> out;
    for (const auto& p : *v) {
      if (p[0] == p[1]) r_.fail(key, "a list of pairs of distinct axes 0-2", *r_.find(key));
      out.push_back({p[0], p[1]});
    }
    return out;
  }
  /// Axes 0-2, one or a list; all three when absent or null.
  std::array<bool, 3> axes(const char* key) {
    const auto* v = r_.find(key);
    if (!v || v->is_null()) return {true, true, true};
    const Bounds axis{.min = 0, .max = 2};
    const auto list = v->is_array() ? r_.get<std::vector<int>>(key, axis) : std::vector<int>{r_.get<int>(key, axis)};
    std::array<bool, 3> out{false, false, false};
    for (const int a : list) out[static_cast<std::size_t>(a)] = true;
    return out;
  }
  std::string choice(const char* key, const std::string& fallback, const std::vector<std::string>& names) {
    return r_.opt_choice(key, names).value_or(fallback);
  }

 private:
  JsonReader r_;
};

template <class L, class T>
typename TransformChain<L>::Step step_of(T t) {
  return [t = std::move(t)](transforms::BasicSample<L>& s, RandomStream& rng) { t.apply(s, rng); };
}

}  // namespace detail

template <class L>
TransformChain<L> make_transforms(const nlohmann::json& list, const JsonReader::WhereOf& where,
                                  const std::string& path) {
  if (!list.is_array())
    throw Error{ErrorInfo{.where = where(path), .field = path, .expected = "a list of {\"type\": ...} objects",
                          .actual = json_shown(list)}};
  static const std::vector<std::string> known{
      "RandomResizedCrop3D", "RandomRotation3D", "RandomFlip3D", "RandomCrop",       "CenterCrop",
      "GaussianNoise",       "GaussianBlur",     "MultiplicativeBrightness", "Contrast", "Gamma",
      "RandomScale",         "Normalize",        "SpatialTransform"};
  TransformChain<L> chain;
  for (std::size_t i = 0; i < list.size(); ++i) {
    JsonReader r(list[i], where, path + "[" + std::to_string(i) + "]");
    const std::string type = r.get_choice("type", known);
    detail::TransformArgs a(std::move(r));
    using namespace transforms;
    if (type == "RandomResizedCrop3D") {
      a.only({"size", "scale", "ratio"});
      chain.add(type, detail::step_of<L>(RandomResizedCrop3D{a.size3("size", Index3{128, 128, 128}),
                                                             a.range("scale", {0.8f, 1.2f}),
                                                             a.range("ratio", {3.0f / 4.0f, 4.0f / 3.0f})}));
    } else if (type == "RandomRotation3D") {
      a.only({"degrees", "rotate_planes", "p", "prob"});
      RandomRotation3D t;
      t.degrees = a.number("degrees", t.degrees);
      t.planes = a.planes("rotate_planes", t.planes);
      t.p = a.probability(t.p);
      chain.add(type, detail::step_of<L>(t));
    } else if (type == "RandomFlip3D") {
      a.only({"p", "prob", "flip_axis"});
      chain.add(type, detail::step_of<L>(RandomFlip3D{a.probability(0.5f), a.axes("flip_axis")}));
    } else if (type == "RandomCrop" || type == "CenterCrop") {
      a.only({"size"});
      if (type == "RandomCrop")
        chain.add(type, detail::step_of<L>(RandomCrop{a.size3("size")}));
      else
        chain.add(type, detail::step_of<L>(CenterCrop{a.size3("size")}));
    } else if (type == "GaussianNoise") {
      a.only({"p", "prob", "sigma"});
      GaussianNoise t;
      chain.add(type, detail::step_of<L>(GaussianNoise{a.probability(t.p), a.range("sigma", t.sigma)}));
    } else if (type == "GaussianBlur") {
      a.only({"p", "prob", "sigma", "p_per_channel"});
      GaussianBlur t;
      chain.add(type, detail::step_of<L>(GaussianBlur{a.probability(t.p), a.range("sigma", t.sigma),
                                                      a.number("p_per_channel", t.p_per_channel)}));
    } else if (type == "MultiplicativeBrightness") {
      a.only({"p", "prob", "factor"});
      MultiplicativeBrightness t;
      chain.add(type, detail::step_of<L>(MultiplicativeBrightness{a.probability(t.p), a.range("factor", t.factor)}));
    } else if (type == "Contrast") {
      a.only({"p", "prob", "factor", "preserve_range"});
      Contrast t;
      chain.add(type, detail::step_of<L>(Contrast{a.probability(t.p), a.range("factor", t.factor),
                                                  a.boolean("preserve_range", t.preserve_range)}));
    } else if (type == "Gamma") {
      a.only({"p", "prob", "gamma", "invert", "retain_stats"});
      Gamma t;
      chain.add(type, detail::step_of<L>(Gamma{a.probability(t.p), a.range("gamma", t.gamma), a.boolean("invert", t.invert),
                                               a.boolean("retain_stats", t.retain_stats)}));
    } else if (type == "RandomScale") {
      a.only({"p", "prob", "scale", "anisotropic"});
      RandomScale t;
      t.p = a.probability(t.p);
      t.scale = a.range("scale", t.scale);
      t.anisotropic = a.boolean("anisotropic", t.anisotropic);
      chain.add(type, detail::step_of<L>(t));
    } else if (type == "Normalize") {
      a.only({"mode"});
      const auto mode = a.choice("mode", "zscore", {"zscore", "divide_by_max"});
      chain.add(type, detail::step_of<L>(Normalize{mode == "zscore" ? Normalize::Mode::zscore : Normalize::Mode::divide_by_max}));
    } else if (type == "SpatialTransform") {
      a.only({"patch_size", "p_rotation", "angle_degrees", "p_scale", "scale", "p_elastic", "elastic_alpha", "elastic_sigma"});
      SpatialTransform t;
      t.patch_size = a.size3("patch_size", t.patch_size);
      t.p_rotation = a.number("p_rotation", t.p_rotation);
      const Range angle = a.range("angle_degrees", t.angle_degrees[0]);
      t.angle_degrees = {angle, angle, angle};
      t.p_scale = a.number("p_scale", t.p_scale);
      t.scale = a.range("scale", t.scale);
      t.p_elastic = a.number("p_elastic", t.p_elastic);
      t.elastic_alpha = a.range("elastic_alpha", t.elastic_alpha);
      t.elastic_sigma = a.range("elastic_sigma", t.elastic_sigma);
      chain.add(type, detail::step_of<L>(t));
    }
  }
  return chain;
}

template <class L>
TransformChain<L> make_transforms(const Config& config, const std::string& dataset_key) {
  const auto& j = config.json;
  if (!j.contains(dataset_key) || !j[dataset_key].contains("transforms")) return {};
  return make_transforms<L>(j[dataset_key]["transforms"],
                            [&config](const std::string& field) { return "config " + config.source_of(field); },
                            dataset_key + ".transforms");
}

}  // namespace medseg::train
