// data/loader.hpp on a backend other than the host, with a device emulated in host memory, so
// the path a GPU loader takes runs on any machine: Batch and collate on the samples' backend;
// Loader<D, T, L, B> stages samples on its workers and uploads, augments and collates them in
// next() on the caller's thread, and gives the CPU loader's batches, through next() on any
// number of workers and through batch(b). tests/cuda/loader_test.cpp checks the same on a GPU.
#include <catch2/catch.hpp>

#include <mutex>
#include <set>
#include <string_view>
#include <thread>
#include <type_traits>

#include "medseg/data/loader.hpp"
#include "medseg/data/memory_dataset.hpp"
#include "medseg/transforms.hpp"

using namespace medseg;

namespace loader_device_test {

/// A device backend whose memory is host memory: what Loader<D, T, L, B> does for a GPU,
/// checked without one (its tensors offer no host access, as a GPU's do not).
struct Emulated {
  static constexpr std::string_view name = "emulated";
  static constexpr bool is_host = false;
  static void* allocate(std::size_t bytes) { return Cpu::allocate(bytes); }
  static void deallocate(void* p, std::size_t bytes) noexcept { Cpu::deallocate(p, bytes); }
  static void copy_2d(void* dst, std::size_t dst_pitch, const void* src, std::size_t src_pitch, std::size_t width,
                      std::size_t rows, CopyKind) {
    Cpu::copy_2d(dst, dst_pitch, src, src_pitch, width, rows, CopyKind::host_to_host);
  }
  static void zero(void* p, std::size_t bytes) { Cpu::zero(p, bytes); }
  static void synchronize() {}
};
static_assert(Backend<Emulated>);

/// The threads that staged samples and that augmented them on the "device".
struct Threads {
  std::mutex mutex;
  std::set<std::thread::id> staged, augmented;
  void add(std::set<std::thread::id>& to) {
    std::lock_guard lock(mutex);
    to.insert(std::this_thread::get_id());
  }
};
inline Threads threads;

/// The emulated device has no kernels (ops::): its augmentation is `transform` run on a host
/// copy of the sample, with the same stream.
template <class T>
struct OnHost {
  T transform;
  template <class L>
  void apply(transforms::BasicSample<L, Emulated>& s, RandomStream& rng) const {
    threads.add(threads.augmented);
    transforms::BasicSample<L> host{s.image.template to<Cpu>(),
                                    s.label.defined() ? s.label.template to<Cpu>() : Tensor<L>{}};
    transform.apply(host, rng);
    s = data::detail::upload<Emulated>(host);
  }
};
template <class T>
OnHost<T> on_host(T transform) {
  return {std::move(transform)};
}

}  // namespace loader_device_test

using loader_device_test::Emulated;

/// Staging for the emulated device: a private host copy of the sample, as a pinned buffer is.
template <class L>
struct medseg::data::detail::Staging<Emulated, L> {
  using Staged = transforms::BasicSample<L>;
  Staged stage(const transforms::BasicSample<L>& s) const {
    loader_device_test::threads.add(loader_device_test::threads.staged);
    return {s.image.clone(), s.label.defined() ? s.label.clone() : Tensor<L>{}};
  }
  transforms::BasicSample<L, Emulated> upload(Staged& s) const { return detail::upload<Emulated>(s); }
};

namespace {

data::MemoryDataset make_dataset(int n, const transforms::Index3& size) {
  data::MemoryDataset d;
  for (int i = 0; i < n; ++i) {
    data::Case c;
    c.name = "case_" + std::to_string(i);
    c.image.voxels = Tensor<float>::empty({1, size[0], size[1], size[2]});
    const auto numel = c.image.voxels.numel();
    for (std::int64_t v = 0; v < numel; ++v)
      c.image.voxels.data()[v] = static_cast<float>(i) + static_cast<float>((v * 7) % 23) / 23.0f;
    c.label = io::Image<data::LabelValue>{Tensor<data::LabelValue>::zeros({size[0], size[1], size[2]}), {}};
    for (std::int64_t v = 0; v < numel; v += 5) c.label->voxels.data()[v] = static_cast<data::LabelValue>(1 + (v + i) % 3);
    d.add(std::move(c));
  }
  return d;
}

auto augmentation() {
  return transforms::SpatialTransform{.patch_size = {6, 6, 6}, .crop_size = {7, 7, 7}, .foreground_fraction = 0.5f,
                                      .p_rotation = 0.5f, .p_scale = 0.5f, .p_elastic = 0.3f,
                                      .elastic_sigma = {2.0f, 3.0f}} |
         transforms::GaussianNoise{.p = 0.5f} | transforms::MultiplicativeBrightness{.p = 0.5f} |
         transforms::Contrast{.p = 0.5f} | transforms::Gamma{.p = 0.5f};
}

template <class L, class B>
bool same(const data::Batch<L>& cpu, const data::Batch<L, B>& device) {
  if (cpu.number != device.number || cpu.epoch != device.epoch || cpu.cases != device.cases) return false;
  return cpu.image.to_vector() == device.image.template to<Cpu>().to_vector() &&
         cpu.label.to_vector() == device.label.template to<Cpu>().to_vector();
}

}  // namespace

TEST_CASE("Batch and collate take the samples' backend") {
  static_assert(std::is_same_v<data::Batch<std::uint8_t>, data::Batch<std::uint8_t, Cpu>>);
  std::vector<transforms::BasicSample<std::uint8_t, Emulated>> samples(2);
  for (int i = 0; i < 2; ++i) {
    samples[static_cast<std::size_t>(i)].image = Tensor<float>::full({2, 2, 3, 4}, static_cast<float>(i)).to<Emulated>();
    samples[static_cast<std::size_t>(i)].label =
        Tensor<std::uint8_t>::full({1, 2, 3, 4}, static_cast<std::uint8_t>(i + 5)).to<Emulated>();
  }
  const data::Batch<std::uint8_t, Emulated> b = data::collate(samples);
  REQUIRE(b.image.shape() == Shape{2, 2, 2, 3, 4});
  REQUIRE(b.label.shape() == Shape{2, 1, 2, 3, 4});
  const auto image = b.image.to<Cpu>();
  const auto label = b.label.to<Cpu>();
  CHECK(image(0, 1, 1, 2, 3) == 0.0f);
  CHECK(image(1, 0, 0, 0, 0) == 1.0f);
  CHECK(label(1, 0, 1, 1, 1) == 6);
  samples[1].label = Tensor<std::uint8_t>::zeros({1, 2, 3, 5}).to<Emulated>();
  CHECK_THROWS_WITH(data::collate(samples), Catch::Contains("label of sample 1") && Catch::Contains("[1,2,3,5]"));
}

TEST_CASE("a loader on a device backend gives the CPU loader's batches") {
  const auto dataset = make_dataset(5, {9, 8, 10});
  std::vector<data::Batch<data::LabelValue>> reference;
  {
    data::Loader cpu{dataset, augmentation(), {.batch_size = 2, .workers = 0, .seed = 11, .cache_bytes = 1 << 20}};
    for (int b = 0; b < 7; ++b) reference.push_back(cpu.next());  // 3.5 epochs
  }
  REQUIRE(reference[0].image.shape() == Shape{2, 1, 6, 6, 6});
  for (const int workers : {0, 1, 3}) {
    auto device = data::make_loader<Emulated>(dataset, loader_device_test::on_host(augmentation()),
                                              {.batch_size = 2, .workers = workers, .seed = 11, .prefetch = 2,
                                               .cache_bytes = workers == 3 ? std::size_t{1} << 20 : 0});
    static_assert(std::is_same_v<decltype(device.next()), data::Batch<data::LabelValue, Emulated>>);
    for (int b = 0; b < 7; ++b) {
      INFO("workers " << workers << ", batch " << b);
      CHECK(same(reference[static_cast<std::size_t>(b)], device.next()));
    }
    for (const int b : {6, 0, 3}) {
      INFO("workers " << workers << ", batch(" << b << ")");
      CHECK(same(reference[static_cast<std::size_t>(b)], device.batch(static_cast<std::uint64_t>(b))));
    }
  }
}

TEST_CASE("a device loader stages samples on its workers and augments them on the caller's thread") {
  const auto dataset = make_dataset(4, {8, 8, 8});
  {
    std::lock_guard lock(loader_device_test::threads.mutex);
    loader_device_test::threads.staged.clear();
    loader_device_test::threads.augmented.clear();
  }
  {
    auto device = data::make_loader<Emulated>(dataset, loader_device_test::on_host(augmentation()),
                                              {.batch_size = 2, .workers = 2, .seed = 3});
    for (int b = 0; b < 4; ++b) (void)device.next();
  }
  std::lock_guard lock(loader_device_test::threads.mutex);
  CHECK(loader_device_test::threads.augmented == std::set<std::thread::id>{std::this_thread::get_id()});
  CHECK_FALSE(loader_device_test::threads.staged.empty());
  CHECK(loader_device_test::threads.staged.count(std::this_thread::get_id()) == 0);
}

namespace {
struct Failing {
  template <class L, class B>
  void apply(transforms::BasicSample<L, B>&, RandomStream&) const {
    throw Error{{.where = "Failing", .field = "sample", .expected = "nothing", .actual = "a sample"}};
  }
};
}  // namespace

TEST_CASE("a device loader names the case whose augmentation fails") {
  auto device = data::make_loader<Emulated>(make_dataset(2, {8, 8, 8}), Failing{},
                                            {.batch_size = 1, .workers = 1, .shuffle = false});
  CHECK_THROWS_WITH(device.next(), Catch::Contains("data::Loader: case 0 (case_0): Failing"));
  CHECK_THROWS_WITH(device.batch(1), Catch::Contains("data::Loader: case 1 (case_1): Failing"));
}
