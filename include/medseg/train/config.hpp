// JSON training configs in MedicalSeg's shape: `_base_` inheritance (a path relative to the
// file, recursive, objects merged key by key with the child winning), command-line overrides
// (--iters, --batch_size, --learning_rate, --save_dir, --set a.b=value), and validation that
// names the file a bad key came from, its dotted path and what was expected.
#pragma once

#include <algorithm>
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

/// Levenshtein distance, for "did you mean".
std::size_t edit_distance(std::string_view a, std::string_view b);
/// The candidate nearest to `name` when it is close enough to be a typo, else "".
std::string nearest_name(std::string_view name, const std::vector<std::string>& candidates);

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

/// The schema walk: every check names the key's file and dotted path.
class Checker {
 public:
  explicit Checker(const Config& c) : config_(c) {}

  const nlohmann::json* find(const nlohmann::json& parent, const std::string& key) const {
    return parent.is_object() && parent.contains(key) ? &parent[key] : nullptr;
  }
  [[noreturn]] void fail(const std::string& path, const std::string& expected, const std::string& actual,
                         const std::string& detail = "") const {
    throw Error{ErrorInfo{.where = "config " + config_.source_of(path), .field = path, .expected = expected,
                          .actual = actual, .detail = detail}};
  }
  static std::string shown(const nlohmann::json& v) {
    std::string s = v.dump();
    return s.size() > 60 ? s.substr(0, 57) + "..." : s;
  }
  void keys(const nlohmann::json& j, const std::string& path, const std::vector<std::string>& allowed) const {
    if (!j.is_object()) fail(path, "an object", shown(j));
    for (const auto& [k, v] : j.items()) {
      if (std::find(allowed.begin(), allowed.end(), k) != allowed.end()) continue;
      const std::string near = nearest_name(k, allowed);
      fail(join_key(path, k), "a known key", "unknown key \"" + k + "\"",
           near.empty() ? "known keys here: " + list(allowed) : "did you mean \"" + near + "\"?");
    }
  }
  void integer(const nlohmann::json& j, const std::string& path, std::int64_t min) const {
    if (!j.is_number_integer() || j.get<std::int64_t>() < min) fail(path, "an integer >= " + std::to_string(min), shown(j));
  }
  void number(const nlohmann::json& j, const std::string& path, double min = -1e300) const {
    if (!j.is_number() || j.get<double>() < min) fail(path, min > -1e300 ? "a number >= " + str(min) : "a number", shown(j));
  }
  void boolean(const nlohmann::json& j, const std::string& path) const {
    if (!j.is_boolean()) fail(path, "true or false", shown(j));
  }
  void string(const nlohmann::json& j, const std::string& path) const {
    if (!j.is_string()) fail(path, "a string", shown(j));
  }
  void choice(const nlohmann::json& j, const std::string& path, const std::vector<std::string>& choices) const {
    if (!j.is_string()) fail(path, "one of " + list(choices), shown(j));
    const auto s = j.get<std::string>();
    if (std::find(choices.begin(), choices.end(), s) != choices.end()) return;
    const std::string near = nearest_name(s, choices);
    fail(path, "one of " + list(choices), shown(j), near.empty() ? "" : "did you mean \"" + near + "\"?");
  }
  void numbers(const nlohmann::json& j, const std::string& path, std::size_t size, bool integers = false) const {
    const std::string what = (size ? std::to_string(size) + " " : std::string("a list of ")) + (integers ? "integers" : "numbers");
    if (!j.is_array() || (size && j.size() != size)) fail(path, what, shown(j));
    for (const auto& v : j)
      if (integers ? !v.is_number_integer() : !v.is_number()) fail(path, what, shown(j));
  }
  /// An integer or a list of 3 (a patch size, MedicalSeg writes both).
  void size3(const nlohmann::json& j, const std::string& path) const {
    if (j.is_number_integer() && j.get<std::int64_t>() > 0) return;
    if (j.is_array() && j.size() == 3 && std::all_of(j.begin(), j.end(), [](const auto& v) { return v.is_number_integer() && v.template get<std::int64_t>() > 0; }))
      return;
    fail(path, "a positive integer or 3 of them", shown(j));
  }
  static std::string list(const std::vector<std::string>& names) {
    std::string s;
    for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
    return s;
  }

 private:
  const Config& config_;
};

inline void validate_dataset(const Checker& c, const nlohmann::json& j, const std::string& path) {
  c.keys(j, path, {"type", "dataset_root", "result_dir", "train_path", "val_path", "dataset_json", "num_classes",
                   "transforms", "mode", "separator", "cache_bytes"});
  if (auto* v = c.find(j, "type")) c.choice(*v, path + ".type", {"MedicalDataset", "Decathlon", "nnUNet"});
  else c.fail(path + ".type", "one of MedicalDataset, Decathlon, nnUNet", "missing");
  for (const char* k : {"dataset_root", "result_dir", "train_path", "val_path", "dataset_json", "separator"})
    if (auto* v = c.find(j, k)) c.string(*v, path + "." + k);
  if (auto* v = c.find(j, "num_classes")) c.integer(*v, path + ".num_classes", 1);
  if (auto* v = c.find(j, "cache_bytes")) c.integer(*v, path + ".cache_bytes", 0);
  if (auto* v = c.find(j, "mode")) c.choice(*v, path + ".mode", {"train", "val", "test"});
  if (auto* v = c.find(j, "transforms")) {
    if (!v->is_array()) c.fail(path + ".transforms", "a list of {\"type\": ...} objects", Checker::shown(*v));
    for (std::size_t i = 0; i < v->size(); ++i) {
      const std::string tp = path + ".transforms." + std::to_string(i);
      const auto& t = (*v)[i];
      if (!t.is_object() || !t.contains("type") || !t["type"].is_string())
        c.fail(tp, "an object with a \"type\"", Checker::shown(t));
    }
  }
}

inline void validate_loss_term(const Checker& c, const nlohmann::json& j, const std::string& path) {
  if (!j.is_object() || !j.contains("type")) c.fail(path, "an object with a \"type\"", Checker::shown(j));
  c.choice(j["type"], path + ".type", {"MixedLoss", "CrossEntropyLoss", "DiceLoss"});
  const auto type = j["type"].get<std::string>();
  if (type == "MixedLoss") {
    c.keys(j, path, {"type", "losses", "coef"});
    const auto* losses = c.find(j, "losses");
    if (!losses || !losses->is_array() || losses->empty())
      c.fail(path + ".losses", "a non-empty list of losses", losses ? Checker::shown(*losses) : "missing");
    for (std::size_t i = 0; i < losses->size(); ++i) validate_loss_term(c, (*losses)[i], path + ".losses." + std::to_string(i));
    if (auto* coef = c.find(j, "coef")) c.numbers(*coef, path + ".coef", losses->size());
  } else if (type == "CrossEntropyLoss") {
    c.keys(j, path, {"type", "weight", "ignore_index"});
    if (auto* w = c.find(j, "weight"); w && !w->is_null()) c.numbers(*w, path + ".weight", 0);
    if (auto* v = c.find(j, "ignore_index")) c.integer(*v, path + ".ignore_index", -1000000);
  } else {
    c.keys(j, path, {"type", "weight", "include_background", "smooth", "squared_denominator", "batch", "ignore_index"});
    if (auto* w = c.find(j, "weight"); w && !w->is_null()) c.numbers(*w, path + ".weight", 0);
    for (const char* k : {"include_background", "squared_denominator", "batch"})
      if (auto* v = c.find(j, k)) c.boolean(*v, path + "." + k);
    if (auto* v = c.find(j, "smooth")) c.number(*v, path + ".smooth", 0);
    if (auto* v = c.find(j, "ignore_index")) c.integer(*v, path + ".ignore_index", -1000000);
  }
}

}  // namespace detail

inline std::string Config::source_of(const std::string& key_path) const {
  for (std::string p = key_path;;) {
    if (const auto it = origin.find(p); it != origin.end()) return it->second;
    const auto dot = p.rfind('.');
    if (dot == std::string::npos) return file.string();
    p = p.substr(0, dot);
  }
}

inline std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

inline std::string nearest_name(std::string_view name, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t best_distance = std::max<std::size_t>(2, name.size() / 3) + 1;  // a typo, not another word
  for (const auto& c : candidates)
    if (const std::size_t d = edit_distance(name, c); d < best_distance) best = c, best_distance = d;
  return best;
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
  const detail::Checker c(config);
  const auto& j = config.json;
  c.keys(j, "", {"batch_size", "iters", "train_dataset", "val_dataset", "model", "optimizer", "lr_scheduler", "loss",
                 "export", "inference", "save_dir", "resume", "seed", "log_iters", "save_interval", "eval_interval",
                 "keep_checkpoint_max", "do_eval", "num_workers", "accumulation_steps", "amp", "clip_grad_norm", "data_root"});
  if (auto* v = c.find(j, "batch_size")) c.integer(*v, "batch_size", 1);
  if (auto* v = c.find(j, "iters")) c.integer(*v, "iters", 1);
  for (const char* k : {"log_iters", "accumulation_steps"})
    if (auto* v = c.find(j, k)) c.integer(*v, k, 1);
  for (const char* k : {"save_interval", "eval_interval", "keep_checkpoint_max", "num_workers", "seed"})
    if (auto* v = c.find(j, k)) c.integer(*v, k, 0);
  for (const char* k : {"do_eval", "amp"})
    if (auto* v = c.find(j, k)) c.boolean(*v, k);
  for (const char* k : {"save_dir", "resume", "data_root"})
    if (auto* v = c.find(j, k)) c.string(*v, k);
  if (auto* v = c.find(j, "clip_grad_norm"); v && !v->is_null()) c.number(*v, "clip_grad_norm", 1e-12);
  for (const char* k : {"train_dataset", "val_dataset"})
    if (auto* v = c.find(j, k)) detail::validate_dataset(c, *v, k);
  if (auto* m = c.find(j, "model")) {
    if (!m->is_object() || !m->contains("type") || !(*m)["type"].is_string())
      c.fail("model", "an object with a \"type\" (VNet, DynamicUNet, ...)", detail::Checker::shown(*m));
  }
  if (auto* o = c.find(j, "optimizer")) {
    c.keys(*o, "optimizer", {"type", "momentum", "nesterov", "dampening", "weight_decay", "beta1", "beta2", "betas",
                             "epsilon", "amsgrad"});
    if (auto* t = c.find(*o, "type")) c.choice(*t, "optimizer.type", {"sgd", "adam", "adamw"});
    else c.fail("optimizer.type", "one of sgd, adam, adamw", "missing");
    for (const char* k : {"momentum", "dampening", "weight_decay", "beta1", "beta2", "epsilon"})
      if (auto* v = c.find(*o, k)) c.number(*v, std::string("optimizer.") + k, 0);
    for (const char* k : {"nesterov", "amsgrad"})
      if (auto* v = c.find(*o, k)) c.boolean(*v, std::string("optimizer.") + k);
    if (auto* v = c.find(*o, "betas")) c.numbers(*v, "optimizer.betas", 2);
  }
  if (auto* s = c.find(j, "lr_scheduler")) {
    c.keys(*s, "lr_scheduler", {"type", "learning_rate", "power", "end_lr", "decay_steps", "warmup_iters",
                                "warmup_start_lr", "eta_min", "T_max", "step_size", "gamma"});
    if (auto* t = c.find(*s, "type")) c.choice(*t, "lr_scheduler.type", {"PolynomialDecay", "CosineAnnealingDecay", "StepDecay", "Constant"});
    else c.fail("lr_scheduler.type", "one of PolynomialDecay, CosineAnnealingDecay, StepDecay, Constant", "missing");
    if (auto* v = c.find(*s, "learning_rate")) c.number(*v, "lr_scheduler.learning_rate", 0);
    else c.fail("lr_scheduler.learning_rate", "a number >= 0", "missing");
    for (const char* k : {"power", "end_lr", "warmup_start_lr", "eta_min", "gamma"})
      if (auto* v = c.find(*s, k)) c.number(*v, std::string("lr_scheduler.") + k, 0);
    for (const char* k : {"decay_steps", "T_max", "step_size"})
      if (auto* v = c.find(*s, k)) c.integer(*v, std::string("lr_scheduler.") + k, 1);
    if (auto* v = c.find(*s, "warmup_iters")) c.integer(*v, "lr_scheduler.warmup_iters", 0);
  }
  if (auto* l = c.find(j, "loss")) {
    c.keys(*l, "loss", {"types", "coef"});
    const auto* types = c.find(*l, "types");
    if (!types || !types->is_array() || types->empty())
      c.fail("loss.types", "a non-empty list of losses", types ? detail::Checker::shown(*types) : "missing");
    for (std::size_t i = 0; i < types->size(); ++i) detail::validate_loss_term(c, (*types)[i], "loss.types." + std::to_string(i));
    if (auto* coef = c.find(*l, "coef")) c.numbers(*coef, "loss.coef", types->size());
  }
  if (auto* inf = c.find(j, "inference")) {
    c.keys(*inf, "inference", {"roi", "overlap", "mirror_axes", "gaussian", "sw_batch_size", "output"});
    if (auto* v = c.find(*inf, "roi")) c.size3(*v, "inference.roi");
    if (auto* v = c.find(*inf, "overlap"); v && !(v->is_number() && v->get<double>() >= 0 && v->get<double>() < 1))
      c.fail("inference.overlap", "a number in [0, 1)", detail::Checker::shown(*v));
    if (auto* v = c.find(*inf, "mirror_axes")) c.numbers(*v, "inference.mirror_axes", 0, true);
    if (auto* v = c.find(*inf, "gaussian")) c.boolean(*v, "inference.gaussian");
    if (auto* v = c.find(*inf, "sw_batch_size")) c.integer(*v, "inference.sw_batch_size", 1);
    if (auto* v = c.find(*inf, "output")) c.choice(*v, "inference.output", {"argmax", "softmax"});
  }
  if (auto* e = c.find(j, "export")) {
    c.keys(*e, "export", {"transforms", "labels", "save_dir"});
    if (auto* v = c.find(*e, "transforms"); v && !v->is_array()) c.fail("export.transforms", "a list", detail::Checker::shown(*v));
    if (auto* v = c.find(*e, "labels"); v && !v->is_object()) c.fail("export.labels", "an object of value -> name", detail::Checker::shown(*v));
    if (auto* v = c.find(*e, "save_dir")) c.string(*v, "export.save_dir");
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
