// oneDNN convolutions against PyTorch 1.13: forward, backward-data and backward-weights on
// many configurations (reference computed in float64 by conv_reference.py at test time), a
// finite-difference check of both gradients, errors, caching and steady-state memory reuse.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include <dlfcn.h>

#include "conv_reference.hpp"
#include "medseg/backends/cpu/conv3d.hpp"
#include "medseg/core/random.hpp"

using namespace medseg;
using test::relative_error;
using test::random_tensor;

namespace {

using Case = test::ConvCase;

// Every feature of the op at least once, at sizes that keep the suite fast under ASan.
std::vector<Case> parity_cases() {
  using A = std::array<std::int64_t, 3>;
  return {
      {"k1", {.in_channels = 4, .out_channels = 6, .input = {5, 6, 7}, .kernel = {1, 1, 1}}},
      {"k2_s2", {.in_channels = 4, .out_channels = 8, .input = {8, 8, 8}, .kernel = {2, 2, 2}, .stride = {2, 2, 2}}},
      {"k3_p1", {.in_channels = 8, .out_channels = 8, .input = {6, 7, 8}, .padding = {1, 1, 1}}},
      {"k5_p2", {.in_channels = 3, .out_channels = 5, .input = {7, 7, 7}, .kernel = {5, 5, 5}, .padding = {2, 2, 2}}},
      {"k1x3x3", {.in_channels = 4, .out_channels = 4, .input = {5, 6, 6}, .kernel = {1, 3, 3}, .padding = {0, 1, 1}}},
      {"k2x2x4", {.in_channels = 3, .out_channels = 6, .input = {6, 6, 8}, .kernel = {2, 2, 4}}},
      {"k2x2x4_s2",
       {.in_channels = 3, .out_channels = 6, .input = {6, 6, 8}, .kernel = {2, 2, 4}, .stride = {2, 2, 2}}},
      {"stride_1x2x2",
       {.in_channels = 4, .out_channels = 8, .input = {6, 8, 8}, .stride = {1, 2, 2}, .padding = {1, 1, 1}}},
      {"stride2_drops_trailing",
       {.in_channels = 3, .out_channels = 4, .input = {5, 6, 7}, .kernel = {2, 3, 3}, .stride = {2, 2, 2}}},
      {"stride2_p1", {.in_channels = 4, .out_channels = 4, .input = {7, 8, 9}, .stride = {2, 2, 2},
                      .padding = {1, 1, 1}}},
      {"dilation2", {.in_channels = 4, .out_channels = 4, .input = {7, 7, 7}, .padding = {2, 2, 2},
                     .dilation = {2, 2, 2}}},
      {"dilation_1x2x3", {.in_channels = 2, .out_channels = 3, .input = {6, 8, 9}, .padding = {1, 0, 1},
                          .dilation = {1, 2, 3}}},
      {"groups2", {.in_channels = 4, .out_channels = 6, .input = {5, 5, 5}, .padding = {1, 1, 1}, .groups = 2}},
      {"depthwise", {.in_channels = 4, .out_channels = 8, .input = {5, 5, 5}, .padding = {1, 1, 1}, .groups = 4}},
      {"no_bias", {.in_channels = 5, .out_channels = 7, .input = {5, 6, 5}, .padding = {1, 1, 1}}, false},
      {"batch2", {.batch = 2, .in_channels = 4, .out_channels = 4, .input = {5, 5, 5}, .padding = {1, 1, 1}}},
      {"one_channel_in", {.in_channels = 1, .out_channels = 8, .input = {8, 8, 8}, .padding = {1, 1, 1}}},
      {"blocked_16_32", {.batch = 2, .in_channels = 16, .out_channels = 32, .input = {6, 6, 6},
                         .padding = {1, 1, 1}}},
      {"blocked_k5_16", {.in_channels = 16, .out_channels = 16, .input = {8, 8, 8}, .kernel = {5, 5, 5},
                         .padding = {2, 2, 2}}},
      {"blocked_down_16_32", {.in_channels = 16, .out_channels = 32, .input = {8, 8, 8}, .kernel = {2, 2, 2},
                              .stride = {2, 2, 2}}},
      {"transposed_k2_s2", {.in_channels = 8, .out_channels = 4, .input = {4, 4, 4}, .kernel = {2, 2, 2},
                            .stride = {2, 2, 2}, .transposed = true}},
      {"transposed_k3_s2_op1", {.in_channels = 4, .out_channels = 3, .input = {3, 4, 5}, .stride = {2, 2, 2},
                                .padding = {1, 1, 1}, .output_padding = A{1, 0, 1}, .transposed = true}},
      {"transposed_groups2", {.in_channels = 4, .out_channels = 6, .input = {4, 4, 4}, .padding = {1, 1, 1},
                              .groups = 2, .transposed = true}},
      {"transposed_dilation2_no_bias",
       {.in_channels = 3, .out_channels = 2, .input = {3, 4, 4}, .stride = {2, 2, 2}, .padding = {1, 1, 1},
        .dilation = {2, 2, 2}, .output_padding = A{1, 1, 0}, .transposed = true},
       false},
      {"transposed_blocked_32_16_batch2", {.batch = 2, .in_channels = 32, .out_channels = 16, .input = {4, 4, 4},
                                           .kernel = {2, 2, 2}, .stride = {2, 2, 2}, .transposed = true}},
      {"transposed_anisotropic", {.in_channels = 4, .out_channels = 4, .input = {3, 4, 4}, .kernel = {1, 2, 2},
                                  .stride = {1, 2, 2}, .transposed = true}},
      // Few output channels: run with the kernel's W extent folded into the outputs
      // (conv3d_narrow.hpp), as VNet's last 5^3 convolution to the class scores.
      {"narrow_k5_8_to_3", {.in_channels = 8, .out_channels = 3, .input = {6, 7, 9}, .kernel = {5, 5, 5},
                            .padding = {2, 2, 2}}},
      {"narrow_k3x3x5_to_2_p1", {.in_channels = 4, .out_channels = 2, .input = {5, 6, 7}, .kernel = {3, 3, 5},
                                 .padding = {1, 1, 1}}},
      {"narrow_kw4_p2_batch2",
       {.batch = 2, .in_channels = 3, .out_channels = 4, .input = {4, 5, 9}, .kernel = {2, 1, 4},
        .stride = {2, 1, 1}, .padding = {0, 1, 2}, .dilation = {1, 2, 1}},
       false},
  };
}

}  // namespace

TEST_CASE("conv3d forward and both gradients match PyTorch on every configuration") {
  const auto cases = parity_cases();
  const test::ConvReference reference(cases);

  for (const auto& c : cases) {
    INFO(c.name << ": " << c.shape.to_string() << (c.bias ? "" : " (no bias)"));
    const auto& s = c.shape;
    const auto x = reference.read(c, "x", s.input_shape());
    const auto w = reference.read(c, "w", s.weight_shape());
    const auto b = reference.read(c, "b", s.bias_shape());
    const auto dy = reference.read(c, "dy", s.output_shape());

    // Outputs start as NaN: every element must be written.
    auto y = Tensor<float>::full(s.output_shape(), NAN);
    ops::conv3d_forward(s, x, w, c.bias ? &b : nullptr, y);
    const double y_error = relative_error(y, reference.read(c, "y", s.output_shape()));
    INFO("forward relative error " << y_error);
    CHECK(y_error < 1e-4);

    auto dx = Tensor<float>::full(s.input_shape(), NAN);
    ops::conv3d_backward_data(s, dy, w, dx);
    CHECK(relative_error(dx, reference.read(c, "dx", s.input_shape())) < 1e-3);

    auto dw = Tensor<float>::full(s.weight_shape(), NAN);
    auto db = Tensor<float>::full(s.bias_shape(), NAN);
    ops::conv3d_backward_weights(s, x, dy, dw, c.bias ? &db : nullptr);
    CHECK(relative_error(dw, reference.read(c, "dw", s.weight_shape())) < 1e-3);
    if (c.bias) CHECK(relative_error(db, reference.read(c, "db", s.bias_shape())) < 1e-3);

    // The combined backward computes the same, bit for bit.
    auto dx2 = Tensor<float>::full(s.input_shape(), NAN);
    auto dw2 = Tensor<float>::full(s.weight_shape(), NAN);
    auto db2 = Tensor<float>::full(s.bias_shape(), NAN);
    ops::conv3d_backward(s, x, w, dy, &dx2, dw2, c.bias ? &db2 : nullptr);
    CHECK(dx2.to_vector() == dx.to_vector());
    CHECK(dw2.to_vector() == dw.to_vector());
    if (c.bias) CHECK(db2.to_vector() == db.to_vector());

    // So does the variant that takes dy over and allocates dx, with and without dx.
    auto dw3 = Tensor<float>::full(s.weight_shape(), NAN);
    auto db3 = Tensor<float>::full(s.bias_shape(), NAN);
    const auto dx3 = ops::conv3d_backward_owned(s, x, w, dy.clone(), true, dw3, c.bias ? &db3 : nullptr);
    CHECK(dx3.to_vector() == dx.to_vector());
    CHECK(dw3.to_vector() == dw.to_vector());
    if (c.bias) CHECK(db3.to_vector() == db.to_vector());
    CHECK_FALSE(ops::conv3d_backward_owned(s, x, w, dy, false, dw3, c.bias ? &db3 : nullptr).defined());
    CHECK(dw3.to_vector() == dw.to_vector());
  }
}

namespace {
/// Checks dL/dx, dL/dw and dL/db of L = sum(y * r) against central differences.
void check_gradients_numerically(const Conv3dShape& s) {
  auto x = random_tensor(s.input_shape(), 1);
  auto w = random_tensor(s.weight_shape(), 2);
  auto b = random_tensor(s.bias_shape(), 3);
  const auto r = random_tensor(s.output_shape(), 4);
  auto y = Tensor<float>::empty(s.output_shape());
  auto loss = [&] {
    ops::conv3d_forward(s, x, w, &b, y);
    double l = 0;
    for (std::int64_t i = 0; i < y.numel(); ++i) l += static_cast<double>(y.data()[i]) * r.data()[i];
    return l;
  };
  auto dx = Tensor<float>::empty(s.input_shape());
  auto dw = Tensor<float>::empty(s.weight_shape());
  auto db = Tensor<float>::empty(s.bias_shape());
  ops::conv3d_backward_data(s, r, w, dx);
  ops::conv3d_backward_weights(s, x, r, dw, &db);

  // L is linear in each variable, so central differences are exact up to float rounding.
  const float eps = 0.05f;
  auto check = [&](const Tensor<float>& var, const Tensor<float>& grad, const char* name) {
    double worst = 0, scale = 0;
    for (std::int64_t i = 0; i < var.numel(); ++i) {
      const float saved = var.data()[i];
      var.data()[i] = saved + eps;
      const double up = loss();
      var.data()[i] = saved - eps;
      const double down = loss();
      var.data()[i] = saved;
      const double numeric = (up - down) / (2.0 * eps);
      worst = std::max(worst, std::abs(numeric - grad.data()[i]));
      scale = std::max(scale, std::abs(numeric));
    }
    INFO(s.to_string() << " d/d" << name << ": max difference " << worst << " of max " << scale);
    CHECK(worst <= 2e-3 * std::max(1.0, scale));
  };
  check(x, dx, "x");
  check(w, dw, "weight");
  check(b, db, "bias");
}
}  // namespace

TEST_CASE("conv3d gradients match finite differences") {
  check_gradients_numerically({.in_channels = 2, .out_channels = 3, .input = {3, 4, 5}, .stride = {1, 2, 1},
                               .padding = {1, 1, 0}, .dilation = {1, 1, 2}});
  check_gradients_numerically({.in_channels = 2, .out_channels = 2, .input = {2, 3, 3}, .stride = {2, 2, 2},
                               .padding = {1, 0, 1}, .output_padding = {1, 1, 0}, .transposed = true});
}

TEST_CASE("conv3d errors name the op the tensor and both shapes") {
  const Conv3dShape s{.in_channels = 4, .out_channels = 8, .input = {6, 6, 6}, .padding = {1, 1, 1}};
  const auto x = Tensor<float>::zeros(s.input_shape());
  const auto w = Tensor<float>::zeros(s.weight_shape());
  const auto y = Tensor<float>::zeros(s.output_shape());
  const auto wrong_w = Tensor<float>::zeros({8, 3, 3, 3, 3});
  CHECK_THROWS_WITH(ops::conv3d_forward(s, x, wrong_w, nullptr, y),
                    Catch::Contains("conv3d_forward") && Catch::Contains("weight") &&
                        Catch::Contains("[8,4,3,3,3]") && Catch::Contains("[8,3,3,3,3]"));
  CHECK_THROWS_WITH(ops::conv3d_forward(s, Tensor<float>::zeros({1, 5, 6, 6, 6}), w, nullptr, y),
                    Catch::Contains("x") && Catch::Contains("[1,4,6,6,6]") && Catch::Contains("[1,5,6,6,6]"));
  const auto bias = Tensor<float>::zeros({7});
  CHECK_THROWS_WITH(ops::conv3d_forward(s, x, w, &bias, y), Catch::Contains("bias") && Catch::Contains("[8]"));
  CHECK_THROWS_WITH(ops::conv3d_backward_data(s, y, w, Tensor<float>::zeros({1, 4, 6, 6, 5})),
                    Catch::Contains("conv3d_backward_data") && Catch::Contains("dx"));
  CHECK_THROWS_WITH(ops::conv3d_backward_weights(s, x, Tensor<float>::zeros({1, 8, 6, 6}), w, nullptr),
                    Catch::Contains("conv3d_backward_weights") && Catch::Contains("dy"));
  auto batch2 = s;
  batch2.batch = 2;
  const auto wide = Tensor<float>::zeros({2, 8, 6, 6, 6});  // channels 0..3 of it: not contiguous
  CHECK_THROWS_WITH(ops::conv3d_forward(batch2, wide.slice(1, 0, 4), w, nullptr, Tensor<float>::zeros({2, 8, 6, 6, 6})),
                    Catch::Contains("x") && Catch::Contains("contiguous"));
  auto bad = s;
  bad.groups = 3;
  CHECK_THROWS_WITH(ops::conv3d_forward(bad, x, w, nullptr, y), Catch::Contains("groups"));
}

TEST_CASE("conv3d builds primitives once per shape and reuses host memory") {
  const Conv3dShape s{.in_channels = 16, .out_channels = 16, .input = {8, 8, 8}, .padding = {1, 1, 1},
                      .dilation = {1, 1, 1}, .groups = 1};
  auto x = random_tensor(s.input_shape(), 5);
  auto w = random_tensor(s.weight_shape(), 6);
  auto b = random_tensor(s.bias_shape(), 7);
  auto y = Tensor<float>::empty(s.output_shape());
  auto dx = Tensor<float>::empty(s.input_shape());
  auto dw = Tensor<float>::empty(s.weight_shape());
  auto db = Tensor<float>::empty(s.bias_shape());
  auto step = [&] {
    ops::conv3d_forward(s, x, w, &b, y);
    ops::conv3d_backward_data(s, y, w, dx);
    ops::conv3d_backward_weights(s, x, y, dw, &db);
  };
  step();
  const auto problems = ops::conv3d_cached_problems();
  const auto first = y.to_vector();
  const auto before = host_allocator().stats();
  for (int i = 0; i < 3; ++i) step();
  const auto after = host_allocator().stats();
  CHECK(ops::conv3d_cached_problems() == problems);
  CHECK(y.to_vector() == first);  // same primitive, same result, bit for bit
  // Reorder buffers and scratchpads come back from the cache: no fresh memory per step.
  if (host_allocator().caching()) CHECK(after.misses == before.misses);
  CHECK(after.in_use == before.in_use);
}

namespace {
float activate(float v, const Conv3dEpilogue& e) {
  using A = Conv3dEpilogue::Activation;
  switch (e.activation) {
    case A::relu: return std::max(v, 0.0f);
    case A::leaky_relu: return v >= 0 ? v : e.alpha * v;
    case A::elu: return v >= 0 ? v : e.alpha * std::expm1(v);
    case A::gelu: return 0.5f * v * (1.0f + std::erf(v / std::sqrt(2.0f)));
    case A::sigmoid: return 1.0f / (1.0f + std::exp(-v));
    case A::none: break;
  }
  return v;
}
}  // namespace

TEST_CASE("conv3d fuses activations and the residual sum into the forward pass") {
  using A = Conv3dEpilogue::Activation;
  for (const auto& s : {Conv3dShape{.in_channels = 16, .out_channels = 16, .input = {6, 6, 6}, .padding = {1, 1, 1}},
                        Conv3dShape{.in_channels = 3, .out_channels = 5, .input = {5, 4, 6}, .padding = {1, 1, 1}},
                        Conv3dShape{.in_channels = 16, .out_channels = 8, .input = {3, 3, 3}, .kernel = {2, 2, 2},
                                    .stride = {2, 2, 2}, .transposed = true}}) {
    const auto x = random_tensor(s.input_shape(), 11);
    const auto w = random_tensor(s.weight_shape(), 12);
    const auto b = random_tensor(s.bias_shape(), 13);
    const auto residual = random_tensor(s.output_shape(), 14);
    auto plain = Tensor<float>::empty(s.output_shape());
    ops::conv3d_forward(s, x, w, &b, plain);
    for (const Conv3dEpilogue e : {Conv3dEpilogue{.activation = A::relu}, Conv3dEpilogue{A::leaky_relu, 0.1f},
                                   Conv3dEpilogue{A::elu, 0.7f}, Conv3dEpilogue{.activation = A::gelu},
                                   Conv3dEpilogue{.activation = A::sigmoid}, Conv3dEpilogue{.accumulate = true},
                                   Conv3dEpilogue{A::relu, 0.0f, true}, Conv3dEpilogue{A::leaky_relu, 0.2f, true}}) {
      INFO(s.to_string() << " activation " << static_cast<int>(e.activation) << " accumulate " << e.accumulate);
      auto y = residual.clone();
      ops::conv3d_forward(s, x, w, &b, y, e);
      double worst = 0;
      for (std::int64_t i = 0; i < y.numel(); ++i) {
        const float expected = activate(plain.data()[i] + (e.accumulate ? residual.data()[i] : 0.0f), e);
        worst = std::max(worst, static_cast<double>(std::abs(y.data()[i] - expected)));
      }
      CHECK(worst < 1e-4);
    }
  }
}

TEST_CASE("conv3d_backward without an input gradient fills the weight gradients alone") {
  const Conv3dShape s{.in_channels = 1, .out_channels = 16, .input = {8, 8, 8}, .padding = {1, 1, 1}};
  const auto x = random_tensor(s.input_shape(), 15);
  const auto w = random_tensor(s.weight_shape(), 16);
  const auto dy = random_tensor(s.output_shape(), 17);
  auto dw = Tensor<float>::empty(s.weight_shape());
  auto db = Tensor<float>::empty(s.bias_shape());
  auto dw_ref = Tensor<float>::empty(s.weight_shape());
  auto db_ref = Tensor<float>::empty(s.bias_shape());
  ops::conv3d_backward(s, x, w, dy, nullptr, dw, &db);
  ops::conv3d_backward_weights(s, x, dy, dw_ref, &db_ref);
  CHECK(dw.to_vector() == dw_ref.to_vector());
  CHECK(db.to_vector() == db_ref.to_vector());
  CHECK_THROWS_WITH(ops::conv3d_backward(s, x, w, dy, nullptr, dw, &dw),
                    Catch::Contains("conv3d_backward") && Catch::Contains("dbias") && Catch::Contains("[16]"));
}

TEST_CASE("conv3d_forward_alloc equals conv3d_forward and allocates y after its copy of x is gone") {
  // 16 channels in and out at 32^3: 2 MiB per activation, weights of 27 KiB.
  const Conv3dShape s{.in_channels = 16, .out_channels = 16, .input = {32, 32, 32}, .padding = {1, 1, 1}};
  const auto x = random_tensor(s.input_shape(), 21);
  const auto w = random_tensor(s.weight_shape(), 22);
  const auto b = random_tensor(s.bias_shape(), 23);
  auto y = Tensor<float>::empty(s.output_shape());
  ops::conv3d_forward(s, x, w, &b, y);
  (void)ops::conv3d_forward_alloc(s, x, w, &b);
  host_allocator().reset_peak();
  const auto before = host_allocator().stats();
  const auto y2 = ops::conv3d_forward_alloc(s, x, w, &b);
  CHECK(y2.to_vector() == y.to_vector());
  // oneDNN's copies of x and of y, then its copy of y and y: two activations at once.
  const std::size_t activation = static_cast<std::size_t>(s.output_shape().product()) * sizeof(float);
  if (host_allocator().caching())
    CHECK(host_allocator().stats().peak_in_use <= before.in_use + 2 * activation + (std::size_t{1} << 20));
  // Few output channels (the folded path) too.
  const Conv3dShape narrow{.in_channels = 4, .out_channels = 3, .input = {6, 7, 8}, .kernel = {5, 5, 5},
                           .padding = {2, 2, 2}};
  const auto xn = random_tensor(narrow.input_shape(), 24);
  const auto wn = random_tensor(narrow.weight_shape(), 25);
  auto yn = Tensor<float>::empty(narrow.output_shape());
  ops::conv3d_forward(narrow, xn, wn, nullptr, yn);
  CHECK(ops::conv3d_forward_alloc(narrow, xn, wn, nullptr).to_vector() == yn.to_vector());
}

TEST_CASE("conv3d_backward_owned holds two activation-sized blocks at most") {
  // 16 channels in and out at 32^3: 2 MiB per activation, weights of 27 KiB.
  const Conv3dShape s{.in_channels = 16, .out_channels = 16, .input = {32, 32, 32}, .padding = {1, 1, 1}};
  const auto x = random_tensor(s.input_shape(), 24);
  const auto w = random_tensor(s.weight_shape(), 25);
  auto dw = Tensor<float>::empty(s.weight_shape());
  auto db = Tensor<float>::empty(s.bias_shape());
  const std::size_t activation = static_cast<std::size_t>(s.output_shape().product()) * sizeof(float);
  auto dy = random_tensor(s.output_shape(), 26);
  (void)ops::conv3d_backward_owned(s, x, w, dy.clone(), true, dw, &db);  // primitives built
  host_allocator().reset_peak();
  const auto before = host_allocator().stats();  // dy is counted here
  const auto dx = ops::conv3d_backward_owned(s, x, w, std::move(dy), true, dw, &db);
  // dy (handed over) goes once reordered, and dx comes after oneDNN's copy of dy: at most
  // two activations above what was in use before (which included dy), and a margin for the
  // scratchpads and weights.
  if (host_allocator().caching())
    CHECK(host_allocator().stats().peak_in_use <= before.in_use + activation + (std::size_t{1} << 20));
  CHECK(dx.shape() == s.input_shape());
}

TEST_CASE("conv3d follows the thread count") {
  const Conv3dShape s{.in_channels = 8, .out_channels = 8, .input = {8, 8, 8}, .padding = {1, 1, 1}};
  auto x = random_tensor(s.input_shape(), 8);
  auto w = random_tensor(s.weight_shape(), 9);
  auto y1 = Tensor<float>::empty(s.output_shape());
  auto yn = Tensor<float>::empty(s.output_shape());
  const int threads = num_threads();
  set_num_threads(1);
  ops::conv3d_forward(s, x, w, nullptr, y1);
  // oneDNN runs on OpenMP here: its thread count for this thread must follow ours.
  using GetThreads = int (*)();
  const auto omp_max_threads = reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "omp_get_max_threads"));
  if (omp_max_threads) CHECK(omp_max_threads() == 1);
  const auto problems = ops::conv3d_cached_problems();
  set_num_threads(std::max(2, threads));
  ops::conv3d_forward(s, x, w, nullptr, yn);
  if (omp_max_threads) CHECK(omp_max_threads() == std::max(2, threads));
  // A primitive keeps the thread count it was built with: a new count gets new primitives.
  CHECK(ops::conv3d_cached_problems() == problems + 1);
  set_num_threads(threads);
  CHECK(relative_error(yn, y1) < 1e-6);
}

TEST_CASE("conv3d runs from several threads at once") {
  const Conv3dShape s{.in_channels = 16, .out_channels = 16, .input = {6, 6, 6}, .padding = {1, 1, 1}};
  const auto x = random_tensor(s.input_shape(), 18);
  const auto w = random_tensor(s.weight_shape(), 19);
  auto expected = Tensor<float>::empty(s.output_shape());
  ops::conv3d_forward(s, x, w, nullptr, expected);
  std::vector<Tensor<float>> outputs;
  for (int t = 0; t < 3; ++t) outputs.push_back(Tensor<float>::empty(s.output_shape()));
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i) ops::conv3d_forward(s, x, w, nullptr, outputs[static_cast<std::size_t>(t)]);
    });
  for (auto& t : threads) t.join();
  for (const auto& y : outputs) CHECK(y.to_vector() == expected.to_vector());
}
