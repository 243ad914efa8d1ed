// `medseg bench preprocess`: the per-volume preprocessing of a CT scan (HU window, resample to
// 128^3 with order 1 and 3, labels with order 0, z-score, crop to the body) on a synthetic
// 512x512x200 int16 volume, at 1 thread and at all threads, against scipy.ndimage.zoom and
// NumPy doing the same work on the same volume in the same run. Each op is also held against
// the machine's memory read bandwidth, measured here in the same run: the bound for work that
// must read its whole input once. `medseg bench preprocess --input scan.nii.gz` runs it on a
// real volume instead (any format io/ reads).
#include <algorithm>
#include <chrono>
#include <filesystem>
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
  std::string why;
  const auto peer = run_python_peer("preprocess.py", {"prepare", (root / "raw").string(), (root / "peer").string(),
                                                      std::to_string(out)}, why);
  fs::remove_all(root);
  Result r{"medseg prepare: " + std::to_string(cases) + " CT cases " + std::to_string(W) + "x" + std::to_string(H) + "x" +
               std::to_string(D) + " -> " + std::to_string(out) + "^3 [" + std::to_string(options.threads) + " threads]",
           ours, peer ? peer->value("peer", std::string("python")) : "python (" + why + ")", std::nullopt,
           std::to_string(report.count(preprocess::CaseReport::Status::prepared)) + " cases prepared; peer serial as MedicalSeg's prepare"};
  if (peer && peer->contains("prepare")) r.peer_ms = (*peer)["prepare"].get<double>();
  return r;
}

}  // namespace

std::vector<Result> run_preprocess(const Options& options) {
  using namespace medseg::preprocess;
  const std::int64_t D = options.quick ? 50 : 200, H = options.quick ? 128 : 512, W = H;
  const std::int64_t out = options.quick ? 32 : 128;
  const int repeats = options.quick ? 2 : 7;
  const Extent3 target{out, out, out};

  Tensor<std::int16_t> ct;
  Tensor<std::uint8_t> labels;
  std::string volume = "synthetic";
  if (const std::string& input = options.input; !input.empty()) {
    // A real CT (any format io/ reads), its labels a lung-like threshold of it.
    ct = io::read_image_as<std::int16_t>(input).voxels;
    require(ct.rank() == 3, [&] {
      return ErrorInfo{.where = input, .field = "shape", .expected = "a 3-D volume", .actual = ct.shape().to_string()};
    });
    labels = Tensor<std::uint8_t>::empty(ct.shape());
    for (std::int64_t i = 0; i < ct.numel(); ++i) labels.data()[i] = ct.data()[i] > -950 && ct.data()[i] < -400;
    volume = std::string(input) + " " + ct.shape().to_string();
  } else {
    ct = Tensor<std::int16_t>::empty({D, H, W});
    labels = Tensor<std::uint8_t>::empty({D, H, W});
    synthetic_ct(ct, labels);
  }
  const std::int64_t d0 = ct.size(0), h0 = ct.size(1), w0 = ct.size(2);

  // The peer reads the very same volume.
  const std::string stem = "/tmp/medseg_bench_preprocess_" + std::to_string(getpid());
  std::ofstream(stem + ".ct", std::ios::binary).write(reinterpret_cast<const char*>(ct.data()), static_cast<std::streamsize>(ct.nbytes()));
  std::ofstream(stem + ".labels", std::ios::binary)
      .write(reinterpret_cast<const char*>(labels.data()), static_cast<std::streamsize>(labels.nbytes()));
  std::string why;
  const auto peer = run_python_peer("preprocess.py",
                                    {stem + ".ct", stem + ".labels", std::to_string(d0), std::to_string(h0),
                                     std::to_string(w0), std::to_string(out), std::to_string(repeats),
                                     options.quick ? "1" : "2"},
                                    why);
  std::remove((stem + ".ct").c_str());
  std::remove((stem + ".labels").c_str());
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
