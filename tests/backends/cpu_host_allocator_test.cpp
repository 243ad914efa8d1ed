// The caching host allocator: size classes, reuse, the cache limit, trimming, and use from
// several threads at once.
#include <catch2/catch.hpp>

#include <cstdint>
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
  CHECK(reinterpret_cast<std::uintptr_t>(big) % HostAllocator::huge_page == 0);
  cache.deallocate(big, std::size_t{3} << 20);
  cache.deallocate(b, 99000);
  CHECK(cache.stats().in_use == 0);
  CHECK(cache.stats().peak_in_use == HostAllocator::class_bytes(100000) + HostAllocator::class_bytes(3 << 20));
  cache.trim();
  CHECK(cache.stats().cached == 0);
}

TEST_CASE("host cache keeps no more than its limit") {
  HostAllocator cache;
  if (!cache.caching()) return;
  cache.set_limit(1 << 20);
  void* a = cache.allocate(700000);
  void* b = cache.allocate(700000);
  cache.deallocate(a, 700000);
  cache.deallocate(b, 700000);  // would exceed the limit: freed instead
  CHECK(cache.stats().cached == HostAllocator::class_bytes(700000));
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
