// Golden values for the metrics tests: reference.py (run with Debian's /usr/bin/python3, which
// has NumPy and SciPy) makes a random-blob case with anisotropic spacing and computes every
// metric independently with scipy.ndimage; the tests read its files back.
#pragma once

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>

#include <unistd.h>

#include "medseg/core/tensor.hpp"
#include "medseg/metrics/distance_transform.hpp"

namespace metrics_test {

namespace fs = std::filesystem;

/// One generated case, read back into memory: label maps, probabilities, the scipy distance
/// transform of ref > 0, and the expected values by (metric, class).
struct Golden {
  medseg::Shape shape;
  int num_classes = 0;
  medseg::metrics::Spacing spacing{};
  medseg::Tensor<std::uint8_t> reference, prediction;
  medseg::Tensor<float> probabilities;
  medseg::Tensor<double> edt;
  std::map<std::pair<std::string, int>, double> expected;

  bool has(const std::string& metric, int c) const { return expected.count({metric, c}) != 0; }
  double at(const std::string& metric, int c) const { return expected.at({metric, c}); }
};

template <class T>
medseg::Tensor<T> read_raw(const fs::path& file, const medseg::Shape& s) {
  std::ifstream in(file, std::ios::binary);
  REQUIRE(in.good());
  auto t = medseg::Tensor<T>::empty(s);
  in.read(reinterpret_cast<char*>(t.data()), static_cast<std::streamsize>(t.nbytes()));
  REQUIRE(in.gcount() == static_cast<std::streamsize>(t.nbytes()));
  return t;
}

inline Golden make_golden(const std::string& tag, int seed, const medseg::Shape& shape, int num_classes,
                          const medseg::metrics::Spacing& spacing) {
  Golden g;
  const fs::path dir = fs::current_path() / ("metrics_reference_" + tag + "_" + std::to_string(getpid()));
  g.shape = shape;
  g.num_classes = num_classes;
  g.spacing = spacing;
  fs::create_directories(dir);
  std::ostringstream cmd;
  cmd << "/usr/bin/python3 " << MEDSEG_SOURCE_DIR << "/tests/metrics/reference.py " << dir.string() << " " << seed
      << " " << shape[0] << " " << shape[1] << " " << shape[2] << " " << num_classes << " " << spacing[0] << " "
      << spacing[1] << " " << spacing[2];
  REQUIRE(std::system(cmd.str().c_str()) == 0);
  {
    std::ifstream in(dir / "expected.txt");
    REQUIRE(in.good());
    std::string metric, value;
    int c = 0;
    while (in >> metric >> c >> value) g.expected[{metric, c}] = std::strtod(value.c_str(), nullptr);
  }
  REQUIRE(!g.expected.empty());
  g.reference = read_raw<std::uint8_t>(dir / "ref.u8", shape);
  g.prediction = read_raw<std::uint8_t>(dir / "pred.u8", shape);
  g.probabilities = read_raw<float>(dir / "prob.f32", {num_classes, shape[0], shape[1], shape[2]});
  g.edt = read_raw<double>(dir / "edt.f64", shape);
  std::error_code ec;
  fs::remove_all(dir, ec);
  return g;
}

}  // namespace metrics_test
