// The C++ side of conv_reference.py, shared by the float32 convolution tests
// (cpu_conv3d_test.cpp) and the bfloat16 autocast ones (cpu_math_mode_test.cpp): a case list,
// one run of the script over it into a fresh folder, and the files it writes read back.
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

#include "medseg/backends/conv3d.hpp"
#include "medseg/core/random.hpp"
#include "medseg/core/tensor.hpp"

namespace medseg::test {

struct ConvCase {
  std::string name;
  Conv3dShape shape;
  bool bias = true;
};

/// The reference's files for a list of cases, made once by conv_reference.py in a folder of
/// this process's own, removed when this object goes.
class ConvReference {
 public:
  /// `mode` is passed on to the script: "" for float32 references, "bf16" for autocast ones too.
  ConvReference(const std::vector<ConvCase>& cases, const std::string& mode = "")
      : dir_(std::filesystem::current_path() / ("conv_reference_" + std::to_string(getpid()))) {
    std::filesystem::create_directories(dir_);
    {
      std::ofstream list(dir_ / "cases.txt");
      for (const auto& c : cases) list << line(c) << "\n";
    }
    const std::string cmd = "/usr/bin/python3 " + std::string(MEDSEG_SOURCE_DIR) +
                            "/tests/backends/conv_reference.py " + dir_.string() + (mode.empty() ? "" : " " + mode);
    REQUIRE(std::system(cmd.c_str()) == 0);
  }
  ~ConvReference() {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  ConvReference(const ConvReference&) = delete;
  ConvReference& operator=(const ConvReference&) = delete;

  /// Tensor `key` ("x", "dy", "y_rounded", ...) of case `c`, as `shape`.
  Tensor<float> read(const ConvCase& c, const std::string& key, const Shape& shape) const {
    std::ifstream in(dir_ / (c.name + "." + key + ".bin"), std::ios::binary);
    REQUIRE(in.good());
    auto t = Tensor<float>::empty(shape);
    in.read(reinterpret_cast<char*>(t.data()), static_cast<std::streamsize>(t.nbytes()));
    REQUIRE(in.gcount() == static_cast<std::streamsize>(t.nbytes()));
    return t;
  }

 private:
  static std::string line(const ConvCase& c) {
    const auto& s = c.shape;
    std::string l = c.name + " " + std::to_string(s.batch) + " " + std::to_string(s.in_channels) + " " +
                    std::to_string(s.out_channels);
    for (const auto* a : {&s.input, &s.kernel, &s.stride, &s.padding, &s.dilation, &s.output_padding})
      for (auto v : *a) l += " " + std::to_string(v);
    return l + " " + std::to_string(s.groups) + " " + (s.transposed ? "1" : "0") + " " + (c.bias ? "1" : "0");
  }

  std::filesystem::path dir_;
};

/// max |ours - reference| / max |reference|: a relative error that stays meaningful where
/// individual reference values cross zero.
inline double relative_error(const Tensor<float>& ours, const Tensor<float>& ref) {
  double diff = 0, scale = 0;
  for (std::int64_t i = 0; i < ref.numel(); ++i) {
    if (!std::isfinite(ours.data()[i])) return INFINITY;  // an element left unwritten (NaN)
    diff = std::max(diff, std::abs(static_cast<double>(ours.data()[i]) - ref.data()[i]));
    scale = std::max(scale, std::abs(static_cast<double>(ref.data()[i])));
  }
  return scale > 0 ? diff / scale : diff;
}

inline Tensor<float> random_tensor(const Shape& shape, std::uint64_t seed) {
  auto t = Tensor<float>::empty(shape);
  random::normal(t, {.seed = seed});
  return t;
}

}  // namespace medseg::test
