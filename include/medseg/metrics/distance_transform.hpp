// Exact Euclidean distance transform of 3-D masks with anisotropic voxel spacing, as
// scipy.ndimage.distance_transform_edt(mask, sampling=spacing) computes it: the separable
// lower-envelope-of-parabolas algorithm of Felzenszwalb & Huttenlocher (2012), one pass per
// axis, each pass threaded over the lines of that axis. Surface distances are built on it.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor.hpp"

namespace medseg::metrics {

/// Voxel spacing along the tensor's axes (D, H, W), in millimetres. An io::Image's
/// Geometry::spacing is in ITK's (x, y, z) order, which for a [D,H,W] tensor is (W, H, D):
/// pass {spacing[2], spacing[1], spacing[0]}.
using Spacing = std::array<double, 3>;

/// Distance (mm) from each nonzero voxel of the [D,H,W] `mask` to the nearest zero voxel;
/// zero voxels get 0 (scipy's distance_transform_edt). With no zero voxel at all every
/// distance is +inf (scipy's output is undefined there).
///   auto d = metrics::distance_transform_edt(mask, {2.5, 0.8, 0.8});
template <class T>
Tensor<double, Cpu> distance_transform_edt(const Tensor<T, Cpu>& mask, const Spacing& spacing = {1, 1, 1});

/// In place: `f` holds 0 at feature voxels and +inf elsewhere on a dense D x H x W grid; on
/// return it holds the squared distance (mm^2) to the nearest feature voxel (+inf with none).
void squared_distance_to_features(double* f, std::int64_t D, std::int64_t H, std::int64_t W, const Spacing& spacing);

/// Throws Error naming `where` unless every spacing is finite and positive.
void check_spacing(const Spacing& spacing, const std::string& where);

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

/// Scratch for one 1-D transform of up to n samples; one per chunk of lines, reused across
/// the chunk's lines.
struct EnvelopeScratch {
  std::vector<double> f, out, z;
  std::vector<std::int64_t> v;
  explicit EnvelopeScratch(std::int64_t n)
      : f(static_cast<std::size_t>(n)), out(static_cast<std::size_t>(n)), z(static_cast<std::size_t>(n) + 1),
        v(static_cast<std::size_t>(n)) {}
};

/// 1-D squared distance transform of s.f[0..n) with samples `step` mm apart:
/// out[x] = min_q f[q] + (step (x - q))^2. Samples with f = +inf are never part of the
/// lower envelope; when all are, out is +inf everywhere.
inline void envelope_1d(EnvelopeScratch& s, std::int64_t n, double step) {
  constexpr double inf = std::numeric_limits<double>::infinity();
  const double* f = s.f.data();
  std::int64_t* v = s.v.data();
  double* z = s.z.data();
  const double w2 = step * step;
  // Parabola q in index units: f[q] + w2 (x - q)^2. Two parabolas q > p meet at
  // x = ((f[q] + w2 q^2) - (f[p] + w2 p^2)) / (2 w2 (q - p)).
  auto meet = [&](std::int64_t q, std::int64_t p) {
    const double dq = static_cast<double>(q), dp = static_cast<double>(p);
    return ((f[q] + w2 * dq * dq) - (f[p] + w2 * dp * dp)) / (2.0 * w2 * (dq - dp));
  };
  std::int64_t k = -1;
  for (std::int64_t q = 0; q < n; ++q) {
    if (f[q] == inf) continue;
    if (k < 0) {
      k = 0;
      v[0] = q;
      z[0] = -inf;
      z[1] = inf;
      continue;
    }
    double x = meet(q, v[k]);
    while (x <= z[k]) {  // parabola v[k] is hidden by q everywhere right of z[k]
      --k;
      if (k < 0) break;
      x = meet(q, v[k]);
    }
    if (k < 0) {
      k = 0;
      v[0] = q;
      z[0] = -inf;
      z[1] = inf;
      continue;
    }
    ++k;
    v[k] = q;
    z[k] = x;
    z[k + 1] = inf;
  }
  if (k < 0) {
    std::fill(s.out.begin(), s.out.begin() + n, inf);
    return;
  }
  std::int64_t j = 0;
  for (std::int64_t x = 0; x < n; ++x) {
    while (z[j + 1] < static_cast<double>(x)) ++j;
    const double d = static_cast<double>(x - v[j]);
    s.out[static_cast<std::size_t>(x)] = f[v[j]] + w2 * d * d;
  }
}

/// One pass along an axis: `lines` lines of `n` samples, line l starting at
/// base(l) and its samples `stride` apart.
template <class Base>
void envelope_pass(double* f, std::int64_t lines, std::int64_t n, std::int64_t stride, double step, Base&& base) {
  // A chunk of lines amortises the scratch; about 64k samples of work per chunk.
  const std::int64_t grain = std::max<std::int64_t>(1, (std::int64_t{1} << 16) / std::max<std::int64_t>(n, 1));
  parallel_for(0, lines, grain, [&](std::int64_t b, std::int64_t e) {
    EnvelopeScratch s(n);
    for (std::int64_t l = b; l < e; ++l) {
      double* line = f + base(l);
      bool any_feature = false, all_feature = true;
      for (std::int64_t i = 0; i < n; ++i) {
        const double x = line[i * stride];
        s.f[static_cast<std::size_t>(i)] = x;
        any_feature |= x != std::numeric_limits<double>::infinity();
        all_feature &= x == 0;
      }
      if (!any_feature || all_feature) continue;  // nothing to propagate along this line
      envelope_1d(s, n, step);
      for (std::int64_t i = 0; i < n; ++i) line[i * stride] = s.out[static_cast<std::size_t>(i)];
    }
  });
}

}  // namespace detail

inline void check_spacing(const Spacing& spacing, const std::string& where) {
  for (int a = 0; a < 3; ++a)
    require(std::isfinite(spacing[static_cast<std::size_t>(a)]) && spacing[static_cast<std::size_t>(a)] > 0, [&] {
      return ErrorInfo{.where = where, .field = "spacing[" + std::to_string(a) + "]",
                       .expected = "a finite positive spacing in mm", .actual = str(spacing[static_cast<std::size_t>(a)])};
    });
}

inline void squared_distance_to_features(double* f, std::int64_t D, std::int64_t H, std::int64_t W,
                                         const Spacing& spacing) {
  // W lines are contiguous; H and D lines are strided. The order of the passes does not
  // change the result: each is an exact 1-D minimum over the previous pass's values.
  detail::envelope_pass(f, D * H, W, 1, spacing[2], [&](std::int64_t l) { return l * W; });
  detail::envelope_pass(f, D * W, H, W, spacing[1], [&](std::int64_t l) { return (l / W) * H * W + l % W; });
  detail::envelope_pass(f, H * W, D, H * W, spacing[0], [&](std::int64_t l) { return l; });
}

template <class T>
Tensor<double, Cpu> distance_transform_edt(const Tensor<T, Cpu>& mask, const Spacing& spacing) {
  constexpr const char* where = "metrics::distance_transform_edt";
  require(mask.defined() && mask.rank() == 3, [&] {
    return ErrorInfo{.where = where, .field = "mask", .expected = "a [D,H,W] tensor",
                     .actual = mask.defined() ? mask.shape().to_string() : "an undefined tensor"};
  });
  check_spacing(spacing, where);
  const Tensor<T, Cpu> m = mask.contiguous();
  auto out = Tensor<double, Cpu>::empty(m.shape());
  constexpr double inf = std::numeric_limits<double>::infinity();
  parallel_for(0, m.numel(), 1 << 16, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) out.data()[i] = m.data()[i] == T(0) ? 0.0 : inf;
  });
  squared_distance_to_features(out.data(), m.size(0), m.size(1), m.size(2), spacing);
  parallel_for(0, m.numel(), 1 << 16, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) out.data()[i] = std::sqrt(out.data()[i]);
  });
  return out;
}

}  // namespace medseg::metrics
