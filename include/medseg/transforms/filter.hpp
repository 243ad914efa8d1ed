// Separable Gaussian smoothing with SciPy's conventions (scipy.ndimage.gaussian_filter:
// radius = int(truncate * sigma + 0.5), 'reflect' boundary), shared by the blur augmentation
// and by the elastic deformation, whose displacement field is smoothed noise. The taps are
// made here; each axis's pass is the backend's (ops::gaussian_axis).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "../backends/ops.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"

namespace medseg::transforms {

/// The normalised 1-D Gaussian of scipy.ndimage.gaussian_filter1d: 2r + 1 taps,
/// r = int(truncate * sigma + 0.5). sigma must be > 0.
std::vector<float> gaussian_kernel(double sigma, double truncate = 4.0);

/// Smooths every channel of x [C,D,H,W] along spatial axis k with sigma[k] voxels (0 leaves
/// that axis alone), with SciPy's 'reflect' boundary (d c b a | a b c d | d c b a). Returns a
/// new tensor; matches scipy.ndimage.gaussian_filter(x[c], sigma) up to float rounding.
template <class B>
Tensor<float, B> gaussian_filter(const Tensor<float, B>& x, const std::array<double, 3>& sigma, double truncate = 4.0);

// ----------------------------------------------------------------------------------------
// Implementation

inline std::vector<float> gaussian_kernel(double sigma, double truncate) {
  require(sigma > 0 && std::isfinite(sigma), [&] {
    return ErrorInfo{.where = "transforms::gaussian_kernel", .field = "sigma", .expected = "> 0", .actual = str(sigma)};
  });
  const int radius = static_cast<int>(truncate * sigma + 0.5);
  std::vector<double> w(static_cast<std::size_t>(2 * radius + 1));
  double sum = 0;
  for (int i = -radius; i <= radius; ++i) {
    w[static_cast<std::size_t>(i + radius)] = std::exp(-0.5 * i * i / (sigma * sigma));
    sum += w[static_cast<std::size_t>(i + radius)];
  }
  std::vector<float> out(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) out[i] = static_cast<float>(w[i] / sum);
  return out;
}

template <class B>
Tensor<float, B> gaussian_filter(const Tensor<float, B>& x, const std::array<double, 3>& sigma, double truncate) {
  require(x.rank() == 4, [&] {
    return ErrorInfo{.where = "transforms::gaussian_filter", .field = "x", .expected = "a [C,D,H,W] tensor",
                     .actual = x.shape().to_string()};
  });
  Tensor<float, B> current = x.contiguous();
  const std::int64_t c = x.size(0), d = x.size(1), h = x.size(2), w = x.size(3);
  const std::int64_t outer[3] = {c, c * d, c * d * h}, extent[3] = {d, h, w}, inner[3] = {h * w, w, 1};
  for (int a = 0; a < 3; ++a) {
    if (sigma[a] <= 0) continue;
    const auto kernel = gaussian_kernel(sigma[a], truncate);
    auto next = Tensor<float, B>::empty(x.shape());
    ops::gaussian_axis(current, next, outer[a], extent[a], inner[a], kernel);
    current = next;
  }
  return current.shares_storage_with(x) ? current.clone() : current;
}

}  // namespace medseg::transforms
