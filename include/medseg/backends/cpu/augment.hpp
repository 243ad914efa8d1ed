// CPU kernels of the augmentations in transforms/: the spatial transforms' sampling pass, the
// whole-voxel moves (crop_or_pad, permute_reverse), the separable resizes of
// SimulateLowResolution, the Gaussian filter's passes, the elastic field's and GaussianNoise's
// per-voxel noise, the bias field, the intensity maps and the per-channel statistics. The
// transforms make every draw and decision and hand these loops plain data (backends/augment.hpp);
// backends/cuda/augment.hpp declares the same functions on Cuda tensors. Threaded over rows or
// fixed-size blocks, with per-voxel results that do not depend on the thread count.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "../../core/parallel.hpp"
#include "../../core/rng.hpp"
#include "../../core/tensor.hpp"
#include "../augment.hpp"

namespace medseg::ops {

// -- Host access (what a draw reads) --------------------------------------------------------

/// x readable on the host: x itself here (a device backend copies it back).
template <class T>
Tensor<T, Cpu> host_readable(const Tensor<T, Cpu>& x);
/// out = host tensor x on out's backend: x itself here (a device backend uploads it).
template <class T>
void from_host(const Tensor<T, Cpu>& x, Tensor<T, Cpu>& out);

// -- Sampling and voxel moves ---------------------------------------------------------------

/// Samples image [C, in...] into image_out [C, grid.out...] and label [1, in...] into
/// label_out on `grid` (plus `displacement` [3, grid.out...] in voxels, when defined). Either
/// of image and label may be undefined (then only the other is sampled). Outside reads 0.
template <class L>
void sample_grid(const voxel::GridSpec& grid, const Tensor<float, Cpu>& displacement, const Tensor<float, Cpu>& image,
                 const Tensor<float, Cpu>& image_out, const Tensor<L, Cpu>& label, const Tensor<L, Cpu>& label_out,
                 SamplingModes modes);
/// out [C, size...] = the box of contiguous x [C, in...] that starts at `begin` (may be
/// negative; the box may pass the end); voxels outside x read `fill`.
template <class T>
void crop_or_pad(const Tensor<T, Cpu>& x, const std::array<std::int64_t, 3>& begin, const Tensor<T, Cpu>& out, T fill);
/// out[i] = x[voxel::permuted_source(plan, i)] for every element of out [C, plan.out...].
template <class T>
void permute_reverse(const Tensor<T, Cpu>& x, const voxel::PermutePlan& plan, const Tensor<T, Cpu>& out);
/// out [C, size...] = x [C, in...] resized separably: nearest (out reads i0) or, when
/// `linear`, lerps from i0 to i1 with weight t; per output axis the taps of its outputs, the
/// three axes one after another (D, H, W).
inline void resize_separable(const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& out,
                             const std::vector<std::int64_t>& i0, const std::vector<std::int64_t>& i1,
                             const std::vector<float>& t, bool linear);

// -- Fields and filters ---------------------------------------------------------------------

/// out [D, H, W] = the bias field's log f of `degree`: `coefficients` dense as
/// voxel::bias_plane_term reads them, pz, py, px the Legendre rows of the three axes.
inline void bias_field_log(const Tensor<float, Cpu>& out, int degree, const std::vector<double>& coefficients,
                           const std::vector<double>& pz, const std::vector<double>& py, const std::vector<double>& px);
/// Every channel of x [C, D, H, W] multiplied, in place, by exp(f), f as bias_field_log.
inline void multiply_bias_field(const Tensor<float, Cpu>& x, int degree, const std::vector<double>& coefficients,
                                const std::vector<double>& pz, const std::vector<double>& py,
                                const std::vector<double>& px);
/// out[i] = 2 * uniform_from_bits(word i % 4 of Philox block i / 4 of (seed, stream)) - 1.
inline void uniform_noise(std::uint64_t seed, std::uint64_t stream, const Tensor<float, Cpu>& out);
/// x[i] += sd * normal i of (seed, stream) (Box-Muller in float, four normals per block), in place.
inline void add_gaussian_noise(const Tensor<float, Cpu>& x, std::uint64_t seed, std::uint64_t stream, float sd);
/// y = contiguous x seen as (outer, n, inner) smoothed along n with the taps `weights`
/// (2r + 1 of them), SciPy's 'reflect' boundary.
inline void gaussian_axis(const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& y, std::int64_t outer, std::int64_t n,
                          std::int64_t inner, const std::vector<float>& weights);

// -- Intensity ------------------------------------------------------------------------------

/// x[i] = map(x[i]) for every element of contiguous x, in place.
inline void map_intensity(const Tensor<float, Cpu>& x, const IntensityMap& map);
/// The block partials of the values of contiguous x (ChannelPartials).
inline ChannelPartials channel_partials(const Tensor<float, Cpu>& x);

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail::augment {

/// Walks the output grid row by row (threaded over rows), handing `visit` the output offset
/// and the input coordinate of each voxel. The coordinate of voxel x of a row is the row's
/// start plus x times the matrix's W column: no per-voxel matrix product.
template <class Visit>
void walk_grid(const voxel::GridSpec& spec, const float* disp, Visit&& visit) {
  const std::int64_t od = spec.out[0], oh = spec.out[1], ow = spec.out[2];
  const std::int64_t plane = od * oh * ow;
  parallel_for(0, od * oh, 8, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t r = b; r < e; ++r) {
      double start[3], p[3];
      voxel::row_start(spec, r / oh, r % oh, start);
      const std::int64_t row = r * ow;
      for (std::int64_t x = 0; x < ow; ++x) {
        voxel::row_point(spec, start, x, disp, row + x, plane, p);
        visit(row + x, p[0], p[1], p[2]);
      }
    }
  });
}

/// Writes output voxel `at` of every channel from input coordinate (z, y, x). Outside the
/// input reads 0; on the border, neighbours outside read 0 (SciPy's 'grid-constant').
struct ImageSampler {
  const float* in;
  float* out;
  std::int64_t channels, d, h, w, in_plane, out_plane;
  bool nearest;

  ImageSampler(const Tensor<float, Cpu>& image, const Tensor<float, Cpu>& output, int mode)
      : in(image.data()), out(output.data()), channels(image.size(0)), d(image.size(1)), h(image.size(2)),
        w(image.size(3)), in_plane(d * h * w), out_plane(output.numel() / std::max<std::int64_t>(1, output.size(0))),
        nearest(mode == 0) {}

  void operator()(std::int64_t at, double z, double y, double x) const {
    if (nearest) {
      const std::int64_t src = voxel::nearest_offset(z, y, x, d, h, w);
      for (std::int64_t c = 0; c < channels; ++c) out[c * out_plane + at] = src >= 0 ? in[c * in_plane + src] : 0.0f;
      return;
    }
    const voxel::Corner k = voxel::corner_of(z, y, x);
    const auto tz = static_cast<float>(k.tz), ty = static_cast<float>(k.ty), tx = static_cast<float>(k.tx);
    if (voxel::corner_inside(k, d, h, w)) {
      interior(at, (k.z0 * h + k.y0) * w + k.x0, tz, ty, tx);
      return;
    }
    border(at, k.z0, k.y0, k.x0, tz, ty, tx);
  }

  /// All eight neighbours inside (the common case): no bounds checks. `base` is the offset
  /// of the lowest corner.
  void interior(std::int64_t at, std::int64_t base, float tz, float ty, float tx) const {
    for (std::int64_t c = 0; c < channels; ++c) {
      const float* p = in + c * in_plane + base;
      out[c * out_plane + at] = voxel::trilinear_rows(p, p + w, p + h * w, p + h * w + w, 0, 1, tx, ty, tz);
    }
  }

  /// Voxels near or outside the input's edge: kept out of line so that the interior path
  /// above stays small enough to inline into the grid walk.
  [[gnu::noinline]] void border(std::int64_t at, std::int64_t z0, std::int64_t y0, std::int64_t x0, float tz, float ty,
                                float tx) const {
    for (std::int64_t c = 0; c < channels; ++c)
      out[c * out_plane + at] = voxel::border_sample({in + c * in_plane, d, h, w}, z0, y0, x0, tz, ty, tx);
  }
};

/// Writes output voxel `at` of the label from input coordinate (z, y, x): the nearest id,
/// or the id whose one-hot mask interpolates largest. Outside the input reads id 0.
template <class L>
struct LabelSampler {
  const L* in;
  L* out;
  std::int64_t d, h, w;
  bool nearest;

  LabelSampler(const Tensor<L, Cpu>& label, const Tensor<L, Cpu>& output, int mode)
      : in(label.data()), out(output.data()), d(label.size(1)), h(label.size(2)), w(label.size(3)),
        nearest(mode == 0) {}

  void operator()(std::int64_t at, double z, double y, double x) const {
    if (nearest) {
      const std::int64_t src = voxel::nearest_offset(z, y, x, d, h, w);
      out[at] = src >= 0 ? in[src] : L(0);
      return;
    }
    const voxel::Corner k = voxel::corner_of(z, y, x);
    if (voxel::corner_inside(k, d, h, w)) {
      interior(at, (k.z0 * h + k.y0) * w + k.x0, k.tz, k.ty, k.tx);
      return;
    }
    out[at] = voxel::per_class_linear_sample(in, d, h, w, k);
  }

  /// Per-class linear with all eight neighbours inside; `base` is the lowest corner's offset.
  void interior(std::int64_t at, std::int64_t base, double tz, double ty, double tx) const {
    const L* p = in + base;
    const L ids[8] = {p[0], p[1], p[w], p[w + 1], p[h * w], p[h * w + 1], p[h * w + w], p[h * w + w + 1]};
    out[at] = vote(ids, tz, ty, tx);
  }

  static L vote(const L* ids, double tz, double ty, double tx) {
    return voxel::all_equal(ids) ? ids[0] : largest_class(ids, tz, ty, tx);
  }

  /// Neighbours of several classes (voxel::largest_class). Out of line: only boundary voxels
  /// get here, and the uniform test above stays small enough to inline.
  [[gnu::noinline]] static L largest_class(const L* ids, double tz, double ty, double tx) {
    return voxel::largest_class(ids, tz, ty, tx);
  }
};

/// Image and label read at the same coordinate, for linear image and per-class linear label
/// (nnU-Net's spatial transform): the floors, the weights and the bounds test are computed
/// once for both, and both reads hit the same neighbourhood.
template <class L>
struct PairSampler {
  ImageSampler image;
  LabelSampler<L> label;

  void operator()(std::int64_t at, double z, double y, double x) const {
    if (image.nearest || label.nearest) {
      image(at, z, y, x);
      label(at, z, y, x);
      return;
    }
    const voxel::Corner k = voxel::corner_of(z, y, x);
    const auto tz = static_cast<float>(k.tz), ty = static_cast<float>(k.ty), tx = static_cast<float>(k.tx);
    if (voxel::corner_inside(k, image.d, image.h, image.w)) {
      const std::int64_t base = (k.z0 * image.h + k.y0) * image.w + k.x0;
      image.interior(at, base, tz, ty, tx);
      label.interior(at, base, k.tz, k.ty, k.tx);
      return;
    }
    image.border(at, k.z0, k.y0, k.x0, tz, ty, tx);
    label(at, z, y, x);
  }
};

/// f(x) for each of n values, threaded.
template <class F>
void map_inplace(float* x, std::int64_t n, F&& f) {
  parallel_for(0, n, 1 << 15, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) x[i] = f(x[i]);
  });
}

}  // namespace detail::augment

template <class T>
Tensor<T, Cpu> host_readable(const Tensor<T, Cpu>& x) {
  return x;
}

template <class T>
void from_host(const Tensor<T, Cpu>& x, Tensor<T, Cpu>& out) {
  out = x;
}

template <class L>
void sample_grid(const voxel::GridSpec& grid, const Tensor<float, Cpu>& displacement, const Tensor<float, Cpu>& image,
                 const Tensor<float, Cpu>& image_out, const Tensor<L, Cpu>& label, const Tensor<L, Cpu>& label_out,
                 SamplingModes modes) {
  using namespace detail::augment;
  const float* disp = displacement.defined() ? displacement.data() : nullptr;
  if (!label.defined()) {
    if (image.defined()) walk_grid(grid, disp, ImageSampler(image, image_out, modes.image));
  } else if (!image.defined()) {
    walk_grid(grid, disp, LabelSampler<L>(label, label_out, modes.label));
  } else {
    // One walk for both: each coordinate is computed once and image and label are read
    // while the same input neighbourhood is in cache.
    walk_grid(grid, disp,
              PairSampler<L>{ImageSampler(image, image_out, modes.image), LabelSampler<L>(label, label_out, modes.label)});
  }
}

template <class T>
void crop_or_pad(const Tensor<T, Cpu>& x, const std::array<std::int64_t, 3>& begin, const Tensor<T, Cpu>& out, T fill) {
  const std::int64_t channels = x.size(0), d = x.size(1), h = x.size(2), w = x.size(3);
  const std::array<std::int64_t, 3> size{out.size(1), out.size(2), out.size(3)};
  const T* in = x.data();
  T* o = out.data();
  // The part of each output row that lies inside x: [x_lo, x_hi) in output coordinates.
  const std::int64_t x_lo = std::clamp<std::int64_t>(-begin[2], 0, size[2]);
  const std::int64_t x_hi = std::clamp<std::int64_t>(w - begin[2], x_lo, size[2]);
  parallel_for(0, channels * size[0] * size[1], 16, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t r = b; r < e; ++r) {
      const std::int64_t c = r / (size[0] * size[1]);
      const std::int64_t z = (r / size[1]) % size[0] + begin[0], y = r % size[1] + begin[1];
      T* row = o + r * size[2];
      if (z < 0 || z >= d || y < 0 || y >= h) {
        std::fill(row, row + size[2], fill);
        continue;
      }
      const T* src = in + ((c * d + z) * h + y) * w + begin[2];
      std::fill(row, row + x_lo, fill);
      std::copy(src + x_lo, src + x_hi, row + x_lo);
      std::fill(row + x_hi, row + size[2], fill);
    }
  });
}

template <class T>
void permute_reverse(const Tensor<T, Cpu>& x, const voxel::PermutePlan& plan, const Tensor<T, Cpu>& out) {
  if (out.numel() == 0) return;
  const T* src = x.data();
  T* dst = out.data();
  const std::int64_t width = plan.out[2], rows = out.numel() / width, step = plan.step[2];
  parallel_for(0, rows, 16, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t r = b; r < e; ++r) {
      const T* in = src + voxel::permuted_source(plan, r * width);  // the row's first voxel
      T* o = dst + r * width;
      if (step == 1) {
        std::copy(in, in + width, o);
      } else {
        for (std::int64_t i = 0; i < width; ++i) o[i] = in[i * step];
      }
    }
  });
}

inline void resize_separable(const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& out,
                             const std::vector<std::int64_t>& i0, const std::vector<std::int64_t>& i1,
                             const std::vector<float>& t, bool linear) {
  const std::int64_t channels = x.size(0);
  const std::int64_t in[3] = {x.size(1), x.size(2), x.size(3)}, size[3] = {out.size(1), out.size(2), out.size(3)};
  // Each axis's taps start where the previous axes' end.
  const std::size_t at_y = static_cast<std::size_t>(size[0]), at_x = at_y + static_cast<std::size_t>(size[1]);
  const float* src = x.data();
  float* dst = out.data();
  parallel_for(0, channels * size[0] * size[1], 16, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t r = b; r < e; ++r) {
      const auto c = r / (size[0] * size[1]);
      const auto z = static_cast<std::size_t>((r / size[1]) % size[0]), y = at_y + static_cast<std::size_t>(r % size[1]);
      const float* base = src + c * in[0] * in[1] * in[2];
      float* o = dst + r * size[2];
      if (!linear) {
        const float* row = base + (i0[z] * in[1] + i0[y]) * in[2];
        for (std::int64_t i = 0; i < size[2]; ++i) o[i] = row[i0[at_x + static_cast<std::size_t>(i)]];
        continue;
      }
      const float* r00 = base + (i0[z] * in[1] + i0[y]) * in[2];
      const float* r01 = base + (i0[z] * in[1] + i1[y]) * in[2];
      const float* r10 = base + (i1[z] * in[1] + i0[y]) * in[2];
      const float* r11 = base + (i1[z] * in[1] + i1[y]) * in[2];
      const float wz = t[z], wy = t[y];
      for (std::size_t i = at_x; i < at_x + static_cast<std::size_t>(size[2]); ++i)
        o[i - at_x] = voxel::trilinear_rows(r00, r01, r10, r11, i0[i], i1[i], t[i], wy, wz);
    }
  });
}

inline void bias_field_log(const Tensor<float, Cpu>& out, int degree, const std::vector<double>& c,
                           const std::vector<double>& pz, const std::vector<double>& py, const std::vector<double>& px) {
  const std::int64_t size[3] = {out.size(0), out.size(1), out.size(2)};
  float* f = out.data();
  const int stride = degree + 1;
  parallel_for(0, size[0], 1, [&](std::int64_t z0, std::int64_t z1) {
    // Per plane, fold the z factor into the coefficients (g_jk), per row the y factor (h_k).
    std::vector<double> g(static_cast<std::size_t>(stride * stride)), h(static_cast<std::size_t>(stride));
    for (std::int64_t z = z0; z < z1; ++z) {
      for (int j = 0; j <= degree; ++j)
        for (int k = 0; j + k <= degree; ++k)
          g[j * stride + k] = voxel::bias_plane_term(c.data(), degree, j, k, &pz[z * stride]);
      for (std::int64_t y = 0; y < size[1]; ++y) {
        for (int k = 0; k <= degree; ++k) h[k] = voxel::bias_row_term(g.data(), degree, k, &py[y * stride]);
        float* row = f + (z * size[1] + y) * size[2];
        for (std::int64_t x = 0; x < size[2]; ++x) row[x] = voxel::bias_log_point(h.data(), degree, &px[x * stride]);
      }
    }
  });
}

inline void multiply_bias_field(const Tensor<float, Cpu>& x, int degree, const std::vector<double>& coefficients,
                                const std::vector<double>& pz, const std::vector<double>& py,
                                const std::vector<double>& px) {
  const std::int64_t channels = x.size(0), n = x.size(1) * x.size(2) * x.size(3);
  const auto log_field = Tensor<float, Cpu>::empty({x.size(1), x.size(2), x.size(3)});
  bias_field_log(log_field, degree, coefficients, pz, py, px);
  const float* f = log_field.data();
  float* v = x.data();
  parallel_for(0, n, 1 << 14, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) {
      const float gain = std::exp(f[i]);
      for (std::int64_t ch = 0; ch < channels; ++ch) v[ch * n + i] *= gain;
    }
  });
}

inline void uniform_noise(std::uint64_t seed, std::uint64_t stream, const Tensor<float, Cpu>& out) {
  float* n = out.data();
  const std::int64_t count = out.numel();
  // Voxel i gets uniform_at(field, i); one Philox block serves four voxels.
  parallel_for(0, (count + 3) / 4, 1 << 13, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t k = b; k < e; ++k) {
      const auto w = Philox4x32::block(seed, stream, static_cast<std::uint64_t>(k));
      for (std::int64_t j = 0; j < 4 && 4 * k + j < count; ++j)
        n[4 * k + j] = 2.0f * uniform_from_bits(w[static_cast<std::uint64_t>(j)]) - 1.0f;
    }
  });
}

inline void add_gaussian_noise(const Tensor<float, Cpu>& x, std::uint64_t seed, std::uint64_t stream, float sd) {
  float* v = x.data();
  const std::int64_t n = x.numel();
  // Voxels 4k..4k+3 take block k of the stream, through Box-Muller in float: an augmentation
  // needs no double-precision normals, and float halves the cost.
  parallel_for(0, (n + 3) / 4, 1 << 13, [&](std::int64_t b, std::int64_t e) {
    constexpr float two_pi = 6.2831853071795865f, unit = 1.0f / 16777216.0f;
    for (std::int64_t k = b; k < e; ++k) {
      const auto w = Philox4x32::block(seed, stream, static_cast<std::uint64_t>(k));
      float z[4];
      for (int pair = 0; pair < 2; ++pair) {
        const float u1 = (static_cast<float>(w[2 * pair] >> 8) + 1.0f) * unit;  // (0, 1]: log is finite
        const float theta = two_pi * static_cast<float>(w[2 * pair + 1] >> 8) * unit;
        const float r = std::sqrt(-2.0f * std::log(u1));
        z[2 * pair] = r * std::cos(theta);
        z[2 * pair + 1] = r * std::sin(theta);
      }
      for (std::int64_t j = 0; j < 4 && 4 * k + j < n; ++j) v[4 * k + j] += sd * z[j];
    }
  });
}

inline void gaussian_axis(const Tensor<float, Cpu>& input, const Tensor<float, Cpu>& output, std::int64_t outer,
                          std::int64_t n, std::int64_t inner, const std::vector<float>& w) {
  const float* x = input.data();
  float* y = output.data();
  const auto radius = static_cast<std::int64_t>(w.size() / 2);
  if (inner == 1) {
    parallel_for(0, outer, 8, [&](std::int64_t b, std::int64_t e) {
      std::vector<float> line(static_cast<std::size_t>(n + 2 * radius));
      for (std::int64_t o = b; o < e; ++o) {
        const float* in = x + o * n;
        for (std::int64_t i = -radius; i < n + radius; ++i)
          line[static_cast<std::size_t>(i + radius)] = in[voxel::reflect_index(i, n)];
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
        const float* in = x + (o * n + voxel::reflect_index(i + k, n)) * inner;
        for (std::int64_t j = 0; j < inner; ++j) out[j] += wk * in[j];
      }
    }
  });
}

inline void map_intensity(const Tensor<float, Cpu>& x, const IntensityMap& m) {
  using detail::augment::map_inplace;
  using Kind = IntensityMap::Kind;
  float* v = x.data();
  const std::int64_t n = x.numel();
  // One loop per kind, so each vectorises; the arithmetic is voxel::apply_intensity's, but
  // gamma's power is the C library's powf (the Cuda kernel's rounds in double).
  const float a = m.a, b = m.b, c = m.c, lo = m.lo, hi = m.hi;
  switch (m.kind) {
    case Kind::multiply:
      map_inplace(v, n, [a](float u) { return u * a; });
      return;
    case Kind::shift_scale:
      map_inplace(v, n, [a, b](float u) { return (u - a) * b; });
      return;
    case Kind::contrast:
      if (m.clamp)
        map_inplace(v, n, [=](float u) { return std::clamp((u - a) * b + a, lo, hi); });
      else
        map_inplace(v, n, [a, b](float u) { return (u - a) * b + a; });
      return;
    case Kind::gamma: {
      constexpr float eps = 1e-7f;  // batchgenerators' epsilon
      map_inplace(v, n, [=](float u) { return std::pow((u - lo) / (a + eps), b) * a + lo; });
      return;
    }
    case Kind::restore:
      map_inplace(v, n, [a, b, c](float u) { return (u - a) * b + c; });
      return;
  }
}

inline ChannelPartials channel_partials(const Tensor<float, Cpu>& values) {
  const float* x = values.data();
  const std::int64_t n = values.numel();
  // Blocks of fixed size summed in order: the result does not depend on the thread count.
  constexpr std::int64_t block = channel_stats_block;
  const std::int64_t blocks = (n + block - 1) / block;
  ChannelPartials parts;
  parts.sums.resize(static_cast<std::size_t>(blocks));
  parts.squares.resize(parts.sums.size());
  parts.mins.resize(parts.sums.size());
  parts.maxs.resize(parts.sums.size());
  parallel_for(0, blocks, 4, [&](std::int64_t b, std::int64_t e) {
    // Eight independent running sums per block (element i goes to lane i % 8), combined in a
    // fixed order: the loop vectorises without reassociating anything, so the result stays
    // the same on any thread count and any instruction set.
    constexpr std::int64_t lanes = voxel::stats_lanes;
    for (std::int64_t k = b; k < e; ++k) {
      const std::int64_t begin = k * block, end = std::min(n, (k + 1) * block);
      double s[lanes] = {}, q[lanes] = {};
      float lo[lanes], hi[lanes];
      for (std::int64_t l = 0; l < lanes; ++l) lo[l] = hi[l] = x[begin];
      std::int64_t i = begin;
      for (; i + lanes <= end; i += lanes)
        for (std::int64_t l = 0; l < lanes; ++l) {
          const float v = x[i + l];
          s[l] += v;
          q[l] += static_cast<double>(v) * v;
          lo[l] = std::min(lo[l], v);
          hi[l] = std::max(hi[l], v);
        }
      for (; i < end; ++i) {
        s[0] += x[i];
        q[0] += static_cast<double>(x[i]) * x[i];
        lo[0] = std::min(lo[0], x[i]);
        hi[0] = std::max(hi[0], x[i]);
      }
      for (std::int64_t l = 1; l < lanes; ++l) {
        s[0] += s[l];
        q[0] += q[l];
        lo[0] = std::min(lo[0], lo[l]);
        hi[0] = std::max(hi[0], hi[l]);
      }
      parts.sums[static_cast<std::size_t>(k)] = s[0];
      parts.squares[static_cast<std::size_t>(k)] = q[0];
      parts.mins[static_cast<std::size_t>(k)] = lo[0];
      parts.maxs[static_cast<std::size_t>(k)] = hi[0];
    }
  });
  return parts;
}

}  // namespace medseg::ops
