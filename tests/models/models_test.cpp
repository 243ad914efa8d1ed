// VNet, VNetDeepSup, MONAI's UNet3D and nnU-Net's DynamicUNet: whole-model PyTorch parity (forward, one training step's
// gradients, parameter names and counts) against tests/models/reference/*.py, and the errors
// their options and inputs raise.
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "medseg/nnunet.hpp"
#include "medseg/unet.hpp"
#include "medseg/vnet.hpp"
#include "model_parity.hpp"

using namespace medseg;
using models::Dhw;
using test::check_model_parity;

namespace {
models::VNetOptions small_vnet(std::int64_t in, std::int64_t classes, models::Norm norm) {
  // p = 0: the reference runs without dropout, since masks differ between the two.
  return {.in_channels = in, .num_classes = classes, .norm = norm, .dropout = 0.0f, .width = 4};
}

models::DynamicUNetOptions anisotropic_unet(bool deep_supervision) {
  return {.in_channels = 1, .num_classes = 3, .features = {8, 16, 32, 64},
          .kernels = {{1, 3, 3}, {1, 3, 3}, {3, 3, 3}, {3, 3, 3}},
          .strides = {{1, 1, 1}, {1, 2, 2}, {2, 2, 2}, {2, 2, 2}},
          .convs_per_stage = {2, 2, 2, 2}, .convs_per_stage_decoder = {2, 2, 2},
          .deep_supervision = deep_supervision};
}

Tensor<float> test_randn(const Shape& s) {
  auto t = Tensor<float>::empty(s);
  random::normal(t, {7, 99, 0}, 0.0f, 1.0f);
  return t;
}

template <class M>
auto all_outputs(M& m) {
  return [&m](const Tensor<float>& x) { return m.forward_all(x); };
}
template <class M>
auto all_gradients(M& m) {
  return [&m](const std::vector<Tensor<float>>& dys) { return m.backward_all(dys); };
}
}  // namespace

TEST_CASE("VNet with BatchNorm matches MedicalSeg's VNet in eval mode") {
  models::VNet<Cpu> net{small_vnet(1, 3, models::Norm::batch)};
  check_model_parity(net, "vnet_batch_eval", {.train = false});
}

TEST_CASE("VNet with BatchNorm matches one PyTorch training step") {
  models::VNet<Cpu> net{small_vnet(1, 3, models::Norm::batch)};
  check_model_parity(net, "vnet_batch_train");
}

TEST_CASE("VNet with GroupNorm and ELU matches one PyTorch training step") {
  auto o = small_vnet(2, 2, models::Norm::group);
  o.activation = models::Activation::elu;
  models::VNet<Cpu> net{o};
  check_model_parity(net, "vnet_group_elu_train");
}

TEST_CASE("VNet with InstanceNorm and anisotropic down-sampling matches PyTorch") {
  auto o = small_vnet(1, 2, models::Norm::instance);
  o.down_kernel = {Dhw{2, 2, 2}, Dhw{2, 2, 2}, Dhw{2, 2, 4}, Dhw{2, 2, 4}};
  o.down_stride = {Dhw{2, 2, 2}, Dhw{2, 2, 2}, Dhw{2, 2, 1}, Dhw{2, 2, 1}};
  models::VNet<Cpu> net{o};
  check_model_parity(net, "vnet_instance_aniso_train");
}

TEST_CASE("VNet parameter paths are MedicalSeg's module names") {
  models::VNet<Cpu> net{small_vnet(1, 2, models::Norm::batch)};
  std::vector<std::string> p;
  for (const auto& q : nn::parameters(net)) p.push_back(q.path);
  for (const char* name : {"in_tr.conv1.weight", "in_tr.bn1.bias", "in_tr.relu1.weight", "down_tr32.down_conv.weight",
                           "down_tr64.ops.1.conv1.weight", "down_tr256.relu2.weight", "up_tr256.up_conv.weight",
                           "up_tr128.ops.1.bn1.weight", "up_tr32.relu2.weight", "out_tr.conv2.bias"})
    CHECK(std::count(p.begin(), p.end(), std::string(name)) == 1);
  CHECK(p.front() == "in_tr.conv1.weight");
  CHECK(p.back() == "out_tr.conv2.bias");
}

TEST_CASE("VNet dropout is active in training and off in eval") {
  models::VNet<Cpu> net{{.in_channels = 1, .num_classes = 2, .norm = models::Norm::group, .dropout = 0.5f, .width = 2, .seed = 3}};
  const auto x = test_randn({1, 1, 16, 16, 16});
  net.train(true);
  const auto a = net.forward(x).to_vector();
  const auto b = net.forward(x).to_vector();
  CHECK(a != b);  // a fresh mask per step
  net.eval();
  CHECK(net.forward(x).to_vector() == net.forward(x).to_vector());
}

TEST_CASE("VNet options and inputs are checked with clear errors") {
  CHECK_THROWS_WITH((models::VNet<Cpu>{{.in_channels = 3, .width = 4}}),
                    Catch::Contains("VNet") && Catch::Contains("width") && Catch::Contains("in_channels 3"));
  models::VNet<Cpu> net{small_vnet(1, 2, models::Norm::group)};
  CHECK_THROWS_WITH(net.forward(Tensor<float>::zeros({1, 1, 24, 16, 16})), Catch::Contains("UNetLevel"));
  CHECK_THROWS_WITH(net.forward(Tensor<float>::zeros({1, 2, 16, 16, 16})),
                    Catch::Contains("in_tr.conv1") && Catch::Contains("[1,2,16,16,16]"));
}

TEST_CASE("DynamicUNet with deep supervision matches PlainConvUNet's training step") {
  models::DynamicUNet<Cpu> net{anisotropic_unet(true)};
  check_model_parity(net, "dynamic_unet_ds_train", all_outputs(net), all_gradients(net));
}

TEST_CASE("DynamicUNet matches PlainConvUNet at inference") {
  models::DynamicUNet<Cpu> net{anisotropic_unet(false)};
  check_model_parity(net, "dynamic_unet_eval", {.train = false});
  // Deep supervision off or eval mode: forward_all returns the full-resolution output alone.
  models::DynamicUNet<Cpu> ds{anisotropic_unet(true)};
  ds.eval();
  CHECK(ds.forward_all(Tensor<float>::zeros({1, 1, 4, 8, 8})).size() == 1);
  ds.train(true);
  CHECK(ds.forward_all(Tensor<float>::zeros({1, 1, 4, 8, 8})).size() == 3);
}

TEST_CASE("DynamicUNet with uneven conv counts matches PlainConvUNet's training step") {
  models::DynamicUNet<Cpu> net{{.in_channels = 2, .num_classes = 2, .features = {4, 8, 16},
                                .kernels = {{3, 3, 3}, {3, 3, 3}, {3, 3, 3}},
                                .strides = {{1, 1, 1}, {2, 2, 2}, {2, 2, 1}},
                                .convs_per_stage = {1, 2, 3}, .convs_per_stage_decoder = {1, 2},
                                .deep_supervision = false}};
  check_model_parity(net, "dynamic_unet_train");
}

TEST_CASE("DynamicUNet parameter paths and features follow nnU-Net") {
  CHECK(models::nnunet_features(6) == std::vector<std::int64_t>{32, 64, 128, 256, 320, 320});
  models::DynamicUNet<Cpu> net{anisotropic_unet(true)};
  std::vector<std::string> p;
  for (const auto& q : nn::parameters(net)) p.push_back(q.path);
  CHECK(p.front() == "encoder.stages.0.0.convs.0.conv.weight");
  for (const char* name : {"encoder.stages.0.0.convs.0.norm.weight", "encoder.stages.3.0.convs.1.conv.bias",
                           "decoder.transpconvs.0.weight", "decoder.stages.0.convs.0.conv.weight",
                           "decoder.stages.2.convs.1.norm.bias", "decoder.seg_layers.2.weight"})
    CHECK(std::count(p.begin(), p.end(), std::string(name)) == 1);
}

TEST_CASE("DynamicUNet options and inputs are checked with clear errors") {
  auto o = anisotropic_unet(true);
  o.kernels.pop_back();
  CHECK_THROWS_WITH(models::DynamicUNet<Cpu>{o}, Catch::Contains("kernels") && Catch::Contains("4 entries") &&
                                                     Catch::Contains("got 3"));
  o = anisotropic_unet(true);
  o.convs_per_stage_decoder.push_back(2);
  CHECK_THROWS_WITH(models::DynamicUNet<Cpu>{o}, Catch::Contains("convs_per_stage_decoder") && Catch::Contains("3 entries"));
  models::DynamicUNet<Cpu> net{anisotropic_unet(true)};
  CHECK_THROWS_WITH(net.forward(Tensor<float>::zeros({1, 1, 4, 12, 8})),
                    Catch::Contains("decoder stage") && Catch::Contains("divisible"));
  CHECK_THROWS_WITH(net.backward_all({}), Catch::Contains("output gradients"));
}

TEST_CASE("DynamicUNet with a residual encoder matches nnU-Net's ResEnc training step") {
  models::DynamicUNet<Cpu> net{{.in_channels = 1, .num_classes = 2, .features = {4, 4, 8},
                                .kernels = {{1, 3, 3}, {3, 3, 3}, {3, 3, 3}},
                                .strides = {{1, 1, 1}, {1, 2, 2}, {2, 2, 2}},
                                .convs_per_stage = {1, 2, 2}, .convs_per_stage_decoder = {1, 1},
                                .residual_encoder = true}};
  check_model_parity(net, "resenc_unet_ds_train", all_outputs(net), all_gradients(net));
  std::vector<std::string> p;
  for (const auto& q : nn::parameters(net)) p.push_back(q.path);
  CHECK(p.front() == "encoder.stem.convs.0.conv.weight");
  CHECK(std::count(p.begin(), p.end(), std::string("encoder.stages.2.blocks.0.skip.1.conv.weight")) == 1);
}

TEST_CASE("VNetDeepSup matches PyTorch's training step with its three heads") {
  auto o = small_vnet(1, 3, models::Norm::group);
  o.down_kernel = {Dhw{2, 2, 2}, Dhw{2, 2, 2}, Dhw{2, 2, 4}, Dhw{2, 2, 4}};
  o.down_stride = {Dhw{2, 2, 2}, Dhw{2, 2, 2}, Dhw{2, 2, 1}, Dhw{2, 2, 1}};
  models::VNetDeepSup<Cpu> net{o};
  check_model_parity(net, "vnet_deepsup_train", all_outputs(net), all_gradients(net));
  std::vector<std::string> p;
  for (const auto& q : nn::parameters(net)) p.push_back(q.path);
  CHECK(p.front() == "in_tr.conv1.weight");
  CHECK(p.back() == "deep_sup256.bias");
  CHECK(std::count(p.begin(), p.end(), std::string("deep_sup64.weight")) == 1);
  CHECK(std::count(p.begin(), p.end(), std::string("up_tr256.ops.1.conv1.weight")) == 1);
}

TEST_CASE("VNetDeepSup at inference returns the main output alone and equals VNet") {
  models::VNetDeepSup<Cpu> net{small_vnet(1, 2, models::Norm::batch)};
  check_model_parity(net, "vnet_deepsup_eval", all_outputs(net), all_gradients(net), {.train = false});
  CHECK(net.forward_all(test_randn({1, 1, 16, 16, 16})).size() == 1);
  // The same weights in a plain VNet give the same main output: the heads only branch off.
  models::VNet<Cpu> plain{small_vnet(1, 2, models::Norm::batch)};
  nn::load_state_dict(plain, test::model_reference_dir() / "vnet_deepsup_eval.weights.safetensors", {.strict = false});
  plain.eval();
  const auto x = test_randn({1, 1, 16, 16, 16});
  CHECK(test::relative_error(net.forward(x), plain.forward(x)) == 0.0);
}

TEST_CASE("VNetDeepSup checks its output gradients") {
  models::VNetDeepSup<Cpu> net{small_vnet(1, 2, models::Norm::group)};
  net.train(true);
  const auto x = test_randn({1, 1, 16, 16, 16});
  const auto ys = net.forward_all(x);
  REQUIRE(ys.size() == 4);
  for (const auto& y : ys) CHECK(y.shape() == Shape{1, 2, 16, 16, 16});
  CHECK_THROWS_WITH(net.backward_all({ys[0]}), Catch::Contains("VNetDeepSup") && Catch::Contains("4 (one per returned output)"));
  // forward() alone in training: backward takes the main gradient only.
  const auto y = net.forward(x);
  CHECK(net.backward(y).shape() == x.shape());
}

TEST_CASE("UNet3D without residual units matches MONAI's UNet training step") {
  models::UNet3D<Cpu> net{{.in_channels = 1, .num_classes = 3, .channels = {4, 8, 16}, .strides = {{2, 2, 2}, {2, 2, 2}}}};
  check_model_parity(net, "unet3d_plain_train");
  std::vector<std::string> p;
  for (const auto& q : nn::parameters(net)) p.push_back(q.path);
  CHECK(p.front() == "model.0.conv.weight");
  CHECK(p.back() == "model.2.conv.bias");  // the top up layer is conv-only
  for (const char* name : {"model.0.adn.A.weight", "model.1.submodule.0.conv.weight", "model.1.submodule.1.submodule.adn.A.weight",
                           "model.1.submodule.2.conv.weight"})
    CHECK(std::count(p.begin(), p.end(), std::string(name)) == 1);
}

TEST_CASE("UNet3D with two residual units and BatchNorm matches MONAI's UNet training step") {
  models::UNet3D<Cpu> net{{.in_channels = 2, .num_classes = 2, .channels = {4, 8, 16, 16},
                           .strides = {{2, 2, 2}, {1, 2, 2}, {2, 2, 2}}, .num_res_units = 2, .norm = models::Norm::batch}};
  check_model_parity(net, "unet3d_res2_train");
  CHECK(net.size_divisor() == Dhw{4, 8, 8});
  std::vector<std::string> p;
  for (const auto& q : nn::parameters(net)) p.push_back(q.path);
  CHECK(p.front() == "model.0.conv.unit0.conv.weight");
  for (const char* name : {"model.0.conv.unit1.adn.A.weight", "model.0.residual.weight", "model.0.conv.unit0.adn.N.weight",
                           "model.1.submodule.1.submodule.1.submodule.conv.unit1.conv.weight", "model.2.0.adn.N.bias",
                           "model.2.1.conv.unit0.conv.weight"})
    CHECK(std::count(p.begin(), p.end(), std::string(name)) == 1);
}

TEST_CASE("UNet3D with GroupNorm LeakyReLU and an anisotropic kernel matches MONAI's UNet") {
  models::UNet3D<Cpu> net{{.in_channels = 1, .num_classes = 2, .channels = {4, 8, 8}, .strides = {{1, 2, 2}, {2, 2, 2}},
                           .kernel = {1, 3, 3}, .num_res_units = 1, .norm = models::Norm::group, .num_groups = 2,
                           .activation = models::UNetActivation::leaky_relu}};
  check_model_parity(net, "unet3d_res1_group_train");
}

TEST_CASE("UNet3D with ReLU and BatchNorm matches MONAI's UNet at inference") {
  models::UNet3D<Cpu> net{{.in_channels = 1, .num_classes = 2, .channels = {4, 8, 16}, .strides = {{2, 2, 2}, {2, 2, 2}},
                           .norm = models::Norm::batch, .activation = models::UNetActivation::relu}};
  check_model_parity(net, "unet3d_relu_eval", {.train = false});
}

TEST_CASE("UNet3D options and inputs are checked with clear errors") {
  CHECK_THROWS_WITH((models::UNet3D<Cpu>{{.channels = {4, 8, 16}, .strides = {{2, 2, 2}}}}),
                    Catch::Contains("UNet3D") && Catch::Contains("strides") && Catch::Contains("2 entries"));
  CHECK_THROWS_WITH((models::UNet3D<Cpu>{{.channels = {4, 8}, .strides = {{2, 2, 2}}, .kernel = {3, 2, 3}}}),
                    Catch::Contains("kernel") && Catch::Contains("odd"));
  CHECK_THROWS_WITH((models::UNet3D<Cpu>{{.channels = {4, 6}, .strides = {{2, 2, 2}}, .norm = models::Norm::group, .num_groups = 4}}),
                    Catch::Contains("num_groups") && Catch::Contains("4 for 6 channels"));
  models::UNet3D<Cpu> net{{.channels = {4, 8, 16}, .strides = {{2, 2, 2}, {2, 2, 2}}}};
  CHECK_THROWS_WITH(net.forward(Tensor<float>::zeros({1, 1, 8, 8, 6})), Catch::Contains("divisible by [4,4,4]"));
  CHECK_THROWS_WITH(net.forward(Tensor<float>::zeros({1, 2, 8, 8, 8})), Catch::Contains("UNet3D") && Catch::Contains("input channels"));
  CHECK_THROWS_WITH(net.backward(Tensor<float>::zeros({1, 2, 8, 8, 8})), Catch::Contains("training-mode forward"));
}
