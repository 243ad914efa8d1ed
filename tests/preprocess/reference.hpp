// Golden values for the preprocessing tests: the test lists its cases, reference.py (run with
// Debian's /usr/bin/python3, which has NumPy and SciPy) makes each input and the expected
// output with SciPy/NumPy, and the test reads both back.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "medseg/core/tensor.hpp"

namespace preprocess_test {

namespace fs = std::filesystem;

struct Case {
  std::string name;
  std::string line;  // "OP key=value ..." as reference.py reads it
};

/// Runs reference.py on `cases` in a fresh folder and returns the folder.
inline fs::path make_references(const std::vector<Case>& cases, const std::string& tag) {
  const fs::path dir = fs::current_path() / ("preprocess_reference_" + tag + "_" + std::to_string(getpid()));
  fs::create_directories(dir);
  {
    std::ofstream list(dir / "cases.txt");
    for (const auto& c : cases) list << c.name << " " << c.line << "\n";
  }
  const std::string cmd = "/usr/bin/python3 " + std::string(MEDSEG_SOURCE_DIR) + "/tests/preprocess/reference.py " +
                          dir.string();
  REQUIRE(std::system(cmd.c_str()) == 0);
  return dir;
}

template <class T>
medseg::Tensor<T> read_raw(const fs::path& path, const medseg::Shape& shape) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  auto t = medseg::Tensor<T>::empty(shape);
  in.read(reinterpret_cast<char*>(t.data()), static_cast<std::streamsize>(t.nbytes()));
  REQUIRE(in.gcount() == static_cast<std::streamsize>(t.nbytes()));
  return t;
}

/// max |ours - ref| / max(1, max |ref|); NaN or a size mismatch gives infinity.
template <class T>
double relative_error(const medseg::Tensor<T>& ours, const medseg::Tensor<T>& ref) {
  if (ours.numel() != ref.numel()) return INFINITY;
  double diff = 0, scale = 1;
  for (std::int64_t i = 0; i < ref.numel(); ++i) {
    const double a = static_cast<double>(ours.data()[i]), b = static_cast<double>(ref.data()[i]);
    if (!std::isfinite(a)) return INFINITY;
    diff = std::max(diff, std::abs(a - b));
    scale = std::max(scale, std::abs(b));
  }
  return diff / scale;
}

inline void remove_references(const fs::path& dir) {
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace preprocess_test
