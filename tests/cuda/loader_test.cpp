// The loader's GPU mode (data/cuda.hpp) against the CPU loader with the same seed and the
// same chain of GPU-capable transforms (the fused spatial transform with rotation, scaling,
// elastic deformation and a foreground crop; noise, blur, brightness, contrast, gamma): the
// same cases in every batch, labels exactly, images within 1e-5 of the data's scale, through
// next() with staging workers (on the default per-thread stream and on a stream of its own)
// and through batch(b); nnU-Net's default chain (transforms::nnunet_3d) as a whole; and
// train::Trainer steps on GPU batches (VNetDeepSup, Dice + CE) with
// the losses it has on the CPU loader's batches.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "compare.hpp"
#include "medseg/cuda.hpp"
#include "medseg/data/cuda.hpp"
#include "medseg/data/memory_dataset.hpp"
#include "medseg/loss.hpp"
#include "medseg/optim.hpp"
#include "medseg/train/trainer.hpp"
#include "medseg/transforms.hpp"
#include "medseg/vnet.hpp"

using namespace medseg;
using cuda_test::check_close;
using cuda_test::check_equal;

namespace {

/// n cases of about `size` voxels (each a little different, as real cases are): an image of
/// CT-like values and a label with a blob of classes 1 and 2, so a foreground crop has
/// something to centre on.
data::MemoryDataset make_dataset(int n, const transforms::Index3& size) {
  data::MemoryDataset d;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-200.0f, 900.0f);
  for (int i = 0; i < n; ++i) {
    const std::int64_t D = size[0] + i % 2, H = size[1], W = size[2] + i % 3;
    data::Case c;
    c.name = "case_" + std::to_string(i);
    c.image.voxels = Tensor<float>::empty({1, D, H, W});
    for (std::int64_t v = 0; v < c.image.voxels.numel(); ++v) c.image.voxels.data()[v] = u(rng);
    c.label = io::Image<data::LabelValue>{Tensor<data::LabelValue>::zeros({D, H, W}), {}};
    for (std::int64_t z = D / 4; z < D / 2 + i % 3; ++z)
      for (std::int64_t y = H / 3; y < 2 * H / 3; ++y)
        for (std::int64_t x = W / 4 + i; x < 3 * W / 4; ++x)
          c.label->voxels(z, y, x) = static_cast<data::LabelValue>(1 + (x + y) % 2);
    d.add(std::move(c));
  }
  return d;
}

auto augmentation() {
  return transforms::SpatialTransform{.patch_size = {32, 32, 32}, .crop_size = {36, 36, 36},
                                      .foreground_fraction = 0.5f, .p_rotation = 0.6f, .p_scale = 0.6f,
                                      .p_elastic = 0.4f, .elastic_alpha = {0.0f, 60.0f},
                                      .elastic_sigma = {3.0f, 4.0f}} |
         transforms::GaussianNoise{.p = 0.5f} | transforms::GaussianBlur{.p = 0.5f} |
         transforms::MultiplicativeBrightness{.p = 0.5f} | transforms::Contrast{.p = 0.5f} |
         transforms::Gamma{.p = 0.5f};
}

void check_same(const data::Batch<data::LabelValue>& cpu, const data::Batch<data::LabelValue, Cuda>& gpu) {
  CHECK(gpu.number == cpu.number);
  CHECK(gpu.epoch == cpu.epoch);
  CHECK(gpu.cases == cpu.cases);
  check_close(cpu.image, gpu.image);
  check_equal(cpu.label, gpu.label);
}

std::vector<data::Batch<data::LabelValue>> cpu_batches(const data::MemoryDataset& dataset, int n) {
  data::Loader cpu{dataset, augmentation(), {.batch_size = 2, .workers = 0, .seed = 21}};
  std::vector<data::Batch<data::LabelValue>> out;
  for (int b = 0; b < n; ++b) out.push_back(cpu.next());
  return out;
}

}  // namespace

TEST_CASE("the GPU loader gives the CPU loader's batches") {
  const auto dataset = make_dataset(5, {40, 38, 42});
  const auto reference = cpu_batches(dataset, 6);  // three epochs of two batches
  REQUIRE(reference[0].image.shape() == Shape{2, 1, 32, 32, 32});
  for (const int workers : {0, 1, 3}) {
    auto gpu = data::make_loader<Cuda>(dataset, augmentation(),
                                       {.batch_size = 2, .workers = workers, .seed = 21, .prefetch = 2,
                                        .cache_bytes = workers == 1 ? 0 : std::size_t{64} << 20});
    for (int b = 0; b < 6; ++b) {
      INFO("workers " << workers << ", batch " << b);
      check_same(reference[static_cast<std::size_t>(b)], gpu.next());
    }
    for (const int b : {5, 0, 3}) {
      INFO("workers " << workers << ", batch(" << b << ")");
      check_same(reference[static_cast<std::size_t>(b)], gpu.batch(static_cast<std::uint64_t>(b)));
    }
  }
}

TEST_CASE("the GPU loader runs nnU-Net's whole default augmentation as the CPU loader does") {
  // transforms::nnunet_3d: the crop of the larger initial patch fused into the spatial pass,
  // noise, blur, brightness, contrast, low resolution, both gammas and mirroring, every one
  // on the device.
  const auto dataset = make_dataset(4, {40, 38, 42});
  const data::LoaderOptions options{.batch_size = 2, .workers = 2, .seed = 3};
  data::Loader cpu{dataset, transforms::nnunet_3d({32, 32, 32}), {.batch_size = 2, .workers = 0, .seed = 3}};
  auto gpu = data::make_loader<Cuda>(dataset, transforms::nnunet_3d({32, 32, 32}), options);
  for (int b = 0; b < 8; ++b) {
    INFO("batch " << b);
    check_same(cpu.next(), gpu.next());
  }
}

TEST_CASE("the GPU loader works on the consumer's own stream, its batches ordered there") {
  const auto dataset = make_dataset(4, {40, 38, 42});
  const auto reference = cpu_batches(dataset, 8);
  cuda::Stream stream;
  cuda::StreamGuard on(stream);
  auto gpu = data::make_loader<Cuda>(dataset, augmentation(), {.batch_size = 2, .workers = 2, .seed = 21});
  // Batches taken before any is read: the staging blocks cycle while the uploads out of them
  // are still queued, and the batches of earlier iterations are freed into the stream's cache.
  std::vector<data::Batch<data::LabelValue, Cuda>> taken;
  for (int b = 0; b < 8; ++b) taken.push_back(gpu.next());
  for (int b = 0; b < 8; ++b) {
    INFO("batch " << b);
    check_same(reference[static_cast<std::size_t>(b)], taken[static_cast<std::size_t>(b)]);
  }
}

namespace {

/// A training run on backend B: VNetDeepSup (its lower-resolution targets are made from the
/// batch's labels too), Dice + CE, SGD with a poly schedule, silent, its metrics log under `dir`.
template <class B>
struct Run {
  explicit Run(const std::filesystem::path& dir)
      : trainer{net, loss, opt, sched, {.iters = 10, .save_every = 0, .save_dir = dir, .progress = nullptr}} {}
  /// Takes the parameters and buffers of `from`.
  template <class Other>
  void copy_weights(Other& from) {
    const auto src = nn::parameters(from.net);
    const auto dst = nn::parameters(net);
    REQUIRE(src.size() == dst.size());
    for (std::size_t i = 0; i < src.size(); ++i) dst[i].value.copy_from(src[i].value);
    const auto sb = nn::buffers(from.net);
    const auto db = nn::buffers(net);
    REQUIRE(sb.size() == db.size());
    for (std::size_t i = 0; i < sb.size(); ++i) db[i].value.copy_from(sb[i].value);
  }

  models::VNetDeepSup<B> net{{.in_channels = 1, .num_classes = 3, .norm = models::Norm::group, .dropout = 0.0f,
                              .width = 4, .seed = 5}};
  loss::DiceCE<B> loss = loss::dice_ce<B>({.include_background = false, .batch = true});
  optim::SGD<B> opt{nn::parameters(net), {.lr = 0.01, .momentum = 0.9}};
  optim::PolyLR<optim::SGD<B>> sched{opt, {.total_iters = 10}};
  train::Trainer<models::VNetDeepSup<B>, loss::DiceCE<B>, optim::SGD<B>, optim::PolyLR<optim::SGD<B>>> trainer;
};

}  // namespace

TEST_CASE("the trainer steps on GPU batches as on the CPU loader's, with nothing copied") {
  const auto dataset = make_dataset(4, {40, 38, 42});
  const auto dir = std::filesystem::temp_directory_path() / ("medseg_cuda_loader_test." + std::to_string(::getpid()));
  Run<Cpu> on_cpu{dir / "cpu"};
  Run<Cuda> from_gpu_batches{dir / "gpu"}, from_host_batches{dir / "host"};
  from_gpu_batches.copy_weights(on_cpu);
  from_host_batches.copy_weights(on_cpu);
  data::Loader cpu_loader{dataset, augmentation(), {.batch_size = 2, .workers = 0, .seed = 21}};
  auto gpu_loader = data::make_loader<Cuda>(dataset, augmentation(), {.batch_size = 2, .workers = 1, .seed = 21});
  for (int i = 0; i < 2; ++i) {
    INFO("step " << i);
    const auto host_batch = cpu_loader.next();
    const double vc = on_cpu.trainer.step(host_batch);
    const double vh = from_host_batches.trainer.step(host_batch);  // the model's backend, copied there
    const double vg = from_gpu_batches.trainer.step(gpu_loader.next());
    CHECK(std::isfinite(vg));
    CHECK(std::abs(vh - vc) <= 1e-3 * std::max(1.0, std::abs(vc)));
    CHECK(std::abs(vg - vc) <= 1e-3 * std::max(1.0, std::abs(vc)));
  }
  std::filesystem::remove_all(dir);
}
