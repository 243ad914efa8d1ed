// Filling CPU tensors with counter-based random numbers (core/rng.hpp). Element i of the
// tensor (row-major) always takes element `offset + i` of the (seed, stream) sequence, so
// the result does not depend on the thread count, and a CUDA kernel indexing the same way
// (uniform_at, normal_at) produces the same tensor.
#pragma once

#include <array>
#include <cstdint>

#include "parallel.hpp"
#include "rng.hpp"
#include "tensor.hpp"

namespace medseg::random {

/// Where a fill draws from: element i of the tensor uses sequence element `offset + i`.
struct Source {
  std::uint64_t seed = 0;
  std::uint64_t stream = 0;
  std::uint64_t offset = 0;
};

namespace detail {
/// Calls make(words) -> 4 values for each Philox block that the tensor's elements touch,
/// and stores the values that fall inside the tensor. One block serves four elements.
template <class T, class Make>
void fill_blocks(const Tensor<T, Cpu>& t, const Source& src, const char* op, Make&& make) {
  require(t.is_contiguous(), [&] {
    return ErrorInfo{.where = std::string("random::") + op, .field = "layout", .expected = "a contiguous tensor",
                     .actual = t.layout().to_string()};
  });
  T* d = t.data();
  const auto n = static_cast<std::uint64_t>(t.numel());
  if (n == 0) return;
  const std::uint64_t first_block = src.offset / 4;
  const std::uint64_t blocks = (src.offset + n - 1) / 4 - first_block + 1;
  parallel_for(0, static_cast<std::int64_t>(blocks), 1 << 12, [&](std::int64_t b, std::int64_t e) {
    for (auto k = static_cast<std::uint64_t>(b); k < static_cast<std::uint64_t>(e); ++k) {
      const std::uint64_t block = first_block + k;
      const std::array<float, 4> v = make(Philox4x32::block(src.seed, src.stream, block));
      for (std::uint64_t j = 0; j < 4; ++j) {
        const std::uint64_t seq = block * 4 + j;
        if (seq >= src.offset && seq - src.offset < n) d[seq - src.offset] = static_cast<T>(v[j]);
      }
    }
  });
}
}  // namespace detail

/// Uniform in [low, high).
template <class T>
void uniform(const Tensor<T, Cpu>& t, Source src, float low = 0.0f, float high = 1.0f) {
  const float scale = high - low;
  detail::fill_blocks(t, src, "uniform", [&](const Philox4x32::Block& w) {
    return std::array<float, 4>{low + scale * uniform_from_bits(w[0]), low + scale * uniform_from_bits(w[1]),
                                low + scale * uniform_from_bits(w[2]), low + scale * uniform_from_bits(w[3])};
  });
}

/// Normal with the given mean and standard deviation.
template <class T>
void normal(const Tensor<T, Cpu>& t, Source src, float mean = 0.0f, float stddev = 1.0f) {
  detail::fill_blocks(t, src, "normal", [&](const Philox4x32::Block& w) {
    std::array<float, 4> z;
    normals_from_bits(w[0], w[1], z[0], z[1]);
    normals_from_bits(w[2], w[3], z[2], z[3]);
    for (float& x : z) x = mean + stddev * x;
    return z;
  });
}

/// 1 with probability p, else 0.
template <class T>
void bernoulli(const Tensor<T, Cpu>& t, Source src, float p) {
  detail::fill_blocks(t, src, "bernoulli", [&](const Philox4x32::Block& w) {
    std::array<float, 4> v;
    for (int j = 0; j < 4; ++j) v[static_cast<std::size_t>(j)] = uniform_from_bits(w[static_cast<std::size_t>(j)]) < p ? 1.0f : 0.0f;
    return v;
  });
}

}  // namespace medseg::random
