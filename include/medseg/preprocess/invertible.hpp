// Preprocessing for inference, and its inverse: the image steps of a deploy or prepare
// recipe run on one raw image while every geometric step (crop, resample, pad) is recorded,
// so the network's output can be taken back to the input's exact grid and geometry, as
// nnU-Net's export_prediction does: undo the padding, resample probabilities linearly,
// re-embed the crop with background probability 1 outside it.
//   auto fwd = preprocess::prepare_for_inference(raw, steps);     // fwd.image: [C,D,H,W]
//   auto probs = predict(fwd.image);                               // [K,d,h,w]
//   auto full = preprocess::invert_probabilities(probs, fwd.record);  // [K,D,H,W]
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../io/image.hpp"
#include "crop.hpp"
#include "pipeline.hpp"
#include "resample.hpp"
#include "segmentation_resample.hpp"

namespace medseg::preprocess {

/// crop_nonzero: the box taken out of a grid of extent `source`.
struct CropRecord {
  Box box{};
  Extent3 source{};
};
/// resample: from a grid of `from` voxels to `to`, on `grid`'s coordinate convention.
struct ResampleRecord {
  Extent3 from{}, to{};
  GridMode grid = GridMode::corners;
};
/// pad: `padding` added around a grid of extent `source`.
struct PadRecord {
  Padding padding{};
  Extent3 source{};
};

/// What it takes to go back from the network's grid to the raw image's.
struct InverseRecord {
  Extent3 shape{};              // the raw image's spatial extent (D, H, W)
  std::int64_t channels = 1;    // the raw image's channels
  io::Geometry geometry{};      // the raw image's geometry, restored exactly
  std::vector<std::variant<CropRecord, ResampleRecord, PadRecord>> ops{};  // in the order applied
  Extent3 network_shape{};      // the spatial extent the network sees
};

struct Forward {
  io::Image<float> image;  // [C, D, H, W], what the network sees, with its geometry
  InverseRecord record;
};

/// Runs `image_steps` (a recipe's image_ops) on `raw` ([D,H,W] or [C,D,H,W], any element
/// type) exactly as `medseg prepare` does, fused first steps included, and records the
/// geometric ones. Label-only steps and ct_normalize without statistics are errors.
Forward prepare_for_inference(const io::AnyImage& raw, const std::vector<Step>& image_steps);

/// Probabilities [K, d, h, w] on the network grid taken back to the raw grid [K, D, H, W]:
/// padding cut off, linear resampling (edges clamped on extent grids, as skimage's
/// mode='edge'), outside the crop background (channel 0) 1 and every other channel 0.
/// Probabilities that sum to 1 per voxel still do.
Tensor<float, Cpu> invert_probabilities(const Tensor<float, Cpu>& probabilities, const InverseRecord& record);

/// A label map [d, h, w] (or [1, d, h, w]) on the network grid taken back to the raw grid,
/// with the raw image's exact geometry (spacing, origin, direction): resampled per label as
/// the training labels are (nnU-Net's one-hot linear), 0 outside the crop.
io::Image<std::uint8_t> invert_labels(const Tensor<std::uint8_t, Cpu>& labels, const InverseRecord& record);

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

inline std::string extent_text(const Extent3& e) {
  return "[" + std::to_string(e[0]) + "," + std::to_string(e[1]) + "," + std::to_string(e[2]) + "]";
}

inline void check_network_grid(const Shape& s, const InverseRecord& r, const char* where, const char* field,
                               bool allow_3d) {
  const bool rank_ok = s.rank() == 4 || (allow_3d && s.rank() == 3);
  require(rank_ok && spatial_of(s) == r.network_shape, [&] {
    return ErrorInfo{.where = std::string("preprocess::") + where, .field = field,
                     .expected = std::string(allow_3d ? "[d,h,w] or [1,d,h,w]" : "[K,d,h,w]") + " with d,h,w = " +
                                 extent_text(r.network_shape) + ", the record's network grid",
                     .actual = s.to_string()};
  });
}

inline Boundary inverse_boundary(GridMode grid) { return grid == GridMode::extent ? Boundary::nearest : Boundary::mirror; }

}  // namespace detail

inline Forward prepare_for_inference(const io::AnyImage& raw, const std::vector<Step>& image_steps) {
  const std::string where = "prepare_for_inference";
  const Shape raw_shape = io::shape(raw);
  require(raw_shape.rank() == 3 || raw_shape.rank() == 4, [&] {
    return ErrorInfo{.where = where, .field = "image", .expected = "[D,H,W] or [C,D,H,W]", .actual = raw_shape.to_string()};
  });
  Forward f;
  InverseRecord& r = f.record;
  r.shape = detail::spatial_of(raw_shape);
  r.channels = raw_shape.rank() == 4 ? raw_shape[0] : 1;
  r.geometry = io::geometry(raw);

  CaseData data;
  const std::size_t fused = load_image_fused(data, raw, image_steps);
  if (fused == 2) r.ops.push_back(ResampleRecord{r.shape, detail::spatial_of(data.image.voxels.shape()), *data.image_grid});
  for (std::size_t i = fused; i < image_steps.size(); ++i) {
    const Extent3 before = detail::spatial_of(data.image.voxels.shape());
    detail::image_step(data, image_steps[i], where + ": image_ops[" + std::to_string(i) + "]");
    const Extent3 after = detail::spatial_of(data.image.voxels.shape());
    std::visit(
        [&](const auto& s) {
          using S = std::decay_t<decltype(s)>;
          if constexpr (std::is_same_v<S, ResampleStep>) r.ops.push_back(ResampleRecord{before, after, *data.image_grid});
          if constexpr (std::is_same_v<S, CropNonzeroStep>) r.ops.push_back(CropRecord{*data.crop_box, before});
          if constexpr (std::is_same_v<S, PadStep>) r.ops.push_back(PadRecord{padding_to(before, s.to), before});
        },
        image_steps[i]);
  }
  r.network_shape = detail::spatial_of(data.image.voxels.shape());
  f.image = std::move(data.image);
  if (f.image.voxels.rank() == 3) f.image.voxels = f.image.voxels.contiguous().reshape({1, r.network_shape[0], r.network_shape[1], r.network_shape[2]});
  return f;
}

inline Tensor<float, Cpu> invert_probabilities(const Tensor<float, Cpu>& probabilities, const InverseRecord& record) {
  detail::check_network_grid(probabilities.shape(), record, "invert_probabilities", "probabilities", false);
  Tensor<float, Cpu> x = probabilities.contiguous();
  for (auto op = record.ops.rbegin(); op != record.ops.rend(); ++op) {
    std::visit(
        [&](const auto& o) {
          using O = std::decay_t<decltype(o)>;
          if constexpr (std::is_same_v<O, PadRecord>) {
            const Extent3& b = o.padding.before;
            x = crop(x, Box{b, {b[0] + o.source[0], b[1] + o.source[1], b[2] + o.source[2]}});
          } else if constexpr (std::is_same_v<O, ResampleRecord>) {
            x = resize<float>(x, o.from, {.order = 1, .grid = o.grid, .boundary = detail::inverse_boundary(o.grid)});
          } else {  // CropRecord: background everywhere the crop left out
            auto full = Tensor<float, Cpu>::empty({x.size(0), o.source[0], o.source[1], o.source[2]});
            for (std::int64_t k = 0; k < x.size(0); ++k)
              full[k].copy_from(restore(x[k], o.box, o.source, k == 0 ? 1.0f : 0.0f));
            x = full;
          }
        },
        *op);
  }
  return x;
}

inline io::Image<std::uint8_t> invert_labels(const Tensor<std::uint8_t, Cpu>& labels, const InverseRecord& record) {
  detail::check_network_grid(labels.shape(), record, "invert_labels", "labels", true);
  require(labels.rank() == 3 || labels.size(0) == 1, [&] {
    return ErrorInfo{.where = "preprocess::invert_labels", .field = "labels", .expected = "one label map [d,h,w] or [1,d,h,w]",
                     .actual = labels.shape().to_string()};
  });
  Tensor<std::uint8_t, Cpu> x = labels.contiguous();
  if (x.rank() == 4) x = x.reshape({x.size(1), x.size(2), x.size(3)});
  for (auto op = record.ops.rbegin(); op != record.ops.rend(); ++op) {
    std::visit(
        [&](const auto& o) {
          using O = std::decay_t<decltype(o)>;
          if constexpr (std::is_same_v<O, PadRecord>) {
            const Extent3& b = o.padding.before;
            x = crop(x, Box{b, {b[0] + o.source[0], b[1] + o.source[1], b[2] + o.source[2]}});
          } else if constexpr (std::is_same_v<O, ResampleRecord>) {
            x = resample_segmentation(x, o.from, {.order = 1, .grid = o.grid, .boundary = detail::inverse_boundary(o.grid)});
          } else {
            x = restore(x, o.box, o.source, std::uint8_t(0));
          }
        },
        *op);
  }
  return {x, record.geometry};
}

}  // namespace medseg::preprocess
