// What a person reads while a model trains: one progress line (rewritten in place on a
// terminal, plain lines in a log file), save_dir/metrics.jsonl with one JSON object per logged
// iteration and per evaluation, and save_dir/curves.png with the loss and Dice curves.
// A resumed run truncates the log to its checkpoint, so the files describe one continuous run.
#pragma once

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"

#if __has_include("../viz/plot.hpp")
#include "../viz/plot.hpp"  // curves.png appears once viz/ lands; until then the log alone
#endif

namespace medseg::train {

/// What an evaluator returns: validation mean Dice (it picks best_model/), per-class Dice,
/// and anything else worth logging (IoU, HD95, per-case numbers), copied into metrics.jsonl.
struct EvalResult {
  double mean_dice = 0.0;
  std::vector<double> per_class_dice{};
  nlohmann::json extra = nlohmann::json::object();
};

/// One finished iteration (optimizer step), as hooks and the log see it.
struct IterationInfo {
  std::int64_t iteration = 0;  // 1-based: the number of steps taken
  std::int64_t iters = 0;      // the run's total
  double loss = 0.0;           // mean over the step's accumulated batches
  double lr = 0.0;             // the learning rate this step used
  std::optional<double> grad_norm{};  // before clipping, when clipping is on
  double samples_per_second = 0.0;    // over the iterations since the last log line
  double elapsed_seconds = 0.0;       // since fit() started (this process)
};

/// The progress line, the JSONL log and the curves of one run.
class Report {
 public:
  /// `out` may be null (silent). `tty`: rewrite the line with \r; nullopt asks isatty when
  /// `out` is std::cout or std::cerr.
  Report(std::filesystem::path save_dir, std::ostream* out, std::optional<bool> tty = std::nullopt);

  /// Keeps the log entries of iterations <= `iteration` (what a resumed run continues from)
  /// and reloads the curves from them.
  void resume_at(std::int64_t iteration);
  /// A logged iteration: progress line, a "train" line in the log, a point on the loss curve.
  void iteration(const IterationInfo& info, double eta_seconds);
  /// An evaluation after `iteration`: an "eval" line in the log, a point on the Dice curve.
  void evaluation(std::int64_t iteration, const EvalResult& result);
  /// Writes curves.png (when viz/plot.hpp is available) and ends a \r-rewritten line.
  void flush_plot();
  void finish();

  const std::filesystem::path& log_path() const { return log_; }
  const std::filesystem::path& plot_path() const { return plot_; }
  /// "1:02:03" (or "2:03" under an hour).
  static std::string duration(double seconds);

 private:
  void append(const nlohmann::json& line);

  std::filesystem::path log_, plot_;
  std::ostream* out_;
  bool tty_;
  bool line_open_ = false;
  std::optional<double> last_dice_;
  std::vector<double> loss_x_, loss_y_, dice_x_, dice_y_;
};

// ----------------------------------------------------------------------------------------
// Implementation

inline Report::Report(std::filesystem::path save_dir, std::ostream* out, std::optional<bool> tty)
    : log_(save_dir / "metrics.jsonl"), plot_(save_dir / "curves.png"), out_(out) {
  std::filesystem::create_directories(save_dir);
  if (tty)
    tty_ = *tty;
  else
    tty_ = (out == &std::cout && ::isatty(STDOUT_FILENO)) || (out == &std::cerr && ::isatty(STDERR_FILENO));
}

inline void Report::resume_at(std::int64_t iteration) {
  std::vector<std::string> kept;
  if (std::ifstream in(log_); in) {
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception&) {
        break;  // a line cut off by a crash ends the usable log
      }
      if (!j.contains("iter") || j["iter"].get<std::int64_t>() > iteration) continue;
      kept.push_back(line);
      if (j.value("type", "") == "train") {
        loss_x_.push_back(j["iter"].get<double>());
        loss_y_.push_back(j["loss"].get<double>());
      } else if (j.value("type", "") == "eval") {
        dice_x_.push_back(j["iter"].get<double>());
        dice_y_.push_back(j["mean_dice"].get<double>());
        last_dice_ = dice_y_.back();
      }
    }
  }
  std::ofstream out(log_, std::ios::trunc);
  for (const auto& line : kept) out << line << '\n';
}

inline void Report::append(const nlohmann::json& line) {
  std::ofstream out(log_, std::ios::app);
  out << line.dump() << '\n';
  require(static_cast<bool>(out.flush()), [&] {
    return ErrorInfo{.where = "train::Report: " + log_.string(), .field = "write", .expected = "success",
                     .actual = "an I/O error (disk full?)"};
  });
}

inline std::string Report::duration(double seconds) {
  const auto s = static_cast<std::int64_t>(std::max(0.0, std::round(seconds)));
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  return buf;
}

inline void Report::iteration(const IterationInfo& info, double eta_seconds) {
  nlohmann::json j{{"type", "train"},
                   {"iter", info.iteration},
                   {"loss", info.loss},
                   {"lr", info.lr},
                   {"samples_per_s", info.samples_per_second},
                   {"elapsed_s", info.elapsed_seconds}};
  if (info.grad_norm) j["grad_norm"] = *info.grad_norm;
  append(j);
  loss_x_.push_back(static_cast<double>(info.iteration));
  loss_y_.push_back(info.loss);
  if (!out_) return;
  std::ostringstream line;
  char buf[256];
  std::snprintf(buf, sizeof buf, "[iter %lld/%lld] loss %.4f", static_cast<long long>(info.iteration),
                static_cast<long long>(info.iters), info.loss);
  line << buf;
  if (last_dice_) {
    std::snprintf(buf, sizeof buf, "  dice %.4f", *last_dice_);
    line << buf;
  }
  std::snprintf(buf, sizeof buf, "  lr %.3e  %.2f samples/s  ETA %s", info.lr, info.samples_per_second,
                duration(eta_seconds).c_str());
  line << buf;
  if (tty_) {
    *out_ << '\r' << line.str() << "\x1b[K" << std::flush;  // \x1b[K: clear what a longer line left
    line_open_ = true;
  } else {
    *out_ << line.str() << '\n' << std::flush;
  }
}

inline void Report::evaluation(std::int64_t iteration, const EvalResult& result) {
  nlohmann::json j = result.extra.is_object() ? result.extra : nlohmann::json::object();
  j["type"] = "eval";
  j["iter"] = iteration;
  j["mean_dice"] = result.mean_dice;
  j["per_class_dice"] = result.per_class_dice;
  append(j);
  dice_x_.push_back(static_cast<double>(iteration));
  dice_y_.push_back(result.mean_dice);
  last_dice_ = result.mean_dice;
  if (!out_) return;
  if (line_open_) *out_ << '\n';
  line_open_ = false;
  char buf[128];
  std::snprintf(buf, sizeof buf, "[eval iter %lld] mean Dice %.4f", static_cast<long long>(iteration), result.mean_dice);
  *out_ << buf;
  for (std::size_t c = 0; c < result.per_class_dice.size(); ++c) {
    std::snprintf(buf, sizeof buf, "%s%.4f", c == 0 ? "  per class " : " ", result.per_class_dice[c]);
    *out_ << buf;
  }
  *out_ << '\n' << std::flush;
}

inline void Report::flush_plot() {
#if __has_include("../viz/plot.hpp")
  if (loss_x_.empty() && dice_x_.empty()) return;
  // Side by side, each on its own axis: a loss near 1 and a Dice near 0.9 share no useful scale.
  std::vector<std::vector<viz::Series>> panels;
  std::vector<viz::PlotOptions> options;
  if (!loss_x_.empty()) {
    panels.push_back({{"train loss", loss_x_, loss_y_}});
    options.push_back({.title = "training loss", .width = 560, .height = 400});
  }
  if (!dice_x_.empty()) {
    panels.push_back({{"val mean Dice", dice_x_, dice_y_}});
    options.push_back({.title = "validation mean Dice", .width = 560, .height = 400});
  }
  viz::plot_panels(plot_, panels, options);
#endif
}

inline void Report::finish() {
  flush_plot();
  if (out_ && line_open_) *out_ << '\n' << std::flush;
  line_open_ = false;
}

}  // namespace medseg::train
