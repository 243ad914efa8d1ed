// Crop to the nonzero bounding box (nnU-Net's crop_to_nonzero) and put the crop back
// (restore, for predictions), and padding (constant, edge, reflect; to a minimum shape,
// centred as nnU-Net's pad_nd_image). Image versions move the origin so world positions stay.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor.hpp"
#include "../io/image.hpp"
#include "resample.hpp"

namespace medseg::preprocess {

/// A box of voxels [begin, end) per spatial axis, in tensor order (D, H, W).
struct Box {
  Extent3 begin{}, end{};
  Extent3 shape() const { return {end[0] - begin[0], end[1] - begin[1], end[2] - begin[2]}; }
  friend bool operator==(const Box&, const Box&) = default;
};

/// The smallest box holding every element of x (any channel of [C,D,H,W]) that differs from
/// `background`; the whole grid when there is none, so cropping to it is then a no-op.
template <class T, class B>
Box nonzero_box(const Tensor<T, B>& x, T background = T(0));

/// The voxels of `box` (every channel), as a new contiguous tensor.
template <class T, class B>
Tensor<T, B> crop(const Tensor<T, B>& x, const Box& box);

/// The inverse of crop: a tensor of spatial shape `full` filled with `fill`, with `cropped`
/// written back at `box`. restore(crop(x, b), b, shape) == x inside b.
template <class T, class B>
Tensor<T, B> restore(const Tensor<T, B>& cropped, const Box& box, const Extent3& full, T fill = T(0));

enum class PadMode {
  constant,  // numpy.pad mode='constant'
  edge,      // repeat the border voxel (numpy 'edge')
  reflect,   // mirror without repeating the border (numpy 'reflect', scipy 'mirror')
};

/// Voxels added before and after each spatial axis (D, H, W).
struct Padding {
  Extent3 before{}, after{};
};

/// x padded by `padding` in `mode` (constant uses `value`).
template <class T, class B>
Tensor<T, B> pad(const Tensor<T, B>& x, const Padding& padding, PadMode mode = PadMode::constant, T value = T(0));

/// The padding that brings `shape` to at least `minimum`, split as nnU-Net does: half
/// before (rounded down), the rest after.
Padding padding_to(const Extent3& shape, const Extent3& minimum);

/// Image versions: the origin moves with the first voxel, so every voxel keeps its world
/// position.
template <class T>
io::Image<T> crop(const io::Image<T>& image, const Box& box);
template <class T>
io::Image<T> pad(const io::Image<T>& image, const Padding& padding, PadMode mode = PadMode::constant, T value = T(0));

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

inline Extent3 spatial_extent(const Shape& s, const char* where) {
  require(s.rank() == 3 || s.rank() == 4, [&] {
    return ErrorInfo{.where = std::string("preprocess::") + where, .field = "input shape",
                     .expected = "[D,H,W] or [C,D,H,W]", .actual = s.to_string()};
  });
  const int r = s.rank();
  return {s[r - 3], s[r - 2], s[r - 1]};
}

inline Shape with_spatial(const Shape& s, const Extent3& e) {
  return s.rank() == 4 ? Shape{s[0], e[0], e[1], e[2]} : Shape{e[0], e[1], e[2]};
}

inline std::string box_text(const Box& b) {
  return "[" + std::to_string(b.begin[0]) + ":" + std::to_string(b.end[0]) + "," + std::to_string(b.begin[1]) + ":" +
         std::to_string(b.end[1]) + "," + std::to_string(b.begin[2]) + ":" + std::to_string(b.end[2]) + "]";
}

/// Copies the box `from` of src (spatial extent `src_e`) to the box `to` of dst (extent
/// `dst_e`), every channel; both boxes have the same shape.
template <class T>
void copy_box(const T* src, const Extent3& src_e, const Extent3& from, T* dst, const Extent3& dst_e,
              const Extent3& to, const Extent3& size, std::int64_t channels) {
  const std::int64_t rows = channels * size[0] * size[1];
  parallel_for(0, rows, 64, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t r = b; r < e; ++r) {
      const std::int64_t c = r / (size[0] * size[1]);
      const std::int64_t d = (r / size[1]) % size[0], h = r % size[1];
      const T* s = src + ((c * src_e[0] + from[0] + d) * src_e[1] + from[1] + h) * src_e[2] + from[2];
      T* o = dst + ((c * dst_e[0] + to[0] + d) * dst_e[1] + to[1] + h) * dst_e[2] + to[2];
      std::memcpy(o, s, static_cast<std::size_t>(size[2]) * sizeof(T));
    }
  });
}

}  // namespace detail

template <class T, class B>
Box nonzero_box(const Tensor<T, B>& x, T background) {
  static_assert(B::is_host, "medseg::preprocess::nonzero_box has no implementation for this backend: for Cuda "
                            "tensors include medseg/cuda.hpp and link medseg::cuda");
  const Extent3 e = detail::spatial_extent(x.shape(), "nonzero_box");
  const Tensor<T, B> c = x.contiguous();
  const std::int64_t channels = x.rank() == 4 ? x.size(0) : 1;
  // Per slice d: the extent of the nonzero rows and columns, then combined.
  std::vector<Box> per_slice(static_cast<std::size_t>(e[0]));
  parallel_for(0, e[0], 1, [&](std::int64_t b, std::int64_t end) {
    for (std::int64_t d = b; d < end; ++d) {
      Box s{{d, e[1], e[2]}, {d, -1, -1}};
      for (std::int64_t ch = 0; ch < channels; ++ch)
        for (std::int64_t h = 0; h < e[1]; ++h) {
          const T* row = c.data() + ((ch * e[0] + d) * e[1] + h) * e[2];
          std::int64_t first = e[2], last = -1;
          for (std::int64_t w = 0; w < e[2]; ++w)
            if (row[w] != background) {
              first = w;
              break;
            }
          if (first == e[2]) continue;
          for (std::int64_t w = e[2] - 1; w >= first; --w)
            if (row[w] != background) {
              last = w;
              break;
            }
          s.begin[1] = std::min(s.begin[1], h);
          s.end[1] = std::max(s.end[1], h);
          s.begin[2] = std::min(s.begin[2], first);
          s.end[2] = std::max(s.end[2], last);
          s.end[0] = d + 1;
        }
      per_slice[static_cast<std::size_t>(d)] = s;
    }
  });
  Box box{{e[0], e[1], e[2]}, {-1, -1, -1}};
  for (const auto& s : per_slice) {
    if (s.end[1] < 0) continue;
    box.begin[0] = std::min(box.begin[0], s.begin[0]);
    box.end[0] = std::max(box.end[0], s.end[0]);
    for (int a = 1; a < 3; ++a) {
      const auto i = static_cast<std::size_t>(a);
      box.begin[i] = std::min(box.begin[i], s.begin[i]);
      box.end[i] = std::max(box.end[i], s.end[i] + 1);
    }
  }
  if (box.end[0] < 0) return Box{{0, 0, 0}, e};
  return box;
}

template <class T, class B>
Tensor<T, B> crop(const Tensor<T, B>& x, const Box& box) {
  static_assert(B::is_host, "medseg::preprocess::crop has no implementation for this backend: for Cuda "
                            "tensors include medseg/cuda.hpp and link medseg::cuda");
  const Extent3 e = detail::spatial_extent(x.shape(), "crop");
  for (std::size_t a = 0; a < 3; ++a)
    require(box.begin[a] >= 0 && box.begin[a] < box.end[a] && box.end[a] <= e[a], [&] {
      return ErrorInfo{.where = "preprocess::crop", .field = "box", .expected = "a non-empty box inside " + x.shape().to_string(),
                       .actual = detail::box_text(box)};
    });
  const Tensor<T, B> c = x.contiguous();
  const std::int64_t channels = x.rank() == 4 ? x.size(0) : 1;
  auto out = Tensor<T, B>::empty(detail::with_spatial(x.shape(), box.shape()));
  detail::copy_box(c.data(), e, box.begin, out.data(), box.shape(), {0, 0, 0}, box.shape(), channels);
  return out;
}

template <class T, class B>
Tensor<T, B> restore(const Tensor<T, B>& cropped, const Box& box, const Extent3& full, T fill) {
  static_assert(B::is_host, "medseg::preprocess::restore has no implementation for this backend yet");
  const Extent3 e = detail::spatial_extent(cropped.shape(), "restore");
  for (std::size_t a = 0; a < 3; ++a)
    require(box.begin[a] >= 0 && box.end[a] <= full[a] && box.end[a] - box.begin[a] == e[a], [&] {
      return ErrorInfo{.where = "preprocess::restore", .field = "box",
                       .expected = "the box the crop " + cropped.shape().to_string() + " came from, inside [" +
                                   std::to_string(full[0]) + "," + std::to_string(full[1]) + "," +
                                   std::to_string(full[2]) + "]",
                       .actual = detail::box_text(box)};
    });
  const Tensor<T, B> c = cropped.contiguous();
  auto out = Tensor<T, B>::full(detail::with_spatial(cropped.shape(), full), fill);
  const std::int64_t channels = cropped.rank() == 4 ? cropped.size(0) : 1;
  detail::copy_box(c.data(), e, {0, 0, 0}, out.data(), full, box.begin, e, channels);
  return out;
}

inline Padding padding_to(const Extent3& shape, const Extent3& minimum) {
  Padding p;
  for (std::size_t a = 0; a < 3; ++a) {
    const std::int64_t extra = std::max<std::int64_t>(0, minimum[a] - shape[a]);
    p.before[a] = extra / 2;
    p.after[a] = extra - extra / 2;
  }
  return p;
}

template <class T, class B>
Tensor<T, B> pad(const Tensor<T, B>& x, const Padding& padding, PadMode mode, T value) {
  static_assert(B::is_host, "medseg::preprocess::pad has no implementation for this backend yet");
  const Extent3 e = detail::spatial_extent(x.shape(), "pad");
  Extent3 o{};
  for (std::size_t a = 0; a < 3; ++a) {
    require(padding.before[a] >= 0 && padding.after[a] >= 0, [&] {
      return ErrorInfo{.where = "preprocess::pad", .field = std::string("padding of axis ") + detail::axis_name(static_cast<int>(a)),
                       .expected = "non-negative amounts",
                       .actual = std::to_string(padding.before[a]) + " before, " + std::to_string(padding.after[a]) + " after"};
    });
    o[a] = e[a] + padding.before[a] + padding.after[a];
  }
  // Per axis, the source index of every output index (-1: the constant value).
  std::array<std::vector<std::int64_t>, 3> src;
  for (std::size_t a = 0; a < 3; ++a) {
    src[a].resize(static_cast<std::size_t>(o[a]));
    for (std::int64_t i = 0; i < o[a]; ++i) {
      const std::int64_t s = i - padding.before[a];
      std::int64_t m = s;
      if (s < 0 || s >= e[a]) {
        if (mode == PadMode::constant) m = -1;
        else if (mode == PadMode::edge) m = std::clamp<std::int64_t>(s, 0, e[a] - 1);
        else m = detail::mirror_index(s, e[a]);
      }
      src[a][static_cast<std::size_t>(i)] = m;
    }
  }
  const Tensor<T, B> c = x.contiguous();
  auto out = Tensor<T, B>::empty(detail::with_spatial(x.shape(), o));
  const std::int64_t channels = x.rank() == 4 ? x.size(0) : 1;
  parallel_for(0, channels * o[0] * o[1], 64, [&](std::int64_t b, std::int64_t end) {
    for (std::int64_t r = b; r < end; ++r) {
      const std::int64_t ch = r / (o[0] * o[1]), d = (r / o[1]) % o[0], h = r % o[1];
      T* row = out.data() + r * o[2];
      const std::int64_t sd = src[0][static_cast<std::size_t>(d)], sh = src[1][static_cast<std::size_t>(h)];
      if (sd < 0 || sh < 0) {
        std::fill(row, row + o[2], value);
        continue;
      }
      const T* in = c.data() + ((ch * e[0] + sd) * e[1] + sh) * e[2];
      for (std::int64_t w = 0; w < o[2]; ++w) {
        const std::int64_t sw = src[2][static_cast<std::size_t>(w)];
        row[w] = sw < 0 ? value : in[sw];
      }
    }
  });
  return out;
}

template <class T>
io::Image<T> crop(const io::Image<T>& image, const Box& box) {
  io::Image<T> r{crop(image.voxels, box), image.geometry};
  r.geometry.origin = image.geometry.index_to_world(
      {static_cast<double>(box.begin[2]), static_cast<double>(box.begin[1]), static_cast<double>(box.begin[0])});
  return r;
}

template <class T>
io::Image<T> pad(const io::Image<T>& image, const Padding& padding, PadMode mode, T value) {
  io::Image<T> r{pad(image.voxels, padding, mode, value), image.geometry};
  r.geometry.origin = image.geometry.index_to_world({-static_cast<double>(padding.before[2]),
                                                     -static_cast<double>(padding.before[1]),
                                                     -static_cast<double>(padding.before[0])});
  return r;
}

}  // namespace medseg::preprocess
