// The caching host allocator: size classes, reuse, best-fit carving and coalescing of large
// blocks, zeroed blocks, the cache limit, trimming, and use from several threads at once.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "medseg/backends/cpu/host_allocator.hpp"
#include "medseg/core/tensor.hpp"

using namespace medseg;

TEST_CASE("host size classes cover every size with at most a quarter of slack") {
  std::size_t previous = 0;
  for (std::size_t bytes = 1; bytes < (std::size_t{1} << 22); bytes = bytes * 9 / 8 + 1) {
    const std::size_t c = HostAllocator::class_bytes(bytes);
    CHECK(c >= bytes);
    CHECK(c % HostAllocator::alignment == 0);
    CHECK(c >= previous);  // classes grow with the request
    if (bytes > 256) CHECK(c <= bytes + bytes / 4 + HostAllocator::alignment);
    previous = c;
  }
  CHECK(HostAllocator::class_bytes(64) == 64);
  CHECK(HostAllocator::class_bytes(65) == 128);
  CHECK(HostAllocator::class_bytes(std::size_t{1} << 30) == std::size_t{1} << 30);
  // Large blocks: 64 KiB multiples, at most an eighth of slack.
  CHECK(HostAllocator::class_bytes(HostAllocator::large_threshold) == HostAllocator::large_threshold);
  CHECK(HostAllocator::class_bytes(HostAllocator::large_threshold + 1) == HostAllocator::large_threshold + HostAllocator::granule);
  for (std::size_t bytes = HostAllocator::large_threshold; bytes < (std::size_t{1} << 28); bytes = bytes * 5 / 4 + 12345)
    CHECK(HostAllocator::class_bytes(bytes) - bytes < HostAllocator::granule);
}

TEST_CASE("host blocks come back from the cache") {
  HostAllocator cache;
  if (!cache.caching()) return;  // AddressSanitizer builds, or MEDSEG_HOST_CACHE=0
  void* a = cache.allocate(100000);
  CHECK(reinterpret_cast<std::uintptr_t>(a) % HostAllocator::alignment == 0);
  cache.deallocate(a, 100000);
  CHECK(cache.stats().cached == HostAllocator::class_bytes(100000));
  void* b = cache.allocate(99000);  // same class
  CHECK(b == a);
  CHECK(cache.stats().hits == 1);
  CHECK(cache.stats().misses == 1);
  CHECK(cache.stats().cached == 0);
  void* big = cache.allocate(std::size_t{3} << 20);
  CHECK(reinterpret_cast<std::uintptr_t>(big) % HostAllocator::granule == 0);
  cache.deallocate(big, std::size_t{3} << 20);
  cache.deallocate(b, 99000);
  CHECK(cache.stats().in_use == 0);
  CHECK(cache.stats().peak_in_use == HostAllocator::class_bytes(100000) + HostAllocator::class_bytes(3 << 20));
  cache.trim();
  CHECK(cache.stats().cached == 0);
}

TEST_CASE("large host blocks are carved best-fit and coalesce when freed") {
  HostAllocator cache;
  if (!cache.caching()) return;
  constexpr std::size_t mib = std::size_t{1} << 20;
  auto* a = static_cast<char*>(cache.allocate(16 * mib));
  auto* b = static_cast<char*>(cache.allocate(16 * mib));
  std::memset(a, 1, 16 * mib);
  std::memset(b, 2, 16 * mib);
  CHECK(cache.stats().misses == 2);
  cache.deallocate(a, 16 * mib);
  cache.deallocate(b, 16 * mib);
  CHECK(cache.stats().cached == 32 * mib);
  // The two freed neighbours serve one request of their combined size, and a different size
  // fits into what is free: no fresh memory either time.
  auto* c = static_cast<char*>(cache.allocate(32 * mib));
  CHECK(c == std::min(a, b));
  CHECK(cache.stats().misses == 2);
  cache.deallocate(c, 32 * mib);
  auto* d = static_cast<char*>(cache.allocate(5 * mib));
  auto* e = static_cast<char*>(cache.allocate(20 * mib));
  CHECK(cache.stats().misses == 2);
  CHECK(cache.stats().hits == 3);
  CHECK(cache.stats().in_use == 25 * mib);
  CHECK(cache.stats().cached == 7 * mib);
  // Best fit: of a 5 MiB hole and the rest of the segment, 4 MiB goes into the hole.
  cache.deallocate(d, 5 * mib);
  auto* f = static_cast<char*>(cache.allocate(4 * mib));
  CHECK(f == std::min(a, b));
  cache.deallocate(e, 20 * mib);
  cache.deallocate(f, 4 * mib);
  CHECK(cache.stats().in_use == 0);
  CHECK(cache.stats().peak_in_use == 32 * mib);
  cache.trim();
  CHECK(cache.stats().cached == 0);
  // Trimmed memory is given back but stays reserved: the next request reuses the range.
  auto* g = static_cast<char*>(cache.allocate(8 * mib));
  CHECK(g == std::min(a, b));
  cache.deallocate(g, 8 * mib);
}

TEST_CASE("zeroed host blocks are zero, also where the memory was used before") {
  HostAllocator cache;
  constexpr std::size_t bytes = std::size_t{3} << 20;
  for (int round = 0; round < 2; ++round) {
    auto* dirty = static_cast<unsigned char*>(cache.allocate(bytes));
    std::memset(dirty, 0xab, bytes);
    cache.deallocate(dirty, bytes);
    for (const std::size_t n : {bytes, std::size_t{1000}, bytes + 12345}) {
      auto* z = static_cast<unsigned char*>(cache.allocate_zeroed(n));
      CHECK(std::all_of(z, z + n, [](unsigned char v) { return v == 0; }));
      std::memset(z, 0xcd, n);
      cache.deallocate(z, n);
    }
  }
  CHECK(cache.stats().in_use == 0);
}

TEST_CASE("Cpu zeros are zero after the cache reuses dirty memory") {
  for (int round = 0; round < 3; ++round) {
    { auto t = Tensor<float>::full({1, 8, 32, 32, 32}, 7.0f); }
    auto z = Tensor<float>::zeros({1, 8, 32, 32, 32});
    const float* p = z.data();
    CHECK(std::all_of(p, p + z.numel(), [](float v) { return v == 0.0f; }));
  }
}

TEST_CASE("host cache keeps no more than its limit") {
  HostAllocator cache;
  if (!cache.caching()) return;
  // Small blocks: beyond the limit a freed block goes back to the OS.
  cache.set_limit(150000);
  void* a = cache.allocate(100000);
  void* b = cache.allocate(100000);
  cache.deallocate(a, 100000);
  cache.deallocate(b, 100000);  // would exceed the limit: freed instead
  CHECK(cache.stats().cached == HostAllocator::class_bytes(100000));
  cache.set_limit(0);
  CHECK(cache.stats().cached == 0);
  // Large blocks go back in whole huge pages, the block just freed first.
  constexpr std::size_t mib = std::size_t{1} << 20;
  cache.set_limit(5 * mib);
  auto* c = static_cast<char*>(cache.allocate(4 * mib));
  auto* d = static_cast<char*>(cache.allocate(4 * mib));
  std::memset(c, 1, 4 * mib);
  std::memset(d, 1, 4 * mib);
  cache.deallocate(c, 4 * mib);
  CHECK(cache.stats().cached == 4 * mib);
  cache.deallocate(d, 4 * mib);
  CHECK(cache.stats().cached == 4 * mib);
  cache.set_limit(0);
  CHECK(cache.stats().cached == 0);
}

TEST_CASE("host cache serves several threads at once") {
  HostAllocator cache;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&cache, t] {
      for (int i = 0; i < 2000; ++i) {
        const std::size_t bytes = static_cast<std::size_t>(64 + (i % 7) * 1000 + t);
        auto* p = static_cast<unsigned char*>(cache.allocate(bytes));
        p[0] = p[bytes - 1] = static_cast<unsigned char>(t);
        cache.deallocate(p, bytes);
      }
    });
  for (auto& t : threads) t.join();
  CHECK(cache.stats().in_use == 0);
}

TEST_CASE("Cpu tensors allocate through the host cache") {
  const auto before = host_allocator().stats();
  { auto t = Tensor<float>::empty({1, 4, 32, 32, 32}); }
  { auto t = Tensor<float>::empty({1, 4, 32, 32, 32}); }
  const auto after = host_allocator().stats();
  CHECK(after.in_use == before.in_use);
  if (host_allocator().caching()) CHECK(after.hits >= before.hits + 1);
}
