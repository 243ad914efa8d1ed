// Training checkpoints in MedicalSeg's layout: save_dir/iter_N/ holds the model's weights, the
// optimizer and scheduler state and the trainer's own state (iteration, best metric, the
// counters that name dropout masks), which is everything a run needs to continue bit for bit.
// Folders appear only by rename from a temporary sibling, so a crash never leaves half of one.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../nn/dropout.hpp"
#include "../nn/safetensors.hpp"
#include "../nn/state_dict.hpp"

namespace medseg::train {

/// The trainer's part of a checkpoint (trainer.json).
struct TrainerState {
  std::int64_t iteration = 0;      // optimizer steps taken
  std::uint64_t batches = 0;       // loader batches consumed (iteration x accumulation)
  double best_mean_dice = -1.0;    // -1: no evaluation yet
  std::int64_t best_iteration = -1;
  std::uint64_t seed = 0;
  /// Draw counters of the model's random layers, by layer path (nn::RandomCounter).
  std::map<std::string, std::uint64_t> random_counters{};

  nlohmann::json to_json() const;
  /// Reads what to_json wrote; `where` (the file) names errors.
  static TrainerState from_json(const nlohmann::json& j, const std::string& where);
};

/// File names inside a checkpoint folder.
inline constexpr const char* model_file = "model.safetensors";
inline constexpr const char* optimizer_file = "optimizer.safetensors";  // optimizer + scheduler
inline constexpr const char* trainer_file = "trainer.json";             // written last

/// "iter_120" -> 120; nullopt for any other name.
std::optional<std::int64_t> checkpoint_iteration(const std::filesystem::path& dir);
/// The complete checkpoints under save_dir (iter_N folders holding trainer.json), oldest first.
std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& save_dir);
/// The newest of them, if any.
std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& save_dir);
/// Removes all but the newest `keep` checkpoints (keep 0: keeps all).
void rotate_checkpoints(const std::filesystem::path& save_dir, std::size_t keep);

/// Calls write(tmp) on an empty temporary sibling of `final_dir`, flushes it to disk and
/// renames it to `final_dir`, replacing an older folder of that name. If write throws, the
/// temporary is removed and `final_dir` is untouched. Leftovers of a killed process (".tmp-*",
/// ".old-*") are cleaned, or an interrupted replacement undone, by the next call.
void write_atomically(const std::filesystem::path& final_dir,
                      const std::function<void(const std::filesystem::path&)>& write);

/// Every draw counter of the model's random layers (Dropout, Dropout3d, DropPath), by path.
template <class Model>
std::map<std::string, std::uint64_t> random_counters(Model& model);
/// Sets them back; throws Error naming `where` when a layer of the model has no saved counter.
template <class Model>
void set_random_counters(Model& model, const std::map<std::string, std::uint64_t>& counters, const std::string& where);

/// Writes save_dir-relative folder `dir` (atomically) with the model, optimizer, scheduler and
/// trainer state. The optimizer and scheduler need save_state(safetensors::Writer&).
template <class Model, class Optimizer, class Scheduler>
void save_checkpoint(const std::filesystem::path& dir, Model& model, const Optimizer& optimizer,
                     const Scheduler& scheduler, const TrainerState& state);
/// Restores everything save_checkpoint wrote into the given objects and returns the trainer
/// state. Throws Error naming the folder and the missing or mismatching part.
template <class Model, class Optimizer, class Scheduler>
TrainerState load_checkpoint(const std::filesystem::path& dir, Model& model, Optimizer& optimizer, Scheduler& scheduler);

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

/// fsync of one file or folder: a rename is durable only once what it names is on disk.
inline void sync_path(const std::filesystem::path& p, bool directory) {
  const int fd = ::open(p.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return;  // best effort: a file system without fsync still gets the rename's atomicity
  (void)::fsync(fd);
  ::close(fd);
}

inline void sync_tree(const std::filesystem::path& dir) {
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir))
    sync_path(e.path(), e.is_directory());
  sync_path(dir, true);
}

inline std::string read_text(const std::filesystem::path& file, const std::string& what) {
  std::ifstream in(file, std::ios::binary);
  require(static_cast<bool>(in), [&] {
    return ErrorInfo{.where = "train: " + file.string(), .field = what, .expected = "a readable file",
                     .actual = std::filesystem::exists(file) ? "unreadable" : "missing"};
  });
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// Removes leftovers of interrupted writes in `parent`; an ".old-NAME-*" whose NAME is gone
/// was a replacement interrupted between its two renames, and is put back.
inline void clean_leftovers(const std::filesystem::path& parent) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(parent)) return;
  std::vector<fs::path> entries;
  for (const auto& e : fs::directory_iterator(parent)) entries.push_back(e.path());
  for (const auto& p : entries) {
    const std::string name = p.filename().string();
    if (name.rfind(".tmp-", 0) == 0) {
      fs::remove_all(p);
    } else if (name.rfind(".old-", 0) == 0) {
      const std::string rest = name.substr(5);
      const auto dash = rest.rfind('-');
      const fs::path original = parent / rest.substr(0, dash);
      if (dash != std::string::npos && !fs::exists(original))
        fs::rename(p, original);
      else
        fs::remove_all(p);
    }
  }
}

}  // namespace detail

inline nlohmann::json TrainerState::to_json() const {
  nlohmann::json counters = nlohmann::json::object();
  for (const auto& [path, value] : random_counters) counters[path] = value;
  return {{"iteration", iteration},           {"batches", batches}, {"best_mean_dice", best_mean_dice},
          {"best_iteration", best_iteration}, {"seed", seed},       {"random_counters", counters}};
}

inline TrainerState TrainerState::from_json(const nlohmann::json& j, const std::string& where) {
  TrainerState s;
  auto field = [&](const char* key, auto& into) {
    require(j.is_object() && j.contains(key) && j[key].is_number(), [&] {
      return ErrorInfo{.where = where, .field = key, .expected = "a number",
                       .actual = j.is_object() && j.contains(key) ? j[key].dump() : "missing"};
    });
    into = j[key].get<std::remove_reference_t<decltype(into)>>();
  };
  field("iteration", s.iteration);
  field("batches", s.batches);
  field("best_mean_dice", s.best_mean_dice);
  field("best_iteration", s.best_iteration);
  field("seed", s.seed);
  require(j.contains("random_counters") && j["random_counters"].is_object(), [&] {
    return ErrorInfo{.where = where, .field = "random_counters", .expected = "an object of layer path -> count",
                     .actual = j.contains("random_counters") ? j["random_counters"].dump() : "missing"};
  });
  for (const auto& [path, value] : j["random_counters"].items()) {
    require(value.is_number_unsigned(), [&] {
      return ErrorInfo{.where = where, .field = "random_counters." + path, .expected = "a count >= 0",
                       .actual = value.dump()};
    });
    s.random_counters[path] = value.get<std::uint64_t>();
  }
  return s;
}

inline std::optional<std::int64_t> checkpoint_iteration(const std::filesystem::path& dir) {
  const std::string name = dir.filename().string();
  if (name.rfind("iter_", 0) != 0 || name.size() == 5) return std::nullopt;
  std::int64_t n = 0;
  for (std::size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    n = n * 10 + (name[i] - '0');
  }
  return n;
}

inline std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& save_dir) {
  namespace fs = std::filesystem;
  std::vector<std::pair<std::int64_t, fs::path>> found;
  if (fs::is_directory(save_dir))
    for (const auto& e : fs::directory_iterator(save_dir))
      if (const auto n = checkpoint_iteration(e.path()); n && e.is_directory() && fs::exists(e.path() / trainer_file))
        found.emplace_back(*n, e.path());
  std::sort(found.begin(), found.end());
  std::vector<fs::path> out;
  for (auto& [n, p] : found) out.push_back(std::move(p));
  return out;
}

inline std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& save_dir) {
  auto all = list_checkpoints(save_dir);
  if (all.empty()) return std::nullopt;
  return all.back();
}

inline void rotate_checkpoints(const std::filesystem::path& save_dir, std::size_t keep) {
  if (keep == 0) return;
  const auto all = list_checkpoints(save_dir);
  for (std::size_t i = 0; i + keep < all.size(); ++i) std::filesystem::remove_all(all[i]);
}

inline void write_atomically(const std::filesystem::path& final_dir,
                             const std::function<void(const std::filesystem::path&)>& write) {
  namespace fs = std::filesystem;
  const fs::path parent = final_dir.has_parent_path() ? final_dir.parent_path() : fs::path(".");
  const std::string name = final_dir.filename().string();
  const std::string tag = name + "-" + std::to_string(::getpid());
  fs::create_directories(parent);
  detail::clean_leftovers(parent);
  const fs::path tmp = parent / (".tmp-" + tag);
  fs::create_directories(tmp);
  try {
    write(tmp);
    detail::sync_tree(tmp);
  } catch (...) {
    std::error_code ignored;
    fs::remove_all(tmp, ignored);
    throw;
  }
  if (fs::exists(final_dir)) {
    // A folder cannot be renamed onto a non-empty one: move the old aside first. A crash
    // between the two renames leaves ".old-NAME-*", which clean_leftovers puts back.
    const fs::path old = parent / (".old-" + tag);
    fs::rename(final_dir, old);
    fs::rename(tmp, final_dir);
    fs::remove_all(old);
  } else {
    fs::rename(tmp, final_dir);
  }
  detail::sync_path(parent, true);
}

template <class Model>
std::map<std::string, std::uint64_t> random_counters(Model& model) {
  using B = typename Model::backend;
  std::map<std::string, std::uint64_t> out;
  model.visit_buffers(detail::Overloaded{[](nn::Buffer<B>&) {}, [&](nn::RandomCounter& c) { out[c.path] = *c.value; }});
  return out;
}

template <class Model>
void set_random_counters(Model& model, const std::map<std::string, std::uint64_t>& counters, const std::string& where) {
  using B = typename Model::backend;
  model.visit_buffers(detail::Overloaded{[](nn::Buffer<B>&) {}, [&](nn::RandomCounter& c) {
                                           const auto it = counters.find(c.path);
                                           require(it != counters.end(), [&] {
                                             return ErrorInfo{.where = where, .field = "random_counters",
                                                              .expected = "a counter for layer \"" + c.path + "\"",
                                                              .actual = "none (a checkpoint of another model?)"};
                                           });
                                           *c.value = it->second;
                                         }});
}

template <class Model, class Optimizer, class Scheduler>
void save_checkpoint(const std::filesystem::path& dir, Model& model, const Optimizer& optimizer,
                     const Scheduler& scheduler, const TrainerState& state) {
  write_atomically(dir, [&](const std::filesystem::path& tmp) {
    nn::save_state_dict(model, tmp / model_file);
    safetensors::Writer w;
    optimizer.save_state(w);
    scheduler.save_state(w);
    w.save(tmp / optimizer_file);
    TrainerState s = state;
    s.random_counters = random_counters(model);
    std::ofstream out(tmp / trainer_file);
    out << s.to_json().dump(2) << '\n';
    require(static_cast<bool>(out.flush()), [&] {
      return ErrorInfo{.where = "train::save_checkpoint: " + (tmp / trainer_file).string(), .field = "write",
                       .expected = "success", .actual = "an I/O error (disk full?)"};
    });
  });
}

template <class Model, class Optimizer, class Scheduler>
TrainerState load_checkpoint(const std::filesystem::path& dir, Model& model, Optimizer& optimizer, Scheduler& scheduler) {
  namespace fs = std::filesystem;
  require(fs::is_directory(dir), [&] {
    return ErrorInfo{.where = "train::load_checkpoint", .field = "folder", .expected = "a checkpoint folder (iter_N)",
                     .actual = dir.string() + (fs::exists(dir) ? " is not a folder" : " does not exist")};
  });
  const fs::path trainer_json = dir / trainer_file;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(detail::read_text(trainer_json, "trainer state"));
  } catch (const nlohmann::json::exception& e) {
    throw Error{ErrorInfo{.where = "train: " + trainer_json.string(), .field = "JSON", .expected = "valid JSON",
                          .actual = "a parse error", .detail = e.what()}};
  }
  TrainerState s = TrainerState::from_json(j, "train: " + trainer_json.string());
  nn::load_state_dict(model, dir / model_file);
  const auto opt_state = safetensors::File::read(dir / optimizer_file);
  optimizer.load_state(opt_state);
  scheduler.load_state(opt_state);
  set_random_counters(model, s.random_counters, "train: " + trainer_json.string());
  return s;
}

}  // namespace medseg::train
