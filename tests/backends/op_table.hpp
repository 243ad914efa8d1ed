// The machinery of the op table (tests/backends/ops_test.cpp), in the spirit of ggml's
// test-backend-ops: a row runs one op on a backend with fixed inputs and returns its outputs on
// the host. On the CPU each row's reference checks those outputs (finite differences of the
// forward op for a gradient, a plain loop in double for the rest); on a GPU the same row runs on
// both backends and the GPU's outputs must match the CPU's within the row's tolerance.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "medseg/backends/ops.hpp"
#include "medseg/core/random.hpp"

namespace medseg::op_table {

/// An op's results on the host, in float (integer outputs are small and exact in float).
using Outputs = std::vector<Tensor<float>>;

struct OpRow {
  std::string op;      // the ops:: function, and what sets this row apart: "activation_backward gelu"
  std::string shapes;  // "x [2,3,5,6,7]"
  /// GPU against CPU: |gpu - cpu| <= tolerance * max(1, |cpu|) for every element; 0: bit for bit.
  double tolerance = 0.0;
  std::function<Outputs()> run_cpu;
#if defined(MEDSEG_WITH_CUDA) && MEDSEG_WITH_CUDA
  std::function<Outputs()> run_cuda;
#endif
  /// Checks the CPU's outputs against the reference (REQUIREs and CHECKs).
  std::function<void(const Outputs&)> reference;
};

/// A row from `run`, a generic lambda taking a backend tag (Cpu{} or Cuda{}) and returning
/// Outputs, and `reference`, which receives the CPU's outputs.
template <class Run, class Reference>
OpRow row(std::string op, std::string shapes, double tolerance, Run run, Reference reference) {
  OpRow r;
  r.op = std::move(op);
  r.shapes = std::move(shapes);
  r.tolerance = tolerance;
  r.run_cpu = [run] { return run(Cpu{}); };
#if defined(MEDSEG_WITH_CUDA) && MEDSEG_WITH_CUDA
  r.run_cuda = [run] { return run(Cuda{}); };
#endif
  r.reference = std::move(reference);
  return r;
}

/// Uniform in [low, high) made on the host from a fixed seed, then put on backend B: every
/// backend and the reference see the same numbers for the same `stream`.
template <class B>
Tensor<float, B> input(const Shape& shape, std::uint64_t stream, float low = -2.0f, float high = 2.0f) {
  auto t = Tensor<float>::empty(shape);
  random::uniform(t, {.seed = 20261207, .stream = stream}, low, high);
  return t.template to<B>();
}
/// input() moved away from zero by at least `gap`: no element sits on a kink (ReLU, PReLU)
/// within a finite-difference step.
template <class B>
Tensor<float, B> off_zero(const Shape& shape, std::uint64_t stream, float gap = 0.05f) {
  auto t = input<Cpu>(shape, stream);
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    float& v = t.data()[i];
    if (std::abs(v) < gap) v = v < 0 ? v - gap : v + gap;
  }
  return t.template to<B>();
}

/// Any backend's tensor (or host vector) on the host as float.
template <class T, class B>
Tensor<float> host(const Tensor<T, B>& t) {
  if constexpr (std::is_same_v<T, float>)
    return t.template to<Cpu>();
  else
    return t.template to<Cpu>().template astype<float>();
}
inline Tensor<float> host(const std::vector<float>& v) {
  return Tensor<float>::from(std::span<const float>(v), {static_cast<std::int64_t>(v.size())});
}

/// |a - b| <= tolerance * max(1, |b|) everywhere (tolerance 0: equal bits), reporting the
/// first element that is not and how many differ at all.
inline void check_close(const std::string& what, const Tensor<float>& a, const Tensor<float>& b, double tolerance) {
  INFO(what);
  REQUIRE(a.shape() == b.shape());
  std::int64_t bad = 0, first = -1, differ = 0;
  double worst = 0.0;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    const double x = a.data()[i], y = b.data()[i];
    if (std::isnan(x) && std::isnan(y)) continue;
    const double d = std::abs(x - y);
    if (!(d == 0.0)) ++differ;
    worst = std::max(worst, std::isnan(d) ? INFINITY : d);
    if (!(d <= tolerance * std::max(1.0, std::abs(y)))) {
      if (bad++ == 0) first = i;
    }
  }
  INFO(b.shape().to_string() << ": " << bad << " beyond " << tolerance << ", " << differ
                             << " differ at all, max |diff| " << worst
                             << (first >= 0 ? ", first at " + std::to_string(first) + ": " +
                                                  std::to_string(a.data()[first]) + " vs " +
                                                  std::to_string(b.data()[first])
                                            : std::string()));
  CHECK(bad == 0);
}

/// sum_i f_i * w_i in double.
inline double dot(const Tensor<float>& f, const Tensor<float>& w) {
  REQUIRE(f.shape() == w.shape());
  double s = 0.0;
  for (std::int64_t i = 0; i < f.numel(); ++i) s += static_cast<double>(f.data()[i]) * w.data()[i];
  return s;
}

/// Checks gradients against central differences: grads[k] must be d/d inputs[k] of
/// L = sum(forward(inputs) * weight), at up to `samples` evenly spread indices of each input.
/// `forward` runs on the CPU; eps is the step, tolerance relative to max(1, |gradient|).
inline void check_gradients(const std::function<Tensor<float>(const std::vector<Tensor<float>>&)>& forward,
                            const std::vector<Tensor<float>>& inputs, const Tensor<float>& weight,
                            const std::vector<Tensor<float>>& grads, double eps = 1e-2, double tolerance = 1e-2,
                            std::int64_t samples = 24) {
  REQUIRE(grads.size() == inputs.size());
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    if (!grads[k].defined()) continue;
    REQUIRE(grads[k].shape() == inputs[k].shape());
    std::vector<Tensor<float>> probe;
    for (const auto& t : inputs) probe.push_back(t.clone());
    const std::int64_t n = inputs[k].numel(), step = std::max<std::int64_t>(1, n / samples);
    for (std::int64_t i = 0; i < n; i += step) {
      float& v = probe[k].data()[i];
      const float original = v;
      v = static_cast<float>(original + eps);
      const double up = dot(forward(probe), weight);
      v = static_cast<float>(original - eps);
      const double down = dot(forward(probe), weight);
      v = original;
      const double numeric = (up - down) / (2.0 * eps), analytic = grads[k].data()[i];
      INFO("input " << k << " element " << i << ": analytic " << analytic << ", central difference " << numeric);
      CHECK(std::abs(analytic - numeric) <= tolerance * std::max(1.0, std::abs(numeric)));
    }
  }
}

}  // namespace medseg::op_table
