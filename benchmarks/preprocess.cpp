// `medseg bench preprocess`: the per-volume preprocessing of a CT scan (HU window, resample to
// 128^3 with order 1 and 3, labels with order 0, z-score, crop to the body) on a synthetic
// 512x512x200 int16 volume, at 1 thread and at all threads, against scipy.ndimage.zoom and
// NumPy doing the same work on the same volume in the same run. Each op is also held against
// the machine's memory read bandwidth, measured here in the same run: the bound for work that
// must read its whole input once. `medseg bench preprocess --input scan.nii.gz` runs it on a
// real volume instead (any format io/ reads). `--device cuda` runs the same cases on the GPU
// (backends/cuda/preprocess.hpp): per case the CPU at 1 thread and at all threads, the GPU on
// device-resident data (CUDA events) and with its transfers from and to pinned host memory,
// against CuPy (cupyx.scipy.ndimage on the same GPU) and SciPy in the same run; its dataset
// case is `medseg prepare --device cuda` (preprocess/prepare_cuda.hpp), checked against the
// CPU's files.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <vector>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <string>
#include <unistd.h>

#include "harness.hpp"
#include "medseg/core.hpp"
#include "medseg/io/format.hpp"
#include "medseg/preprocess/crop.hpp"
#include "medseg/preprocess/intensity.hpp"
#include "medseg/preprocess/resample.hpp"
#include "medseg/preprocess/prepare.hpp"
#include "medseg/preprocess/segmentation_resample.hpp"
#if defined(MEDSEG_WITH_CUDA) && MEDSEG_WITH_CUDA
#include "medseg/cuda.hpp"
#include "medseg/preprocess/prepare_cuda.hpp"
#endif

namespace medseg::bench {
namespace {

/// A CT-like scan: air outside an elliptic body of soft tissue, two lungs, a spine, noise.
/// labels: 1 and 2 for the lungs (COVID-19 CT lung's classes).
void synthetic_ct(Tensor<std::int16_t>& ct, Tensor<std::uint8_t>& labels) {
  const std::int64_t D = ct.size(0), H = ct.size(1), W = ct.size(2);
  parallel_for(0, D, 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t d = b; d < e; ++d)
      for (std::int64_t h = 0; h < H; ++h)
        for (std::int64_t w = 0; w < W; ++w) {
          const double y = (static_cast<double>(h) - H / 2.0) / (H * 0.38);
          const double x = (static_cast<double>(w) - W / 2.0) / (W * 0.45);
          const double z = static_cast<double>(d) / static_cast<double>(D);
          // cheap deterministic noise from the voxel index
          std::uint64_t s = static_cast<std::uint64_t>((d * H + h) * W + w) * 0x9E3779B97F4A7C15ull;
          s ^= s >> 29;
          const double noise = static_cast<double>(s % 61) - 30.0;
          double hu = -1024;
          std::uint8_t label = 0;
          if (x * x + y * y < 1) {
            hu = 40 + noise;
            const double ly = y / 0.55, lz = (z - 0.5) / 0.42;
            for (int side = 0; side < 2; ++side) {
              const double lx = (x - (side == 0 ? -0.45 : 0.45)) / 0.33;
              if (lx * lx + ly * ly + lz * lz < 1) {
                hu = -820 + 2 * noise;
                label = static_cast<std::uint8_t>(side + 1);
              }
            }
            const double sx = x / 0.09, sy = (y - 0.7) / 0.12;
            if (sx * sx + sy * sy < 1) hu = 700 + 3 * noise;
          }
          ct(d, h, w) = static_cast<std::int16_t>(hu);
          labels(d, h, w) = label;
        }
  });
}

/// GB/s of a parallel read-only pass over `buffer` (a sum): the bound of ops that read once.
double read_bandwidth(const Tensor<float>& buffer, int repeats) {
  const std::int64_t n = buffer.numel();
  volatile float sink = 0;
  const double ms = median_ms(
      [&] {
        const std::int64_t blocks = 64;
        std::vector<float> part(blocks, 0.0f);
        parallel_for(0, blocks, 1, [&](std::int64_t b, std::int64_t e) {
          for (std::int64_t k = b; k < e; ++k) {
            float acc[16] = {};
            const float* p = buffer.data() + k * (n / blocks);
            for (std::int64_t i = 0; i + 16 <= n / blocks; i += 16)
              for (int l = 0; l < 16; ++l) acc[l] += p[i + l];
            for (float a : acc) part[static_cast<std::size_t>(k)] += a;
          }
        });
        sink = sink + part[0];
      },
      repeats);
  return static_cast<double>(n) * 4 / (ms * 1e6);
}

std::string fmt(double v, int digits = 1) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

/// The floor under any preparation of the dataset in `raw` (images/, labels/): the same files
/// read and outputs of the prepared size written (zeros, as .npy), with nothing computed between,
/// a case per task on every thread; the faster of two runs. A prepare close to it is bound by
/// decoding and writing files, not by its arithmetic.
double io_floor_ms(const std::filesystem::path& raw, const std::filesystem::path& out_dir, std::int64_t out) {
  namespace fs = std::filesystem;
  fs::create_directories(out_dir);
  std::vector<fs::path> names;
  for (const auto& e : fs::directory_iterator(raw / "images")) names.push_back(e.path().filename());
  auto once = [&] {
    const auto t0 = std::chrono::steady_clock::now();
    parallel_for(0, static_cast<std::int64_t>(names.size()), 1, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) {
        const auto image = io::read_image_as<std::int16_t>(raw / "images" / names[i]);
        const auto label = io::read_image_as<std::uint8_t>(raw / "labels" / names[i]);
        const std::string stem = names[i].stem().string();
        io::write_image(io::Image<float>{Tensor<float>::zeros({out, out, out}), image.geometry},
                        out_dir / (stem + "_image.npy"));
        io::write_image(io::Image<std::uint8_t>{Tensor<std::uint8_t>::zeros({out, out, out}), label.geometry},
                        out_dir / (stem + "_label.npy"));
      }
    });
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };
  const double first = once();
  return std::min(first, once());
}

std::string io_floor_note(double floor_ms, double ours_ms) {
  return "files alone (read every case, write every output, nothing computed) " + fmt(floor_ms, 1) + " ms: ours " +
         fmt(ours_ms / floor_ms, 2) + "x that";
}

/// A whole `medseg prepare` of a synthetic CT dataset (NIfTI, uncompressed) against a
/// MedicalSeg-style Python prepare of the same files: the unit a user waits for.
Result time_prepare(const Options& options) {
  namespace fs = std::filesystem;
  const int cases = options.quick ? 4 : 20;
  const std::int64_t D = options.quick ? 24 : 100, H = options.quick ? 64 : 256, W = H;
  const std::int64_t out = options.quick ? 32 : 128;
  const fs::path root = fs::temp_directory_path() / ("medseg_bench_prepare_" + std::to_string(getpid()));
  fs::create_directories(root / "raw/images");
  fs::create_directories(root / "raw/labels");
  auto ct = Tensor<std::int16_t>::empty({D, H, W});
  auto labels = Tensor<std::uint8_t>::empty({D, H, W});
  synthetic_ct(ct, labels);
  for (int i = 0; i < cases; ++i) {
    const std::string name = "case_" + std::to_string(100 + i) + ".nii";
    io::Geometry g;
    g.spacing = {0.7, 0.7, 2.0 + 0.1 * i};
    io::write_image(io::Image<std::int16_t>{ct, g}, root / "raw/images" / name);
    io::write_image(io::Image<std::uint8_t>{labels, g}, root / "raw/labels" / name);
  }
  preprocess::PrepareConfig config;
  config.input = {.layout = preprocess::DatasetInput::Layout::folders, .images = root / "raw/images",
                  .labels = root / "raw/labels"};
  config.output = root / "ours";
  config.image_steps = {preprocess::WindowStep{{.lo = -1250, .hi = 250}},
                        preprocess::ResampleStep{.shape = preprocess::Extent3{out, out, out}, .order = 1}};
  config.label_steps = {preprocess::ResampleStep{.shape = preprocess::Extent3{out, out, out}, .order = 0}};
  const auto t0 = std::chrono::steady_clock::now();
  const auto report = preprocess::prepare_dataset(config);
  const double ours = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const double floor_ms = io_floor_ms(root / "raw", root / "io", out);
  std::string why;
  const auto peer = run_python_peer("preprocess.py", {"prepare", (root / "raw").string(), (root / "peer").string(),
                                                      std::to_string(out)}, why);
  fs::remove_all(root);
  Result r{"medseg prepare: " + std::to_string(cases) + " CT cases " + std::to_string(W) + "x" + std::to_string(H) + "x" +
               std::to_string(D) + " -> " + std::to_string(out) + "^3 [" + std::to_string(options.threads) + " threads]",
           ours, peer ? peer->value("peer", std::string("python")) : "python (" + why + ")", std::nullopt,
           std::to_string(report.count(preprocess::CaseReport::Status::prepared)) +
               " cases prepared; peer serial as MedicalSeg's prepare; " + io_floor_note(floor_ms, ours)};
  if (peer && peer->contains("prepare")) r.peer_ms = (*peer)["prepare"].get<double>();
  return r;
}

/// The benchmark's volume: the synthetic CT (D x H x W) or `--input`'s real one, whose labels
/// are then a lung-like threshold of it. Returns how to name it in the report.
std::string benchmark_volume(const Options& options, std::int64_t D, std::int64_t H, std::int64_t W,
                             Tensor<std::int16_t>& ct, Tensor<std::uint8_t>& labels) {
  if (const std::string& input = options.input; !input.empty()) {
    // A real CT (any format io/ reads), its labels a lung-like threshold of it.
    ct = io::read_image_as<std::int16_t>(input).voxels;
    require(ct.rank() == 3, [&] {
      return ErrorInfo{.where = input, .field = "shape", .expected = "a 3-D volume", .actual = ct.shape().to_string()};
    });
    labels = Tensor<std::uint8_t>::empty(ct.shape());
    for (std::int64_t i = 0; i < ct.numel(); ++i) labels.data()[i] = ct.data()[i] > -950 && ct.data()[i] < -400;
    return std::string(input) + " " + ct.shape().to_string();
  }
  ct = Tensor<std::int16_t>::empty({D, H, W});
  labels = Tensor<std::uint8_t>::empty({D, H, W});
  synthetic_ct(ct, labels);
  return "synthetic";
}

/// Runs peers/<script> IMAGE LABELS args... on raw copies of the volume and its labels.
std::optional<nlohmann::json> run_volume_peer(const std::string& script, const Tensor<std::int16_t>& ct,
                                              const Tensor<std::uint8_t>& labels, std::vector<std::string> args,
                                              std::string& why) {
  const std::string stem = "/tmp/medseg_bench_preprocess_" + std::to_string(getpid());
  std::ofstream(stem + ".ct", std::ios::binary).write(reinterpret_cast<const char*>(ct.data()), static_cast<std::streamsize>(ct.nbytes()));
  std::ofstream(stem + ".labels", std::ios::binary)
      .write(reinterpret_cast<const char*>(labels.data()), static_cast<std::streamsize>(labels.nbytes()));
  args.insert(args.begin(), {stem + ".ct", stem + ".labels"});
  auto peer = run_python_peer(script, args, why);
  std::remove((stem + ".ct").c_str());
  std::remove((stem + ".labels").c_str());
  return peer;
}

#if defined(MEDSEG_WITH_CUDA) && MEDSEG_WITH_CUDA

/// Median milliseconds between CUDA events around `op` (after a warm-up call): the GPU's time
/// for work on data already on the device, host round trips inside the op included.
double gpu_ms(const std::function<void()>& op, int repeats) {
  const cudaStream_t s = cuda::current_stream();
  op();
  Cuda::synchronize();
  cuda::Event start, stop;
  std::vector<double> t;
  for (int i = 0; i < std::max(1, repeats); ++i) {
    start.record(s);
    op();
    stop.record(s);
    stop.synchronize();
    t.push_back(stop.elapsed_ms_since(start));
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

/// A host tensor in page-locked memory (the buffers a loader would fill), so host <-> device
/// copies run at the bus's speed.
template <class T>
struct PinnedTensor {
  cuda::PinnedBuffer buffer;
  Tensor<T> view;
  explicit PinnedTensor(const Shape& shape)
      : buffer(static_cast<std::size_t>(shape.product()) * sizeof(T)),
        view(Tensor<T>::wrap(static_cast<T*>(buffer.data()), shape)) {}
};

/// The largest |gpu - cpu| over the prepared images of two `medseg prepare` outputs, and
/// whether every label file is identical: the GPU path is meant to give the CPU's files.
std::string compare_prepared(const std::filesystem::path& cpu, const std::filesystem::path& gpu) {
  namespace fs = std::filesystem;
  double worst = 0;
  bool labels_equal = true;
  int files = 0;
  for (const auto& e : fs::directory_iterator(cpu / "images")) {
    const auto a = io::read_image_as<float>(e.path()).voxels;
    const auto b = io::read_image_as<float>(gpu / "images" / e.path().filename()).voxels;
    if (a.shape() != b.shape()) return "GPU output differs in shape from the CPU's (" + e.path().filename().string() + ")";
    for (std::int64_t i = 0; i < a.numel(); ++i) worst = std::max(worst, static_cast<double>(std::abs(a.data()[i] - b.data()[i])));
    const fs::path label = cpu / "labels" / e.path().filename();
    if (fs::exists(label)) {
      const auto la = io::read_image_as<std::int32_t>(label).voxels.to_vector();
      const auto lb = io::read_image_as<std::int32_t>(gpu / "labels" / e.path().filename()).voxels.to_vector();
      labels_equal = labels_equal && la == lb;
    }
    ++files;
  }
  return "GPU files vs CPU files (" + std::to_string(files) + " cases): max |image difference| " + fmt(worst, 9) +
         ", labels " + (labels_equal ? "identical" : "DIFFERENT");
}

/// Times of one case on every side; ratios are other / GPU (above 1: the GPU is faster).
struct GpuCase {
  std::string name;
  double cpu_1 = 0, cpu_all = 0, gpu = 0, gpu_transfers = 0;
  std::optional<double> cupy{}, scipy{};
};

Result gpu_result(const GpuCase& c, const std::string& cupy_name, int threads, const std::string& extra) {
  auto ms = [](std::optional<double> v) { return v ? fmt(*v, 2) + " ms" : std::string("n/a"); };
  auto ratio = [&](std::optional<double> v) { return v ? fmt(*v / c.gpu, 1) + "x" : std::string("n/a"); };
  std::string note = "CPU 1 thread " + fmt(c.cpu_1, 2) + " ms, CPU " + std::to_string(threads) + " threads " +
                     fmt(c.cpu_all, 2) + " ms, GPU with transfers " + ms(c.gpu_transfers > 0 ? std::optional(c.gpu_transfers) : std::nullopt) +
                     ", CuPy " + ms(c.cupy) + ", SciPy " + ms(c.scipy) + "; GPU speedup vs CuPy " + ratio(c.cupy) +
                     ", vs CPU 1 thread " + ratio(c.cpu_1) + ", vs CPU " + std::to_string(threads) + " threads " +
                     ratio(c.cpu_all) + ", vs SciPy " + ratio(c.scipy) + extra;
  return {c.name + " [cuda]", c.gpu, cupy_name, c.cupy, note};
}

std::vector<Result> run_preprocess_cuda(const Options& options) {
  using namespace medseg::preprocess;
  require(cuda::available(), [] {
    return ErrorInfo{.where = "medseg bench preprocess --device cuda", .field = "GPU", .expected = "a CUDA device",
                     .actual = "none (no driver or no visible GPU on this machine)"};
  });
  namespace fs = std::filesystem;
  const std::int64_t D = options.quick ? 50 : 200, H = options.quick ? 128 : 512, W = H;
  const std::int64_t out = options.quick ? 32 : 128;
  const int repeats = options.quick ? 2 : 7, cpu_repeats = options.quick ? 1 : 3;
  const Extent3 target{out, out, out};
  const int all = options.threads;

  Tensor<std::int16_t> ct;
  Tensor<std::uint8_t> labels;
  const std::string volume = benchmark_volume(options, D, H, W, ct, labels);
  const Extent3 in{ct.size(0), ct.size(1), ct.size(2)};
  const HuWindow window{.lo = -1250, .hi = 250};
  const auto windowed = hu_window(ct, window);

  // CuPy and SciPy on the same volume (the GPU is idle meanwhile).
  std::string why;
  const auto peer = run_volume_peer("preprocess_cupy.py", ct, labels,
                                    {std::to_string(in[0]), std::to_string(in[1]), std::to_string(in[2]),
                                     std::to_string(out), std::to_string(repeats), options.quick ? "1" : "3"},
                                    why);
  auto peer_ms = [&](const char* side, const char* key) -> std::optional<double> {
    if (peer && peer->contains(side) && (*peer)[side].is_object() && (*peer)[side].contains(key) &&
        (*peer)[side][key].is_number())
      return (*peer)[side][key].get<double>();
    return std::nullopt;
  };
  const bool has_cupy = peer && peer->contains("cupy") && (*peer)["cupy"].is_object();
  const std::string cupy_name = !peer ? "cupy n/a (" + why + ")"
                                : has_cupy ? peer->value("cupy_version", std::string("cupy")) + " (kernel time)"
                                           : "cupy n/a (" + peer->value("cupy_error", std::string("not importable")) + ")";

  // Device copies of the inputs, resident for the kernel-only timings; plans made once.
  const auto ct_d = ct.to<Cuda>();
  const auto labels_d = labels.to<Cuda>();
  const auto windowed_d = windowed.to<Cuda>();
  const cuda::ResamplePlan order1(in, target, {.order = 1});
  const cuda::ResamplePlan order3(in, target, {.order = 3});
  const cuda::ResamplePlan order0(in, target, {.order = 0});
  auto small_d = Tensor<float, Cuda>::empty({out, out, out});
  auto small_labels_d = Tensor<std::uint8_t, Cuda>::empty({out, out, out});
  const ops::VoxelMap window_map = ops::VoxelMap::window(window);

  // Pinned host buffers for the timings with transfers: input up, result down.
  PinnedTensor<std::int16_t> ct_pinned(ct.shape());
  PinnedTensor<std::uint8_t> labels_pinned(labels.shape());
  PinnedTensor<float> windowed_pinned(windowed.shape());
  PinnedTensor<float> full_out(windowed.shape());
  PinnedTensor<float> small_out({out, out, out});
  PinnedTensor<std::uint8_t> small_labels_out({out, out, out});
  ct_pinned.view.copy_from(ct);
  labels_pinned.view.copy_from(labels);
  windowed_pinned.view.copy_from(windowed);
  const Box body = nonzero_box(ct, std::int16_t(-1024));
  PinnedTensor<std::int16_t> crop_out(Shape{body.shape()[0], body.shape()[1], body.shape()[2]});

  struct Op {
    std::string name;
    const char* key;                     // the peer's name for it
    std::function<void()> cpu, gpu, gpu_transfers;
  };
  const std::string o = std::to_string(out);
  const std::vector<Op> ops{
      {"HU window int16 -> float32", "window", [&] { (void)hu_window(ct, window); },
       [&] { (void)hu_window(ct_d, window); },
       [&] { full_out.view.copy_from(hu_window(ct_pinned.view.to<Cuda>(), window)); }},
      {"resample order 1 -> " + o + "^3", "zoom1", [&] { (void)resize(windowed, target, {.order = 1}); },
       [&] { order1.run(windowed_d, small_d); },
       [&] {
         order1.run(windowed_pinned.view.to<Cuda>(), small_d);
         small_out.view.copy_from(small_d);
       }},
      {"resample order 3 -> " + o + "^3 (prefilter)", "zoom3", [&] { (void)resize(windowed, target, {.order = 3}); },
       [&] { order3.run(windowed_d, small_d); },
       [&] {
         order3.run(windowed_pinned.view.to<Cuda>(), small_d);
         small_out.view.copy_from(small_d);
       }},
      {"labels order 0 -> " + o + "^3", "zoom0_labels",
       [&] { (void)resize<std::uint8_t>(labels, target, {.order = 0}); }, [&] { order0.run(labels_d, small_labels_d); },
       [&] {
         order0.run(labels_pinned.view.to<Cuda>(), small_labels_d);
         small_labels_out.view.copy_from(small_labels_d);
       }},
      {"z-score float32 volume", "zscore", [&] { (void)zscore(windowed); }, [&] { (void)zscore(windowed_d); },
       [&] { full_out.view.copy_from(zscore(windowed_pinned.view.to<Cuda>())); }},
      {"crop to body (nonzero box + copy)", "crop", [&] { (void)crop(ct, nonzero_box(ct, std::int16_t(-1024))); },
       [&] { (void)crop(ct_d, nonzero_box(ct_d, std::int16_t(-1024))); },
       [&] {
         const auto x = ct_pinned.view.to<Cuda>();
         crop_out.view.copy_from(crop(x, nonzero_box(x, std::int16_t(-1024))));
       }},
      {"chain: window + resample order 1 + z-score", "chain",
       [&] { (void)zscore(resize(ct, target, {.order = 1}, window)); },
       [&] {
         order1.run(ct_d, small_d, window_map);
         (void)zscore(small_d);
       },
       [&] {
         order1.run(ct_pinned.view.to<Cuda>(), small_d, window_map);
         small_out.view.copy_from(zscore(small_d));
       }},
  };

  std::vector<Result> results;
  for (const Op& op : ops) {
    GpuCase c{op.name};
    set_num_threads(1);
    c.cpu_1 = median_ms(op.cpu, op.key == std::string("zoom3") ? 1 : cpu_repeats);
    set_num_threads(all);
    c.cpu_all = median_ms(op.cpu, op.key == std::string("zoom3") ? cpu_repeats : repeats);
    c.gpu = gpu_ms(op.gpu, repeats);
    c.gpu_transfers = median_ms(op.gpu_transfers, repeats);
    c.cupy = peer_ms("cupy", op.key);
    c.scipy = peer_ms("scipy", op.key);
    results.push_back(gpu_result(c, cupy_name, all, results.empty() ? "; volume " + volume + ", " +
                                                                          cuda::device_info().name
                                                                    : ""));
  }

  // The dataset end to end: the CPU's `medseg prepare`, our GPU loop, SciPy's and CuPy's.
  const int cases = options.quick ? 4 : 20;
  const std::int64_t dd = options.quick ? 24 : 100, hh = options.quick ? 64 : 256;
  const fs::path root = fs::temp_directory_path() / ("medseg_bench_prepare_gpu_" + std::to_string(getpid()));
  fs::create_directories(root / "raw/images");
  fs::create_directories(root / "raw/labels");
  {
    auto case_ct = Tensor<std::int16_t>::empty({dd, hh, hh});
    auto case_labels = Tensor<std::uint8_t>::empty({dd, hh, hh});
    synthetic_ct(case_ct, case_labels);
    for (int i = 0; i < cases; ++i) {
      const std::string name = "case_" + std::to_string(100 + i) + ".nii";
      io::Geometry g;
      g.spacing = {0.7, 0.7, 2.0 + 0.1 * i};
      io::write_image(io::Image<std::int16_t>{case_ct, g}, root / "raw/images" / name);
      io::write_image(io::Image<std::uint8_t>{case_labels, g}, root / "raw/labels" / name);
    }
  }
  PrepareConfig config;
  config.input = {.layout = DatasetInput::Layout::folders, .images = root / "raw/images", .labels = root / "raw/labels"};
  config.image_steps = {WindowStep{window}, ResampleStep{.shape = target, .order = 1}};
  config.label_steps = {ResampleStep{.shape = target, .order = 0}};
  GpuCase prep{"prepare: " + std::to_string(cases) + " CT cases " + std::to_string(hh) + "x" + std::to_string(hh) + "x" +
               std::to_string(dd) + " -> " + o + "^3 (read, window, resample image and labels, write .npy)"};
  auto cpu_prepare = [&](int threads, const char* dir) {
    set_num_threads(threads);
    config.output = root / dir;
    const auto t0 = std::chrono::steady_clock::now();
    (void)prepare_dataset(config);
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };
  // `medseg prepare --device cuda` (preprocess/prepare_cuda.hpp): the same config, every
  // case's ops on the GPU, decoding on all CPU threads meanwhile.
  auto gpu_prepare = [&](const char* dir) {
    set_num_threads(all);
    config.output = root / dir;
    const auto t0 = std::chrono::steady_clock::now();
    (void)prepare_dataset_on_device(config);
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };
  prep.cpu_1 = cpu_prepare(1, "cpu1");
  prep.cpu_all = cpu_prepare(all, "cpu");
  (void)gpu_prepare("gpu_warmup");  // first use of each allocation size and pinned buffer
  prep.gpu = gpu_prepare("gpu");
  const double io_ms = io_floor_ms(root / "raw", root / "io", out);
  const std::string agreement = compare_prepared(root / "cpu", root / "gpu");
  std::string prep_why;
  const auto prep_peer = run_python_peer("preprocess_cupy.py", {"prepare", (root / "raw").string(), (root / "peer").string(),
                                                               o}, prep_why);
  fs::remove_all(root);
  auto prep_ms = [&](const char* key) -> std::optional<double> {
    if (prep_peer && prep_peer->contains(key) && (*prep_peer)[key].is_number()) return (*prep_peer)[key].get<double>();
    return std::nullopt;
  };
  prep.cupy = prep_ms("cupy");
  prep.scipy = prep_ms("scipy");
  results.push_back(gpu_result(prep, cupy_name, all,
                               "; ours: medseg prepare --device cuda at " + std::to_string(all) +
                                   " threads (GPU with transfers: n/a, transfers included); peers serial, as "
                                   "MedicalSeg's prepare" + (prep_peer ? std::string() : " (" + prep_why + ")") +
                                   "; " + io_floor_note(io_ms, prep.gpu) + "; " + agreement));
  set_num_threads(all);
  return results;
}

#else

std::vector<Result> run_preprocess_cuda(const Options&) {
  throw Error{{.where = "medseg bench preprocess --device cuda", .field = "build", .expected = "medseg built with CUDA",
               .actual = "a build without the CUDA backend (configure with -DMEDSEG_CUDA=ON)"}};
}

#endif

}  // namespace

std::vector<Result> run_preprocess(const Options& options) {
  using namespace medseg::preprocess;
  if (options.device == "cuda") return run_preprocess_cuda(options);
  const std::int64_t D = options.quick ? 50 : 200, H = options.quick ? 128 : 512, W = H;
  const std::int64_t out = options.quick ? 32 : 128;
  const int repeats = options.quick ? 2 : 7;
  const Extent3 target{out, out, out};

  Tensor<std::int16_t> ct;
  Tensor<std::uint8_t> labels;
  const std::string volume = benchmark_volume(options, D, H, W, ct, labels);
  const std::int64_t d0 = ct.size(0), h0 = ct.size(1), w0 = ct.size(2);

  // The peer reads the very same volume.
  std::string why;
  const auto peer = run_volume_peer("preprocess.py", ct, labels, {std::to_string(d0), std::to_string(h0),
                                                                  std::to_string(w0), std::to_string(out),
                                                                  std::to_string(repeats), options.quick ? "1" : "2"},
                                    why);
  const std::string peer_name = peer ? peer->value("peer", std::string("scipy")) : "scipy (" + why + ")";
  auto peer_ms = [&](const char* key) -> std::optional<double> {
    if (peer && peer->contains(key)) return (*peer)[key].get<double>();
    return std::nullopt;
  };

  const HuWindow window{.lo = -1250, .hi = 250};
  const auto windowed = hu_window(ct, window);
  const double mb_ct = static_cast<double>(ct.nbytes()) / 1e6, mb_f32 = static_cast<double>(windowed.nbytes()) / 1e6;
  const double mb_labels = static_cast<double>(labels.nbytes()) / 1e6;

  std::vector<Result> results;
  const int all = options.threads;
  for (int threads : {1, all}) {
    if (threads == 1 && all == 1 && !results.empty()) break;
    set_num_threads(threads);
    const double bw = read_bandwidth(windowed, repeats);  // GB/s at this thread count
    const std::string t = " [" + std::to_string(threads) + (threads == 1 ? " thread]" : " threads]");
    auto bound = [&](double ms, double mb_read) {
      const double bound_ms = mb_read / bw;  // MB / (GB/s) = ms
      return fmt(mb_read / ms, 2) + " GB/s of input; read bound " + fmt(bound_ms, 1) + " ms at " + fmt(bw) +
             " GB/s = " + fmt(ms / bound_ms, 2) + "x bound";
    };
    auto add = [&](const std::string& name, double ms, const char* key, double mb_read) {
      results.push_back({name + t, ms, peer_name, peer_ms(key), bound(ms, mb_read) + (results.empty() ? "; volume " + volume : "")});
    };

    add("HU window int16 -> float32", median_ms([&] { (void)hu_window(ct, window); }, repeats), "window", mb_ct);
    add("resample order 1 -> " + std::to_string(out) + "^3",
        median_ms([&] { (void)resize(windowed, target, {.order = 1}); }, repeats), "zoom1", mb_f32);
    add("resample order 3 -> " + std::to_string(out) + "^3 (prefilter)",
        median_ms([&] { (void)resize(windowed, target, {.order = 3}); }, std::max(1, repeats / 2)), "zoom3", mb_f32);
    add("labels order 0 -> " + std::to_string(out) + "^3",
        median_ms([&] { (void)resize<std::uint8_t>(labels, target, {.order = 0}); }, repeats), "zoom0_labels",
        mb_labels);
    add("z-score float32 volume", median_ms([&] { (void)zscore(windowed); }, repeats), "zscore", mb_f32);
    add("crop to body (nonzero box + copy)",
        median_ms([&] { (void)crop(ct, nonzero_box(ct, std::int16_t(-1024))); }, repeats), "crop", mb_ct);
    // The whole per-volume chain, fused: the window runs inside the resample's load, and the
    // z-score runs on the small result.
    add("chain: window + resample order 1 + z-score",
        median_ms([&] { (void)zscore(resize(ct, target, {.order = 1}, window)); }, repeats), "chain", mb_ct);
  }
  set_num_threads(all);
  results.push_back(time_prepare(options));
  return results;
}

}  // namespace medseg::bench
