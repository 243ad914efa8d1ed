// data/loader.hpp: batches are collated NCDHW, the same seed gives the same batches on any
// number of workers, each epoch visits every case once, the cache loads each case once and
// keeps to its budget, the prefetch queue is bounded, and failures name the case.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <set>
#include <thread>

#include "medseg/data/loader.hpp"
#include "medseg/transforms.hpp"

using namespace medseg;
using medseg::transforms::Index3;

namespace {

/// Cases held in memory; counts its loads (shared, so copies of the dataset count together).
struct MemoryDataset {
  std::vector<data::Case> cases;
  std::shared_ptr<std::atomic<int>> loads = std::make_shared<std::atomic<int>>(0);

  std::size_t size() const { return cases.size(); }
  std::string name(std::size_t i) const { return cases[i].name; }
  data::LabelMap labels() const { return {}; }
  data::Case load(std::size_t i) const {
    ++*loads;
    return cases[i];
  }
};
static_assert(data::Dataset<MemoryDataset>);

/// n cases of `size`, case i filled with i + voxel / numel and a label marking one corner.
MemoryDataset make_dataset(int n, const Index3& size, std::int64_t channels = 1) {
  MemoryDataset d;
  for (int i = 0; i < n; ++i) {
    data::Case c;
    c.name = "case_" + std::to_string(i);
    c.image.voxels = Tensor<float>::empty({channels, size[0], size[1], size[2]});
    const auto numel = c.image.voxels.numel();
    for (std::int64_t v = 0; v < numel; ++v) c.image.voxels.data()[v] = static_cast<float>(i) + static_cast<float>(v) / numel;
    c.label = io::Image<data::LabelValue>{Tensor<data::LabelValue>::zeros({size[0], size[1], size[2]}), {}};
    c.label->voxels.data()[0] = static_cast<data::LabelValue>(1 + i % 3);
    d.cases.push_back(std::move(c));
  }
  return d;
}

template <class L>
bool same(const data::Batch<L>& a, const data::Batch<L>& b) {
  if (a.cases != b.cases || a.image.shape() != b.image.shape() || a.label.shape() != b.label.shape()) return false;
  return a.image.to_vector() == b.image.to_vector() && a.label.to_vector() == b.label.to_vector();
}

auto augmentation() {
  return transforms::RandomCrop{.size = {6, 6, 6}} |
         transforms::SpatialTransform{.p_rotation = 0.5f, .p_scale = 0.5f} | transforms::GaussianNoise{.p = 0.5f} |
         transforms::RandomFlip3D{};
}

}  // namespace

TEST_CASE("collate stacks samples into NCDHW batches") {
  std::vector<transforms::Sample> samples(3);
  for (int i = 0; i < 3; ++i) {
    samples[static_cast<std::size_t>(i)].image = Tensor<float>::full({2, 2, 3, 4}, static_cast<float>(i));
    samples[static_cast<std::size_t>(i)].label = Tensor<std::uint8_t>::full({1, 2, 3, 4}, static_cast<std::uint8_t>(i));
  }
  const auto b = data::collate(samples);
  REQUIRE(b.image.shape() == Shape{3, 2, 2, 3, 4});
  REQUIRE(b.label.shape() == Shape{3, 1, 2, 3, 4});
  CHECK(b.image(2, 1, 1, 2, 3) == 2.0f);
  CHECK(b.label(1, 0, 1, 1, 1) == 1);
  samples[1].image = Tensor<float>::zeros({2, 2, 3, 5});
  CHECK_THROWS_WITH(data::collate(samples), Catch::Contains("image shape of sample 1") && Catch::Contains("[2,2,3,5]"));
}

TEST_CASE("the same seed gives the same batches on any number of workers") {
  const auto dataset = make_dataset(5, {8, 9, 10});
  std::vector<data::Batch<data::LabelValue>> reference;
  {
    data::Loader loader{dataset, augmentation(), {.batch_size = 2, .workers = 0, .seed = 42}};
    CHECK(loader.batches_per_epoch() == 2);
    for (int b = 0; b < 7; ++b) reference.push_back(loader.next());  // 3.5 epochs
  }
  REQUIRE(reference[0].image.shape() == Shape{2, 1, 6, 6, 6});
  REQUIRE(reference[0].label.shape() == Shape{2, 1, 6, 6, 6});
  CHECK(reference[5].epoch == 2);
  for (const int workers : {1, 2, 3}) {
    data::Loader loader{dataset, augmentation(), {.batch_size = 2, .workers = workers, .seed = 42, .prefetch = 2}};
    for (int b = 0; b < 7; ++b) {
      const auto batch = loader.next();
      INFO("workers " << workers << ", batch " << b);
      CHECK(batch.number == static_cast<std::uint64_t>(b));
      CHECK(same(batch, reference[static_cast<std::size_t>(b)]));
    }
  }
  data::Loader other{dataset, augmentation(), {.batch_size = 2, .workers = 1, .seed = 43}};
  bool any_different = false;
  for (int b = 0; b < 4; ++b) any_different = any_different || !same(other.next(), reference[static_cast<std::size_t>(b)]);
  CHECK(any_different);
}

TEST_CASE("each epoch visits every case once in a fresh order") {
  const auto dataset = make_dataset(6, {4, 4, 4});
  data::Loader loader{dataset, transforms::CenterCrop{.size = {4, 4, 4}}, {.batch_size = 3, .workers = 2, .seed = 1}};
  std::vector<std::vector<std::size_t>> orders;
  for (int e = 0; e < 3; ++e) {
    std::vector<std::size_t> order;
    for (int b = 0; b < 2; ++b) {
      const auto batch = loader.next();
      for (std::size_t k = 0; k < batch.cases.size(); ++k) {
        order.push_back(batch.cases[k]);
        // The batch holds the case it names: image values start at the case index.
        CHECK(static_cast<std::size_t>(batch.image(static_cast<std::int64_t>(k), 0, 0, 0, 0)) == batch.cases[k]);
      }
    }
    CHECK(std::set<std::size_t>(order.begin(), order.end()).size() == 6);
    orders.push_back(order);
  }
  CHECK((orders[0] != orders[1] || orders[1] != orders[2]));
}

TEST_CASE("the cache loads each case once and respects its byte budget") {
  const auto dataset = make_dataset(4, {8, 8, 8});  // 2 KiB image + 512 B label per case
  {
    data::Loader loader{dataset, transforms::RandomCrop{.size = {4, 4, 4}},
                        {.batch_size = 2, .workers = 2, .cache_bytes = 1 << 20}};
    for (int b = 0; b < 10; ++b) loader.next();
    CHECK(dataset.loads->load() == 4);
    CHECK(loader.cached_bytes() == 4 * (2048 + 512));
  }
  dataset.loads->store(0);
  data::Loader small{dataset, transforms::RandomCrop{.size = {4, 4, 4}},
                     {.batch_size = 2, .workers = 0, .cache_bytes = 2 * (2048 + 512)}};
  for (int b = 0; b < 10; ++b) small.next();
  CHECK(small.cached_bytes() <= 2 * (2048 + 512));
  CHECK(dataset.loads->load() > 4);
}

TEST_CASE("the prefetch queue is bounded") {
  const auto dataset = make_dataset(4, {4, 4, 4});
  data::Loader loader{dataset, transforms::CenterCrop{.size = {4, 4, 4}}, {.batch_size = 1, .workers = 2, .prefetch = 3}};
  // A sample starts only when its batch is within `prefetch` of the next one to be taken:
  // loads <= taken + prefetch, however long the workers have had.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK(dataset.loads->load() <= 3);
  loader.next();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(dataset.loads->load() <= 4);
  for (int i = 0; i < 4; ++i) loader.next();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(dataset.loads->load() <= 8);
}

TEST_CASE("a failing case is reported with its index and name") {
  auto dataset = make_dataset(3, {4, 4, 4});
  dataset.cases[1].label->voxels = Tensor<data::LabelValue>::zeros({4, 4, 5});  // does not match its image
  data::Loader loader{dataset, transforms::RandomFlip3D{}, {.batch_size = 3, .workers = 2, .shuffle = false}};
  CHECK_THROWS_WITH(loader.next(), Catch::Contains("case 1 (case_1)") && Catch::Contains("sample.label"));
}

TEST_CASE("the loader rejects a batch larger than the dataset") {
  const auto dataset = make_dataset(2, {4, 4, 4});
  CHECK_THROWS_WITH((data::Loader{dataset, transforms::RandomFlip3D{}, {.batch_size = 3}}),
                    Catch::Contains("batch_size") && Catch::Contains("2 cases"));
}

TEST_CASE("the loader converts labels to the element type it is asked for") {
  const auto dataset = make_dataset(2, {4, 4, 4});
  const auto chain = transforms::RandomFlip3D{} | transforms::CenterCrop{.size = {4, 4, 4}};
  data::Loader<MemoryDataset, decltype(chain), std::int16_t> loader{dataset, chain, {.batch_size = 2, .workers = 0}};
  const auto batch = loader.next();
  static_assert(std::is_same_v<decltype(batch.label)::value_type, std::int16_t>);
  REQUIRE(batch.label.shape() == Shape{2, 1, 4, 4, 4});
  std::int64_t marked = 0;
  for (std::int64_t i = 0; i < batch.label.numel(); ++i) marked += batch.label.data()[i] != 0;
  CHECK(marked == 2);  // each case marks one voxel
}
