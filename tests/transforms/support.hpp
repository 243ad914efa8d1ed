// Shared helpers of the transforms tests: SciPy / PyTorch golden values made at test time by
// reference.py (Debian's /usr/bin/python3), and small synthetic samples.
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "medseg/transforms.hpp"

namespace transforms_test {

namespace fs = std::filesystem;
using medseg::Tensor;
using medseg::transforms::Index3;
using medseg::transforms::Sample;

struct Case {
  std::string name;
  std::string line;  // "OP key=value ..."
};

/// Runs reference.py on `cases` in a fresh folder; the caller removes it with remove_all.
inline fs::path make_references(const std::vector<Case>& cases, const std::string& tag) {
  const fs::path dir = fs::temp_directory_path() / ("medseg_transforms_" + tag + "_" + std::to_string(getpid()));
  fs::create_directories(dir);
  {
    std::ofstream list(dir / "cases.txt");
    for (const auto& c : cases) list << c.name << " " << c.line << "\n";
  }
  const std::string cmd =
      "/usr/bin/python3 " + std::string(MEDSEG_SOURCE_DIR) + "/tests/transforms/reference.py " + dir.string();
  REQUIRE(std::system(cmd.c_str()) == 0);
  return dir;
}

template <class T>
Tensor<T> read_raw(const fs::path& path, const medseg::Shape& shape) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  auto t = Tensor<T>::empty(shape);
  in.read(reinterpret_cast<char*>(t.data()), static_cast<std::streamsize>(t.nbytes()));
  REQUIRE(in.gcount() == static_cast<std::streamsize>(t.nbytes()));
  return t;
}

inline double max_abs_diff(const Tensor<float>& a, const Tensor<float>& b) {
  REQUIRE(a.shape() == b.shape());
  double m = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::abs(double(a.data()[i]) - double(b.data()[i])));
  return m;
}

template <class T>
std::int64_t count_different(const Tensor<T>& a, const Tensor<T>& b) {
  REQUIRE(a.shape() == b.shape());
  std::int64_t n = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) n += a.data()[i] != b.data()[i];
  return n;
}

/// An image whose every voxel value is unique (its flat index), with a label = image > t.
inline Sample ramp_sample(const Index3& size, std::int64_t channels = 1) {
  Sample s;
  s.image = Tensor<float>::empty({channels, size[0], size[1], size[2]});
  for (std::int64_t i = 0; i < s.image.numel(); ++i) s.image.data()[i] = static_cast<float>(i);
  s.label = Tensor<std::uint8_t>::empty({1, size[0], size[1], size[2]});
  for (std::int64_t i = 0; i < s.label.numel(); ++i) s.label.data()[i] = static_cast<std::uint8_t>(i % 7);
  return s;
}

/// A smooth blob image (a Gaussian bump off-centre) and label = image > threshold: the
/// alignment test for spatial transforms.
inline Sample blob_sample(const Index3& size, float threshold = 0.5f) {
  Sample s;
  s.image = Tensor<float>::empty({1, size[0], size[1], size[2]});
  s.label = Tensor<std::uint8_t>::empty({1, size[0], size[1], size[2]});
  const double c[3] = {size[0] * 0.45, size[1] * 0.55, size[2] * 0.5};
  const double r = std::min({size[0], size[1], size[2]}) * 0.25;
  for (std::int64_t z = 0; z < size[0]; ++z)
    for (std::int64_t y = 0; y < size[1]; ++y)
      for (std::int64_t x = 0; x < size[2]; ++x) {
        const double d2 = (z - c[0]) * (z - c[0]) + 0.6 * (y - c[1]) * (y - c[1]) + 1.4 * (x - c[2]) * (x - c[2]);
        const auto v = static_cast<float>(std::exp(-d2 / (2 * r * r)));
        const std::int64_t i = (z * size[1] + y) * size[2] + x;
        s.image.data()[i] = v;
        s.label.data()[i] = v > threshold ? 1 : 0;
      }
  return s;
}

/// Fraction of voxels where label != (image > threshold).
inline double misaligned_fraction(const Sample& s, float threshold = 0.5f) {
  std::int64_t bad = 0;
  for (std::int64_t i = 0; i < s.label.numel(); ++i) bad += (s.image.data()[i] > threshold ? 1 : 0) != s.label.data()[i];
  return static_cast<double>(bad) / static_cast<double>(s.label.numel());
}

/// Voxels of the label that touch a different label (6-neighbourhood): the boundary, where
/// one-hot and intensity interpolation may round differently.
inline std::int64_t boundary_voxels(const Sample& s) {
  const auto n = s.spatial();
  const auto* l = s.label.data();
  std::int64_t count = 0;
  for (std::int64_t z = 0; z < n[0]; ++z)
    for (std::int64_t y = 0; y < n[1]; ++y)
      for (std::int64_t x = 0; x < n[2]; ++x) {
        const std::int64_t i = (z * n[1] + y) * n[2] + x;
        const bool edge = (z > 0 && l[i - n[1] * n[2]] != l[i]) || (z + 1 < n[0] && l[i + n[1] * n[2]] != l[i]) ||
                          (y > 0 && l[i - n[2]] != l[i]) || (y + 1 < n[1] && l[i + n[2]] != l[i]) ||
                          (x > 0 && l[i - 1] != l[i]) || (x + 1 < n[2] && l[i + 1] != l[i]);
        count += edge;
      }
  return count;
}

/// Label voxels that disagree with (image > threshold), per boundary voxel. Aligned
/// transforms stay near 0.1; a label shifted one voxel along one axis gives about 0.35.
inline double misaligned_per_boundary(const Sample& s, float threshold = 0.5f) {
  return misaligned_fraction(s, threshold) * static_cast<double>(s.label.numel()) /
         static_cast<double>(std::max<std::int64_t>(1, boundary_voxels(s)));
}

/// Voxels whose label is 1: the size of the foreground.
inline std::int64_t foreground(const Sample& s) {
  std::int64_t n = 0;
  for (std::int64_t i = 0; i < s.label.numel(); ++i) n += s.label.data()[i] != 0;
  return n;
}

}  // namespace transforms_test
