// The per-value arithmetic of the GPU intensity augmentations, the Gaussian filter's tap sum,
// channel_stats's block partials and the bias field's Legendre series, as host-device functions (voxel_sampling.hpp's
// companion): src/backends/cuda/augment.cu runs them, tests/transforms/voxel_sampling_test.cpp
// holds their host build to the CPU transforms, gaussian_filter and channel_stats.
#pragma once

#include <cmath>
#include <cstdint>

#include "voxel_sampling.hpp"

namespace medseg::transforms::voxel {

MEDSEG_HOST_DEVICE float div(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

// -- Pointwise intensity maps ---------------------------------------------------------------

/// A pointwise map of intensity.hpp's transforms, as their lambdas compute it.
struct IntensityMap {
  enum class Kind : std::uint8_t {
    multiply,      // v * a                          (brightness, divide by max, invert)
    shift_scale,   // (v - a) * b                    (z-score)
    contrast,      // r = (v - a) * b + a, clamped to [lo, hi] when clamp
    gamma,         // pow((v - lo) / (a + 1e-7f), b) * a + lo   (a = range, b = gamma)
    restore,       // (v - a) * b + c                (gamma's retain_stats)
  };
  Kind kind = Kind::multiply;
  float a = 1, b = 1, c = 0, lo = 0, hi = 0;
  bool clamp = false;
};

MEDSEG_HOST_DEVICE float apply_intensity(const IntensityMap& m, float v) {
  switch (m.kind) {
    case IntensityMap::Kind::multiply:
      return mul(v, m.a);
    case IntensityMap::Kind::shift_scale:
      return mul(sub(v, m.a), m.b);
    case IntensityMap::Kind::contrast: {
      const float r = add(mul(sub(v, m.a), m.b), m.a);
      return m.clamp ? (r < m.lo ? m.lo : (m.hi < r ? m.hi : r)) : r;  // std::clamp's comparisons
    }
    case IntensityMap::Kind::gamma: {
      constexpr float eps = 1e-7f;  // batchgenerators' epsilon, as Gamma
      const float base = div(sub(v, m.lo), add(m.a, eps));
      // The power in double, rounded once: the correctly rounded powf, which the C library's
      // powf (the CPU's) gives too except in rare last-bit cases.
      const auto powered = static_cast<float>(::pow(static_cast<double>(base), static_cast<double>(m.b)));
      return add(mul(powered, m.a), m.lo);
    }
    case IntensityMap::Kind::restore:
      return add(mul(sub(v, m.a), m.b), m.c);
  }
  return v;
}

// -- Bias field -----------------------------------------------------------------------------
// bias_field.hpp's f(z, y, x) = sum over i + j + k <= degree of c_ijk P_i(z) P_j(y) P_k(x),
// folded one axis at a time as bias_field_log folds it: g_jk(z) per plane, h_k(z, y) per row,
// then f per voxel. `c` is dense, c[(i * (degree + 1) + j) * (degree + 1) + k]; the P rows are
// P_0..P_degree at one point (detail::legendre_table's rows). Each sum starts at 0 and adds in
// ascending order, the CPU's order.

/// g_jk = sum over i of c_ijk P_i(z).
MEDSEG_HOST_DEVICE double bias_plane_term(const double* c, int degree, int j, int k, const double* pz) {
  const int stride = degree + 1;
  double g = 0;
  for (int i = 0; i + j + k <= degree; ++i) g = add(g, mul(c[(i * stride + j) * stride + k], pz[i]));
  return g;
}

/// h_k = sum over j of g_jk P_j(y); g is a plane's g, g[j * (degree + 1) + k].
MEDSEG_HOST_DEVICE double bias_row_term(const double* g, int degree, int k, const double* py) {
  double h = 0;
  for (int j = 0; j + k <= degree; ++j) h = add(h, mul(g[j * (degree + 1) + k], py[j]));
  return h;
}

/// f = sum over k of h_k P_k(x), rounded to float; h is a row's h_0..h_degree.
MEDSEG_HOST_DEVICE float bias_log_point(const double* h, int degree, const double* px) {
  double v = 0;
  for (int k = 0; k <= degree; ++k) v = add(v, mul(h[k], px[k]));
  return static_cast<float>(v);
}

// -- Gaussian filter ------------------------------------------------------------------------

/// SciPy's 'reflect' index (filter.hpp's detail::reflect_index).
MEDSEG_HOST_DEVICE std::int64_t reflect_index(std::int64_t i, std::int64_t n) {
  const std::int64_t period = 2 * n;
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - 1 - i;
}

/// Output i of a line of n values `inner` apart smoothed with the taps w[0 .. taps), summed
/// from the first tap as gaussian_axis sums them (acc = 0; acc += w[k] * x[reflect(i + k - r)]).
MEDSEG_HOST_DEVICE float gaussian_tap_sum(const float* line, std::int64_t inner, std::int64_t i, std::int64_t n,
                                          const float* w, int taps) {
  const std::int64_t radius = taps / 2;
  float acc = 0;
  for (int k = 0; k < taps; ++k) acc = add(acc, mul(w[k], line[reflect_index(i + k - radius, n) * inner]));
  return acc;
}

// -- channel_stats's block partials ----------------------------------------------------------

/// How many running sums channel_stats keeps per block (element i goes to lane i % 8).
inline constexpr int stats_lanes = 8;

/// Sum, sum of squares, min and max of some values, as channel_stats accumulates them. No
/// member initialisers: kernels keep these in __shared__ memory, which takes trivial types.
struct Partial {
  double sum, square;
  float lo, hi;
};

MEDSEG_HOST_DEVICE void accumulate(Partial& p, float v) {
  p.sum = add(p.sum, static_cast<double>(v));
  p.square = add(p.square, mul(static_cast<double>(v), static_cast<double>(v)));
  p.lo = v < p.lo ? v : p.lo;  // std::min(lo, v)
  p.hi = p.hi < v ? v : p.hi;  // std::max(hi, v)
}

/// Where a block's interleaved part ends: the lanes take whole groups of 8, the rest is its tail.
MEDSEG_HOST_DEVICE std::int64_t lanes_end(std::int64_t begin, std::int64_t end) {
  return begin + (end - begin) / stats_lanes * stats_lanes;
}

/// Lane `lane` of the block [begin, end): min and max start at the block's first value.
MEDSEG_HOST_DEVICE Partial lane_partial(const float* x, std::int64_t begin, std::int64_t end, int lane) {
  Partial p{0, 0, x[begin], x[begin]};
  for (std::int64_t i = begin; i + stats_lanes <= end; i += stats_lanes) accumulate(p, x[i + lane]);
  return p;
}

/// Lane 0 after its own values: the tail [lanes_end, end), then lanes 1..7 folded in, in order.
MEDSEG_HOST_DEVICE void add_tail(Partial& lane0, const float* x, std::int64_t from, std::int64_t end) {
  for (std::int64_t i = from; i < end; ++i) accumulate(lane0, x[i]);
}
MEDSEG_HOST_DEVICE void fold(Partial& into, const Partial& lane) {
  into.sum = add(into.sum, lane.sum);
  into.square = add(into.square, lane.square);
  into.lo = lane.lo < into.lo ? lane.lo : into.lo;
  into.hi = into.hi < lane.hi ? lane.hi : into.hi;
}

}  // namespace medseg::transforms::voxel
