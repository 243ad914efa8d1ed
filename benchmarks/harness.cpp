#include "harness.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <thread>

#include "medseg/version.hpp"

namespace medseg::bench {

double median_ms(const std::function<void()>& f, int repeats, int warmup) {
  for (int i = 0; i < warmup; ++i) f();
  std::vector<double> t;
  for (int i = 0; i < std::max(1, repeats); ++i) {
    const auto start = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

namespace {
std::string peers_dir() {
  if (const char* env = std::getenv("MEDSEG_PEERS_DIR"); env && *env) return env;
  return MEDSEG_PEERS_DIR;  // benchmarks/peers in the source tree, set by CMake
}
std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}
}  // namespace

std::optional<nlohmann::json> run_python_peer(const std::string& script, const std::vector<std::string>& args,
                                              std::string& why) {
  // Debian's interpreter: the python3 first on PATH may not see Debian's numpy and torch.
  const char* chosen = std::getenv("MEDSEG_PEER_PYTHON");
  const std::string python = chosen && *chosen ? chosen : "/usr/bin/python3";
  const std::string path = peers_dir() + "/" + script;
  if (!std::ifstream(path)) {
    why = "peer script " + path + " not found";
    return std::nullopt;
  }
  std::string cmd = python + " " + shell_quote(path);
  for (const auto& a : args) cmd += " " + shell_quote(a);
  cmd += " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) {
    why = "could not start " + python;
    return std::nullopt;
  }
  std::string out;
  std::array<char, 4096> buf{};
  while (std::fgets(buf.data(), static_cast<int>(buf.size()), pipe)) out += buf.data();
  const int status = pclose(pipe);
  // The peer prints its JSON object as the last line.
  const auto last = out.find_last_of('{');
  if (status != 0 || last == std::string::npos) {
    why = "peer failed: " + out.substr(0, 400);
    return std::nullopt;
  }
  try {
    return nlohmann::json::parse(out.substr(out.rfind('\n', last) == std::string::npos ? 0 : out.rfind('\n', last)));
  } catch (const std::exception& e) {
    why = std::string("peer printed no JSON: ") + e.what();
    return std::nullopt;
  }
}

nlohmann::json machine_info(const Options& options) {
  std::string cpu = "unknown", flags;
  std::ifstream info("/proc/cpuinfo");
  for (std::string line; std::getline(info, line);) {
    if (cpu == "unknown" && line.rfind("model name", 0) == 0) cpu = line.substr(line.find(':') + 2);
    if (flags.empty() && line.rfind("flags", 0) == 0) flags = line;
  }
  const std::string simd = flags.find(" avx512f") != std::string::npos ? "avx512"
                           : flags.find(" avx2") != std::string::npos  ? "avx2"
                                                                       : "sse";
  return {{"cpu", cpu},
          {"cores", std::thread::hardware_concurrency()},
          {"threads", options.threads},
          {"simd", simd},
          {"compiler", std::string("g++ ") + __VERSION__},
          {"medseg", medseg::version}};
}

void report(const Benchmark& b, const Options& options, const std::vector<Result>& results) {
  if (options.json) {
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& r : results) {
      nlohmann::json row = {{"case", r.case_name}, {"ours_ms", r.ours_ms}, {"peer", r.peer}};
      row["peer_ms"] = r.peer_ms ? nlohmann::json(*r.peer_ms) : nlohmann::json(nullptr);
      row["speedup"] = r.peer_ms ? nlohmann::json(*r.peer_ms / r.ours_ms) : nlohmann::json(nullptr);
      if (!r.note.empty()) row["note"] = r.note;
      rows.push_back(row);
    }
    std::cout << nlohmann::json{{"benchmark", b.name}, {"machine", machine_info(options)}, {"results", rows}}.dump()
              << "\n";
    return;
  }
  const auto m = machine_info(options);
  std::cout << "medseg bench " << b.name << ": " << b.summary << "\n"
            << m["cpu"].get<std::string>() << ", " << options.threads << " threads, " << m["simd"].get<std::string>()
            << "\n\n";
  std::cout << std::left << std::setw(36) << "case" << std::right << std::setw(12) << "ours ms" << std::setw(12)
            << "peer ms" << std::setw(10) << "speedup" << "  peer / note\n";
  for (const auto& r : results) {
    std::cout << std::left << std::setw(36) << r.case_name << std::right << std::fixed << std::setprecision(2)
              << std::setw(12) << r.ours_ms;
    if (r.peer_ms)
      std::cout << std::setw(12) << *r.peer_ms << std::setw(9) << *r.peer_ms / r.ours_ms << "x";
    else
      std::cout << std::setw(12) << "-" << std::setw(10) << "-";
    std::cout << "  " << r.peer << (r.note.empty() ? "" : "; " + r.note) << "\n";
  }
}

}  // namespace medseg::bench
