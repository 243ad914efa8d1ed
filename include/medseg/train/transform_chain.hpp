// A transform pipeline read from a config's "transforms" list ([{"type": "RandomFlip3D",
// "prob": 0.5}, ...]), as MedicalSeg writes it: the library's transforms behind one runtime
// type. Step i draws from rng.substream(i), exactly as `a | b | c` does, so a chain read from
// JSON augments bit for bit like the same transforms composed in C++.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
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

/// The chain of a JSON list. `where` names the list in errors ("config lung.json:
/// train_dataset.transforms"). Known types and their keys (MedicalSeg's names; "prob" and "p"
/// are both accepted for a probability):
///   RandomResizedCrop3D {size, scale, ratio}   RandomRotation3D {degrees, rotate_planes, p}
///   RandomFlip3D {p, flip_axis}                RandomCrop / CenterCrop {size}
///   GaussianNoise {p, sigma}   GaussianBlur {p, sigma, p_per_channel}
///   MultiplicativeBrightness {p, factor}       Contrast {p, factor, preserve_range}
///   Gamma {p, gamma, invert, retain_stats}     RandomScale {p, scale, anisotropic}
///   Normalize {mode: "zscore" | "divide_by_max"}
///   SpatialTransform {patch_size, p_rotation, angle_degrees, p_scale, scale, p_elastic,
///                     elastic_alpha, elastic_sigma}
template <class L = std::uint8_t>
TransformChain<L> make_transforms(const nlohmann::json& list, const std::string& where);
/// The chain of config[dataset_key]["transforms"] (empty when absent).
template <class L = std::uint8_t>
TransformChain<L> make_transforms(const Config& config, const std::string& dataset_key);

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

/// Reads one transform's parameters, naming the list index and key in errors.
class TransformArgs {
 public:
  TransformArgs(const nlohmann::json& j, std::string where) : j_(j), where_(std::move(where)) {}

  void only(const std::vector<std::string>& keys) const {
    for (const auto& [k, v] : j_.items()) {
      if (k == "type" || std::find(keys.begin(), keys.end(), k) != keys.end()) continue;
      const std::string near = nearest_name(k, keys);
      fail(k, "a key of " + j_["type"].get<std::string>() + " (" + Checker::list(keys) + ")", "\"" + k + "\"",
           near.empty() ? "" : "did you mean \"" + near + "\"?");
    }
  }
  float number(const char* key, float fallback) const {
    if (!j_.contains(key)) return fallback;
    if (!j_[key].is_number()) fail(key, "a number", j_[key].dump());
    return j_[key].get<float>();
  }
  float probability(float fallback) const {
    const char* key = j_.contains("prob") ? "prob" : "p";
    const float p = number(key, fallback);
    if (!(p >= 0.0f && p <= 1.0f)) fail(key, "a probability in [0, 1]", j_[key].dump());
    return p;
  }
  bool boolean(const char* key, bool fallback) const {
    if (!j_.contains(key)) return fallback;
    if (!j_[key].is_boolean()) fail(key, "true or false", j_[key].dump());
    return j_[key].get<bool>();
  }
  transforms::Range range(const char* key, transforms::Range fallback) const {
    if (!j_.contains(key)) return fallback;
    const auto& v = j_[key];
    if (!v.is_array() || v.size() != 2 || !v[0].is_number() || !v[1].is_number() || v[0].get<float>() > v[1].get<float>())
      fail(key, "[low, high] with low <= high", v.dump());
    return {v[0].get<float>(), v[1].get<float>()};
  }
  transforms::Index3 size3(const char* key, std::optional<transforms::Index3> fallback = std::nullopt) const {
    if (!j_.contains(key)) {
      if (!fallback) fail(key, "a size (an integer or 3)", "missing");
      return *fallback;
    }
    const auto& v = j_[key];
    if (v.is_number_integer() && v.get<std::int64_t>() > 0) return {v.get<std::int64_t>(), v.get<std::int64_t>(), v.get<std::int64_t>()};
    if (v.is_array() && v.size() == 3 && std::all_of(v.begin(), v.end(), [](const auto& x) { return x.is_number_integer() && x.template get<std::int64_t>() >= 0; }))
      return {v[0].get<std::int64_t>(), v[1].get<std::int64_t>(), v[2].get<std::int64_t>()};
    fail(key, "a positive integer or 3 of them", v.dump());
  }
  std::vector<transforms::Plane> planes(const char* key, std::vector<transforms::Plane> fallback) const {
    if (!j_.contains(key)) return fallback;
    std::vector<transforms::Plane> out;
    const auto& v = j_[key];
    if (!v.is_array()) fail(key, "a list of axis pairs ([[0, 1], [1, 2]])", v.dump());
    for (const auto& p : v) {
      if (!p.is_array() || p.size() != 2 || !p[0].is_number_integer() || !p[1].is_number_integer() ||
          p[0].get<int>() < 0 || p[0].get<int>() > 2 || p[1].get<int>() < 0 || p[1].get<int>() > 2 || p[0] == p[1])
        fail(key, "a list of pairs of distinct axes 0-2", v.dump());
      out.push_back({p[0].get<int>(), p[1].get<int>()});
    }
    return out;
  }
  std::array<bool, 3> axes(const char* key) const {
    if (!j_.contains(key) || j_[key].is_null()) return {true, true, true};
    std::array<bool, 3> out{false, false, false};
    const auto& v = j_[key];
    const nlohmann::json list = v.is_array() ? v : nlohmann::json::array({v});
    for (const auto& a : list) {
      if (!a.is_number_integer() || a.get<int>() < 0 || a.get<int>() > 2) fail(key, "axes 0-2 (one or a list)", v.dump());
      out[a.get<std::size_t>()] = true;
    }
    return out;
  }
  std::string text(const char* key, const std::string& fallback) const {
    if (!j_.contains(key)) return fallback;
    if (!j_[key].is_string()) fail(key, "a string", j_[key].dump());
    return j_[key].get<std::string>();
  }
  [[noreturn]] void fail(const std::string& key, const std::string& expected, const std::string& actual,
                         const std::string& detail = "") const {
    throw Error{ErrorInfo{.where = where_, .field = key, .expected = expected, .actual = actual, .detail = detail}};
  }

 private:
  const nlohmann::json& j_;
  std::string where_;
};

template <class L, class T>
typename TransformChain<L>::Step step_of(T t) {
  return [t = std::move(t)](transforms::BasicSample<L>& s, RandomStream& rng) { t.apply(s, rng); };
}

}  // namespace detail

template <class L>
TransformChain<L> make_transforms(const nlohmann::json& list, const std::string& where) {
  require(list.is_array(), [&] {
    return ErrorInfo{.where = where, .expected = "a list of {\"type\": ...} objects", .actual = list.dump()};
  });
  static const std::vector<std::string> known{
      "RandomResizedCrop3D", "RandomRotation3D", "RandomFlip3D", "RandomCrop",       "CenterCrop",
      "GaussianNoise",       "GaussianBlur",     "MultiplicativeBrightness", "Contrast", "Gamma",
      "RandomScale",         "Normalize",        "SpatialTransform"};
  TransformChain<L> chain;
  for (std::size_t i = 0; i < list.size(); ++i) {
    const auto& j = list[i];
    const std::string at = where + "." + std::to_string(i);
    require(j.is_object() && j.contains("type") && j["type"].is_string(), [&] {
      return ErrorInfo{.where = at, .field = "type", .expected = "an object with a \"type\"", .actual = j.dump()};
    });
    const auto type = j["type"].get<std::string>();
    const detail::TransformArgs a(j, at);
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
      const auto mode = a.text("mode", "zscore");
      if (mode != "zscore" && mode != "divide_by_max") a.fail("mode", "\"zscore\" or \"divide_by_max\"", "\"" + mode + "\"");
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
    } else {
      const std::string near = nearest_name(type, known);
      throw Error{ErrorInfo{.where = at, .field = "type", .expected = "a known transform (" + detail::Checker::list(known) + ")",
                            .actual = "\"" + type + "\"", .detail = near.empty() ? "" : "did you mean \"" + near + "\"?"}};
    }
  }
  return chain;
}

template <class L>
TransformChain<L> make_transforms(const Config& config, const std::string& dataset_key) {
  const auto& j = config.json;
  if (!j.contains(dataset_key) || !j[dataset_key].contains("transforms")) return {};
  const std::string key = dataset_key + ".transforms";
  return make_transforms<L>(j[dataset_key]["transforms"], "config " + config.source_of(key) + ": " + key);
}

}  // namespace medseg::train
