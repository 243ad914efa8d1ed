// `medseg bench loader`: training samples per second through the data loader with nnU-Net's
// full default 3D augmentation (transforms::nnunet_3d, 128^3 patches cut from 160^3 cases
// held in memory), on 1 and 2 worker threads, against the same chain written with SciPy and
// NumPy (benchmarks/peers/loader.py), which runs on one thread.
#include <chrono>
#include <cmath>
#include <string>

#include "harness.hpp"
#include "medseg/core.hpp"
#include "medseg/data/loader.hpp"
#include "medseg/transforms.hpp"

namespace medseg::bench {

namespace {

/// Cases already decoded, as a cache would hold them: noise plus a two-class sphere.
struct SyntheticDataset {
  std::vector<data::Case> cases;
  std::size_t size() const { return cases.size(); }
  std::string name(std::size_t i) const { return cases[i].name; }
  data::LabelMap labels() const { return {{0, "background"}, {1, "organ"}, {2, "tumour"}}; }
  data::Case load(std::size_t i) const { return cases[i]; }
};

SyntheticDataset make_cases(std::int64_t size, int count) {
  SyntheticDataset d;
  for (int i = 0; i < count; ++i) {
    data::Case c;
    c.name = "synthetic_" + std::to_string(i);
    c.image.voxels = Tensor<float>::empty({1, size, size, size});
    random::normal(c.image.voxels, {.seed = static_cast<std::uint64_t>(i)});
    c.label = io::Image<data::LabelValue>{Tensor<data::LabelValue>::zeros({size, size, size}), {}};
    const double centre[3] = {size * 0.4, size * 0.5, size * 0.6};
    float* img = c.image.voxels.data();
    auto* lbl = c.label->voxels.data();
    for (std::int64_t z = 0; z < size; ++z)
      for (std::int64_t y = 0; y < size; ++y)
        for (std::int64_t x = 0; x < size; ++x) {
          const double d2 = (z - centre[0]) * (z - centre[0]) + (y - centre[1]) * (y - centre[1]) +
                            (x - centre[2]) * (x - centre[2]);
          const std::int64_t at = (z * size + y) * size + x;
          lbl[at] = d2 < std::pow(size * 0.07, 2) ? 2 : d2 < std::pow(size * 0.15, 2) ? 1 : 0;
          img[at] += static_cast<float>(lbl[at]);
        }
    d.cases.push_back(std::move(c));
  }
  return d;
}

}  // namespace

std::vector<Result> run_loader(const Options& options) {
  const std::int64_t case_size = options.quick ? 48 : 160, patch = options.quick ? 32 : 128;
  const int batches = options.quick ? 1 : 16, batch_size = 2, peer_samples = options.quick ? 2 : 16;
  std::string why;
  const auto peer = run_python_peer(
      "loader.py", {std::to_string(case_size), std::to_string(patch), std::to_string(peer_samples)}, why);
  const std::string peer_name = peer ? peer->value("peer", std::string("scipy")) + ", 1 thread" : "scipy (" + why + ")";
  std::optional<double> peer_ms;
  if (peer && peer->contains("sample")) peer_ms = (*peer)["sample"].get<double>();

  const auto dataset = make_cases(case_size, 4);
  const auto chain = transforms::nnunet_3d({patch, patch, patch});
  const int threads_before = num_threads();
  // Loader workers do all the work: the global pool is kept to one thread so that the
  // thread counts below are the whole story.
  set_num_threads(1);
  std::vector<Result> results;
  {
    // Untimed warm-up: the host allocator's cache and the page tables fill here, not in the
    // first timed configuration.
    data::Loader warm{dataset, chain, {.batch_size = batch_size, .workers = 1, .seed = 2, .prefetch = 2}};
    for (int b = 0; b < 3; ++b) warm.next();
  }
  for (const int workers : {1, 2}) {
    const auto start = std::chrono::steady_clock::now();
    {
      data::Loader loader{dataset, chain,
                          {.batch_size = batch_size, .workers = workers, .seed = 1, .prefetch = 2, .cache_bytes = 1ull << 30}};
      for (int b = 0; b < batches; ++b) loader.next();
    }
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() /
                      (batches * batch_size);
    std::string note = str(static_cast<int>(1000.0 / ms * 10) / 10.0, " samples/s");
    if (peer_ms) note += str(" vs ", static_cast<int>(1000.0 / *peer_ms * 100) / 100.0, " samples/s");
    results.push_back({str("nnU-Net 3D chain ", patch, "^3 from ", case_size, "^3, ", workers,
                           workers == 1 ? " thread" : " threads"),
                       ms, peer_name, peer_ms, note});
  }
  set_num_threads(threads_before);
  return results;
}

}  // namespace medseg::bench
