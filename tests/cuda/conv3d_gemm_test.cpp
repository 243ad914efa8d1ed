// cuDNN convolutions and cuBLAS GEMM against the CPU's oneDNN ones on the same inputs:
// forward (with and without bias, every epilogue), backward-data, backward-weights and the
// bias gradient on every feature of Conv3dShape; GEMM in every transpose, batched and not.
// Exact float32 (TF32 off) must agree to 1e-4 forward and 1e-3 for gradients; TF32 to 1e-2.
// Also: errors, the plan cache, determinism of the backward passes, threads and streams.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "medseg/core/random.hpp"
#include "medseg/cuda.hpp"

using namespace medseg;

namespace {

Tensor<float> random_tensor(const Shape& shape, std::uint64_t seed) {
  auto t = Tensor<float>::empty(shape);
  random::normal(t, {.seed = seed, .stream = 7});
  return t;
}

/// Largest |got - want| / max(1, |want|): the forward tolerance, element by element.
double relative_error(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  double worst = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double d = std::abs(static_cast<double>(got[i]) - want[i]);
    worst = std::max(worst, std::isnan(d) ? std::numeric_limits<double>::infinity()
                                          : d / std::max(1.0, std::abs(static_cast<double>(want[i]))));
  }
  return worst;
}

/// Largest |got - want| / max(1, max |want|): for big reductions (gradients), whose small
/// entries are differences of large sums.
double scaled_error(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  double scale = 1, worst = 0;
  for (float w : want) scale = std::max(scale, std::abs(static_cast<double>(w)));
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double d = std::abs(static_cast<double>(got[i]) - want[i]);
    worst = std::max(worst, std::isnan(d) ? std::numeric_limits<double>::infinity() : d);
  }
  return worst / scale;
}

/// A device tensor whose every element is NaN: what an op must overwrite, not read.
Tensor<float, Cuda> nan_tensor(const Shape& shape) {
  return Tensor<float, Cuda>::full(shape, std::numeric_limits<float>::quiet_NaN());
}

struct Case {
  std::string name;
  Conv3dShape shape;
  bool bias = true;
};

std::vector<Case> parity_cases() {
  using A = std::array<std::int64_t, 3>;
  return {
      {"k3_p1", {.in_channels = 4, .out_channels = 6, .input = {6, 7, 8}, .padding = {1, 1, 1}}},
      {"k5_p2", {.in_channels = 3, .out_channels = 5, .input = {7, 7, 7}, .kernel = {5, 5, 5}, .padding = {2, 2, 2}}},
      {"k2_s2", {.in_channels = 4, .out_channels = 8, .input = {8, 8, 8}, .kernel = {2, 2, 2}, .stride = {2, 2, 2}}},
      {"k1x3x3_s1x2x2", {.in_channels = 4, .out_channels = 4, .input = {5, 8, 9}, .kernel = {1, 3, 3},
                         .stride = {1, 2, 2}, .padding = {0, 1, 1}}},
      {"stride2_drops_trailing",
       {.in_channels = 3, .out_channels = 4, .input = {5, 6, 7}, .kernel = {2, 3, 3}, .stride = {2, 2, 2}}},
      {"groups2", {.in_channels = 4, .out_channels = 6, .input = {5, 5, 5}, .padding = {1, 1, 1}, .groups = 2}},
      {"depthwise", {.in_channels = 4, .out_channels = 8, .input = {5, 5, 5}, .padding = {1, 1, 1}, .groups = 4}},
      {"dilation2", {.in_channels = 4, .out_channels = 4, .input = {7, 7, 7}, .padding = {2, 2, 2},
                     .dilation = {2, 2, 2}}},
      {"dilation_1x2x3", {.in_channels = 2, .out_channels = 3, .input = {6, 8, 9}, .padding = {1, 0, 1},
                          .dilation = {1, 2, 3}}},
      {"no_bias", {.in_channels = 5, .out_channels = 7, .input = {5, 6, 5}, .padding = {1, 1, 1}}, false},
      {"batch2_odd_7x9x11", {.batch = 2, .in_channels = 3, .out_channels = 5, .input = {7, 9, 11},
                             .padding = {1, 1, 1}}},
      {"batch2_16_32", {.batch = 2, .in_channels = 16, .out_channels = 32, .input = {6, 6, 6}, .padding = {1, 1, 1}}},
      {"transposed_k2_s2", {.in_channels = 8, .out_channels = 4, .input = {4, 4, 4}, .kernel = {2, 2, 2},
                            .stride = {2, 2, 2}, .transposed = true}},
      {"transposed_k3_s2_op", {.in_channels = 4, .out_channels = 3, .input = {3, 4, 5}, .stride = {2, 2, 2},
                               .padding = {1, 1, 1}, .output_padding = A{1, 0, 1}, .transposed = true}},
      {"transposed_groups2", {.in_channels = 4, .out_channels = 6, .input = {4, 4, 4}, .padding = {1, 1, 1},
                              .groups = 2, .transposed = true}},
      {"transposed_dilation2_op_no_bias",
       {.in_channels = 3, .out_channels = 2, .input = {3, 4, 4}, .stride = {2, 2, 2}, .padding = {1, 1, 1},
        .dilation = {2, 2, 2}, .output_padding = A{1, 1, 0}, .transposed = true},
       false},
      {"transposed_batch2_32_16", {.batch = 2, .in_channels = 32, .out_channels = 16, .input = {3, 4, 5},
                                   .kernel = {2, 2, 2}, .stride = {2, 2, 2}, .transposed = true}},
      {"transposed_anisotropic_batch2", {.batch = 2, .in_channels = 4, .out_channels = 4, .input = {3, 4, 4},
                                         .kernel = {1, 2, 2}, .stride = {1, 2, 2}, .transposed = true}},
  };
}

}  // namespace

TEST_CASE("cuDNN conv3d matches the CPU forward and both gradients on every configuration") {
  REQUIRE_FALSE(cuda::allow_tf32());
  for (const Case& c : parity_cases()) {
    INFO(c.name << ": " << c.shape.to_string());
    const Conv3dShape& s = c.shape;
    const auto x = random_tensor(s.input_shape(), 1);
    const auto w = random_tensor(s.weight_shape(), 2);
    const auto b = random_tensor(s.bias_shape(), 3);
    const auto dy = random_tensor(s.output_shape(), 4);
    const auto xd = x.to<Cuda>(), wd = w.to<Cuda>(), bd = b.to<Cuda>(), dyd = dy.to<Cuda>();

    auto y = Tensor<float>::empty(s.output_shape());
    ops::conv3d_forward(s, x, w, c.bias ? &b : nullptr, y);
    const auto yd = nan_tensor(s.output_shape());
    ops::conv3d_forward(s, xd, wd, c.bias ? &bd : nullptr, yd);
    CHECK(relative_error(yd.to_vector(), y.to_vector()) <= 1e-4);

    auto dx = Tensor<float>::empty(s.input_shape());
    ops::conv3d_backward_data(s, dy, w, dx);
    const auto dxd = nan_tensor(s.input_shape());
    ops::conv3d_backward_data(s, dyd, wd, dxd);
    CHECK(scaled_error(dxd.to_vector(), dx.to_vector()) <= 1e-3);

    auto dw = Tensor<float>::empty(s.weight_shape());
    auto db = Tensor<float>::empty(s.bias_shape());
    ops::conv3d_backward_weights(s, x, dy, dw, c.bias ? &db : nullptr);
    const auto dwd = nan_tensor(s.weight_shape());
    const auto dbd = nan_tensor(s.bias_shape());
    ops::conv3d_backward_weights(s, xd, dyd, dwd, c.bias ? &dbd : nullptr);
    CHECK(scaled_error(dwd.to_vector(), dw.to_vector()) <= 1e-3);
    if (c.bias) CHECK(scaled_error(dbd.to_vector(), db.to_vector()) <= 1e-3);

    // The combined call gives the same gradients.
    const auto dx2 = nan_tensor(s.input_shape());
    const auto dw2 = nan_tensor(s.weight_shape());
    const auto db2 = nan_tensor(s.bias_shape());
    ops::conv3d_backward(s, xd, wd, dyd, &dx2, dw2, c.bias ? &db2 : nullptr);
    CHECK(scaled_error(dx2.to_vector(), dx.to_vector()) <= 1e-3);
    CHECK(scaled_error(dw2.to_vector(), dw.to_vector()) <= 1e-3);
    if (c.bias) CHECK(scaled_error(db2.to_vector(), db.to_vector()) <= 1e-3);
  }
}

TEST_CASE("cuDNN conv3d applies the epilogue's activation and residual sum as the CPU does") {
  using Act = Conv3dEpilogue::Activation;
  for (const auto& s : {Conv3dShape{.in_channels = 16, .out_channels = 16, .input = {6, 6, 6}, .padding = {1, 1, 1}},
                        Conv3dShape{.batch = 2, .in_channels = 3, .out_channels = 5, .input = {5, 4, 7},
                                    .padding = {1, 1, 1}},
                        Conv3dShape{.in_channels = 16, .out_channels = 8, .input = {3, 3, 3}, .kernel = {2, 2, 2},
                                    .stride = {2, 2, 2}, .transposed = true}}) {
    const auto x = random_tensor(s.input_shape(), 11);
    const auto w = random_tensor(s.weight_shape(), 12);
    const auto b = random_tensor(s.bias_shape(), 13);
    const auto residual = random_tensor(s.output_shape(), 14);
    const auto xd = x.to<Cuda>(), wd = w.to<Cuda>(), bd = b.to<Cuda>();
    for (const Conv3dEpilogue e : {Conv3dEpilogue{}, Conv3dEpilogue{.activation = Act::relu},
                                   Conv3dEpilogue{Act::leaky_relu, 0.1f}, Conv3dEpilogue{Act::elu, 0.7f},
                                   Conv3dEpilogue{.activation = Act::gelu}, Conv3dEpilogue{.activation = Act::sigmoid},
                                   Conv3dEpilogue{.accumulate = true}, Conv3dEpilogue{Act::relu, 0.0f, true},
                                   Conv3dEpilogue{Act::leaky_relu, 0.2f, true}}) {
      for (const bool with_bias : {true, false}) {
        INFO(s.to_string() << " activation " << static_cast<int>(e.activation) << " accumulate " << e.accumulate
                           << " bias " << with_bias);
        auto y = residual.clone();
        ops::conv3d_forward(s, x, w, with_bias ? &b : nullptr, y, e);
        const auto yd = residual.to<Cuda>();
        ops::conv3d_forward(s, xd, wd, with_bias ? &bd : nullptr, yd, e);
        CHECK(relative_error(yd.to_vector(), y.to_vector()) <= 1e-4);
      }
    }
  }
}

TEST_CASE("cuDNN conv3d checks its tensors as the CPU does") {
  const Conv3dShape s{.in_channels = 4, .out_channels = 6, .input = {5, 5, 5}, .padding = {1, 1, 1}};
  const auto x = Tensor<float, Cuda>::zeros(s.input_shape());
  const auto w = Tensor<float, Cuda>::zeros(s.weight_shape());
  const auto b = Tensor<float, Cuda>::zeros(s.bias_shape());
  const auto y = Tensor<float, Cuda>::zeros(s.output_shape());
  const auto dw = Tensor<float, Cuda>::zeros(s.weight_shape());
  CHECK_THROWS_WITH(ops::conv3d_forward(s, Tensor<float, Cuda>::zeros({1, 4, 5, 5, 6}), w, &b, y),
                    Catch::Contains("conv3d_forward") && Catch::Contains("x") &&
                        Catch::Contains("[1,4,5,5,5]") && Catch::Contains("[1,4,5,5,6]"));
  CHECK_THROWS_WITH(ops::conv3d_forward(s, x, Tensor<float, Cuda>::zeros({6, 2, 3, 3, 3}), &b, y),
                    Catch::Contains("weight") && Catch::Contains("[6,4,3,3,3]") && Catch::Contains("[6,2,3,3,3]"));
  CHECK_THROWS_WITH(ops::conv3d_forward(s, x, w, &w, y), Catch::Contains("bias") && Catch::Contains("[6]"));
  CHECK_THROWS_WITH(ops::conv3d_forward(s, x, w, nullptr, Tensor<float, Cuda>()),
                    Catch::Contains("y") && Catch::Contains("undefined"));
  // A channel slice of a batch of two is a pitched view, not a contiguous tensor (of a batch of
  // one it is contiguous).
  Conv3dShape pair = s;
  pair.batch = 2;
  const auto wide = Tensor<float, Cuda>::zeros({2, 8, 5, 5, 5});
  CHECK_THROWS_WITH(
      ops::conv3d_forward(pair, wide.slice(1, 0, 4), w, &b, Tensor<float, Cuda>::zeros(pair.output_shape())),
      Catch::Contains("contiguous"));
  CHECK_THROWS_WITH(ops::conv3d_backward_data(s, x, w, x),
                    Catch::Contains("conv3d_backward_data") && Catch::Contains("dy"));
  CHECK_THROWS_WITH(ops::conv3d_backward_weights(s, x, y, dw, &w),
                    Catch::Contains("conv3d_backward_weights") && Catch::Contains("dbias"));
  CHECK_THROWS_WITH(ops::conv3d_backward(s, x, w, y, &y, dw, &b),
                    Catch::Contains("conv3d_backward") && Catch::Contains("dx"));
  // The problem itself is validated first.
  Conv3dShape bad = s;
  bad.groups = 3;
  CHECK_THROWS_WITH(ops::conv3d_forward(bad, x, w, &b, y), Catch::Contains("groups"));
}

TEST_CASE("cuDNN conv3d refuses a transposed output_padding of a whole stride, which cuDNN cannot express") {
  // Allowed by PyTorch (output_padding < dilation) and by the CPU; cuDNN's forward from the
  // larger side would make an input one voxel longer than ours.
  const Conv3dShape s{.in_channels = 2, .out_channels = 2, .input = {4, 4, 4}, .padding = {1, 1, 1},
                      .dilation = {2, 2, 2}, .output_padding = {1, 1, 1}, .transposed = true};
  s.validate();
  const auto x = Tensor<float, Cuda>::zeros(s.input_shape());
  const auto w = Tensor<float, Cuda>::zeros(s.weight_shape());
  const auto y = Tensor<float, Cuda>::zeros(s.output_shape());
  CHECK_THROWS_WITH(ops::conv3d_forward(s, x, w, nullptr, y),
                    Catch::Contains("conv3d_forward") && Catch::Contains("output_padding < stride"));
}

TEST_CASE("cuDNN conv3d plans are cached per problem and per TF32 setting") {
  const Conv3dShape s{.in_channels = 3, .out_channels = 3, .input = {9, 5, 3}, .padding = {1, 1, 1}};
  const auto x = random_tensor(s.input_shape(), 21).to<Cuda>();
  const auto w = random_tensor(s.weight_shape(), 22).to<Cuda>();
  const auto y = Tensor<float, Cuda>::empty(s.output_shape());
  const auto before = cuda::conv3d_cached_problems();
  ops::conv3d_forward(s, x, w, nullptr, y);
  ops::conv3d_forward(s, x, w, nullptr, y);
  CHECK(cuda::conv3d_cached_problems() == before + 1);
  {
    cuda::AllowTf32Scope tf32(true);
    ops::conv3d_forward(s, x, w, nullptr, y);
  }
  CHECK(cuda::conv3d_cached_problems() == before + 2);
  ops::conv3d_forward(s, x, w, nullptr, y);
  CHECK(cuda::conv3d_cached_problems() == before + 2);
}

TEST_CASE("cuDNN workspaces have no fixed cap unless MEDSEG_CUDNN_WORKSPACE_MB sets one") {
  // A fixed 1 GiB cap passed over the fast weight-gradient algorithms of 128^3 convolutions and
  // made a training step 2-15x slower than PyTorch's; the free memory bounds workspaces instead.
  const char* set = std::getenv("MEDSEG_CUDNN_WORKSPACE_MB");
  if (set && std::atoll(set) > 0)
    CHECK(cuda::conv3d_workspace_limit() == static_cast<std::size_t>(std::atoll(set)) << 20);
  else
    CHECK(cuda::conv3d_workspace_limit() == std::numeric_limits<std::size_t>::max());
}

TEST_CASE("with cudnn_deterministic, conv3d backward passes give the same bits on every run") {
  const bool previous = cuda::cudnn_deterministic();
  cuda::set_cudnn_deterministic(true);
  const Conv3dShape s{.batch = 2, .in_channels = 16, .out_channels = 16, .input = {8, 8, 8}, .padding = {1, 1, 1}};
  const auto x = random_tensor(s.input_shape(), 31).to<Cuda>();
  const auto w = random_tensor(s.weight_shape(), 32).to<Cuda>();
  const auto dy = random_tensor(s.output_shape(), 33).to<Cuda>();
  std::vector<std::vector<float>> runs;
  for (int run = 0; run < 2; ++run) {
    const auto dx = Tensor<float, Cuda>::empty(s.input_shape());
    const auto dw = Tensor<float, Cuda>::empty(s.weight_shape());
    const auto db = Tensor<float, Cuda>::empty(s.bias_shape());
    ops::conv3d_backward(s, x, w, dy, &dx, dw, &db);
    auto all = dx.to_vector();
    for (const auto& t : {dw, db}) {
      const auto v = t.to_vector();
      all.insert(all.end(), v.begin(), v.end());
    }
    runs.push_back(std::move(all));
  }
  CHECK(runs[0] == runs[1]);
  // Without dx, the weight gradients alone, the same.
  const auto dw = Tensor<float, Cuda>::empty(s.weight_shape());
  const auto db = Tensor<float, Cuda>::empty(s.bias_shape());
  ops::conv3d_backward(s, x, w, dy, nullptr, dw, &db);
  auto weights_only = dw.to_vector();
  const auto dbv = db.to_vector();
  weights_only.insert(weights_only.end(), dbv.begin(), dbv.end());
  const auto tail = runs[0].end() - static_cast<std::ptrdiff_t>(weights_only.size());
  CHECK(std::equal(weights_only.begin(), weights_only.end(), tail));
  cuda::set_cudnn_deterministic(previous);
}

TEST_CASE("the bias gradient sums channels longer than one reduction chunk") {
  // 2 * 40^3 = 128000 elements per channel: several chunks of the deterministic reduction.
  const Conv3dShape s{.batch = 2, .in_channels = 1, .out_channels = 3, .input = {40, 40, 40}, .kernel = {1, 1, 1}};
  const auto x = random_tensor(s.input_shape(), 41);
  const auto dy = random_tensor(s.output_shape(), 42);
  auto dw = Tensor<float>::empty(s.weight_shape());
  auto db = Tensor<float>::empty(s.bias_shape());
  ops::conv3d_backward_weights(s, x, dy, dw, &db);
  const auto dwd = Tensor<float, Cuda>::empty(s.weight_shape());
  const auto dbd = Tensor<float, Cuda>::empty(s.bias_shape());
  ops::conv3d_backward_weights(s, x.to<Cuda>(), dy.to<Cuda>(), dwd, &dbd);
  CHECK(scaled_error(dwd.to_vector(), dw.to_vector()) <= 1e-3);
  CHECK(scaled_error(dbd.to_vector(), db.to_vector()) <= 1e-3);
}

TEST_CASE("TF32 convolutions and GEMMs stay within 1e-2, and the setting is restored") {
  REQUIRE_FALSE(cuda::allow_tf32());
  const Conv3dShape s{.in_channels = 16, .out_channels = 16, .input = {8, 8, 8}, .padding = {1, 1, 1}};
  const auto x = random_tensor(s.input_shape(), 51);
  const auto w = random_tensor(s.weight_shape(), 52);
  const auto dy = random_tensor(s.output_shape(), 53);
  auto y = Tensor<float>::empty(s.output_shape());
  auto dx = Tensor<float>::empty(s.input_shape());
  auto dw = Tensor<float>::empty(s.weight_shape());
  ops::conv3d_forward(s, x, w, nullptr, y);
  ops::conv3d_backward(s, x, w, dy, &dx, dw, nullptr);
  const auto a = random_tensor({96, 80}, 54), b = random_tensor({80, 112}, 55);
  auto c = Tensor<float>::zeros({96, 112});
  ops::gemm(false, false, 1.0f, a, b, 0.0f, c);
  {
    cuda::AllowTf32Scope tf32(true);
    CHECK(cuda::allow_tf32());
    const auto yd = Tensor<float, Cuda>::empty(s.output_shape());
    const auto dxd = Tensor<float, Cuda>::empty(s.input_shape());
    const auto dwd = Tensor<float, Cuda>::empty(s.weight_shape());
    ops::conv3d_forward(s, x.to<Cuda>(), w.to<Cuda>(), nullptr, yd);
    ops::conv3d_backward(s, x.to<Cuda>(), w.to<Cuda>(), dy.to<Cuda>(), &dxd, dwd, nullptr);
    CHECK(scaled_error(yd.to_vector(), y.to_vector()) <= 1e-2);
    CHECK(scaled_error(dxd.to_vector(), dx.to_vector()) <= 1e-2);
    CHECK(scaled_error(dwd.to_vector(), dw.to_vector()) <= 1e-2);
    const auto cd = Tensor<float, Cuda>::zeros({96, 112});
    ops::gemm(false, false, 1.0f, a.to<Cuda>(), b.to<Cuda>(), 0.0f, cd);
    CHECK(scaled_error(cd.to_vector(), c.to_vector()) <= 1e-2);
  }
  CHECK_FALSE(cuda::allow_tf32());
  cuda::set_allow_tf32(true);
  CHECK(cuda::allow_tf32());
  cuda::set_allow_tf32(false);
  CHECK_FALSE(cuda::allow_tf32());
}

TEST_CASE("timed algorithm choice (cudnn_benchmark) gives the same results") {
  const bool previous = cuda::cudnn_benchmark();
  cuda::set_cudnn_benchmark(true);
  for (const auto& s : {Conv3dShape{.batch = 2, .in_channels = 8, .out_channels = 8, .input = {6, 7, 5},
                                    .padding = {1, 1, 1}},
                        Conv3dShape{.in_channels = 8, .out_channels = 4, .input = {3, 4, 5}, .kernel = {2, 2, 2},
                                    .stride = {2, 2, 2}, .transposed = true}}) {
    INFO(s.to_string());
    const auto x = random_tensor(s.input_shape(), 61);
    const auto w = random_tensor(s.weight_shape(), 62);
    const auto b = random_tensor(s.bias_shape(), 63);
    const auto dy = random_tensor(s.output_shape(), 64);
    auto y = random_tensor(s.output_shape(), 65);
    const auto yd = y.to<Cuda>();  // accumulate: the search must not clobber y
    auto dx = Tensor<float>::empty(s.input_shape());
    auto dw = Tensor<float>::empty(s.weight_shape());
    auto db = Tensor<float>::empty(s.bias_shape());
    const Conv3dEpilogue sum{.accumulate = true};
    ops::conv3d_forward(s, x, w, &b, y, sum);
    ops::conv3d_backward(s, x, w, dy, &dx, dw, &db);
    const auto dxd = Tensor<float, Cuda>::empty(s.input_shape());
    const auto dwd = Tensor<float, Cuda>::empty(s.weight_shape());
    const auto dbd = Tensor<float, Cuda>::empty(s.bias_shape());
    const auto bd = b.to<Cuda>();
    ops::conv3d_forward(s, x.to<Cuda>(), w.to<Cuda>(), &bd, yd, sum);
    ops::conv3d_backward(s, x.to<Cuda>(), w.to<Cuda>(), dy.to<Cuda>(), &dxd, dwd, &dbd);
    CHECK(relative_error(yd.to_vector(), y.to_vector()) <= 1e-4);
    CHECK(scaled_error(dxd.to_vector(), dx.to_vector()) <= 1e-3);
    CHECK(scaled_error(dwd.to_vector(), dw.to_vector()) <= 1e-3);
    CHECK(scaled_error(dbd.to_vector(), db.to_vector()) <= 1e-3);
  }
  cuda::set_cudnn_benchmark(previous);
}

TEST_CASE("cuDNN conv3d runs from several threads and on a side stream") {
  const Conv3dShape s{.in_channels = 5, .out_channels = 6, .input = {7, 6, 5}, .padding = {1, 1, 1}};
  const auto x = random_tensor(s.input_shape(), 71);
  const auto w = random_tensor(s.weight_shape(), 72);
  auto y = Tensor<float>::empty(s.output_shape());
  ops::conv3d_forward(s, x, w, nullptr, y);
  const auto want = y.to_vector();
  const auto xd = x.to<Cuda>(), wd = w.to<Cuda>();

  // A fresh problem for every thread at once: the plan is made while others look it up.
  std::vector<std::vector<float>> got(4);
  std::vector<std::string> errors(got.size());
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < got.size(); ++t)
    threads.emplace_back([&, t] {
      try {
        const auto yd = Tensor<float, Cuda>::empty(s.output_shape());
        ops::conv3d_forward(s, xd, wd, nullptr, yd);
        got[t] = yd.to_vector();
      } catch (const std::exception& e) {
        errors[t] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (std::size_t t = 0; t < got.size(); ++t) {
    INFO("thread " << t << ": " << errors[t]);
    REQUIRE(errors[t].empty());
    CHECK(relative_error(got[t], want) <= 1e-4);
  }

  cuda::Stream side;
  std::vector<float> on_side;
  {
    cuda::StreamGuard guard(side);
    const auto yd = Tensor<float, Cuda>::empty(s.output_shape());
    ops::conv3d_forward(s, xd, wd, nullptr, yd);
    on_side = yd.to_vector();
  }
  CHECK(relative_error(on_side, want) <= 1e-4);
}

TEST_CASE("cuBLAS gemm matches the CPU in every transpose, 2-D and batched") {
  for (const bool ta : {false, true})
    for (const bool tb : {false, true})
      for (const std::int64_t batch : {0, 3}) {  // 0: plain 2-D
        INFO("transpose_a " << ta << " transpose_b " << tb << " batch " << batch);
        const std::int64_t m = 7, n = 5, k = 9;
        auto shape = [&](std::int64_t rows, std::int64_t cols) {
          return batch ? Shape{batch, rows, cols} : Shape{rows, cols};
        };
        const auto a = random_tensor(ta ? shape(k, m) : shape(m, k), 81);
        const auto b = random_tensor(tb ? shape(n, k) : shape(k, n), 82);
        auto c = random_tensor(shape(m, n), 83);
        const auto cd = c.to<Cuda>();
        ops::gemm(ta, tb, 0.75f, a, b, 0.5f, c);
        ops::gemm(ta, tb, 0.75f, a.to<Cuda>(), b.to<Cuda>(), 0.5f, cd);
        CHECK(relative_error(cd.to_vector(), c.to_vector()) <= 1e-4);
      }
  // Odd sizes of a real layer: 33 tokens of 65 features into 31.
  const auto x = random_tensor({33, 65}, 84), w = random_tensor({31, 65}, 85);
  auto y = Tensor<float>::empty({33, 31});
  ops::gemm(false, true, 1.0f, x, w, 0.0f, y);
  const auto yd = nan_tensor({33, 31});  // beta == 0: NaNs in C are not read
  ops::gemm(false, true, 1.0f, x.to<Cuda>(), w.to<Cuda>(), 0.0f, yd);
  CHECK(relative_error(yd.to_vector(), y.to_vector()) <= 1e-4);
}

TEST_CASE("cuBLAS gemm with an empty inner dimension scales C, and checks its operands") {
  const auto a = Tensor<float, Cuda>::zeros({4, 0});
  const auto b = Tensor<float, Cuda>::zeros({0, 3});
  const auto cleared = nan_tensor({4, 3});
  ops::gemm(false, false, 1.0f, a, b, 0.0f, cleared);
  for (float v : cleared.to_vector()) CHECK(v == 0.0f);
  const auto scaled = Tensor<float, Cuda>::full({4, 3}, 3.0f);
  ops::gemm(false, false, 1.0f, a, b, 2.0f, scaled);
  for (float v : scaled.to_vector()) CHECK(v == 6.0f);

  const auto x = Tensor<float, Cuda>::zeros({4, 5});
  const auto y = Tensor<float, Cuda>::zeros({6, 3});
  const auto c = Tensor<float, Cuda>::zeros({4, 3});
  CHECK_THROWS_WITH(ops::gemm(false, false, 1.0f, x, y, 0.0f, c),
                    Catch::Contains("gemm") && Catch::Contains("inner dimension") && Catch::Contains("[4,5]"));
  CHECK_THROWS_WITH(ops::gemm(false, false, 1.0f, x, Tensor<float, Cuda>::zeros({5, 4}), 0.0f, c),
                    Catch::Contains("C") && Catch::Contains("[4,4]"));
  CHECK_THROWS_WITH(ops::gemm(false, false, 1.0f, Tensor<float, Cuda>::zeros({2, 4, 5}), y, 0.0f, c),
                    Catch::Contains("ranks"));
  CHECK_THROWS_WITH(ops::gemm(false, false, 1.0f, Tensor<float, Cuda>::zeros({4, 10}).slice(1, 0, 5),
                              Tensor<float, Cuda>::zeros({5, 3}), 0.0f, c),
                    Catch::Contains("contiguous"));
}
