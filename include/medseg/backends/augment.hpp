// What the augmentation kernels of every backend share (transforms/ makes the decisions and
// draws; backends/cpu/augment.hpp and backends/cuda/augment.hpp run the per-voxel work): the
// plain-data descriptions the kernels take (the sampling grid, the voxel-move plan, the
// separable resize's taps, the intensity maps, the channel statistics' partials) and the
// per-voxel arithmetic written once as host-device functions, in ops::voxel. The CPU kernels
// call them where they must round alike, and so do the CUDA kernels (src/backends/cuda/
// augment.cu), so every CPU test of the transforms checks the GPU's arithmetic too, even
// where there is no GPU (tests/transforms/voxel_sampling_test.cpp holds the host build to the
// CPU kernels bit for bit). Every product and sum goes through mul/add below: CUDA's
// round-to-nearest intrinsics in device code (nvcc never contracts those into FMAs), plain
// operators on the host (medseg builds with -ffp-contract=off); each rounds where the CPU code
// rounds, in the same order.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "../core/host_device.hpp"

namespace medseg::ops {

/// How a spatial sampling pass reads: transforms::ImageInterpolation and LabelInterpolation
/// as plain values (0 nearest, 1 linear / per-class linear).
struct SamplingModes {
  int image = 1;
  int label = 0;
};

/// channel_stats's first half, what a backend's channel_partials returns: per block of
/// channel_stats_block values, the sum, the sum of squares (eight interleaved lanes combined
/// in order), the min and the max. The host sums the blocks in order (transforms::
/// finish_channel_stats), so the result does not depend on threads or device.
inline constexpr std::int64_t channel_stats_block = 1 << 14;
struct ChannelPartials {
  std::vector<double> sums, squares;
  std::vector<float> mins, maxs;
};

}  // namespace medseg::ops

namespace medseg::ops::voxel {

// -- Arithmetic with the CPU's rounding -------------------------------------------------------

MEDSEG_HOST_DEVICE float mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
MEDSEG_HOST_DEVICE float add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
MEDSEG_HOST_DEVICE float sub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
MEDSEG_HOST_DEVICE double mul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
MEDSEG_HOST_DEVICE double add(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
MEDSEG_HOST_DEVICE double sub(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}
MEDSEG_HOST_DEVICE float div(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

// -- Where an output voxel reads ------------------------------------------------------------

/// transforms::SamplingGrid as plain data: input(o) = m * (o - out_center) + in_center
/// (+ the displacement, when there is one), in (D, H, W) voxels.
struct GridSpec {
  std::int64_t out[3];
  double m[3][3];
  double out_center[3], in_center[3];
};

/// Where row (z, y) of the output starts in the input: the matrix times the row's offset from
/// the output centre at x = 0, plus the input centre (walk_grid's per-row work).
MEDSEG_HOST_DEVICE void row_start(const GridSpec& g, std::int64_t z, std::int64_t y, double start[3]) {
  const double dz = sub(static_cast<double>(z), g.out_center[0]);
  const double dy = sub(static_cast<double>(y), g.out_center[1]);
  const double dx = -g.out_center[2];
  for (int k = 0; k < 3; ++k)
    start[k] = add(add(add(mul(g.m[k][0], dz), mul(g.m[k][1], dy)), mul(g.m[k][2], dx)), g.in_center[k]);
}

/// Voxel x of a row starting at `start`: plus x times the matrix's W column, plus the
/// displacement at output offset `at` (null: none; components `plane` apart).
MEDSEG_HOST_DEVICE void row_point(const GridSpec& g, const double start[3], std::int64_t x, const float* disp,
                                  std::int64_t at, std::int64_t plane, double p[3]) {
  const double xd = static_cast<double>(x);
  for (int k = 0; k < 3; ++k) {
    p[k] = add(start[k], mul(xd, g.m[k][2]));
    if (disp) p[k] = add(p[k], static_cast<double>(disp[k * plane + at]));
  }
}

/// The input coordinate of output voxel (z, y, x): row_start, then row_point.
MEDSEG_HOST_DEVICE void grid_point(const GridSpec& g, std::int64_t z, std::int64_t y, std::int64_t x, const float* disp,
                                   std::int64_t at, std::int64_t plane, double p[3]) {
  double start[3];
  row_start(g, z, y, start);
  row_point(g, start, x, disp, at, plane, p);
}

// -- Image samples --------------------------------------------------------------------------

/// A [D,H,W] volume of one channel.
struct Volume {
  const float* data;
  std::int64_t d, h, w;
};

/// The nearest voxel's offset in a d x h x w grid, or -1 outside (reads 0).
MEDSEG_HOST_DEVICE std::int64_t nearest_offset(double z, double y, double x, std::int64_t d, std::int64_t h,
                                               std::int64_t w) {
  const auto iz = static_cast<std::int64_t>(::floor(add(z, 0.5))), iy = static_cast<std::int64_t>(::floor(add(y, 0.5))),
             ix = static_cast<std::int64_t>(::floor(add(x, 0.5)));
  const bool inside = iz >= 0 && iz < d && iy >= 0 && iy < h && ix >= 0 && ix < w;
  return inside ? (iz * h + iy) * w + ix : -1;
}

/// The lowest corner of a point's 2 x 2 x 2 neighbourhood and the point's fractions in it.
struct Corner {
  std::int64_t z0, y0, x0;
  double tz, ty, tx;
};
MEDSEG_HOST_DEVICE Corner corner_of(double z, double y, double x) {
  const double fz = ::floor(z), fy = ::floor(y), fx = ::floor(x);
  return {static_cast<std::int64_t>(fz), static_cast<std::int64_t>(fy), static_cast<std::int64_t>(fx), sub(z, fz),
          sub(y, fy), sub(x, fx)};
}
MEDSEG_HOST_DEVICE bool corner_inside(const Corner& c, std::int64_t d, std::int64_t h, std::int64_t w) {
  return c.z0 >= 0 && c.z0 + 1 < d && c.y0 >= 0 && c.y0 + 1 < h && c.x0 >= 0 && c.x0 + 1 < w;
}

/// a + t * (b - a), rounded as the CPU rounds it: every linear interpolation's step.
MEDSEG_HOST_DEVICE float lerp(float a, float b, float t) { return add(a, mul(t, sub(b, a))); }

/// The trilinear value from four input rows (z0/z1 x y0/y1) at columns a and b: lerps along
/// W with tx, then H with ty, then D with tz (ImageSampler's interior, resize_trilinear).
MEDSEG_HOST_DEVICE float trilinear_rows(const float* r00, const float* r01, const float* r10, const float* r11,
                                        std::int64_t a, std::int64_t b, float tx, float ty, float tz) {
  const float c00 = lerp(r00[a], r00[b], tx), c01 = lerp(r01[a], r01[b], tx);
  const float c10 = lerp(r10[a], r10[b], tx), c11 = lerp(r11[a], r11[b], tx);
  return lerp(lerp(c00, c01, ty), lerp(c10, c11, ty), tz);
}

/// Trilinear interpolation near or outside the volume's edge, corner (z0, y0, x0): the eight
/// weighted terms summed in order, neighbours outside reading 0 (ImageSampler's border path).
MEDSEG_HOST_DEVICE float border_sample(const Volume& v, std::int64_t z0, std::int64_t y0, std::int64_t x0, float tz,
                                       float ty, float tx) {
  const std::int64_t d = v.d, h = v.h, w = v.w;
  if (z0 < -1 || z0 >= d || y0 < -1 || y0 >= h || x0 < -1 || x0 >= w) return 0.0f;
  float acc = 0;
  for (int k = 0; k < 8; ++k) {
    const std::int64_t zz = z0 + (k >> 2), yy = y0 + ((k >> 1) & 1), xx = x0 + (k & 1);
    if (zz < 0 || zz >= d || yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
    const float wt = mul(mul((k >> 2) ? tz : sub(1.0f, tz), ((k >> 1) & 1) ? ty : sub(1.0f, ty)),
                         (k & 1) ? tx : sub(1.0f, tx));
    acc = add(acc, mul(wt, v.data[(zz * h + yy) * w + xx]));
  }
  return acc;
}

/// Trilinear interpolation of `v` at corner `c` (ImageSampler's interior and border paths:
/// lerps along W, then H, then D inside; the eight weighted terms summed in order at the
/// border, neighbours outside reading 0).
MEDSEG_HOST_DEVICE float linear_sample(const Volume& v, const Corner& c) {
  const auto tz = static_cast<float>(c.tz), ty = static_cast<float>(c.ty), tx = static_cast<float>(c.tx);
  const std::int64_t h = v.h, w = v.w;
  if (corner_inside(c, v.d, v.h, v.w)) {
    const float* p = v.data + (c.z0 * h + c.y0) * w + c.x0;
    return trilinear_rows(p, p + w, p + h * w, p + h * w + w, 0, 1, tx, ty, tz);
  }
  return border_sample(v, c.z0, c.y0, c.x0, tz, ty, tx);
}

// -- Whole-voxel moves ----------------------------------------------------------------------

/// transforms::permute_reverse as plain data: output [channels, out...] element (c, o0, o1, o2)
/// reads input offset c * in_plane + base + o0 * step[0] + o1 * step[1] + o2 * step[2] (a
/// negative step walks an axis backwards).
struct PermutePlan {
  std::int64_t out[3];
  std::int64_t step[3];
  std::int64_t base, in_plane;
};

/// The plan of output axis k reading input axis source[k] of `in`, reversed when reverse[k].
/// Precondition: source is a permutation of {0, 1, 2}.
MEDSEG_HOST_DEVICE PermutePlan permute_plan(const std::int64_t in[3], const int source[3], const bool reverse[3]) {
  const std::int64_t stride[3] = {in[1] * in[2], in[2], 1};
  PermutePlan p{{0, 0, 0}, {0, 0, 0}, 0, in[0] * in[1] * in[2]};
  for (int k = 0; k < 3; ++k) {
    const int a = source[k];
    p.out[k] = in[a];
    p.step[k] = reverse[k] ? -stride[a] : stride[a];
    if (reverse[k]) p.base += (in[a] - 1) * stride[a];
  }
  return p;
}

/// The input offset output element i (channel-major, W fastest) reads.
MEDSEG_HOST_DEVICE std::int64_t permuted_source(const PermutePlan& p, std::int64_t i) {
  const std::int64_t o2 = i % p.out[2], r = i / p.out[2];
  const std::int64_t o1 = r % p.out[1], r2 = r / p.out[1];
  const std::int64_t o0 = r2 % p.out[0], c = r2 / p.out[0];
  return c * p.in_plane + p.base + o0 * p.step[0] + o1 * p.step[1] + o2 * p.step[2];
}

// -- Separable resizes ----------------------------------------------------------------------

/// transforms::resize_nearest_exact and resize_trilinear as plain data: per output
/// axis k, output o reads input i0[k][o] (nearest) or lerps from i0 to i1 with weight t[k][o].
/// The three axes' taps lie one after another (D, then H, then W) in each array.
struct ResizeSpec {
  std::int64_t in[3], out[3];
  const std::int64_t* i0;
  const std::int64_t* i1;
  const float* t;
  bool linear;
};

/// Output element i (channel-major, W fastest) of x [channels, in...] resized.
MEDSEG_HOST_DEVICE float resized_value(const ResizeSpec& r, const float* x, std::int64_t i) {
  const std::int64_t ox = i % r.out[2], row = i / r.out[2];
  const std::int64_t oy = row % r.out[1], rest = row / r.out[1];
  const std::int64_t oz = rest % r.out[0], c = rest / r.out[0];
  const std::int64_t tz = oz, ty = r.out[0] + oy, tx = r.out[0] + r.out[1] + ox;
  const float* base = x + c * r.in[0] * r.in[1] * r.in[2];
  if (!r.linear) return base[(r.i0[tz] * r.in[1] + r.i0[ty]) * r.in[2] + r.i0[tx]];
  const float* r00 = base + (r.i0[tz] * r.in[1] + r.i0[ty]) * r.in[2];
  const float* r01 = base + (r.i0[tz] * r.in[1] + r.i1[ty]) * r.in[2];
  const float* r10 = base + (r.i1[tz] * r.in[1] + r.i0[ty]) * r.in[2];
  const float* r11 = base + (r.i1[tz] * r.in[1] + r.i1[ty]) * r.in[2];
  return trilinear_rows(r00, r01, r10, r11, r.i0[tx], r.i1[tx], r.t[tx], r.t[ty], r.t[tz]);
}

// -- Label samples --------------------------------------------------------------------------

/// Whether the eight neighbours' ids agree: inside a region, by far the common case, decided
/// before any weight is computed.
template <class L>
MEDSEG_HOST_DEVICE bool all_equal(const L* ids) {
  bool uniform = true;
  for (int k = 1; k < 8; ++k) uniform = uniform && ids[k] == ids[0];
  return uniform;
}

/// The id whose one-hot mask interpolates largest among the eight neighbours' ids (ordered
/// z, y, x from the lowest corner, as LabelSampler orders them); ties within 1e-12 go to the
/// smaller id.
template <class L>
MEDSEG_HOST_DEVICE L largest_class(const L* ids, double tz, double ty, double tx) {
  double weights[8];
  for (int k = 0; k < 8; ++k)
    weights[k] = mul(mul((k >> 2) ? tz : sub(1.0, tz), ((k >> 1) & 1) ? ty : sub(1.0, ty)), (k & 1) ? tx : sub(1.0, tx));
  L best = ids[0];
  double best_weight = -1;
  for (int k = 0; k < 8; ++k) {
    double sum = 0;
    for (int j = 0; j < 8; ++j)
      if (ids[j] == ids[k]) sum = add(sum, weights[j]);
    if (sum > add(best_weight, 1e-12) || (::fabs(sub(sum, best_weight)) <= 1e-12 && ids[k] < best)) {
      best_weight = sum;
      best = ids[k];
    }
  }
  return best;
}

/// The per-class linear vote of eight neighbours' ids.
template <class L>
MEDSEG_HOST_DEVICE L vote(const L* ids, double tz, double ty, double tx) {
  return all_equal(ids) ? ids[0] : largest_class(ids, tz, ty, tx);
}

/// Per-class linear label sample at corner `c` of a d x h x w map; outside reads id 0.
template <class L>
MEDSEG_HOST_DEVICE L per_class_linear_sample(const L* label, std::int64_t d, std::int64_t h, std::int64_t w,
                                             const Corner& c) {
  L ids[8];
  const bool inside = corner_inside(c, d, h, w);
  for (int k = 0; k < 8; ++k) {
    const std::int64_t zz = c.z0 + (k >> 2), yy = c.y0 + ((k >> 1) & 1), xx = c.x0 + (k & 1);
    const bool in = inside || (zz >= 0 && zz < d && yy >= 0 && yy < h && xx >= 0 && xx < w);
    ids[k] = in ? label[(zz * h + yy) * w + xx] : L(0);
  }
  return vote(ids, c.tz, c.ty, c.tx);
}

// -- Gaussian noise -------------------------------------------------------------------------

/// GaussianNoise's four normals from one Philox block: Box-Muller in float on words (0, 1)
/// and (2, 3). logf, cosf and sinf are the C library's on the host (the CPU transform's, bit
/// for bit) and CUDA's in a kernel, which may differ from them in the last bit or two.
MEDSEG_HOST_DEVICE void noise_normals(const std::uint32_t w[4], float z[4]) {
  constexpr float two_pi = 6.2831853071795865f, unit = 1.0f / 16777216.0f;
  for (int pair = 0; pair < 2; ++pair) {
    const float u1 = mul(add(static_cast<float>(w[2 * pair] >> 8), 1.0f), unit);  // (0, 1]: log is finite
    const float theta = mul(mul(two_pi, static_cast<float>(w[2 * pair + 1] >> 8)), unit);
    const float r = ::sqrtf(mul(-2.0f, ::logf(u1)));
    z[2 * pair] = mul(r, ::cosf(theta));
    z[2 * pair + 1] = mul(r, ::sinf(theta));
  }
}

// -- Pointwise intensity maps ---------------------------------------------------------------

/// A pointwise map of transforms/intensity.hpp's transforms (ops::map_intensity's argument).
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
// transforms/bias_field.hpp's f(z, y, x) = sum over i + j + k <= degree of c_ijk P_i(z) P_j(y) P_k(x),
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

/// SciPy's 'reflect' index (the CPU gaussian_axis's boundary).
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

}  // namespace medseg::ops::voxel

namespace medseg::ops {
using voxel::IntensityMap;  // a kernel argument (map_intensity), named with the others
}  // namespace medseg::ops
