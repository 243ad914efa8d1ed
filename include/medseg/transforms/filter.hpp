// Separable Gaussian smoothing with SciPy's conventions (scipy.ndimage.gaussian_filter:
// radius = int(truncate * sigma + 0.5), 'reflect' boundary), shared by the blur augmentation
// and by the elastic deformation, whose displacement field is smoothed noise.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor.hpp"

namespace medseg::transforms {

/// The normalised 1-D Gaussian of scipy.ndimage.gaussian_filter1d: 2r + 1 taps,
/// r = int(truncate * sigma + 0.5). sigma must be > 0.
std::vector<float> gaussian_kernel(double sigma, double truncate = 4.0);

/// Smooths every channel of x [C,D,H,W] along spatial axis k with sigma[k] voxels (0 leaves
/// that axis alone), with SciPy's 'reflect' boundary (d c b a | a b c d | d c b a). Returns a
/// new tensor; matches scipy.ndimage.gaussian_filter(x[c], sigma) up to float rounding.
Tensor<float> gaussian_filter(const Tensor<float>& x, const std::array<double, 3>& sigma, double truncate = 4.0);

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

namespace detail {

/// SciPy's 'reflect' index: the grid mirrored about its edges, with period 2n.
inline std::int64_t reflect_index(std::int64_t i, std::int64_t n) {
  const std::int64_t period = 2 * n;
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - 1 - i;
}

/// y = x smoothed along one axis of the view (outer, n, inner): inner == 1 is the last axis.
inline void gaussian_axis(const float* x, float* y, std::int64_t outer, std::int64_t n, std::int64_t inner,
                          const std::vector<float>& w) {
  const auto radius = static_cast<std::int64_t>(w.size() / 2);
  if (inner == 1) {
    parallel_for(0, outer, 8, [&](std::int64_t b, std::int64_t e) {
      std::vector<float> line(static_cast<std::size_t>(n + 2 * radius));
      for (std::int64_t o = b; o < e; ++o) {
        const float* in = x + o * n;
        for (std::int64_t i = -radius; i < n + radius; ++i) line[static_cast<std::size_t>(i + radius)] = in[reflect_index(i, n)];
        float* out = y + o * n;
        for (std::int64_t i = 0; i < n; ++i) {
          float acc = 0;
          const float* l = line.data() + i;
          for (std::size_t k = 0; k < w.size(); ++k) acc += w[k] * l[k];
          out[i] = acc;
        }
      }
    });
    return;
  }
  // A strided axis: each output row of `inner` values is a weighted sum of whole input rows,
  // which keeps the inner loop contiguous and vectorisable.
  parallel_for(0, outer * n, 4, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t r = b; r < e; ++r) {
      const std::int64_t o = r / n, i = r % n;
      float* out = y + r * inner;
      std::fill(out, out + inner, 0.0f);
      for (std::int64_t k = -radius; k <= radius; ++k) {
        const float wk = w[static_cast<std::size_t>(k + radius)];
        const float* in = x + (o * n + reflect_index(i + k, n)) * inner;
        for (std::int64_t j = 0; j < inner; ++j) out[j] += wk * in[j];
      }
    }
  });
}

}  // namespace detail

inline Tensor<float> gaussian_filter(const Tensor<float>& x, const std::array<double, 3>& sigma, double truncate) {
  require(x.rank() == 4, [&] {
    return ErrorInfo{.where = "transforms::gaussian_filter", .field = "x", .expected = "a [C,D,H,W] tensor",
                     .actual = x.shape().to_string()};
  });
  Tensor<float> current = x.contiguous();
  const std::int64_t c = x.size(0), d = x.size(1), h = x.size(2), w = x.size(3);
  const std::int64_t outer[3] = {c, c * d, c * d * h}, extent[3] = {d, h, w}, inner[3] = {h * w, w, 1};
  for (int a = 0; a < 3; ++a) {
    if (sigma[a] <= 0) continue;
    const auto kernel = gaussian_kernel(sigma[a], truncate);
    auto next = Tensor<float>::empty(x.shape());
    detail::gaussian_axis(current.data(), next.data(), outer[a], extent[a], inner[a], kernel);
    current = next;
  }
  return current.shares_storage_with(x) ? current.clone() : current;
}

}  // namespace medseg::transforms
