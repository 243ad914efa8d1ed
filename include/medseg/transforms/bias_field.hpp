// MR bias field: the smooth multiplicative intensity inhomogeneity of a receive coil, as
// MONAI's RandBiasField simulates it: x * exp(f), f a 3-D Legendre polynomial series of
// total degree <= `degree` on [-1, 1]^3 with random coefficients. Augmentation for MR
// training, and one of the realistic deformations the demo makes its cases with. The draws
// and the Legendre tables are made here; the field is the backend's (ops::multiply_bias_field).
#pragma once

#include <array>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <string>
#include <vector>

#include "../backends/ops.hpp"
#include "concepts.hpp"
#include "intensity.hpp"

namespace medseg::transforms {

/// With probability p, every channel multiplied by exp(f) where
///   f(z, y, x) = sum over i + j + k <= degree of c_ijk P_i(z) P_j(y) P_k(x),
/// P_n the Legendre polynomials, z, y, x spaced evenly over [-1, 1] along D, H, W (numpy's
/// linspace, as MONAI), and the c_ijk uniform in `coefficients` (one draw for all channels).
/// MONAI's defaults: degree 3 (20 coefficients), coefficients in [0, 0.1].
struct RandomBiasField {
  float p = 1.0f;
  int degree = 3;
  Range coefficients{0.0f, 0.1f};

  template <class L, class B>
  void apply(BasicSample<L, B>& s, RandomStream& rng) const;
  /// One apply's draws: the coefficients in bias_field_terms(degree)'s order (empty: not fired).
  std::vector<double> draw(RandomStream& rng) const;
};

/// The exponents (i, j, k) of the series, in the order coefficients are drawn and passed:
/// i major, then j, then k, each ascending, keeping i + j + k <= degree.
std::vector<std::array<int, 3>> bias_field_terms(int degree);

/// f itself, [D, H, W] on backend B, for `coefficients` in bias_field_terms(degree)'s order.
template <class B = Cpu>
Tensor<float, B> bias_field_log(const Index3& size, int degree, const std::vector<double>& coefficients);

// ----------------------------------------------------------------------------------------
// Implementation

inline std::vector<std::array<int, 3>> bias_field_terms(int degree) {
  std::vector<std::array<int, 3>> terms;
  for (int i = 0; i <= degree; ++i)
    for (int j = 0; i + j <= degree; ++j)
      for (int k = 0; i + j + k <= degree; ++k) terms.push_back({i, j, k});
  return terms;
}

namespace detail {
/// P_0..P_degree at n points evenly spaced over [-1, 1], row n-major: table[point][order].
inline std::vector<double> legendre_table(std::int64_t n, int degree) {
  std::vector<double> t(static_cast<std::size_t>(n * (degree + 1)));
  for (std::int64_t a = 0; a < n; ++a) {
    const double u = n == 1 ? -1.0 : -1.0 + 2.0 * static_cast<double>(a) / static_cast<double>(n - 1);
    double* row = t.data() + a * (degree + 1);
    row[0] = 1.0;
    if (degree >= 1) row[1] = u;
    for (int m = 2; m <= degree; ++m)  // Bonnet's recursion
      row[m] = ((2.0 * m - 1.0) * u * row[m - 1] - (m - 1.0) * row[m - 2]) / m;
  }
  return t;
}

/// The coefficients in bias_field_terms(degree)'s order laid out dense, as the ops::voxel::bias_*
/// functions read them: c[(i * (degree + 1) + j) * (degree + 1) + k], 0 where i + j + k > degree.
inline std::vector<double> dense_bias_coefficients(int degree, const std::vector<double>& coefficients) {
  const auto terms = bias_field_terms(degree);
  const int stride = degree + 1;
  std::vector<double> c(static_cast<std::size_t>(stride * stride * stride), 0.0);
  for (std::size_t t = 0; t < terms.size(); ++t)
    c[static_cast<std::size_t>((terms[t][0] * stride + terms[t][1]) * stride + terms[t][2])] = coefficients[t];
  return c;
}

/// bias_field_log's checks: `coefficients` has one value per term of `degree`.
inline void check_bias_coefficients(int degree, const std::vector<double>& coefficients) {
  const std::size_t terms = degree >= 0 ? bias_field_terms(degree).size() : 0;
  require(degree >= 0 && coefficients.size() == terms, [&] {
    return ErrorInfo{.where = "transforms::bias_field_log", .field = "coefficients",
                     .expected = std::to_string(terms) + " values for degree " + std::to_string(degree),
                     .actual = std::to_string(coefficients.size())};
  });
}
}  // namespace detail

template <class B>
Tensor<float, B> bias_field_log(const Index3& size, int degree, const std::vector<double>& coefficients) {
  detail::check_bias_coefficients(degree, coefficients);
  auto out = Tensor<float, B>::empty({size[0], size[1], size[2]});
  ops::bias_field_log(out, degree, detail::dense_bias_coefficients(degree, coefficients),
                      detail::legendre_table(size[0], degree), detail::legendre_table(size[1], degree),
                      detail::legendre_table(size[2], degree));
  return out;
}

inline std::vector<double> RandomBiasField::draw(RandomStream& rng) const {
  require(degree >= 0 && degree <= 15, [&] {
    return ErrorInfo{.where = "transforms::RandomBiasField", .field = "degree", .expected = "0..15",
                     .actual = std::to_string(degree)};
  });
  const bool fire = rng.bernoulli(p);
  std::vector<double> c(bias_field_terms(degree).size());
  for (double& v : c) v = coefficients.draw(rng);
  if (!fire) c.clear();
  return c;
}

template <class L, class B>
void RandomBiasField::apply(BasicSample<L, B>& s, RandomStream& rng) const {
  check_sample(s, "transforms::RandomBiasField");
  const std::vector<double> c = draw(rng);
  if (c.empty()) return;
  const Index3 size = s.spatial();
  detail::make_writable(s.image);
  ops::multiply_bias_field(s.image, degree, detail::dense_bias_coefficients(degree, c),
                           detail::legendre_table(size[0], degree), detail::legendre_table(size[1], degree),
                           detail::legendre_table(size[2], degree));
}

}  // namespace medseg::transforms
