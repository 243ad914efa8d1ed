// Small volumes and dataset folders for the data tests, written with medseg's own writers.
#pragma once

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include "medseg/data.hpp"
#include "medseg/io.hpp"

namespace medseg::test {

inline std::filesystem::path scratch_dir(const std::string& name) {
  const auto dir = std::filesystem::path(MEDSEG_DATA_TEST_DIR) / "scratch" / (name + "." + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

inline io::Geometry ct_geometry() {
  io::Geometry g;
  g.spacing = {0.75, 0.75, 2.5};
  g.origin = {-190.0, -180.5, -400.0};
  return g;
}

/// A [D,H,W] (or [C,D,H,W]) float image whose voxel values encode their index and `seed`.
inline io::Image<float> volume(const Shape& shape, float seed, const io::Geometry& g = ct_geometry()) {
  auto t = Tensor<float>::empty(shape);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = seed + static_cast<float>(i % 101);
  return {t, g};
}

/// A [D,H,W] label with values cycling through 0..classes-1.
inline io::Image<std::uint8_t> label(const Shape& shape, int classes, const io::Geometry& g = ct_geometry()) {
  auto t = Tensor<std::uint8_t>::empty(shape);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<std::uint8_t>(i % classes);
  return {t, g};
}

/// Writes an image, creating its folder first (the writers, like nibabel's, do not).
inline void save(const io::AnyImage& image, const std::filesystem::path& p) {
  std::filesystem::create_directories(p.parent_path());
  io::write_image(image, p);
}

inline void write_text(const std::filesystem::path& p, const std::string& text) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace medseg::test
