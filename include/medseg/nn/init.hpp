// Weight initialisers (torch.nn.init's Kaiming, Xavier, constant, and the defaults PyTorch's
// Conv/Linear layers use), drawn from the counter-based RNG. Like torch.manual_seed, one
// process-wide seed and a counter give each initialised tensor its own stream, so a network
// built in the same order after manual_seed(s) has the same weights on any thread count.
#pragma once

#include <atomic>
#include <cmath>
#include <cstdint>
#include <string>

#include "../core/random.hpp"
#include "../core/tensor.hpp"

namespace medseg::nn::init {

/// Restarts the initialisers' stream counter under `seed` (torch.manual_seed for weights).
void manual_seed(std::uint64_t seed);
/// The next tensor's source: (seed, next stream, offset 0).
random::Source next_source();

enum class Nonlinearity { linear, sigmoid, tanh, relu, leaky_relu, selu };
enum class FanMode { fan_in, fan_out };

/// torch.nn.init.calculate_gain: 1, 1, 5/3, sqrt(2), sqrt(2 / (1 + slope^2)), 3/4.
double gain(Nonlinearity f, double leaky_slope = 0.01);

/// PyTorch's fans of a weight [out, in, k...]: in * prod(k) and out * prod(k). Rank >= 2.
struct Fans {
  std::int64_t in = 1, out = 1;
};
Fans fans(const Shape& weight);

/// N(0, std) with std = gain(f, a) / sqrt(fan): He et al. 2015.
template <class B>
void kaiming_normal(const Tensor<float, B>& w, double a = 0.0, FanMode mode = FanMode::fan_in,
                    Nonlinearity f = Nonlinearity::leaky_relu, random::Source src = next_source());
/// U(-bound, bound) with bound = gain(f, a) * sqrt(3 / fan).
template <class B>
void kaiming_uniform(const Tensor<float, B>& w, double a = 0.0, FanMode mode = FanMode::fan_in,
                     Nonlinearity f = Nonlinearity::leaky_relu, random::Source src = next_source());
/// U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)): Glorot and Bengio 2010.
template <class B>
void xavier_uniform(const Tensor<float, B>& w, double gain = 1.0, random::Source src = next_source());
/// N(0, gain * sqrt(2 / (fan_in + fan_out))).
template <class B>
void xavier_normal(const Tensor<float, B>& w, double gain = 1.0, random::Source src = next_source());
template <class B>
void constant(const Tensor<float, B>& w, float value) {
  w.fill(value);
}
template <class B>
void uniform(const Tensor<float, B>& w, double low, double high, random::Source src = next_source());
template <class B>
void normal(const Tensor<float, B>& w, double mean, double std, random::Source src = next_source());

/// What torch.nn.ConvNd/Linear.reset_parameters do: weight kaiming_uniform(a = sqrt(5)),
/// i.e. U(+-1/sqrt(fan_in)), and bias U(+-1/sqrt(fan_in)). `fan_in_weight` is the weight
/// whose fans count (a transposed conv's [in, out/g, k...] counts out/g * prod(k)).
template <class B>
void pytorch_default(const Tensor<float, B>& weight, const Tensor<float, B>* bias);

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {
struct Generator {
  std::atomic<std::uint64_t> seed{0}, counter{0};
};
inline Generator& generator() {
  static Generator g;
  return g;
}
/// Fills on the host, then copies to the tensor's backend.
template <class B, class Fill>
void fill_host(const Tensor<float, B>& w, Fill&& fill) {
  if constexpr (std::same_as<B, Cpu>) {
    if (w.is_contiguous()) return fill(w);
  }
  auto host = Tensor<float, Cpu>::empty(w.shape());
  fill(host);
  w.copy_from(host);
}
inline std::int64_t fan(const Shape& s, FanMode m) {
  const Fans f = fans(s);
  return m == FanMode::fan_in ? f.in : f.out;
}
}  // namespace detail

inline void manual_seed(std::uint64_t seed) {
  detail::generator().seed = seed;
  detail::generator().counter = 0;
}

inline random::Source next_source() {
  auto& g = detail::generator();
  return {g.seed.load(), g.counter.fetch_add(1), 0};
}

inline double gain(Nonlinearity f, double slope) {
  switch (f) {
    case Nonlinearity::linear:
    case Nonlinearity::sigmoid: return 1.0;
    case Nonlinearity::tanh: return 5.0 / 3.0;
    case Nonlinearity::relu: return std::sqrt(2.0);
    case Nonlinearity::leaky_relu: return std::sqrt(2.0 / (1.0 + slope * slope));
    case Nonlinearity::selu: return 0.75;
  }
  return 1.0;
}

inline Fans fans(const Shape& w) {
  require(w.rank() >= 2, [&] {
    return ErrorInfo{.where = "nn::init::fans", .field = "weight shape", .expected = "rank >= 2 ([out, in, ...])",
                     .actual = w.to_string()};
  });
  std::int64_t receptive = 1;
  for (int i = 2; i < w.rank(); ++i) receptive *= w[i];
  return {w[1] * receptive, w[0] * receptive};
}

template <class B>
void kaiming_normal(const Tensor<float, B>& w, double a, FanMode mode, Nonlinearity f, random::Source src) {
  const double std = gain(f, a) / std::sqrt(static_cast<double>(detail::fan(w.shape(), mode)));
  normal(w, 0.0, std, src);
}

template <class B>
void kaiming_uniform(const Tensor<float, B>& w, double a, FanMode mode, Nonlinearity f, random::Source src) {
  const double bound = gain(f, a) * std::sqrt(3.0 / static_cast<double>(detail::fan(w.shape(), mode)));
  uniform(w, -bound, bound, src);
}

template <class B>
void xavier_uniform(const Tensor<float, B>& w, double g, random::Source src) {
  const Fans f = fans(w.shape());
  const double bound = g * std::sqrt(6.0 / static_cast<double>(f.in + f.out));
  uniform(w, -bound, bound, src);
}

template <class B>
void xavier_normal(const Tensor<float, B>& w, double g, random::Source src) {
  const Fans f = fans(w.shape());
  normal(w, 0.0, g * std::sqrt(2.0 / static_cast<double>(f.in + f.out)), src);
}

template <class B>
void uniform(const Tensor<float, B>& w, double low, double high, random::Source src) {
  detail::fill_host(w, [&](const Tensor<float, Cpu>& t) {
    random::uniform(t, src, static_cast<float>(low), static_cast<float>(high));
  });
}

template <class B>
void normal(const Tensor<float, B>& w, double mean, double std, random::Source src) {
  detail::fill_host(w, [&](const Tensor<float, Cpu>& t) {
    random::normal(t, src, static_cast<float>(mean), static_cast<float>(std));
  });
}

template <class B>
void pytorch_default(const Tensor<float, B>& weight, const Tensor<float, B>* bias) {
  kaiming_uniform(weight, std::sqrt(5.0));
  if (bias) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(fans(weight.shape()).in));
    uniform(*bias, -bound, bound);
  }
}

}  // namespace medseg::nn::init
