// Helpers shared by the viz tests: a scratch folder per test process and the independent
// Python PNG decoder (decode_png.py, run with Debian's /usr/bin/python3).
#pragma once

#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "medseg/viz/raster.hpp"

namespace viz_test {

namespace fs = std::filesystem;

/// A fresh folder under the test's working directory, removed by the destructor.
struct ScratchDir {
  fs::path path;
  explicit ScratchDir(const std::string& tag)
      : path(fs::current_path() / ("viz_" + tag + "_" + std::to_string(getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

/// The picture in `png` as decode_png.py reads it.
inline medseg::viz::Picture python_decode(const fs::path& png) {
  const fs::path raw = png.string() + ".raw", info = png.string() + ".txt";
  const std::string cmd = "/usr/bin/python3 " + std::string(MEDSEG_SOURCE_DIR) + "/tests/viz/decode_png.py " +
                          png.string() + " " + raw.string() + " > " + info.string();
  REQUIRE(std::system(cmd.c_str()) == 0);
  medseg::viz::Picture p;
  std::ifstream(info) >> p.width >> p.height >> p.channels;
  std::ifstream in(raw, std::ios::binary);
  p.pixels.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return p;
}

}  // namespace viz_test
