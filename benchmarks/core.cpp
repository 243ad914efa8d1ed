// `medseg bench core`: the memory-bound basics every kernel stands on: a tensor copy, a
// fill, and Philox random fills, against NumPy doing the same (numpy.copy, ndarray.fill and
// Generator(Philox)). Copies report GB/s: they are bounded by memory bandwidth, the machine's
// limit for this kind of work.
#include <string>

#include "harness.hpp"
#include "medseg/core.hpp"

namespace medseg::bench {

std::vector<Result> run_core(const Options& options) {
  const std::int64_t n = options.quick ? (1 << 20) : (64 << 20);  // 256 MiB of float32
  const int repeats = options.quick ? 2 : 7;
  std::string why;
  const auto peer = run_python_peer("core.py", {std::to_string(n), std::to_string(repeats)}, why);
  const std::string peer_name = peer ? peer->value("peer", std::string("numpy")) : "numpy (" + why + ")";
  auto peer_ms = [&](const char* key) -> std::optional<double> {
    if (peer && peer->contains(key)) return (*peer)[key].get<double>();
    return std::nullopt;
  };

  auto a = Tensor<float>::empty({n});
  a.fill(1.0f);
  auto b = Tensor<float>::empty({n});
  b.fill(0.0f);
  std::vector<Result> results;
  const double mib = static_cast<double>(n) * 4 / (1 << 20);
  auto gbps = [&](double ms, double bytes_per_element) {
    return std::to_string(static_cast<int>(static_cast<double>(n) * bytes_per_element / (ms * 1e6))) + " GB/s";
  };

  const double copy_ms = median_ms([&] { b.copy_from(a); }, repeats);
  results.push_back({"copy " + std::to_string(static_cast<int>(mib)) + " MiB float32", copy_ms, peer_name,
                     peer_ms("copy"), gbps(copy_ms, 8) + " read+write"});
  const double fill_ms = median_ms([&] { a.fill(3.0f); }, repeats);
  results.push_back({"fill " + std::to_string(static_cast<int>(mib)) + " MiB float32", fill_ms, peer_name,
                     peer_ms("fill"), gbps(fill_ms, 4) + " write"});
  const double uniform_ms = median_ms([&] { random::uniform(a, {.seed = 1}); }, repeats);
  results.push_back({"uniform float32 (Philox)", uniform_ms, peer_name, peer_ms("uniform"), ""});
  const double normal_ms = median_ms([&] { random::normal(a, {.seed = 1}); }, repeats);
  results.push_back({"normal float32 (Philox)", normal_ms, peer_name, peer_ms("normal"), ""});
  return results;
}

}  // namespace medseg::bench
