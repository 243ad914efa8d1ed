// The caching allocator: blocks are reused by size class and stream, peaks are reported, and
// running out of memory is an Error that names the request.
#include <catch2/catch.hpp>

#include "medseg/cuda.hpp"

using namespace medseg;

TEST_CASE("freed device blocks are reused without a new cudaMalloc") {
  auto& a = cuda::device_allocator();
  { auto warm = Tensor<float, Cuda>::zeros({1000, 37}); }
  const auto before = a.stats();
  for (int i = 0; i < 10; ++i) {
    auto t = Tensor<float, Cuda>::zeros({1000, 37});
    REQUIRE(a.stats().allocated >= before.allocated + 37000 * sizeof(float));
  }
  const auto after = a.stats();
  CHECK(after.mallocs == before.mallocs);
  CHECK(after.allocated == before.allocated);
  CHECK(after.peak_allocated >= before.allocated + 37000 * sizeof(float));
}

TEST_CASE("a block freed on one stream is not handed to another") {
  auto& a = cuda::device_allocator();
  cuda::Stream s;
  void* on_side = nullptr;
  {
    cuda::StreamGuard guard(s);
    auto t = Tensor<float, Cuda>::zeros({12345});
    on_side = t.data();
  }
  auto u = Tensor<float, Cuda>::zeros({12345});  // the default stream: a different queue
  CHECK(u.data() != on_side);
  a.empty_cache();
  CHECK(a.stats().reserved == a.stats().allocated);
}

TEST_CASE("uncached, a block is exactly the bytes asked for, so memcheck sees one past the end") {
  cuda::DeviceAllocator uncached(false), cached(true);
  void* p = uncached.allocate(1000);
  CHECK(uncached.stats().reserved == 1000);
  CHECK(uncached.stats().allocated == 1000);
  uncached.deallocate(p);
  CHECK(uncached.stats().reserved == 0);
  void* q = cached.allocate(1000);
  CHECK(cached.stats().reserved == 1024);  // the size class
  cached.deallocate(q);
  cached.empty_cache();
  CHECK(cached.stats().reserved == 0);
}

TEST_CASE("size classes round up to 512 bytes, then to 2 MiB") {
  CHECK(cuda::DeviceAllocator::size_class(1) == 512);
  CHECK(cuda::DeviceAllocator::size_class(513) == 1024);
  CHECK(cuda::DeviceAllocator::size_class((1 << 20) + 1) == (std::size_t{2} << 20));
  CHECK(cuda::DeviceAllocator::size_class((std::size_t{5} << 20)) == (std::size_t{6} << 20));
}

TEST_CASE("asking for more than the GPU has is an Error naming the request") {
  const auto info = cuda::device_info();
  try {
    auto huge = Tensor<std::uint8_t, Cuda>::empty({static_cast<std::int64_t>(info.total_bytes) * 2});
    FAIL("an allocation twice the device's memory succeeded");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("out of GPU memory"));
    CHECK_THAT(e.what(), Catch::Contains(std::to_string(info.total_bytes * 2)));
  }
  auto fine = Tensor<float, Cuda>::zeros({16});  // the runtime is still usable
  CHECK(fine.to_vector()[0] == 0.0f);
}
