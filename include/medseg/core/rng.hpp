// Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11, as in Random123, cuRAND
// and PyTorch's CUDA generator). A number is a pure function of (seed, stream, index): the
// same on one thread or sixteen, on the CPU or in a CUDA kernel. Each data sample, dropout
// mask or augmentation gets its own stream, so results never depend on scheduling.
#pragma once

#include <cmath>
#include <cstdint>

#include "host_device.hpp"

namespace medseg {

/// Philox4x32 with 10 rounds: 128-bit counter, 64-bit key -> 128 random bits.
struct Philox4x32 {
  /// 128 bits as four words. A plain struct rather than std::array, whose members are not
  /// callable from CUDA kernels.
  struct Block {
    std::uint32_t w[4];
    MEDSEG_HOST_DEVICE std::uint32_t operator[](std::uint64_t i) const { return w[i]; }
    friend bool operator==(const Block&, const Block&) = default;
  };

  static MEDSEG_HOST_DEVICE Block generate(Block counter, std::uint32_t key0, std::uint32_t key1) {
    constexpr std::uint32_t m0 = 0xD2511F53u, m1 = 0xCD9E8D57u;  // round multipliers
    constexpr std::uint32_t w0 = 0x9E3779B9u, w1 = 0xBB67AE85u;  // Weyl key increments
    for (int round = 0; round < 10; ++round) {
      if (round > 0) {
        key0 += w0;
        key1 += w1;
      }
      const std::uint64_t p0 = static_cast<std::uint64_t>(m0) * counter[0];
      const std::uint64_t p1 = static_cast<std::uint64_t>(m1) * counter[2];
      counter = {{static_cast<std::uint32_t>(p1 >> 32) ^ counter[1] ^ key0, static_cast<std::uint32_t>(p1),
                 static_cast<std::uint32_t>(p0 >> 32) ^ counter[3] ^ key1, static_cast<std::uint32_t>(p0)}};
    }
    return counter;
  }

  /// Block `index` of stream `stream` under `seed`: counter = (index, stream), key = seed.
  static MEDSEG_HOST_DEVICE Block block(std::uint64_t seed, std::uint64_t stream, std::uint64_t index) {
    return generate({{static_cast<std::uint32_t>(index), static_cast<std::uint32_t>(index >> 32),
                      static_cast<std::uint32_t>(stream), static_cast<std::uint32_t>(stream >> 32)}},
                    static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32));
  }
};

/// 32 random bits -> float in [0, 1) with 24 bits of resolution (exact on every platform).
MEDSEG_HOST_DEVICE float uniform_from_bits(std::uint32_t bits) {
  return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f);
}

/// Two words -> two standard normals (Box-Muller, in double so that CPU and GPU round alike).
MEDSEG_HOST_DEVICE void normals_from_bits(std::uint32_t a, std::uint32_t b, float& z0, float& z1) {
  const double u1 = (static_cast<double>(a) + 1.0) * (1.0 / 4294967296.0);  // (0, 1]: log is finite
  const double u2 = static_cast<double>(b) * (1.0 / 4294967296.0);
  // The C functions (::sqrt, not std::sqrt) exist both on the host and in CUDA device code.
  const double r = ::sqrt(-2.0 * ::log(u1));
  const double theta = 6.283185307179586476925286766559 * u2;
  z0 = static_cast<float>(r * ::cos(theta));
  z1 = static_cast<float>(r * ::sin(theta));
}

/// Element `i` of the uniform [0, 1) sequence of (seed, stream): word i % 4 of block i / 4.
MEDSEG_HOST_DEVICE float uniform_at(std::uint64_t seed, std::uint64_t stream, std::uint64_t i) {
  return uniform_from_bits(Philox4x32::block(seed, stream, i / 4)[i % 4]);
}

/// Element `i` of the standard normal sequence of (seed, stream): words (0,1) of block
/// i / 4 give elements 4k and 4k+1, words (2,3) give 4k+2 and 4k+3.
MEDSEG_HOST_DEVICE float normal_at(std::uint64_t seed, std::uint64_t stream, std::uint64_t i) {
  const auto w = Philox4x32::block(seed, stream, i / 4);
  const unsigned pair = static_cast<unsigned>(i % 4) / 2;
  float z0, z1;
  normals_from_bits(w[2 * pair], w[2 * pair + 1], z0, z1);
  return (i % 2) ? z1 : z0;
}

/// A sequential reader over one stream, for code that draws a few numbers at a time (an
/// augmentation choosing its angle). Two RandomStreams with equal (seed, stream) give the
/// same numbers. substream(k) is an independent stream derived from this one's identity.
class RandomStream {
 public:
  MEDSEG_HOST_DEVICE RandomStream(std::uint64_t seed, std::uint64_t stream) : seed_(seed), stream_(stream) {}

  MEDSEG_HOST_DEVICE std::uint64_t seed() const { return seed_; }
  MEDSEG_HOST_DEVICE std::uint64_t stream() const { return stream_; }
  /// Words consumed so far: with (seed, stream) this is the whole state to save and restore.
  MEDSEG_HOST_DEVICE std::uint64_t position() const { return position_; }
  MEDSEG_HOST_DEVICE void seek(std::uint64_t position) { position_ = position; }

  MEDSEG_HOST_DEVICE std::uint32_t next_u32() {
    const std::uint64_t i = position_++;
    return Philox4x32::block(seed_, stream_, i / 4)[i % 4];
  }
  MEDSEG_HOST_DEVICE std::uint64_t next_u64() {
    const std::uint64_t hi = next_u32();
    return (hi << 32) | next_u32();
  }
  /// Uniform in [0, 1).
  MEDSEG_HOST_DEVICE float uniform() { return uniform_from_bits(next_u32()); }
  /// Uniform in [low, high).
  MEDSEG_HOST_DEVICE float uniform(float low, float high) { return low + (high - low) * uniform(); }
  /// Uniform in [0, 1) with 53 bits.
  MEDSEG_HOST_DEVICE double uniform_double() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
  /// Standard normal.
  MEDSEG_HOST_DEVICE float normal() {
    const std::uint32_t a = next_u32(), b = next_u32();
    float z0, z1;
    normals_from_bits(a, b, z0, z1);
    return z0;
  }
  /// Uniform integer in [0, n), without modulo bias (Lemire's multiply-shift with rejection).
  MEDSEG_HOST_DEVICE std::uint32_t below(std::uint32_t n) {
    if (n == 0) return 0;
    std::uint64_t m = static_cast<std::uint64_t>(next_u32()) * n;
    auto low = static_cast<std::uint32_t>(m);
    if (low < n) {
      const std::uint32_t threshold = (0u - n) % n;
      while (low < threshold) {
        m = static_cast<std::uint64_t>(next_u32()) * n;
        low = static_cast<std::uint32_t>(m);
      }
    }
    return static_cast<std::uint32_t>(m >> 32);
  }
  /// True with probability p.
  MEDSEG_HOST_DEVICE bool bernoulli(float p) { return uniform() < p; }

  /// An independent stream named by this stream and `k` (SplitMix64 of the pair).
  MEDSEG_HOST_DEVICE RandomStream substream(std::uint64_t k) const {
    return RandomStream(seed_, mix(stream_ ^ mix(k + 0x9E3779B97F4A7C15ull)));
  }

 private:
  static MEDSEG_HOST_DEVICE std::uint64_t mix(std::uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

  std::uint64_t seed_;
  std::uint64_t stream_;
  std::uint64_t position_ = 0;
};

}  // namespace medseg
