// What the models' memory and speed work must not change, and what it must deliver:
// - set_input_gradient(false): backward skips the first layer's data gradient, returns an
//   undefined tensor and leaves every parameter gradient as it was;
// - NormActivation: BatchNorm + PReLU fused (one pass, the norm's input kept alone) computes
//   what the two layers in a row compute;
// - eval-mode forwards release every intermediate buffer once consumed: after a call only the
//   output is held.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "medseg/nnunet.hpp"
#include "medseg/vnet.hpp"

using namespace medseg;

namespace {
Tensor<float> randn(const Shape& s, std::uint64_t seed) {
  auto t = Tensor<float>::empty(s);
  random::normal(t, {.seed = seed});
  return t;
}

double max_relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, scale = 1e-6;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, static_cast<double>(std::abs(a[i] - b[i])));
    scale = std::max(scale, static_cast<double>(std::abs(b[i])));
  }
  return diff / scale;
}

/// Every parameter gradient after one forward/backward of `net` on x with output gradient dy.
template <class Net>
std::vector<std::vector<float>> gradients_of_step(Net& net, const Tensor<float>& x, bool input_gradient,
                                                  Tensor<float>* dx_out) {
  net.train(true);
  net.set_input_gradient(input_gradient);
  nn::zero_grad(net);
  const auto y = net.forward(x);
  const auto dy = randn(y.shape(), 77);
  const auto dx = net.backward(dy);
  if (dx_out) *dx_out = dx;
  std::vector<std::vector<float>> grads;
  for (const auto& p : nn::parameters(net)) grads.push_back(p.grad.to_vector());
  return grads;
}

template <class Net>
void check_input_gradient_switch(Net& net, const Tensor<float>& x) {
  Tensor<float> dx_on, dx_off;
  const auto with = gradients_of_step(net, x, true, &dx_on);
  const auto without = gradients_of_step(net, x, false, &dx_off);
  CHECK(dx_on.defined());
  CHECK(dx_on.shape() == x.shape());
  CHECK_FALSE(dx_off.defined());
  REQUIRE(with.size() == without.size());
  for (std::size_t i = 0; i < with.size(); ++i) {
    INFO("parameter " << i);
    CHECK(with[i] == without[i]);  // the same arithmetic, bit for bit
  }
}
}  // namespace

TEST_CASE("VNet without an input gradient computes the same parameter gradients") {
  // Batch 2 and BatchNorm + PReLU (the fused path); dropout off so both steps match.
  models::VNet<Cpu> net{{.in_channels = 1, .num_classes = 3, .dropout = 0.0f, .width = 4}};
  check_input_gradient_switch(net, randn({2, 1, 16, 16, 16}, 1));
  models::VNet<Cpu> elu{{.in_channels = 2, .num_classes = 2, .norm = models::Norm::group,
                         .activation = models::Activation::elu, .dropout = 0.0f, .width = 4}};
  check_input_gradient_switch(elu, randn({1, 2, 16, 16, 16}, 2));
}

TEST_CASE("DynamicUNet without an input gradient computes the same parameter gradients") {
  models::DynamicUNet<Cpu> net{{.in_channels = 1, .num_classes = 3, .features = {4, 8, 16},
                                .kernels = {{3, 3, 3}, {3, 3, 3}, {3, 3, 3}},
                                .strides = {{1, 1, 1}, {2, 2, 2}, {2, 2, 2}},
                                .convs_per_stage = {2, 2, 2}, .convs_per_stage_decoder = {2, 2},
                                .deep_supervision = false}};
  check_input_gradient_switch(net, randn({2, 1, 8, 8, 8}, 3));
  models::DynamicUNet<Cpu> resenc{{.in_channels = 1, .num_classes = 2, .features = {4, 8},
                                   .kernels = {{3, 3, 3}, {3, 3, 3}}, .strides = {{1, 1, 1}, {2, 2, 2}},
                                   .convs_per_stage = {1, 2}, .convs_per_stage_decoder = {1},
                                   .deep_supervision = false, .residual_encoder = true}};
  check_input_gradient_switch(resenc, randn({1, 1, 8, 8, 8}, 4));
}

TEST_CASE("NormActivation fuses BatchNorm and PReLU into what the two layers compute") {
  using Pair = nn::Sequential<nn::BatchNorm3d<Cpu>, nn::PReLU<Cpu>>;
  for (const bool positive : {true, false}) {
    INFO((positive ? "positive" : "mixed") << " slopes");
    models::NormActivation<Cpu> fused{nn::BatchNorm3d<Cpu>{{.num_features = 3}},
                                      nn::PReLU<Cpu>{{.num_parameters = 3, .init = 0.25f}}};
    Pair pair{nn::BatchNorm3d<Cpu>{{.num_features = 3}}, nn::PReLU<Cpu>{{.num_parameters = 3, .init = 0.25f}}};
    // Distinct affine parameters and slopes, the same in both.
    auto fused_params = nn::parameters(fused), pair_params = nn::parameters(pair);
    REQUIRE(fused_params.size() == 3);
    REQUIRE(pair_params.size() == 3);
    CHECK(fused_params[0].path == "bn1.weight");
    CHECK(fused_params[2].path == "relu1.weight");
    const std::vector<std::vector<float>> values{{0.5f, 1.5f, -1.0f}, {0.1f, -0.2f, 0.3f},
                                                 {0.2f, positive ? 0.1f : -0.3f, 0.05f}};
    for (std::size_t i = 0; i < 3; ++i) {
      std::copy(values[i].begin(), values[i].end(), fused_params[i].value.data());
      std::copy(values[i].begin(), values[i].end(), pair_params[i].value.data());
    }
    const auto x = randn({2, 3, 4, 5, 6}, 5);
    const auto dy = randn({2, 3, 4, 5, 6}, 6);
    for (int step = 0; step < 2; ++step) {
      const auto yf = fused.forward(x);
      const auto yp = pair.forward(x);
      CHECK(yf.to_vector() == yp.to_vector());  // the same float operations
      CHECK(fused.fused());
      const auto dxf = fused.backward(dy);
      const auto dxp = pair.backward(dy);
      CHECK(max_relative_difference(dxf.to_vector(), dxp.to_vector()) < 1e-6);
      for (std::size_t i = 0; i < 3; ++i) {
        INFO("parameter " << i);
        CHECK(max_relative_difference(fused_params[i].grad.to_vector(), pair_params[i].grad.to_vector()) < 1e-5);
      }
    }
    const auto fb = nn::buffers(fused), pb = nn::buffers(pair);
    for (std::size_t i = 0; i < fb.size(); ++i) CHECK(fb[i].value.to_vector() == pb[i].value.to_vector());
    fused.eval();
    pair.eval();
    CHECK(fused.forward(x).to_vector() == pair.forward(x).to_vector());
  }
}

TEST_CASE("Models in eval mode hold no intermediate buffers between calls") {
  if (!host_allocator().caching()) return;  // the counters of the cache are what is checked
  models::DynamicUNet<Cpu> unet{{.in_channels = 1, .num_classes = 2, .features = {4, 8, 16},
                                 .kernels = {{3, 3, 3}, {3, 3, 3}, {3, 3, 3}},
                                 .strides = {{1, 1, 1}, {2, 2, 2}, {2, 2, 2}},
                                 .convs_per_stage = {2, 2, 2}, .convs_per_stage_decoder = {2, 2}}};
  models::VNet<Cpu> vnet{{.in_channels = 1, .num_classes = 2, .width = 4}};
  unet.eval();
  vnet.eval();
  // 1 MiB per intermediate activation: one left behind would show.
  const auto x = randn({2, 1, 32, 32, 32}, 7);
  auto check = [&](auto& net, const char* name) {
    INFO(name);
    const auto before = host_allocator().stats().in_use;
    for (int call = 0; call < 2; ++call) {
      const auto y = net.forward(x);
      const auto after = host_allocator().stats().in_use;
      // The output alone, which the layer that produced it keeps for the next call.
      CHECK(after <= before + HostAllocator::class_bytes(y.nbytes()) + (std::size_t{256} << 10));
    }
  };
  check(unet, "DynamicUNet");
  check(vnet, "VNet");
}

TEST_CASE("Norms and activations write their input gradient over a gradient handed to them") {
  const auto x = randn({2, 4, 3, 4, 5}, 8);
  const auto dy = randn({2, 4, 3, 4, 5}, 9);
  auto check = [&](auto make, const char* name) {
    INFO(name);
    auto a = make();
    auto b = make();
    (void)a.forward(x);
    (void)b.forward(x);
    const auto copied = a.backward(dy);  // dy is still held here: a fresh gradient
    CHECK(copied.data() != dy.data());
    auto handed = dy.clone();
    const float* buffer = handed.data();
    const auto in_place = b.backward(std::move(handed));
    CHECK(in_place.data() == buffer);
    CHECK(in_place.to_vector() == copied.to_vector());
    const auto pa = nn::parameters(a), pb = nn::parameters(b);
    for (std::size_t i = 0; i < pa.size(); ++i) CHECK(pa[i].grad.to_vector() == pb[i].grad.to_vector());
  };
  check([] { return nn::BatchNorm3d<Cpu>{{.num_features = 4}}; }, "BatchNorm3d");
  check([] { return nn::InstanceNorm3d<Cpu>{{.num_features = 4, .affine = true}}; }, "InstanceNorm3d");
  check([] { return nn::GroupNorm<Cpu>{{.num_groups = 2, .num_channels = 4}}; }, "GroupNorm");
  check([] { return nn::PReLU<Cpu>{{.num_parameters = 4}}; }, "PReLU (keeps its output)");
  check([] { return nn::PReLU<Cpu>{{.num_parameters = 4, .init = -0.1f}}; }, "PReLU (keeps its input)");
  check([] { return nn::LeakyReLU<Cpu>{}; }, "LeakyReLU");
  check([] { return nn::ELU<Cpu>{}; }, "ELU");
}
