// Crop to the nonzero bounding box (nnU-Net's crop_to_nonzero) and put the crop back
// (restore, for predictions), and padding (constant, edge, reflect; to a minimum shape,
// centred as nnU-Net's pad_nd_image). Image versions move the origin so world positions stay.
// The box and the crop run on the tensor's backend (backends/ops.hpp); pad and restore have
// CPU kernels only, so a device tensor makes a trip to the host and back for them.
#pragma once

#include <algorithm>
#include <array>
#include <concepts>
#include <cstdint>
#include <string>
#include <vector>

#include "../backends/ops.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../io/image.hpp"
#include "resample.hpp"

namespace medseg::preprocess {

/// A box of voxels [begin, end) per spatial axis, in tensor order (D, H, W); shape() its extent.
using ops::Box;

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

/// pad and restore compute on the host: a device tensor goes down and its result comes back
/// up (what prepare_cuda.hpp does with whole images); a host tensor is used in place.
template <class T, class B>
Tensor<T, Cpu> on_host(const Tensor<T, B>& x) {
  if constexpr (std::same_as<B, Cpu>)
    return x.contiguous();
  else
    return x.template to<Cpu>();
}
template <class B, class T>
Tensor<T, B> from_host(const Tensor<T, Cpu>& x) {
  if constexpr (std::same_as<B, Cpu>)
    return x;
  else
    return x.template to<B>();
}

}  // namespace detail

template <class T, class B>
Box nonzero_box(const Tensor<T, B>& x, T background) {
  detail::spatial_extent(x.shape(), "nonzero_box");
  return ops::nonzero_box(x.contiguous(), background);
}

template <class T, class B>
Tensor<T, B> crop(const Tensor<T, B>& x, const Box& box) {
  const Extent3 e = detail::spatial_extent(x.shape(), "crop");
  for (std::size_t a = 0; a < 3; ++a)
    require(box.begin[a] >= 0 && box.begin[a] < box.end[a] && box.end[a] <= e[a], [&] {
      return ErrorInfo{.where = "preprocess::crop", .field = "box", .expected = "a non-empty box inside " + x.shape().to_string(),
                       .actual = detail::box_text(box)};
    });
  auto out = Tensor<T, B>::empty(detail::with_spatial(x.shape(), box.shape()));
  ops::crop(x.contiguous(), box, out);
  return out;
}

template <class T, class B>
Tensor<T, B> restore(const Tensor<T, B>& cropped, const Box& box, const Extent3& full, T fill) {
  const Extent3 e = detail::spatial_extent(cropped.shape(), "restore");
  for (std::size_t a = 0; a < 3; ++a)
    require(box.begin[a] >= 0 && box.end[a] <= full[a] && box.end[a] - box.begin[a] == e[a], [&] {
      return ErrorInfo{.where = "preprocess::restore", .field = "box",
                       .expected = "the box the crop " + cropped.shape().to_string() + " came from, inside [" +
                                   std::to_string(full[0]) + "," + std::to_string(full[1]) + "," +
                                   std::to_string(full[2]) + "]",
                       .actual = detail::box_text(box)};
    });
  auto out = Tensor<T, Cpu>::full(detail::with_spatial(cropped.shape(), full), fill);
  ops::paste(detail::on_host(cropped), box, out);
  return detail::from_host<B>(out);
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
        else m = ops::mirror_index(s, e[a]);
      }
      src[a][static_cast<std::size_t>(i)] = m;
    }
  }
  auto out = Tensor<T, Cpu>::empty(detail::with_spatial(x.shape(), o));
  ops::pad(detail::on_host(x), src, value, out);
  return detail::from_host<B>(out);
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
