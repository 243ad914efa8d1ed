// Comparisons of the GPU tests that check a Cuda result against the CPU's: floats within a
// relative tolerance of the data's scale (reporting how many elements differ at all, so a
// kernel that is meant to be bit-identical shows when it is not), integers exactly.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "medseg/cuda.hpp"

namespace medseg::cuda_test {

/// |gpu - cpu| <= rel * max(|cpu|, scale) everywhere, scale = the largest |cpu|.
inline void check_close(const Tensor<float>& cpu, const Tensor<float>& gpu, double rel = 1e-5) {
  REQUIRE(gpu.shape() == cpu.shape());
  double scale = 0, worst = 0;
  for (std::int64_t i = 0; i < cpu.numel(); ++i) scale = std::max(scale, std::abs(static_cast<double>(cpu.data()[i])));
  std::int64_t bad = 0, differ = 0, first_bad = -1;
  for (std::int64_t i = 0; i < cpu.numel(); ++i) {
    const double c = cpu.data()[i], v = gpu.data()[i];
    if (std::isnan(c) && std::isnan(v)) continue;
    const double d = std::abs(v - c);
    if (!(d == 0)) ++differ;
    worst = std::max(worst, std::isnan(d) ? INFINITY : d);
    if (!(d <= rel * std::max(std::abs(c), scale))) {
      if (first_bad < 0) first_bad = i;
      ++bad;
    }
  }
  INFO("shape " << cpu.shape().to_string() << ": " << differ << " elements differ at all, max |diff| " << worst
                << " (scale " << scale << "), " << bad << " beyond tolerance, first at " << first_bad);
  CHECK(bad == 0);
  // Within tolerance but not bit-identical: said in every run's log, since most kernels claim
  // the CPU's exact bits and a GPU run is rare.
  if (bad == 0 && differ > 0)
    WARN("shape " << cpu.shape().to_string() << ": within tolerance, but " << differ << " elements differ from the CPU's "
                  << "(max |diff| " << worst << ", scale " << scale << ")");
}
inline void check_close(const Tensor<float>& cpu, const Tensor<float, Cuda>& gpu, double rel = 1e-5) {
  check_close(cpu, gpu.to<Cpu>(), rel);
}

template <class T>
void check_equal(const Tensor<T>& cpu, const Tensor<T>& gpu) {
  REQUIRE(gpu.shape() == cpu.shape());
  std::int64_t bad = 0, first_bad = -1;
  for (std::int64_t i = 0; i < cpu.numel(); ++i)
    if (gpu.data()[i] != cpu.data()[i]) {
      if (first_bad < 0) first_bad = i;
      ++bad;
    }
  INFO("shape " << cpu.shape().to_string() << ": " << bad << " elements differ, first at " << first_bad);
  CHECK(bad == 0);
}
template <class T>
void check_equal(const Tensor<T>& cpu, const Tensor<T, Cuda>& gpu) {
  check_equal(cpu, gpu.template to<Cpu>());
}

}  // namespace medseg::cuda_test
