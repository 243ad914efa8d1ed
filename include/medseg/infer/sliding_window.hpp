// Sliding-window inference over a whole volume, as nnU-Net v2 predicts: windows of the
// training patch size at nnU-Net's positions, Gaussian importance weighting (sigma = roi/8)
// so window borders count less, mirroring test-time augmentation, and padding of images
// smaller than a window. Works with any predictor: a callable from a batch of windows to logits.
#pragma once

#include <algorithm>
#include <array>
#include <cfenv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor.hpp"

namespace medseg::infer {

using Index3 = std::array<std::int64_t, 3>;  // (D, H, W)

/// How overlapping windows are weighted where they meet.
enum class Blend {
  gaussian,  // nnU-Net: a Gaussian centred on the window, sigma = roi * sigma_scale
  constant,  // every voxel of every window counts the same (MONAI's default)
};

/// How an image smaller than the window is padded (symmetrically, the extra voxel after, as
/// nnU-Net's pad_nd_image and MONAI do). The padding is cropped off the result.
enum class PadMode {
  constant,  // pad_value (0: MONAI's and nnU-Net's default)
  edge,      // the nearest image voxel (numpy mode="edge")
};

enum class Output {
  probabilities,  // softmax over classes of the blended logits (nnU-Net's order)
  logits,         // the blended logits themselves
};

struct SlidingWindowOptions {
  Index3 roi{128, 128, 128};  // window size: the training patch size
  /// Fraction of a window shared with its neighbour; nnU-Net's tile_step_size = 1 - overlap.
  double overlap = 0.5;
  Blend blend = Blend::gaussian;
  double sigma_scale = 1.0 / 8;  // nnU-Net's compute_gaussian(sigma_scale=1/8)
  std::int64_t batch = 1;        // windows per predict call (MONAI's sw_batch_size)
  PadMode pad = PadMode::constant;
  float pad_value = 0.0f;
  /// Test-time mirroring over a subset of {0, 1, 2} = (D, H, W): every one of the 2^k flip
  /// combinations is predicted and the unflipped logits averaged (nnU-Net's mirror_axes).
  std::vector<int> mirror_axes{};
  Output output = Output::probabilities;
};

/// Start offsets of the windows along one axis of `size` voxels (size >= roi), as nnU-Net's
/// compute_steps_for_sliding_window: n = ceil((size - roi) / (roi (1 - overlap))) + 1 windows,
/// evenly spread from 0 to size - roi, each start rounded half to even (np.round).
///   window_starts(17, 10, 0.5) == {0, 4, 7}
std::vector<std::int64_t> window_starts(std::int64_t size, std::int64_t roi, double overlap);

/// The per-voxel weight of a window, [roi]: with Blend::gaussian, nnU-Net's compute_gaussian
/// (a unit impulse at roi/2 smoothed by scipy's gaussian_filter, truncated at 4 sigma, divided
/// by its maximum, zeros raised to the smallest nonzero weight so no voxel has weight 0), in
/// float32 where nnU-Net uses float16; with Blend::constant, ones.
Tensor<float, Cpu> importance_map(const Index3& roi, Blend blend = Blend::gaussian, double sigma_scale = 1.0 / 8);

/// Predicts a whole image window by window.
/// image: [C,D,H,W] or [1,C,D,H,W]. predict: any callable taking `const Tensor<float>&`
/// [n,C,rd,rh,rw] (n <= batch) and returning logits [n,K,rd,rh,rw]; it must not keep its
/// argument (the buffer is reused for the next windows unless it is still shared).
/// Returns [K,D,H,W]: softmax probabilities, or the blended logits, on the image's grid:
///   out = sum_windows w * mean_flips(logits) / sum_windows w   (then softmax).
///   auto probs = infer::sliding_window(image, [&](const Tensor<float>& x) { return net.forward(x); },
///                                      {.roi = {128, 128, 128}, .batch = 2, .mirror_axes = {0, 1, 2}});
template <class Predict>
Tensor<float, Cpu> sliding_window(const Tensor<float, Cpu>& image, Predict&& predict,
                                  const SlidingWindowOptions& options);

/// The class of largest score per voxel, [K,D,H,W] -> [D,H,W] (ties: the lower class, as
/// numpy.argmax). K must be at most 256.
Tensor<std::uint8_t, Cpu> argmax(const Tensor<float, Cpu>& scores);

// ----------------------------------------------------------------------------------------
// Implementation

inline std::vector<std::int64_t> window_starts(std::int64_t size, std::int64_t roi, double overlap) {
  require(roi >= 1 && size >= roi, [&] {
    return ErrorInfo{.where = "infer::window_starts", .field = "size", .expected = str("at least the window, ", roi),
                     .actual = str(size)};
  });
  const double target_step = static_cast<double>(roi) * (1.0 - overlap);
  const auto n = static_cast<std::int64_t>(std::ceil(static_cast<double>(size - roi) / target_step)) + 1;
  std::vector<std::int64_t> starts;
  if (n <= 1) return {0};
  const double actual_step = static_cast<double>(size - roi) / static_cast<double>(n - 1);
  const int mode = std::fegetround();
  std::fesetround(FE_TONEAREST);  // nearbyint rounds half to even, as np.round
  for (std::int64_t i = 0; i < n; ++i)
    starts.push_back(static_cast<std::int64_t>(std::nearbyint(actual_step * static_cast<double>(i))));
  std::fesetround(mode);
  return starts;
}

inline Tensor<float, Cpu> importance_map(const Index3& roi, Blend blend, double sigma_scale) {
  for (std::size_t a = 0; a < 3; ++a)
    require(roi[a] >= 1, [&] {
      return ErrorInfo{.where = "infer::importance_map", .field = str("roi[", a, "]"), .expected = ">= 1",
                       .actual = str(roi[a])};
    });
  auto w = Tensor<float, Cpu>::empty({roi[0], roi[1], roi[2]});
  if (blend == Blend::constant) {
    w.fill(1.0f);
    return w;
  }
  // gaussian_filter of an impulse is the outer product of the 1-D kernels around it; after
  // dividing by the maximum (the centre) each factor is exp(-d^2 / 2 sigma^2) inside the
  // kernel radius int(4 sigma + 0.5) and 0 beyond it.
  std::array<std::vector<double>, 3> f;
  for (std::size_t a = 0; a < 3; ++a) {
    const double sigma = static_cast<double>(roi[a]) * sigma_scale;
    const auto radius = static_cast<std::int64_t>(4.0 * sigma + 0.5);
    const std::int64_t centre = roi[a] / 2;
    for (std::int64_t i = 0; i < roi[a]; ++i) {
      const auto d = static_cast<double>(i - centre);
      f[a].push_back(std::abs(i - centre) <= radius ? std::exp(-0.5 * d * d / (sigma * sigma)) : 0.0);
    }
  }
  float smallest = std::numeric_limits<float>::infinity();
  for (std::int64_t z = 0; z < roi[0]; ++z)
    for (std::int64_t y = 0; y < roi[1]; ++y)
      for (std::int64_t x = 0; x < roi[2]; ++x) {
        const auto v = static_cast<float>(f[0][static_cast<std::size_t>(z)] * f[1][static_cast<std::size_t>(y)] *
                                          f[2][static_cast<std::size_t>(x)]);
        w.data()[(z * roi[1] + y) * roi[2] + x] = v;
        if (v > 0) smallest = std::min(smallest, v);
      }
  for (std::int64_t i = 0; i < w.numel(); ++i)
    if (w.data()[i] == 0.0f) w.data()[i] = smallest;
  return w;
}

inline Tensor<std::uint8_t, Cpu> argmax(const Tensor<float, Cpu>& scores) {
  require(scores.defined() && scores.rank() == 4 && scores.size(0) >= 1 && scores.size(0) <= 256, [&] {
    return ErrorInfo{.where = "infer::argmax", .field = "scores", .expected = "[K,D,H,W] with 1 <= K <= 256",
                     .actual = scores.defined() ? scores.shape().to_string() : "an undefined tensor"};
  });
  const Tensor<float, Cpu> s = scores.contiguous();
  const std::int64_t K = s.size(0), V = s.numel() / K;
  auto out = Tensor<std::uint8_t, Cpu>::empty({s.size(1), s.size(2), s.size(3)});
  parallel_for(0, V, 1 << 14, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t v = b; v < e; ++v) {
      float best = s.data()[v];
      std::int64_t arg = 0;
      for (std::int64_t k = 1; k < K; ++k)
        if (const float x = s.data()[k * V + v]; x > best) {
          best = x;
          arg = k;
        }
      out.data()[v] = static_cast<std::uint8_t>(arg);
    }
  });
  return out;
}

namespace detail {

/// A [C, D', H', W'] copy of `image` padded to at least `roi` per axis; `lo` the padding
/// before. The image itself (contiguous) when no axis needs padding.
inline Tensor<float, Cpu> pad_to_window(const Tensor<float, Cpu>& image, const Index3& roi, PadMode mode, float value,
                                        Index3& lo) {
  const Index3 size{image.size(1), image.size(2), image.size(3)};
  Index3 padded{};
  bool any = false;
  for (std::size_t a = 0; a < 3; ++a) {
    padded[a] = std::max(size[a], roi[a]);
    lo[a] = (padded[a] - size[a]) / 2;
    any |= padded[a] != size[a];
  }
  if (!any) return image.contiguous();
  const Tensor<float, Cpu> src = image.contiguous();
  const std::int64_t C = src.size(0);
  auto out = Tensor<float, Cpu>::empty({C, padded[0], padded[1], padded[2]});
  auto clamp = [](std::int64_t i, std::int64_t n) { return std::min(std::max<std::int64_t>(i, 0), n - 1); };
  parallel_for(0, C * padded[0], 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t cz = b; cz < e; ++cz) {
      const std::int64_t c = cz / padded[0], z = cz % padded[0] - lo[0];
      for (std::int64_t y0 = 0; y0 < padded[1]; ++y0) {
        const std::int64_t y = y0 - lo[1];
        float* row = out.data() + (cz * padded[1] + y0) * padded[2];
        const bool inside_zy = z >= 0 && z < size[0] && y >= 0 && y < size[1];
        for (std::int64_t x0 = 0; x0 < padded[2]; ++x0) {
          const std::int64_t x = x0 - lo[2];
          if (mode == PadMode::constant && !(inside_zy && x >= 0 && x < size[2])) {
            row[x0] = value;
            continue;
          }
          const std::int64_t sz = clamp(z, size[0]), sy = clamp(y, size[1]), sx = clamp(x, size[2]);
          row[x0] = src.data()[((c * size[0] + sz) * size[1] + sy) * size[2] + sx];
        }
      }
    }
  });
  return out;
}

/// `buffer` when it has `shape` and nobody else holds it, else a fresh tensor of `shape`:
/// the window buffers live across windows unless a predictor kept one.
inline Tensor<float, Cpu> reuse_or_allocate(const Tensor<float, Cpu>& buffer, const Shape& shape) {
  if (buffer.defined() && buffer.shape() == shape && buffer.use_count() == 1) return buffer;
  return Tensor<float, Cpu>::empty(shape);
}

/// dst[n,c] = src[n,c] flipped along the axes whose bit is set in `flips` (bit a = axis a of
/// (D, H, W)); with `accumulate`, dst += that instead. Flips are their own inverse.
inline void flip_copy(const Tensor<float, Cpu>& src, const Tensor<float, Cpu>& dst, unsigned flips, bool accumulate) {
  const std::int64_t planes = src.size(0) * src.size(1);
  const std::int64_t D = src.size(2), H = src.size(3), W = src.size(4);
  parallel_for(0, planes * D, 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t pz = b; pz < e; ++pz) {
      const std::int64_t p = pz / D, z = pz % D;
      const std::int64_t sz = (flips & 1u) ? D - 1 - z : z;
      for (std::int64_t y = 0; y < H; ++y) {
        const std::int64_t sy = (flips & 2u) ? H - 1 - y : y;
        const float* s = src.data() + ((p * D + sz) * H + sy) * W;
        float* d = dst.data() + ((p * D + z) * H + y) * W;
        if (flips & 4u) {
          for (std::int64_t x = 0; x < W; ++x) d[x] = accumulate ? d[x] + s[W - 1 - x] : s[W - 1 - x];
        } else {
          for (std::int64_t x = 0; x < W; ++x) d[x] = accumulate ? d[x] + s[x] : s[x];
        }
      }
    }
  });
}

/// Calls predict and checks its result is [n, K, roi] logits (K fixed by the first call).
template <class Predict>
Tensor<float, Cpu> predict_checked(Predict& predict, const Tensor<float, Cpu>& x, const Index3& roi,
                                   std::int64_t& K) {
  Tensor<float, Cpu> y = predict(x);
  const std::int64_t n = x.size(0);
  const bool ok = y.defined() && y.rank() == 5 && y.size(0) == n && y.size(2) == roi[0] && y.size(3) == roi[1] &&
                  y.size(4) == roi[2] && y.size(1) >= 1 && (K == 0 || y.size(1) == K);
  require(ok, [&] {
    return ErrorInfo{.where = "infer::sliding_window", .field = "predict output",
                     .expected = str("[", n, ",", K == 0 ? std::string("K") : std::to_string(K), ",", roi[0], ",",
                                     roi[1], ",", roi[2], "] logits for input ", x.shape().to_string()),
                     .actual = y.defined() ? y.shape().to_string() : "an undefined tensor"};
  });
  K = y.size(1);
  return y.contiguous();
}

inline void check_options(const Tensor<float, Cpu>& image, const SlidingWindowOptions& o) {
  constexpr const char* where = "infer::sliding_window";
  require(image.defined() && (image.rank() == 4 || (image.rank() == 5 && image.size(0) == 1)), [&] {
    return ErrorInfo{.where = where, .field = "image", .expected = "[C,D,H,W] or [1,C,D,H,W]",
                     .actual = image.defined() ? image.shape().to_string() : "an undefined tensor"};
  });
  for (std::size_t a = 0; a < 3; ++a)
    require(o.roi[a] >= 1, [&] {
      return ErrorInfo{.where = where, .field = str("roi[", a, "]"), .expected = ">= 1", .actual = str(o.roi[a])};
    });
  require(o.overlap >= 0 && o.overlap < 1, [&] {
    return ErrorInfo{.where = where, .field = "overlap", .expected = "in [0, 1)", .actual = str(o.overlap)};
  });
  require(o.batch >= 1, [&] {
    return ErrorInfo{.where = where, .field = "batch", .expected = ">= 1", .actual = str(o.batch)};
  });
  require(o.sigma_scale > 0 && std::isfinite(o.sigma_scale), [&] {
    return ErrorInfo{.where = where, .field = "sigma_scale", .expected = "> 0", .actual = str(o.sigma_scale)};
  });
  unsigned seen = 0;
  for (int a : o.mirror_axes) {
    require(a >= 0 && a <= 2 && !(seen & (1u << a)), [&] {
      return ErrorInfo{.where = where, .field = "mirror_axes", .expected = "distinct axes of {0, 1, 2} (D, H, W)",
                       .actual = str(a)};
    });
    seen |= 1u << a;
  }
}

/// nnU-Net's order of flip combinations: itertools.combinations of the mirror axes by size.
inline std::vector<unsigned> flip_combinations(const std::vector<int>& axes) {
  std::vector<unsigned> out;
  const auto k = axes.size();
  for (std::size_t size = 1; size <= k; ++size) {
    std::vector<std::size_t> idx(size);
    for (std::size_t i = 0; i < size; ++i) idx[i] = i;
    for (;;) {
      unsigned mask = 0;
      for (std::size_t i : idx) mask |= 1u << axes[i];
      out.push_back(mask);
      std::size_t i = size;  // advance the lexicographic combination
      while (i > 0 && idx[i - 1] == k - size + i - 1) --i;
      if (i == 0) break;
      ++idx[i - 1];
      for (std::size_t j = i; j < size; ++j) idx[j] = idx[j - 1] + 1;
    }
  }
  return out;
}

}  // namespace detail

template <class Predict>
Tensor<float, Cpu> sliding_window(const Tensor<float, Cpu>& image_in, Predict&& predict,
                                  const SlidingWindowOptions& o) {
  detail::check_options(image_in, o);
  const Tensor<float, Cpu> image = image_in.rank() == 5 ? image_in[0] : image_in;
  const std::int64_t C = image.size(0);
  const Index3 size{image.size(1), image.size(2), image.size(3)};
  const Index3& roi = o.roi;
  Index3 lo{};
  const Tensor<float, Cpu> data = detail::pad_to_window(image, roi, o.pad, o.pad_value, lo);
  const Index3 padded{data.size(1), data.size(2), data.size(3)};
  const std::int64_t plane = padded[1] * padded[2], volume = padded[0] * plane;

  std::vector<Index3> windows;
  {
    const auto s0 = window_starts(padded[0], roi[0], o.overlap), s1 = window_starts(padded[1], roi[1], o.overlap),
               s2 = window_starts(padded[2], roi[2], o.overlap);
    for (auto z : s0)
      for (auto y : s1)
        for (auto x : s2) windows.push_back({z, y, x});
  }
  const Tensor<float, Cpu> weight = importance_map(roi, o.blend, o.sigma_scale);
  const std::vector<unsigned> flips = detail::flip_combinations(o.mirror_axes);
  const float flip_scale = 1.0f / static_cast<float>(flips.size() + 1);

  // The sum of the weights each voxel receives: the same for every class, so computed once.
  auto weight_sum = Tensor<float, Cpu>::zeros({padded[0], padded[1], padded[2]});
  for (const auto& w : windows)
    parallel_for(0, roi[0] * roi[1], std::max<std::int64_t>(1, 2048 / roi[2]), [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t zy = b; zy < e; ++zy) {
        const std::int64_t z = zy / roi[1], y = zy % roi[1];
        float* dst = weight_sum.data() + (w[0] + z) * plane + (w[1] + y) * padded[2] + w[2];
        const float* src = weight.data() + zy * roi[2];
        for (std::int64_t x = 0; x < roi[2]; ++x) dst[x] += src[x];
      }
    });

  std::int64_t K = 0;
  Tensor<float, Cpu> accum, input, flipped, mirror_sum;
  for (std::size_t first = 0; first < windows.size(); first += static_cast<std::size_t>(o.batch)) {
    const auto n = static_cast<std::int64_t>(std::min<std::size_t>(static_cast<std::size_t>(o.batch), windows.size() - first));
    input = detail::reuse_or_allocate(input, {n, C, roi[0], roi[1], roi[2]});
    // Gather: one (window, channel, z) row block per task.
    parallel_for(0, n * C * roi[0], 1, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t t = b; t < e; ++t) {
        const std::int64_t j = t / (C * roi[0]), c = (t / roi[0]) % C, z = t % roi[0];
        const Index3& w = windows[first + static_cast<std::size_t>(j)];
        for (std::int64_t y = 0; y < roi[1]; ++y) {
          const float* src = data.data() + c * volume + (w[0] + z) * plane + (w[1] + y) * padded[2] + w[2];
          std::copy(src, src + roi[2], input.data() + ((t * roi[1]) + y) * roi[2]);
        }
      }
    });
    Tensor<float, Cpu> logits = detail::predict_checked(predict, input, roi, K);
    if (!accum.defined()) accum = Tensor<float, Cpu>::zeros({K, padded[0], padded[1], padded[2]});
    if (!flips.empty()) {
      mirror_sum = detail::reuse_or_allocate(mirror_sum, logits.shape());
      mirror_sum.copy_from(logits);
      for (unsigned f : flips) {
        flipped = detail::reuse_or_allocate(flipped, input.shape());
        detail::flip_copy(input, flipped, f, false);
        detail::flip_copy(detail::predict_checked(predict, flipped, roi, K), mirror_sum, f, true);
      }
      logits = mirror_sum;
    }
    const float scale = flips.empty() ? 1.0f : flip_scale;
    // Accumulate: tasks are (class, z) planes of one window at a time, so no two tasks
    // touch the same voxel; windows go in order, so the sums do not depend on threads.
    for (std::int64_t j = 0; j < n; ++j) {
      const Index3& w = windows[first + static_cast<std::size_t>(j)];
      parallel_for(0, K * roi[0], 1, [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t kz = b; kz < e; ++kz) {
          const std::int64_t k = kz / roi[0], z = kz % roi[0];
          for (std::int64_t y = 0; y < roi[1]; ++y) {
            float* dst = accum.data() + k * volume + (w[0] + z) * plane + (w[1] + y) * padded[2] + w[2];
            const float* src = logits.data() + ((j * K + k) * roi[0] + z) * roi[1] * roi[2] + y * roi[2];
            const float* wt = weight.data() + (z * roi[1] + y) * roi[2];
            for (std::int64_t x = 0; x < roi[2]; ++x) dst[x] += wt[x] * (scale * src[x]);
          }
        }
      });
    }
  }

  // Normalise (and softmax) voxel by voxel, writing the image's own grid. Without padding
  // this happens in place and the accumulator is the result.
  const bool cropped = padded != size;
  const Tensor<float, Cpu> out =
      cropped ? Tensor<float, Cpu>::empty({K, size[0], size[1], size[2]}) : accum;
  const std::int64_t out_volume = size[0] * size[1] * size[2];
  const bool softmax = o.output == Output::probabilities;
  parallel_for(0, size[0] * size[1], std::max<std::int64_t>(1, 1024 / size[2]), [&](std::int64_t b, std::int64_t e) {
    std::vector<float> v(static_cast<std::size_t>(K));
    for (std::int64_t zy = b; zy < e; ++zy) {
      const std::int64_t z = zy / size[1], y = zy % size[1];
      for (std::int64_t x = 0; x < size[2]; ++x) {
        const std::int64_t src = (z + lo[0]) * plane + (y + lo[1]) * padded[2] + x + lo[2];
        const std::int64_t dst = zy * size[2] + x;
        const float inv = 1.0f / weight_sum.data()[src];
        float top = -std::numeric_limits<float>::infinity();
        for (std::int64_t k = 0; k < K; ++k) {
          v[static_cast<std::size_t>(k)] = accum.data()[k * volume + src] * inv;
          top = std::max(top, v[static_cast<std::size_t>(k)]);
        }
        if (softmax) {
          float sum = 0;
          for (auto& t : v) sum += (t = std::exp(t - top));
          for (auto& t : v) t /= sum;
        }
        for (std::int64_t k = 0; k < K; ++k) out.data()[k * out_volume + dst] = v[static_cast<std::size_t>(k)];
      }
    }
  });
  return out;
}

}  // namespace medseg::infer
