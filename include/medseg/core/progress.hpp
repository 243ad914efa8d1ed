// A one-line progress bar with an ETA for long work counted in steps (cases, iterations):
//   [##########....................] 12/36 cases, 41.0 s, ETA 82.0 s
// redrawn in place on a terminal stream; advance() may be called from several threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <iomanip>
#include <mutex>
#include <ostream>
#include <sstream>
#include <string>

namespace medseg {

/// Draws the bar for `done` of `total` after `elapsed` seconds; a newline when done == total.
inline void draw_progress(std::ostream& out, std::int64_t done, std::int64_t total, double elapsed,
                          const std::string& unit = "cases") {
  constexpr int width = 30;
  const int filled = total ? static_cast<int>(width * done / total) : width;
  const double eta = done ? elapsed / static_cast<double>(done) * static_cast<double>(total - done) : 0;
  std::ostringstream line;
  line << "\r[" << std::string(static_cast<std::size_t>(filled), '#') << std::string(static_cast<std::size_t>(width - filled), '.')
       << "] " << done << "/" << total << " " << unit << ", " << std::fixed << std::setprecision(1) << elapsed << " s";
  if (done < total && done > 0) line << ", ETA " << eta << " s";
  out << line.str() << (done == total ? "\n" : "") << std::flush;
}

/// Counts steps and redraws the bar on `out` (null: silent).
class ProgressBar {
 public:
  ProgressBar(std::ostream* out, std::int64_t total, std::string unit)
      : out_(out), total_(total), unit_(std::move(unit)), start_(std::chrono::steady_clock::now()) {
    if (out_) draw_progress(*out_, 0, total_, 0, unit_);
  }
  void advance(std::int64_t steps = 1) {
    std::lock_guard lock(mutex_);
    done_ += steps;
    if (out_) draw_progress(*out_, done_, total_, seconds(), unit_);
  }
  double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }

 private:
  std::ostream* out_;
  std::int64_t total_, done_ = 0;
  std::string unit_;
  std::chrono::steady_clock::time_point start_;
  std::mutex mutex_;
};

}  // namespace medseg
