// `medseg prepare --device cuda`: each case's image_ops and label_ops run on the GPU with the
// Cuda kernels of backends/ops.hpp, everything else as prepare.hpp does it
// (discovery, fingerprint, resuming, lists, dataset.json). The steps are pipeline.hpp's own,
// run on a device case (DeviceCaseData), so both paths share one recipe. Cases still run in
// parallel on the thread pool: each worker decodes its case (NIfTI, gzip, DICOM) on its CPU
// thread, stages the voxels through a page-locked buffer of its own, and queues the steps on
// its own stream (the per-thread default stream of backends/cuda/stream.hpp), so one case's
// decoding overlaps other cases' kernels and transfers. The GPU ops repeat the CPU's arithmetic, so the files
// are the CPU path's within float rounding (order 0, crops and label ops exactly).
//
// On the host still: reading and writing files, the dataset fingerprint (ct_normalize without
// statistics), and the steps that have no kernel (pad, keep_largest, remove_small): their
// volume goes to the host, through the CPU op, and back.
//   auto config = preprocess::load_prepare_config("prep.json");
//   auto report = preprocess::prepare_dataset_on_device(config, &std::cerr);
#pragma once

#include <optional>
#include <string>

#include "../backends/cuda/backend.hpp"
#include "../backends/cuda/device.hpp"
#include "../backends/cuda/pinned.hpp"
#include "../backends/ops.hpp"
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

/// CaseData on the device: pipeline.hpp's steps run on it as they run on the host's.
using DeviceCaseData = BasicCaseData<DeviceImage<float>, DeviceImage<std::int32_t>>;

/// This thread's staging buffers: image and label uploads are in flight together.
struct ThreadStages {
  cuda::PinnedStage image_up, label_up, down;
};
inline ThreadStages& thread_stages() {
  thread_local ThreadStages stages;
  return stages;
}

/// The voxel types the device ops read as they are; others are made float on the host first
/// (which is what the CPU's loader and image_cast do to them anyway).
template <class T>
constexpr bool reads_on_device = ops::PreprocessVoxel<T>;

/// The freshly read image on the device as float, with the leading window + resample fused
/// as load_image_fused does (the same condition, the same single pass). Returns the number
/// of steps it ran.
inline std::size_t load_image_on_device(DeviceCaseData& data, const io::AnyImage& raw, const std::vector<Step>& steps) {
  const auto lead = fused_lead(steps, io::shape(raw).rank());
  ThreadStages& stages = thread_stages();
  return std::visit(
      [&](const auto& im) -> std::size_t {
        using T = typename std::remove_cvref_t<decltype(im.voxels)>::value_type;
        if constexpr (reads_on_device<T>) {
          const Tensor<T, Cuda> x = stages.image_up.upload(im.voxels);
          if (lead) return run_fused_lead(data, x, im.geometry, *lead);  // on the voxels as uploaded
          data.image = {map_to_float(x, ops::VoxelMap{}), im.geometry};  // float(v), as image_cast
        } else {
          const Tensor<float, Cuda> x = stages.image_up.upload(im.voxels.template astype<float>());
          if (lead) return run_fused_lead(data, x, im.geometry, *lead);
          data.image = {x, im.geometry};
        }
        return 0;
      },
      raw);
}

/// pipeline.hpp's through_host for a device image: a step with no kernel runs on the host,
/// the volume going down, through the CPU op and back up. Found by argument-dependent lookup
/// from the steps' templates.
template <class T, class F>
void through_host(DeviceImage<T>& im, F&& op) {
  ThreadStages& stages = thread_stages();
  io::Image<T> host{stages.down.download(im.voxels), im.geometry};
  host = op(std::move(host));
  im = {stages.image_up.upload(host.voxels), host.geometry};
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
  apply_steps(c, config.image_steps, config.label_steps, where, done_steps);

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
