// The Dataset concept and CachedDataset: every layout models the concept; the cache keeps
// cases within its byte budget, evicts the least recently used, hands out independent
// copies, and is safe to load from several threads.
#include <atomic>
#include <thread>

#include "fixtures.hpp"

using namespace medseg;
using namespace medseg::data;

static_assert(Dataset<ListDataset>);
static_assert(Dataset<DecathlonDataset>);
static_assert(Dataset<NnunetRawDataset>);

namespace {

/// An in-memory dataset that counts its loads.
struct Counting {
  std::size_t n = 4;
  mutable std::atomic<int> loads{0};
  Counting() = default;
  Counting(const Counting& o) : n(o.n), loads(o.loads.load()) {}
  std::size_t size() const { return n; }
  std::string name(std::size_t i) const { return "case" + std::to_string(i); }
  LabelMap labels() const { return {}; }
  Case load(std::size_t i) const {
    ++loads;
    auto im = test::volume({1, 4, 8, 8}, static_cast<float>(i));  // 1 KiB of voxels
    return {name(i), im, test::label({4, 8, 8}, 2)};
  }
};
static_assert(Dataset<Counting>);
static_assert(Dataset<CachedDataset<Counting>>);

}  // namespace

TEST_CASE("dataset: the cache keeps cases within its byte budget, least recently used out first") {
  const std::size_t one = 4 * 8 * 8 * 4 + 4 * 8 * 8;  // float image + uint8 label
  CachedDataset cache{Counting{}, 2 * one};
  cache.load(0);
  cache.load(1);
  CHECK(cache.inner().loads == 2);
  CHECK(cache.cached_cases() == 2);
  CHECK(cache.cached_bytes() == 2 * one);
  cache.load(0);  // hit; case 1 becomes the least recently used
  CHECK(cache.inner().loads == 2);
  cache.load(2);  // evicts case 1
  CHECK(cache.inner().loads == 3);
  CHECK(cache.cached_bytes() <= 2 * one);
  cache.load(0);
  CHECK(cache.inner().loads == 3);
  cache.load(1);
  CHECK(cache.inner().loads == 4);
  CachedDataset tiny{Counting{}, one - 1};  // nothing fits: every load goes to the files
  tiny.load(0);
  tiny.load(0);
  CHECK(tiny.inner().loads == 2);
  CHECK(tiny.cached_bytes() == 0);
}

TEST_CASE("dataset: cached cases are copies and loads from several threads agree") {
  CachedDataset cache{Counting{}, 1 << 20};
  Case a = cache.load(3);
  a.image.voxels.fill(-1.0f);  // must not reach the cache
  CHECK(cache.load(3).image.voxels.at(0, 0, 0, 1) == 4.0f);
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int k = 0; k < 50; ++k) {
        const std::size_t i = static_cast<std::size_t>((k + t) % 4);
        if (cache.load(i).image.voxels.at(0, 0, 0, 0) != static_cast<float>(i)) ++wrong;
      }
    });
  for (auto& th : threads) th.join();
  CHECK(wrong == 0);
  CHECK(cache.cached_cases() == 4);
}

static_assert(Dataset<MemoryDataset>);

TEST_CASE("dataset: a memory dataset shares its cases and checks them when added") {
  MemoryDataset d{{.labels = {{0, "background"}, {1, "one"}}}};
  auto im = test::volume({1, 4, 8, 8}, 1.0f);
  d.add({"a", im, test::label({4, 8, 8}, 2)});
  d.add({"b", test::volume({2, 4, 8, 8}, 2.0f), std::nullopt});
  REQUIRE(d.size() == 2);
  CHECK(d.name(1) == "b");
  CHECK(d.load(0).image.voxels.data() == im.voxels.data());  // shared, not copied
  const MemoryDataset copy = d;
  d.add({"c", test::volume({1, 4, 8, 8}, 3.0f), std::nullopt});
  CHECK(copy.size() == 3);  // copies share the case list
  CHECK_THROWS_AS(d.load(3), Error);

  auto bad = test::label({4, 8, 8}, 2);
  bad.voxels.data()[5] = 7;  // undeclared
  try {
    d.add({"bad", test::volume({1, 4, 8, 8}, 0.0f), bad});
    FAIL("an undeclared label value was accepted");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("'bad'") && Catch::Contains("7 at voxel 5"));
  }
  CHECK_THROWS_AS(d.add({"shape", test::volume({1, 4, 8, 8}, 0.0f), test::label({4, 8, 4}, 2)}), Error);
}
