// The few NumPy/Python numerics nnU-Net's planner rounds through, reproduced bit for bit so a
// plan computed here equals nnU-Net's: Python's round (half to even), np.percentile's default
// "linear" method (with its two-sided lerp) and np.median.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace medseg::nnunet::numpy {

/// Python's round(x) for a float: to the nearest integer, ties to even.
inline std::int64_t round_half_even(double x) { return static_cast<std::int64_t>(std::nearbyint(x)); }

/// np.percentile(v, q) with method="linear" (NumPy >= 1.22's _quantile and _lerp).
inline double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double n = static_cast<double>(v.size()), quantile = q / 100;
  // _compute_virtual_index(n, quantiles, alpha=1, beta=1), term by term as NumPy adds them.
  const double virtual_index = n * quantile + (1 + quantile * (1 - 1 - 1)) - 1;
  const double previous = std::floor(virtual_index);
  const double gamma = virtual_index - previous;
  const auto at = [&](double i) { return v[static_cast<std::size_t>(std::clamp(i, 0.0, n - 1))]; };
  const double a = at(previous), b = at(previous + 1), diff = b - a;
  return gamma >= 0.5 ? b - diff * (1 - gamma) : a + diff * gamma;
}

/// np.median(v): the middle value, or the mean of the two middle ones.
inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/// np.prod over doubles, left to right.
inline double product(const std::vector<double>& v) {
  double p = 1;
  for (double x : v) p *= x;
  return p;
}

}  // namespace medseg::nnunet::numpy
