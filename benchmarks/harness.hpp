// The benchmark harness behind `medseg bench NAME [--json]`. A benchmark measures our code
// and a peer (PyTorch, SciPy, NumPy, the CPU path) in the same run, on the same machine and
// thread count, and reports both times and their ratio. Timed code never lives in unit tests.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace medseg::bench {

/// One measured case. speedup = peer_ms / ours_ms (> 1: we are faster).
struct Result {
  std::string case_name;
  double ours_ms = 0;
  std::string peer;                // "numpy 1.24", "torch 1.13 (oneDNN)", ...
  std::optional<double> peer_ms;   // empty when the peer could not run here
  std::string note;                // e.g. achieved GB/s or GFLOP/s and the fraction of peak
};

struct Options {
  bool json = false;
  bool quick = false;  // fewer repetitions: for tests of the harness, not for figures
  int threads = 1;
  std::string input;   // --input FILE: a real volume, for the benchmarks that take one
  std::string device = "cpu";  // --device cpu|cuda, for the benchmarks that take one
};

struct Benchmark {
  std::string_view name;
  std::string_view summary;
  std::vector<Result> (*run)(const Options&);
  bool takes_input = false;  // reads Options::input (`--input FILE`)
  bool takes_device = false; // runs on Options::device (`--device cuda`); others are CPU-only
};

/// Every benchmark in benchmarks/, in the order `medseg bench` lists them.
std::span<const Benchmark> all_benchmarks();

/// Median wall time in milliseconds of `repeats` calls after `warmup` untimed ones.
double median_ms(const std::function<void()>& f, int repeats, int warmup = 1);

/// Runs benchmarks/peers/<script> with Debian's /usr/bin/python3 (or $MEDSEG_PEER_PYTHON: on a
/// GPU machine, the interpreter that holds CUDA PyTorch and CuPy) and returns the JSON object
/// it prints ({"case": ms, ..., "peer": "numpy 1.24.2"}), or nullopt with `why` filled in.
std::optional<nlohmann::json> run_python_peer(const std::string& script, const std::vector<std::string>& args,
                                              std::string& why);

/// CPU model, cores, thread count, SIMD level, compiler: the "machine" object of --json.
nlohmann::json machine_info(const Options& options);

/// Prints results as a table (or, with --json, the one JSON object the README describes).
void report(const Benchmark& b, const Options& options, const std::vector<Result>& results);

}  // namespace medseg::bench
