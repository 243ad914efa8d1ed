// JSON training configs in MedicalSeg's shape: `_base_` inheritance (a path relative to the
// file, recursive, objects merged key by key with the child winning), command-line overrides
// (--iters, --batch_size, --learning_rate, --save_dir, --set a.b=value), and validation that
// names the file a bad key came from, its dotted path and what was expected.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../io/json_fields.hpp"
#include "trainer.hpp"

namespace medseg::train {

/// A config after inheritance and overrides. `origin` maps every dotted key path to the file
/// (or command-line flag) that set it, so errors name the file a user must edit.
struct Config {
  nlohmann::json json = nlohmann::json::object();
  std::filesystem::path file;
  std::map<std::string, std::string> origin;

  /// The file that set `key_path` (or the nearest enclosing key that has one).
  std::string source_of(const std::string& key_path) const;
};

/// One override: a dotted key path and a value (parsed as JSON when it parses, else a string).
struct Override {
  std::string key;
  std::string value;
  std::string flag;  // what the user wrote, for errors ("--iters", "--set")
};

/// Reads `file` and its `_base_` chain and merges them. An object holding "_inherited_": false
/// replaces the base's object instead of merging (PaddleSeg's rule); arrays are replaced.
/// Throws Error naming the file for a missing or unparsable file and for a `_base_` cycle.
Config read_config(const std::filesystem::path& file);
/// Sets each override's key (creating objects on the way).
void apply_overrides(Config& config, const std::vector<Override>& overrides);
/// Picks --iters N, --batch_size N, --learning_rate X, --save_dir DIR, --resume PATH,
/// --seed N, --set KEY=VALUE (also --set=KEY=VALUE) out of `args`; the rest stay in `rest`.
std::vector<Override> parse_overrides(const std::vector<std::string>& args, std::vector<std::string>* rest = nullptr);
/// Checks every key against the schema: unknown keys (with the nearest known name),
/// types, ranges and choices. `model` is passed through unchecked beyond being an object
/// with a "type" (models::AnyModel::from_json validates its keys).
void validate(const Config& config);
/// read_config + apply_overrides + validate.
Config load_config(const std::filesystem::path& file, const std::vector<Override>& overrides = {});

/// The trainer's options from a validated config (MedicalSeg's names: log_iters,
/// save_interval, eval_interval, keep_checkpoint_max, ...).
TrainerOptions trainer_options(const Config& config);

/// "Did you mean": medseg::edit_distance and medseg::nearest_name (io/json_fields.hpp).
using medseg::edit_distance;
using medseg::nearest_name;

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

inline std::string join_key(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : prefix + "." + key;
}

/// Records `file` as the origin of every key path under `j`.
inline void record_origin(const nlohmann::json& j, const std::string& prefix, const std::string& file,
                          std::map<std::string, std::string>& origin) {
  if (!j.is_object()) return;
  for (const auto& [k, v] : j.items()) {
    const std::string path = join_key(prefix, k);
    origin[path] = file;
    record_origin(v, path, file, origin);
  }
}

/// Merges `child` into `base` (child wins), updating origins for what the child sets.
inline void merge_into(nlohmann::json& base, const nlohmann::json& child, const std::string& prefix,
                       const std::string& file, std::map<std::string, std::string>& origin) {
  for (const auto& [k, v] : child.items()) {
    const std::string path = join_key(prefix, k);
    const bool replace = v.is_object() && v.contains("_inherited_") && v["_inherited_"] == false;
    if (v.is_object() && base.contains(k) && base[k].is_object() && !replace) {
      origin[path] = file;
      merge_into(base[k], v, path, file, origin);
    } else {
      // Drop the base's origins below this key: they no longer describe anything.
      for (auto it = origin.lower_bound(path + "."); it != origin.end() && it->first.rfind(path + ".", 0) == 0;)
        it = origin.erase(it);
      base[k] = v;
      if (replace) base[k].erase("_inherited_");
      origin[path] = file;
      record_origin(v, path, file, origin);
    }
  }
}

inline Config read_config_chain(const std::filesystem::path& file, std::vector<std::filesystem::path>& chain,
                                const std::string& referrer) {
  namespace fs = std::filesystem;
  require(fs::is_regular_file(file), [&] {
    return ErrorInfo{.where = referrer.empty() ? "config" : "config " + referrer,
                     .field = referrer.empty() ? "file" : "_base_", .expected = "an existing JSON file",
                     .actual = file.string() + (fs::exists(file) ? " (not a file)" : " (missing)")};
  });
  const fs::path canonical = fs::weakly_canonical(file);
  for (std::size_t i = 0; i < chain.size(); ++i)
    require(chain[i] != canonical, [&] {
      std::string cycle;
      for (std::size_t k = i; k < chain.size(); ++k) cycle += chain[k].string() + " -> ";
      return ErrorInfo{.where = "config " + referrer, .field = "_base_", .expected = "no cycle",
                       .actual = cycle + canonical.string()};
    });
  chain.push_back(canonical);

  std::ifstream in(file);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error{ErrorInfo{.where = "config " + file.string(), .field = "JSON", .expected = "valid JSON",
                          .actual = "a syntax error", .detail = e.what()}};
  }
  require(j.is_object(), [&] {
    return ErrorInfo{.where = "config " + file.string(), .field = "document", .expected = "a JSON object",
                     .actual = std::string(j.type_name())};
  });

  Config out;
  out.file = file;
  if (j.contains("_base_")) {
    const auto& base = j["_base_"];
    require(base.is_string(), [&] {
      return ErrorInfo{.where = "config " + file.string(), .field = "_base_",
                       .expected = "a path relative to this file", .actual = base.dump()};
    });
    out = read_config_chain(file.parent_path() / base.get<std::string>(), chain, file.string());
    out.file = file;
    j.erase("_base_");
  }
  merge_into(out.json, j, "", file.string(), out.origin);
  chain.pop_back();
  return out;
}

/// A dataset object: its keys, types and choices.
inline void validate_dataset(JsonReader d) {
  d.accept({"type", "dataset_root", "result_dir", "train_path", "val_path", "dataset_json", "num_classes", "transforms",
            "mode", "separator", "cache_bytes"});
  d.finish();
  d.get_choice("type", {"MedicalDataset", "Decathlon", "nnUNet"});
  for (const char* k : {"dataset_root", "result_dir", "train_path", "val_path", "dataset_json", "separator"})
    d.opt<std::string>(k);
  d.opt<std::int64_t>("num_classes", {.min = 1});
  d.opt<std::int64_t>("cache_bytes", {.min = 0});
  d.opt_choice("mode", {"train", "val", "test"});
  // Each transform's own keys are checked by make_transforms (transform_chain.hpp).
  for (JsonReader t : d.objects("transforms")) t.get<std::string>("type");
}

inline void validate_loss_term(JsonReader l) {
  const std::string type = l.get_choice("type", {"MixedLoss", "CrossEntropyLoss", "DiceLoss"});
  const Bounds index{.min = -1000000};
  auto weight = [&] {
    if (const auto* w = l.find("weight"); w && !w->is_null()) l.get<std::vector<double>>("weight");
  };
  if (type == "MixedLoss") {
    l.accept({"type", "losses", "coef"});
    l.finish();
    std::vector<JsonReader> losses = l.objects("losses");
    if (losses.empty())
      l.find("losses") ? l.fail("losses", "a non-empty list of losses", *l.find("losses"))
                       : l.fail_missing("losses", "a non-empty list of losses");
    for (JsonReader& term : losses) validate_loss_term(term);
    l.opt<std::vector<double>>("coef", {.size = losses.size()});
  } else if (type == "CrossEntropyLoss") {
    l.accept({"type", "weight", "ignore_index"});
    l.finish();
    weight();
    l.opt<std::int64_t>("ignore_index", index);
  } else {
    l.accept({"type", "weight", "include_background", "smooth", "squared_denominator", "batch", "ignore_index"});
    l.finish();
    weight();
    for (const char* k : {"include_background", "squared_denominator", "batch"}) l.opt<bool>(k);
    l.opt<double>("smooth", {.min = 0});
    l.opt<std::int64_t>("ignore_index", index);
  }
}

}  // namespace detail

inline std::string Config::source_of(const std::string& key_path) const {
  for (std::string p = key_path;;) {
    if (const auto it = origin.find(p); it != origin.end()) return it->second;
    const auto dot = p.find_last_of(".[");
    if (dot == std::string::npos) return file.string();
    p = p.substr(0, dot);
  }
}

inline Config read_config(const std::filesystem::path& file) {
  std::vector<std::filesystem::path> chain;
  return detail::read_config_chain(file, chain, "");
}

inline void apply_overrides(Config& config, const std::vector<Override>& overrides) {
  for (const auto& o : overrides) {
    require(!o.key.empty() && o.key.front() != '.' && o.key.back() != '.', [&] {
      return ErrorInfo{.where = "command line " + o.flag, .field = "key", .expected = "a dotted key path (a.b.c)",
                       .actual = "\"" + o.key + "\""};
    });
    nlohmann::json value;
    try {
      value = nlohmann::json::parse(o.value);
    } catch (const nlohmann::json::parse_error&) {
      value = o.value;  // a bare word is a string: --save_dir out/run1
    }
    nlohmann::json* at = &config.json;
    std::string path;
    std::size_t begin = 0;
    for (;;) {
      const auto dot = o.key.find('.', begin);
      const std::string part = o.key.substr(begin, dot == std::string::npos ? std::string::npos : dot - begin);
      path = detail::join_key(path, part);
      if (dot == std::string::npos) {
        (*at)[part] = value;
        break;
      }
      auto& next = (*at)[part];
      if (next.is_null()) next = nlohmann::json::object();
      require(next.is_object(), [&] {
        return ErrorInfo{.where = "command line " + o.flag, .field = path, .expected = "an object to set " + o.key + " in",
                         .actual = next.dump()};
      });
      at = &next;
      begin = dot + 1;
    }
    config.origin[o.key] = "command line " + o.flag;
  }
}

inline std::vector<Override> parse_overrides(const std::vector<std::string>& args, std::vector<std::string>* rest) {
  static const std::map<std::string, std::string> flags{
      {"--iters", "iters"},       {"--batch_size", "batch_size"}, {"--learning_rate", "lr_scheduler.learning_rate"},
      {"--save_dir", "save_dir"}, {"--resume", "resume"},         {"--seed", "seed"}};
  std::vector<Override> out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string flag = args[i], value;
    const auto eq = flag.find('=');
    const bool inline_value = flag.rfind("--", 0) == 0 && eq != std::string::npos;
    if (inline_value) value = flag.substr(eq + 1), flag = flag.substr(0, eq);
    const bool known = flags.count(flag) || flag == "--set";
    if (!known) {
      if (rest) rest->push_back(args[i]);
      continue;
    }
    if (!inline_value) {
      require(i + 1 < args.size(), [&] {
        return ErrorInfo{.where = "command line", .field = flag, .expected = "a value after it", .actual = "nothing"};
      });
      value = args[++i];
    }
    if (flag == "--set") {
      const auto at = value.find('=');
      require(at != std::string::npos && at > 0, [&] {
        return ErrorInfo{.where = "command line", .field = "--set", .expected = "KEY=VALUE (a.b=3)", .actual = value};
      });
      out.push_back({value.substr(0, at), value.substr(at + 1), "--set " + value});
    } else {
      out.push_back({flags.at(flag), value, flag});
    }
  }
  return out;
}

inline void validate(const Config& config) {
  JsonReader r(config.json, [&config](const std::string& field) { return "config " + config.source_of(field); });
  r.accept({"batch_size", "iters", "train_dataset", "val_dataset", "model", "optimizer", "lr_scheduler", "loss", "export",
            "inference", "save_dir", "resume", "seed", "log_iters", "save_interval", "eval_interval",
            "keep_checkpoint_max", "do_eval", "num_workers", "accumulation_steps", "amp", "clip_grad_norm", "data_root"});
  r.finish();
  for (const char* k : {"batch_size", "iters", "log_iters", "accumulation_steps"}) r.opt<std::int64_t>(k, {.min = 1});
  for (const char* k : {"save_interval", "eval_interval", "keep_checkpoint_max", "num_workers", "seed"})
    r.opt<std::int64_t>(k, {.min = 0});
  for (const char* k : {"do_eval", "amp"}) r.opt<bool>(k);
  for (const char* k : {"save_dir", "resume", "data_root"}) r.opt<std::string>(k);
  if (const auto* v = r.find("clip_grad_norm"); v && !v->is_null()) r.get<double>("clip_grad_norm", {.min = 1e-12});
  for (const char* k : {"train_dataset", "val_dataset"})
    if (auto d = r.opt_object(k)) detail::validate_dataset(*d);
  // The model's own keys are checked by models::AnyModel::from_json.
  if (const auto* m = r.find("model"); m && (!m->is_object() || !m->contains("type") || !(*m)["type"].is_string()))
    r.fail("model", "an object with a \"type\" (VNet, DynamicUNet, ...)", *m);
  if (auto o = r.opt_object("optimizer")) {
    o->accept({"type", "momentum", "nesterov", "dampening", "weight_decay", "beta1", "beta2", "betas", "epsilon", "amsgrad"});
    o->finish();
    o->get_choice("type", {"sgd", "adam", "adamw"});
    for (const char* k : {"momentum", "dampening", "weight_decay", "beta1", "beta2", "epsilon"}) o->opt<double>(k, {.min = 0});
    for (const char* k : {"nesterov", "amsgrad"}) o->opt<bool>(k);
    o->opt<std::array<double, 2>>("betas");
  }
  if (auto s = r.opt_object("lr_scheduler")) {
    s->accept({"type", "learning_rate", "power", "end_lr", "decay_steps", "warmup_iters", "warmup_start_lr", "eta_min",
               "T_max", "step_size", "gamma"});
    s->finish();
    s->get_choice("type", {"PolynomialDecay", "CosineAnnealingDecay", "StepDecay", "Constant"});
    s->get<double>("learning_rate", {.min = 0});
    for (const char* k : {"power", "end_lr", "warmup_start_lr", "eta_min", "gamma"}) s->opt<double>(k, {.min = 0});
    for (const char* k : {"decay_steps", "T_max", "step_size"}) s->opt<std::int64_t>(k, {.min = 1});
    s->opt<std::int64_t>("warmup_iters", {.min = 0});
  }
  if (auto l = r.opt_object("loss")) {
    l->accept({"types", "coef"});
    l->finish();
    std::vector<JsonReader> types = l->objects("types");
    if (types.empty())
      l->find("types") ? l->fail("types", "a non-empty list of losses", *l->find("types"))
                       : l->fail_missing("types", "a non-empty list of losses");
    for (JsonReader& t : types) detail::validate_loss_term(t);
    l->opt<std::vector<double>>("coef", {.size = types.size()});
  }
  if (auto inf = r.opt_object("inference")) {
    inf->accept({"roi", "overlap", "mirror_axes", "gaussian", "sw_batch_size", "output"});
    inf->finish();
    inf->opt<std::array<std::int64_t, 3>>("roi", {.min = 1});
    inf->opt<double>("overlap", {.min = 0, .below = 1});
    inf->opt<std::vector<std::int64_t>>("mirror_axes");
    inf->opt<bool>("gaussian");
    inf->opt<std::int64_t>("sw_batch_size", {.min = 1});
    inf->opt_choice("output", {"argmax", "softmax"});
  }
  if (auto e = r.opt_object("export")) {
    e->accept({"transforms", "labels", "save_dir"});
    e->finish();
    if (const auto* v = e->find("transforms"); v && !v->is_array()) e->fail("transforms", "a list", *v);
    if (const auto* v = e->find("labels"); v && !v->is_object()) e->fail("labels", "an object of value -> name", *v);
    e->opt<std::string>("save_dir");
  }
}

inline Config load_config(const std::filesystem::path& file, const std::vector<Override>& overrides) {
  Config c = read_config(file);
  apply_overrides(c, overrides);
  validate(c);
  return c;
}

inline TrainerOptions trainer_options(const Config& config) {
  const auto& j = config.json;
  TrainerOptions o;
  o.iters = j.value("iters", o.iters);
  o.accumulation = j.value("accumulation_steps", o.accumulation);
  o.log_every = j.value("log_iters", o.log_every);
  o.save_every = j.value("save_interval", o.save_every);
  o.eval_every = j.value("eval_interval", o.eval_every);
  o.keep_checkpoint_max = j.value("keep_checkpoint_max", o.keep_checkpoint_max);
  o.save_dir = j.value("save_dir", o.save_dir.string());
  o.resume = j.value("resume", o.resume);
  o.seed = j.value("seed", o.seed);
  o.amp = j.value("amp", o.amp);
  if (j.contains("clip_grad_norm") && !j["clip_grad_norm"].is_null()) o.clip_grad_norm = j["clip_grad_norm"].get<double>();
  return o;
}

}  // namespace medseg::train
