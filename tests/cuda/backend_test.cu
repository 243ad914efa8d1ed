// The Cuda backend's memory, copies, streams, and the counter-based RNG inside a kernel,
// each checked against the CPU.
#include <catch2/catch.hpp>

#include <numeric>

// The backend's memory and streams alone, not medseg/cuda.hpp: that one brings every CPU kernel
// header (oneDNN, Eigen) too, which programs compile with the host compiler, not nvcc.
#include "medseg/backends/cuda/backend.hpp"
#include "medseg/core.hpp"

using namespace medseg;

namespace {

__global__ void philox_kernel(float* uniform, float* normal, std::uint64_t n, std::uint64_t seed,
                              std::uint64_t stream) {
  const std::uint64_t i = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x;
  if (i < n) {
    uniform[i] = uniform_at(seed, stream, i);
    normal[i] = normal_at(seed, stream, i);
  }
}

__global__ void half_kernel(const float* in, float16* out, bfloat16* bout, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    out[i] = float16(in[i]);
    bout[i] = bfloat16(in[i]);
  }
}

Tensor<float> iota(const Shape& s) {
  auto t = Tensor<float>::empty(s);
  std::iota(t.data(), t.data() + t.numel(), 0.0f);
  return t;
}

}  // namespace

TEST_CASE("a device tensor round-trips through host copies") {
  auto h = iota({2, 3, 4, 5, 6});
  auto d = h.to<Cuda>();
  CHECK(d.shape() == h.shape());
  CHECK(d.is_contiguous());
  auto back = d.to<Cpu>();
  CHECK(back.to_vector() == h.to_vector());
  CHECK(d.to_vector() == h.to_vector());
}

TEST_CASE("channel slices copy between host and device in both directions") {
  auto h = iota({3, 5, 7});
  auto d = h.to<Cuda>();
  auto dslice = d.slice(1, 1, 4);
  CHECK(dslice.to_vector() == h.slice(1, 1, 4).to_vector());
  auto dclone = dslice.clone();  // device -> device, pitched
  CHECK(dclone.is_contiguous());
  CHECK(dclone.to_vector() == h.slice(1, 1, 4).to_vector());

  dslice.copy_from(Tensor<float>::full({3, 3, 7}, -1.0f));  // host dense -> device pitched
  auto expect = h.clone();
  expect.slice(1, 1, 4).fill(-1.0f);
  CHECK(d.to_vector() == expect.to_vector());
}

TEST_CASE("zeros and fill on the device") {
  auto z = Tensor<double, Cuda>::zeros({1000});
  for (double v : z.to_vector()) REQUIRE(v == 0.0);
  auto f = Tensor<std::int32_t, Cuda>::full({4, 6}, 7);
  for (auto v : f.to_vector()) REQUIRE(v == 7);
  f.slice(1, 2, 4).fill(-3);
  const auto v = f.to_vector();
  CHECK(v[2] == -3);
  CHECK(v[4] == 7);
}

TEST_CASE("work on a side stream is ordered and timed with events") {
  cuda::Stream s;
  cuda::Event start, stop;
  auto h = iota({1 << 20});
  Tensor<float, Cuda> d;
  {
    cuda::StreamGuard guard(s);
    CHECK(cuda::current_stream() == s.get());
    start.record(s.get());
    d = h.to<Cuda>();
    auto d2 = d.clone();
    stop.record(s.get());
    stop.synchronize();
    CHECK(d2.to_vector() == h.to_vector());
  }
  CHECK(cuda::current_stream() == cudaStreamPerThread);
  CHECK(stop.elapsed_ms_since(start) >= 0.0f);
}

TEST_CASE("pinned buffers allocate page-locked memory") {
  cuda::PinnedBuffer p(1 << 20);
  CHECK(p.data() != nullptr);
  cudaPointerAttributes attr{};
  MEDSEG_CUDA_CHECK(cudaPointerGetAttributes(&attr, p.data()));
  CHECK(attr.type == cudaMemoryTypeHost);
}

TEST_CASE("running out of GPU memory says how much was asked and how much is free") {
  CHECK_THROWS_WITH((Tensor<float, Cuda>::empty({std::int64_t{1} << 50})),
                    Catch::Contains("out of GPU memory") && Catch::Contains("bytes (free of"));
  auto after = Tensor<float, Cuda>::zeros({16});  // the device still works
  CHECK(after.to_vector()[15] == 0.0f);
}

TEST_CASE("CUDA errors become medseg::Error naming the call") {
  CHECK_THROWS_WITH([] { MEDSEG_CUDA_CHECK(cudaSetDevice(1 << 20)); }(),
                    Catch::Contains("cudaSetDevice") && Catch::Contains("cudaErrorInvalidDevice"));
}

TEST_CASE("device info describes the GPU") {
  const auto info = cuda::device_info();
  INFO(info.name);
  CHECK(info.major >= 7);
  CHECK(info.total_bytes > 0);
  CHECK(info.multiprocessors > 0);
}

TEST_CASE("Philox in a kernel gives the CPU's numbers") {
  const std::uint64_t n = (1 << 20) + 3;
  auto u = Tensor<float, Cuda>::empty({static_cast<std::int64_t>(n)});
  auto z = Tensor<float, Cuda>::empty({static_cast<std::int64_t>(n)});
  philox_kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, cuda::current_stream()>>>(u.data(), z.data(), n,
                                                                                             77, 5);
  MEDSEG_CUDA_CHECK(cudaGetLastError());
  auto hu = Tensor<float>::empty({static_cast<std::int64_t>(n)});
  auto hz = Tensor<float>::empty({static_cast<std::int64_t>(n)});
  random::uniform(hu, {.seed = 77, .stream = 5});
  random::normal(hz, {.seed = 77, .stream = 5});
  CHECK(u.to_vector() == hu.to_vector());  // integer arithmetic: bit for bit
  const auto gz = z.to_vector();
  const auto cz = hz.to_vector();
  std::size_t off = 0;
  for (std::size_t i = 0; i < n; ++i)
    if (std::abs(gz[i] - cz[i]) > 1e-6f * std::max(1.0f, std::abs(cz[i]))) ++off;
  CHECK(off == 0);
}

TEST_CASE("float16 and bfloat16 convert the same on the device") {
  auto in = Tensor<float>::from({0.0f, 1.0f, -2.5f, 65504.0f, 70000.0f, 1e-7f, 3.14159f, 1.0f + 3.0f / 2048}, {8});
  auto din = in.to<Cuda>();
  auto h = Tensor<float16, Cuda>::empty({8});
  auto b = Tensor<bfloat16, Cuda>::empty({8});
  half_kernel<<<1, 32, 0, cuda::current_stream()>>>(din.data(), h.data(), b.data(), 8);
  MEDSEG_CUDA_CHECK(cudaGetLastError());
  const auto hv = h.to_vector();
  const auto bv = b.to_vector();
  const auto expect_h = in.astype<float16>().to_vector();
  const auto expect_b = in.astype<bfloat16>().to_vector();
  for (int i = 0; i < 8; ++i) {
    CHECK(hv[i].bits == expect_h[i].bits);
    CHECK(bv[i].bits == expect_b[i].bits);
  }
}
