// Shared pieces of the trainer tests: an in-memory dataset of noisy spheres, a tiny network
// with every kind of state a resume must restore (weights, BatchNorm running statistics,
// dropout counters), a Dice evaluator, and exact snapshots of a model's tensors.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <unistd.h>
#include <filesystem>
#include <string>
#include <vector>

#include "medseg/data/case.hpp"
#include "medseg/data/loader.hpp"
#include "medseg/transforms/flip.hpp"
#include "medseg/loss.hpp"
#include "medseg/nn.hpp"
#include "medseg/optim.hpp"
#include "medseg/train.hpp"

namespace medseg::test {

/// Case i: N(0, 0.5) noise plus 1 inside a sphere of radius 2.5-5 voxels; label 1 inside.
/// Every case is a pure function of (seed, i).
struct SphereDataset {
  std::size_t cases = 6;
  std::int64_t extent = 16;
  std::uint64_t seed = 1;

  std::size_t size() const { return cases; }
  std::string name(std::size_t i) const { return "sphere_" + std::to_string(i); }
  data::LabelMap labels() const { return {{0, "background"}, {1, "sphere"}}; }
  data::Case load(std::size_t i) const {
    RandomStream rng(seed, 1000 + i);
    const double r = 2.5 + 2.5 * rng.uniform();
    auto centre = [&] { return r + (static_cast<double>(extent) - 2 * r) * rng.uniform(); };
    const double cz = centre(), cy = centre(), cx = centre();
    const std::int64_t size = extent;
    auto image = Tensor<float>::empty({1, size, size, size});
    random::normal(image, {seed, 2000 + i, 0}, 0.0f, 0.5f);
    auto label = Tensor<std::uint8_t>::zeros({size, size, size});
    for (std::int64_t z = 0; z < size; ++z)
      for (std::int64_t y = 0; y < size; ++y)
        for (std::int64_t x = 0; x < size; ++x)
          if ((z - cz) * (z - cz) + (y - cy) * (y - cy) + (x - cx) * (x - cx) <= r * r) {
            const std::int64_t k = (z * size + y) * size + x;
            label.data()[k] = 1;
            image.data()[k] += 1.0f;
          }
    return {name(i), {image, {}}, io::Image<std::uint8_t>{label, {}}};
  }
};

/// conv 3^3 -> BatchNorm -> PReLU -> Dropout3d (active in training) -> conv 1^3.
using TinyNet = nn::Sequential<nn::Conv3d<Cpu>, nn::BatchNorm3d<Cpu>, nn::PReLU<Cpu>, nn::Dropout3d<Cpu>, nn::Conv3d<Cpu>>;

inline TinyNet make_tiny_net(std::uint64_t init_seed, float dropout = 0.25f) {
  nn::init::manual_seed(init_seed);
  return TinyNet{nn::Conv3d<Cpu>{{.in_channels = 1, .out_channels = 4, .kernel = {3, 3, 3}, .padding = {1, 1, 1}}},
                 nn::BatchNorm3d<Cpu>{{.num_features = 4}}, nn::PReLU<Cpu>{{.num_parameters = 4}},
                 nn::Dropout3d<Cpu>{{.p = dropout, .seed = 7}},
                 nn::Conv3d<Cpu>{{.in_channels = 4, .out_channels = 2, .kernel = {1, 1, 1}}}};
}

/// Foreground Dice of argmax(logits [N,2,...]) against labels [N,1,...].
inline double foreground_dice(const Tensor<float>& logits, const Tensor<std::uint8_t>& labels) {
  const auto p = logits.contiguous().to_vector();
  const auto g = labels.contiguous().to_vector();
  const std::int64_t n = logits.size(0), s = logits.numel() / (n * 2);
  double inter = 0, pred = 0, truth = 0;
  for (std::int64_t b = 0; b < n; ++b)
    for (std::int64_t i = 0; i < s; ++i) {
      const bool fg = p[static_cast<std::size_t>((b * 2 + 1) * s + i)] > p[static_cast<std::size_t>(b * 2 * s + i)];
      const bool t = g[static_cast<std::size_t>(b * s + i)] == 1;
      inter += fg && t, pred += fg, truth += t;
    }
  return 2 * inter / std::max(pred + truth, 1.0);
}

/// Dice of the model on cases [first, first + n) of `data`, in one batch.
template <class Model>
train::EvalResult sphere_eval(Model& model, const SphereDataset& data, std::size_t first, std::size_t n) {
  std::vector<transforms::BasicSample<std::uint8_t>> samples;
  for (std::size_t i = first; i < first + n; ++i) {
    auto c = data.load(i);
    samples.push_back({c.image.voxels, c.label->voxels.reshape({1, data.extent, data.extent, data.extent})});
  }
  const auto batch = data::collate(samples);
  const double dice = foreground_dice(model.forward(batch.image), batch.label);
  return {dice, {dice}, {{"cases", n}}};
}

/// Every parameter and buffer, by path, as raw floats.
template <class Model>
std::vector<std::pair<std::string, std::vector<float>>> snapshot(Model& model) {
  std::vector<std::pair<std::string, std::vector<float>>> out;
  model.visit_parameters([&](nn::Parameter<Cpu>& p) { out.emplace_back(p.path, p.value.contiguous().to_vector()); });
  model.visit_buffers([&](nn::Buffer<Cpu>& b) { out.emplace_back(b.path, b.value.contiguous().to_vector()); });
  return out;
}

/// Whether two snapshots are equal bit for bit (NaN-safe, unlike ==).
inline bool bit_identical(const std::vector<std::pair<std::string, std::vector<float>>>& a,
                          const std::vector<std::pair<std::string, std::vector<float>>>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].first != b[i].first || a[i].second.size() != b[i].second.size() ||
        std::memcmp(a[i].second.data(), b[i].second.data(), a[i].second.size() * sizeof(float)) != 0)
      return false;
  return true;
}

/// This process's scratch folder, removed when the process ends.
inline const struct ScratchRoot {
  std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("medseg_train_tests_" + std::to_string(::getpid()));
  ~ScratchRoot() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
} scratch_root;

/// A fresh, empty folder under the scratch folder.
inline std::filesystem::path fresh_dir(const std::string& name) {
  const auto dir = scratch_root.path / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace medseg::test
