// `medseg prepare --device cuda`: each case's image_ops and label_ops run on the GPU with the
// Cuda overloads of backends/cuda/preprocess.hpp, everything else as prepare.hpp does it
// (discovery, fingerprint, resuming, lists, dataset.json). Cases still run in parallel on the
// thread pool: each worker decodes its case (NIfTI, gzip, DICOM) on its CPU thread, stages the
// voxels through a page-locked buffer of its own, and queues the steps on its own stream (the
// per-thread default stream of backends/cuda/stream.hpp), so one case's decoding overlaps
// other cases' kernels and transfers. The GPU ops repeat the CPU's arithmetic, so the files
// are the CPU path's within float rounding (order 0, crops and label ops exactly).
//
// On the host still: reading and writing files, the dataset fingerprint (ct_normalize without
// statistics), and the steps that have no kernel (pad, keep_largest, remove_small): their
// volume goes to the host, through the CPU op, and back.
//   auto config = preprocess::load_prepare_config("prep.json");
//   auto report = preprocess::prepare_dataset_on_device(config, &std::cerr);
#pragma once

#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include "../backends/cuda/backend.hpp"
#include "../backends/cuda/device.hpp"
#include "../backends/cuda/preprocess.hpp"
#include "prepare.hpp"

namespace medseg::preprocess {

/// prepare_dataset with every case's steps on the GPU (device 0, or the current device).
/// Throws before touching the output when there is no CUDA device.
PrepareReport prepare_dataset_on_device(const PrepareConfig& config, std::ostream* progress = nullptr);

/// One case on the GPU: what prepare_dataset_on_device runs per case (a CasePreparer).
nlohmann::json prepare_case_on_device(const PrepareConfig& config, const CaseSource& source, CaseReport& report,
                                      const std::optional<CtStats>& dataset_ct);

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

/// Voxels on the device with their geometry (io::Image's device twin).
template <class T>
struct DeviceImage {
  Tensor<T, Cuda> voxels;
  io::Geometry geometry;
};

/// CaseData on the device.
struct DeviceCaseData {
  DeviceImage<float> image;
  std::optional<DeviceImage<std::int32_t>> label;
  std::optional<Box> crop_box;
  Extent3 crop_source{};
  std::optional<GridMode> image_grid;
  std::optional<CtStats> dataset_ct;
};

/// A page-locked host buffer that host tensors pass through on their way to and from the
/// device, so the copies are DMA at the bus's speed and an upload does not block the thread.
/// One per direction and thread; `ready` orders a reuse after the copy that last read it.
class PinnedStage {
 public:
  template <class T>
  Tensor<T, Cuda> upload(const Tensor<T>& host) {
    const Tensor<T> c = host.contiguous();
    const auto bytes = static_cast<std::size_t>(c.nbytes());
    if (recorded_) ready_.synchronize();  // the previous upload has left the buffer
    reserve(bytes);
    std::memcpy(buffer_->data(), c.data(), bytes);
    auto out = Tensor<T, Cuda>::empty(c.shape());
    MEDSEG_CUDA_CHECK(cudaMemcpyAsync(out.data(), buffer_->data(), bytes, cudaMemcpyHostToDevice, cuda::current_stream()));
    ready_.record(cuda::current_stream());
    recorded_ = true;
    return out;
  }

  template <class T>
  Tensor<T> download(const Tensor<T, Cuda>& device) {
    const Tensor<T, Cuda> c = device.contiguous();
    const auto bytes = static_cast<std::size_t>(c.nbytes());
    if (recorded_) ready_.synchronize();
    reserve(bytes);
    MEDSEG_CUDA_CHECK(cudaMemcpyAsync(buffer_->data(), c.data(), bytes, cudaMemcpyDeviceToHost, cuda::current_stream()));
    MEDSEG_CUDA_CHECK(cudaStreamSynchronize(cuda::current_stream()));
    auto out = Tensor<T>::empty(c.shape());
    std::memcpy(out.data(), buffer_->data(), bytes);
    return out;
  }

 private:
  /// Grows the buffer to `bytes` (page-locking is slow: a case of a dataset mostly fits the last).
  void reserve(std::size_t bytes) {
    if (buffer_ && buffer_->bytes() >= bytes) return;
    buffer_.reset();
    buffer_ = std::make_unique<cuda::PinnedBuffer>(bytes);
  }
  std::unique_ptr<cuda::PinnedBuffer> buffer_;
  cuda::Event ready_;
  bool recorded_ = false;
};

/// This thread's staging buffers: image and label uploads are in flight together.
struct ThreadStages {
  PinnedStage image_up, label_up, down;
};
inline ThreadStages& thread_stages() {
  thread_local ThreadStages stages;
  return stages;
}

/// The voxel types the device ops read as they are; others are made float on the host first
/// (which is what the CPU's loader and image_cast do to them anyway).
template <class T>
constexpr bool reads_on_device = cuda::PreprocessVoxel<T>;

/// The freshly read image on the device as float, with the leading window + resample fused
/// as load_image_fused does (the same condition, the same single pass). Returns the number
/// of steps it ran.
inline std::size_t load_image_on_device(DeviceCaseData& data, const io::AnyImage& raw, const std::vector<Step>& steps) {
  std::optional<HuWindow> window;
  if (!steps.empty()) {
    if (const auto* w = std::get_if<WindowStep>(&steps[0])) window = w->window;
    if (const auto* n = std::get_if<NormalizeStep>(&steps[0]); n && n->lo && n->hi && *n->hi > *n->lo)
      window = HuWindow{.lo = *n->lo, .hi = *n->hi};
  }
  const ResampleStep* resample = steps.size() >= 2 ? std::get_if<ResampleStep>(&steps[1]) : nullptr;
  const int rank = io::shape(raw).rank();
  const bool fused = window && resample && resample->shape && (rank == 3 || rank == 4);
  ThreadStages& stages = thread_stages();
  return std::visit(
      [&](const auto& im) -> std::size_t {
        using T = typename std::remove_cvref_t<decltype(im.voxels)>::value_type;
        // The window and resampling fused into one pass, on the voxels as uploaded.
        const auto window_and_resize = [&](const auto& x) -> std::size_t {
          const ResampleOptions options{.order = resample->order, .grid = resample->grid.value_or(GridMode::corners)};
          data.image_grid = options.grid;
          const Extent3 in = spatial_of(im.voxels.shape());
          data.image = {resize(x, *resample->shape, options, *window),
                        resized_geometry(im.geometry, in, *resample->shape, options.grid)};
          return 2;
        };
        if constexpr (reads_on_device<T>) {
          const Tensor<T, Cuda> x = stages.image_up.upload(im.voxels);
          if (!fused) {
            data.image = {map_on_device(x, {}, "prepare"), im.geometry};  // float(v), as image_cast
            return 0;
          }
          return window_and_resize(x);
        } else {
          const Tensor<float, Cuda> x = stages.image_up.upload(im.voxels.template astype<float>());
          if (!fused) {
            data.image = {x, im.geometry};
            return 0;
          }
          return window_and_resize(x);
        }
      },
      raw);
}

/// Runs a step that has no kernel on the host: the volume comes back, goes through the CPU
/// op and returns to the device.
template <class T, class F>
void on_host(DeviceImage<T>& im, F&& op) {
  ThreadStages& stages = thread_stages();
  io::Image<T> host{stages.down.download(im.voxels), im.geometry};
  host = op(std::move(host));
  im = {stages.image_up.upload(host.voxels), host.geometry};
}

inline void image_step_on_device(DeviceCaseData& c, const Step& step, const std::string& where) {
  auto& im = c.image;
  std::visit(
      [&](const auto& s) {
        using S = std::decay_t<decltype(s)>;
        if constexpr (std::is_same_v<S, WindowStep>) {
          im.voxels = hu_window(im.voxels, s.window);
        } else if constexpr (std::is_same_v<S, NormalizeStep>) {
          im.voxels = normalize_range(im.voxels, s.lo, s.hi);
        } else if constexpr (std::is_same_v<S, ClipMinMaxStep>) {
          im.voxels = clip_minmax(im.voxels, s.lo, s.hi);
        } else if constexpr (std::is_same_v<S, ZScoreStep>) {
          im.voxels = s.stats ? zscore(im.voxels, *s.stats) : zscore(im.voxels, s.nonzero);
        } else if constexpr (std::is_same_v<S, CtNormalizeStep>) {
          require(!s.from_dataset || c.dataset_ct.has_value(), [&] {
            return ErrorInfo{.where = where, .field = "ct_normalize", .expected = "mean, std, lower and upper, or a dataset fingerprint",
                             .actual = "neither", .detail = "medseg prepare computes the fingerprint itself"};
          });
          im.voxels = ct_normalize(im.voxels, s.from_dataset ? *c.dataset_ct : s.stats);
        } else if constexpr (std::is_same_v<S, ResampleStep>) {
          require(s.shape || s.spacing, [&] {
            return ErrorInfo{.where = where, .field = "resample", .expected = "a shape or a spacing for the image",
                             .actual = "neither"};
          });
          c.image_grid = s.grid.value_or(s.shape ? GridMode::corners : GridMode::extent);
          // resample_to_shape / resample_to_spacing: the same target, geometry and voxels.
          const Extent3 in = spatial_of(im.voxels.shape());
          const Extent3 target = s.shape ? *s.shape : shape_for_spacing(im.geometry, in, *s.spacing);
          const ResampleOptions options{.order = s.order, .grid = *c.image_grid};
          im = {resize(im.voxels, target, options), resized_geometry(im.geometry, in, target, options.grid)};
        } else if constexpr (std::is_same_v<S, CropNonzeroStep>) {
          c.crop_source = spatial_of(im.voxels.shape());
          c.crop_box = nonzero_box(im.voxels);
          const Box& box = *c.crop_box;
          im.geometry.origin = im.geometry.index_to_world(
              {static_cast<double>(box.begin[2]), static_cast<double>(box.begin[1]), static_cast<double>(box.begin[0])});
          im.voxels = crop(im.voxels, box);
        } else if constexpr (std::is_same_v<S, PadStep>) {
          on_host(im, [&](io::Image<float> h) { return pad(h, padding_to(spatial_of(h.voxels.shape()), s.to), s.mode, s.value); });
        } else {
          throw Error{{.where = where, .field = "op", .expected = "an image op", .actual = "a label-only op",
                       .detail = "remap, keep_largest and remove_small belong in label_ops"}};
        }
      },
      step);
}

inline void label_step_on_device(DeviceCaseData& c, const Step& step, const std::string& where) {
  auto& lb = *c.label;
  std::visit(
      [&](const auto& s) {
        using S = std::decay_t<decltype(s)>;
        if constexpr (std::is_same_v<S, ResampleStep>) {
          // label_step's grid, target and anisotropy axis, then the device resampling.
          const GridMode grid = s.grid ? *s.grid
                                : s.shape ? GridMode::corners
                                : s.spacing ? GridMode::extent
                                            : c.image_grid.value_or(GridMode::corners);
          const SegmentationResampleOptions o{
              .order = s.order, .grid = grid, .boundary = grid == GridMode::extent ? Boundary::nearest : Boundary::mirror};
          const Extent3 in = spatial_of(lb.voxels.shape());
          Extent3 target = spatial_of(c.image.voxels.shape());
          if (s.shape) target = *s.shape;
          if (s.spacing) target = shape_for_spacing(lb.geometry, in, *s.spacing);
          const io::Geometry g = resized_geometry(lb.geometry, in, target, o.grid);
          int axis = separate_axis(lb.geometry.spacing, o.anisotropy_threshold);
          if (axis < 0) axis = separate_axis(g.spacing, o.anisotropy_threshold);
          lb = {resample_segmentation(lb.voxels, target, o, axis), g};
        } else if constexpr (std::is_same_v<S, CropNonzeroStep>) {
          require(c.crop_box.has_value() && spatial_of(lb.voxels.shape()) == c.crop_source, [&] {
            return ErrorInfo{.where = where, .field = "crop_nonzero",
                             .expected = "the image's crop_nonzero before it, on a label of the image's shape then",
                             .actual = "label " + lb.voxels.shape().to_string()};
          });
          const Box& box = *c.crop_box;
          lb.geometry.origin = lb.geometry.index_to_world(
              {static_cast<double>(box.begin[2]), static_cast<double>(box.begin[1]), static_cast<double>(box.begin[0])});
          lb.voxels = crop(lb.voxels, box);
        } else if constexpr (std::is_same_v<S, PadStep>) {
          on_host(lb, [&](io::Image<std::int32_t> h) {
            return pad(h, padding_to(spatial_of(h.voxels.shape()), s.to), s.mode, static_cast<std::int32_t>(s.value));
          });
        } else if constexpr (std::is_same_v<S, RemapStep>) {
          LabelMapping<std::int32_t> m;
          for (auto [a, b] : s.mapping) m.emplace_back(static_cast<std::int32_t>(a), static_cast<std::int32_t>(b));
          std::optional<std::int32_t> u;
          if (s.unmapped) u = static_cast<std::int32_t>(*s.unmapped);
          lb.voxels = remap_labels(lb.voxels, m, u);
        } else if constexpr (std::is_same_v<S, LargestComponentStep>) {
          on_host(lb, [&](io::Image<std::int32_t> h) {
            h.voxels = keep_largest_component(h.voxels, s.connectivity, s.of);
            return h;
          });
        } else if constexpr (std::is_same_v<S, MinVolumeStep>) {
          on_host(lb, [&](io::Image<std::int32_t> h) {
            h.voxels = remove_small_components(h.voxels, s.min_voxels, s.connectivity);
            return h;
          });
        } else {
          throw Error{{.where = where, .field = "op", .expected = "a label op (resample, crop_nonzero, pad, remap, "
                                                                  "keep_largest, remove_small)",
                       .actual = "an intensity op", .detail = "intensity ops belong in image_ops"}};
        }
      },
      step);
}

}  // namespace detail

inline nlohmann::json prepare_case_on_device(const PrepareConfig& config, const CaseSource& src, CaseReport& report,
                                             const std::optional<CtStats>& dataset_ct) {
  const std::string where = "case " + src.name;
  detail::DeviceCaseData c;
  c.dataset_ct = dataset_ct;
  detail::ThreadStages& stages = detail::thread_stages();
  std::size_t done_steps = 0;
  io::Geometry original_geometry;
  {
    // Decoding: on this CPU thread, while the GPU runs other threads' cases.
    const io::AnyImage raw = io::read_image(src.image);
    original_geometry = io::geometry(raw);
    report.input_shape = io::shape(raw);
    report.input_spacing = io::geometry(raw).spacing;
    if (src.label) {
      const io::Image<std::int32_t> label = io::image_cast<std::int32_t>(io::read_image(*src.label));
      require(label.voxels.shape() == io::shape(raw), [&] {
        return ErrorInfo{.where = where, .field = "label shape", .expected = io::shape(raw).to_string() + " (the image's)",
                         .actual = label.voxels.shape().to_string() + " in " + src.label->string()};
      });
      c.label = detail::DeviceImage<std::int32_t>{stages.label_up.upload(label.voxels), label.geometry};
    }
    done_steps = detail::load_image_on_device(c, raw, config.image_steps);
  }
  const nlohmann::json original = detail::geometry_json(original_geometry, report.input_shape);
  for (std::size_t i = done_steps; i < config.image_steps.size(); ++i)
    detail::image_step_on_device(c, config.image_steps[i], where + ": image_ops[" + std::to_string(i) + "]");
  if (c.label)
    for (std::size_t i = 0; i < config.label_steps.size(); ++i)
      detail::label_step_on_device(c, config.label_steps[i], where + ": label_ops[" + std::to_string(i) + "]");

  // Back to the host for writing: the same files, meta and report as the CPU path.
  CaseData data{{stages.down.download(c.image.voxels), c.image.geometry}, std::nullopt, std::nullopt, {}, std::nullopt,
                dataset_ct};
  if (c.label) data.label = io::Image<std::int32_t>{stages.down.download(c.label->voxels), c.label->geometry};
  return detail::write_case(config, src, report, data, original);
}

inline PrepareReport prepare_dataset_on_device(const PrepareConfig& config, std::ostream* progress) {
  require(cuda::available(), [] {
    return ErrorInfo{.where = "medseg prepare --device cuda", .field = "GPU", .expected = "a CUDA device",
                     .actual = "none (no NVIDIA driver or no visible GPU on this machine)",
                     .detail = "run without --device cuda to prepare on the CPU"};
  });
  return prepare_dataset(config, progress, prepare_case_on_device);
}

}  // namespace medseg::preprocess
