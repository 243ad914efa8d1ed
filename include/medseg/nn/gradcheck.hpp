// A finite-difference gradient checker that ships with the library (dlib's test_layer): it
// compares a layer's backward against central differences of its forward, for the input and
// for every parameter, on a random projection of the output. Use it on every new layer.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/random.hpp"
#include "../core/rng.hpp"
#include "concepts.hpp"

namespace medseg::nn {

struct GradcheckOptions {
  /// Central-difference step. Forward runs in float32, so the step is large enough that
  /// rounding (~1e-7 |L|) stays well below the truncation error (~eps^2).
  float eps = 1e-2f;
  double rtol = 2e-2, atol = 2e-3;
  /// Entries checked per tensor (all of them when the tensor is smaller).
  int samples = 24;
  std::uint64_t seed = 12345;
};

struct GradcheckResult {
  bool ok = true;
  int checked = 0;
  double worst = 0.0;  // largest |numeric - analytic| / (atol + rtol * max magnitude); ok when <= 1
  std::string report;  // one line per failing entry, plus the worst one
};

/// Checks layer's backward at x in training mode. `prepare(layer)` runs before every forward
/// (a dropout layer resets its step there, so every forward draws the same mask).
///   auto r = gradcheck(conv, x);  CHECK(r.ok);  INFO(r.report);
template <Layer L, class Prepare = void (*)(L&)>
GradcheckResult gradcheck(L& layer, const Tensor<float, Cpu>& x, GradcheckOptions options = {},
                          Prepare prepare = [](L&) {});

// ----------------------------------------------------------------------------------------
// Implementation

template <Layer L, class Prepare>
GradcheckResult gradcheck(L& layer, const Tensor<float, Cpu>& x_in, GradcheckOptions o, Prepare prepare) {
  static_assert(std::same_as<typename L::backend, Cpu>, "medseg: gradcheck runs layers on the Cpu backend");
  layer.train(true);
  const Tensor<float, Cpu> x = x_in.clone();
  prepare(layer);
  const Tensor<float, Cpu> y0 = layer.forward(x);
  const auto w = Tensor<float, Cpu>::empty(y0.shape());
  random::normal(w, {o.seed, 1, 0});
  const std::vector<float> wv = w.to_vector();
  // The scalar being differentiated: L(x) = sum(y * w), accumulated in double.
  auto loss = [&]() {
    prepare(layer);
    const std::vector<float> y = layer.forward(x).to_vector();
    double s = 0.0;
    for (std::size_t i = 0; i < y.size(); ++i) s += static_cast<double>(y[i]) * wv[i];
    return s;
  };

  zero_grad(layer);
  const std::vector<float> dx = layer.backward(w).to_vector();
  std::vector<Parameter<Cpu>> params = parameters(layer);
  std::vector<std::vector<float>> analytic_params;
  for (const auto& p : params) analytic_params.push_back(p.grad.to_vector());

  GradcheckResult r;
  RandomStream pick(o.seed, 2);
  std::string worst_line;
  auto check = [&](const std::string& name, const Tensor<float, Cpu>& t, const std::vector<float>& analytic) {
    const std::int64_t n = t.numel();
    std::vector<std::int64_t> idx;
    if (n <= o.samples)
      for (std::int64_t i = 0; i < n; ++i) idx.push_back(i);
    else
      for (int i = 0; i < o.samples; ++i) idx.push_back(pick.below(static_cast<std::uint32_t>(n)));
    float* d = t.data();
    for (const std::int64_t i : idx) {
      const float saved = d[i];
      d[i] = saved + o.eps;
      const double lp = loss();
      d[i] = saved - o.eps;
      const double lm = loss();
      d[i] = saved;
      const double numeric = (lp - lm) / (2.0 * static_cast<double>(o.eps));
      const double a = analytic[static_cast<std::size_t>(i)];
      const double err = std::abs(numeric - a) / (o.atol + o.rtol * std::max(std::abs(numeric), std::abs(a)));
      ++r.checked;
      const std::string line = name + "[" + std::to_string(i) + "]: analytic " + std::to_string(a) + ", numeric " +
                               std::to_string(numeric);
      if (err > 1.0) {
        r.ok = false;
        r.report += line + "\n";
      }
      if (err >= r.worst) {
        r.worst = err;
        worst_line = line;
      }
    }
  };
  check("input", x, dx);
  for (std::size_t k = 0; k < params.size(); ++k) check(params[k].path, params[k].value, analytic_params[k]);
  r.report += "worst: " + worst_line + " (" + std::to_string(r.checked) + " entries checked)";
  return r;
}

}  // namespace medseg::nn
