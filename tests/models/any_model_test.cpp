// models::AnyModel, the JSON model factory: every model type from JSON, round trips through
// to_json, errors that name the field, state dicts and parameters through the variant, and
// PyTorch parity of a model built only from its JSON description.
#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "medseg/infer/deploy.hpp"
#include "medseg/models/any_model.hpp"
#include "medseg/preprocess/prepare.hpp"
#include "medseg/train/config.hpp"
#include "model_parity.hpp"

using namespace medseg;
using models::AnyModel;
using models::Dhw;
using nlohmann::json;

namespace {
Tensor<float> randn(const Shape& s, std::uint64_t seed) {
  auto t = Tensor<float>::empty(s);
  random::normal(t, {seed, 3, 0}, 0.0f, 1.0f);
  return t;
}
}  // namespace

TEST_CASE("AnyModel builds every model type from JSON") {
  auto vnet = AnyModel<Cpu>::from_json({{"type", "VNet"}, {"num_classes", 3}, {"width", 2}, {"norm", "group"}}, "test");
  CHECK(vnet.type() == "VNet");
  CHECK(vnet.in_channels() == 1);
  CHECK(vnet.num_classes() == 3);
  CHECK(vnet.size_divisor() == Dhw{16, 16, 16});
  CHECK_FALSE(vnet.deep_supervision());
  CHECK(std::holds_alternative<models::VNet<Cpu>>(vnet.variant()));

  auto ds = AnyModel<Cpu>::from_json(
      {{"type", "VNetDeepSup"}, {"width", 2}, {"down_stride", {2, 2, 2, {2, 2, 1}}}, {"down_kernel", {2, 2, 2, {2, 2, 1}}}}, "test");
  CHECK(ds.type() == "VNetDeepSup");
  CHECK(ds.deep_supervision());
  CHECK(ds.size_divisor() == Dhw{16, 16, 8});

  auto unet = AnyModel<Cpu>::from_json({{"type", "UNet3D"}, {"in_channels", 2}, {"num_classes", 4}, {"channels", {4, 8, 16}},
                                        {"strides", {{1, 2, 2}, 2}}, {"num_res_units", 1}, {"activation", "leakyrelu"}},
                                       "test");
  CHECK(unet.type() == "UNet3D");
  CHECK(unet.in_channels() == 2);
  CHECK(unet.num_classes() == 4);
  CHECK(unet.size_divisor() == Dhw{2, 4, 4});
  CHECK(std::get<models::UNet3D<Cpu>>(unet.variant()).options().activation == models::UNetActivation::leaky_relu);

  // An nnU-Net-like plan: features alone give nnU-Net's per-stage defaults for that depth.
  auto dyn = AnyModel<Cpu>::from_json({{"type", "DynamicUNet"}, {"features", {4, 8, 16, 32, 32}}}, "test");
  const auto& o = std::get<models::DynamicUNet<Cpu>>(dyn.variant()).options();
  CHECK(o.kernels.size() == 5);
  CHECK(o.strides.front() == Dhw{1, 1, 1});
  CHECK(o.convs_per_stage_decoder.size() == 4);
  CHECK(dyn.size_divisor() == Dhw{16, 16, 16});
  CHECK(dyn.deep_supervision());
  auto plan = AnyModel<Cpu>::from_json({{"type", "DynamicUNet"}, {"features", {4, 8, 16}}, {"kernels", {{1, 3, 3}, 3, 3}},
                                        {"strides", {1, {1, 2, 2}, 2}}, {"deep_supervision", false}},
                                       "test");
  CHECK(plan.size_divisor() == Dhw{2, 4, 4});
  CHECK_FALSE(plan.deep_supervision());
}

TEST_CASE("AnyModel to_json round-trips every option") {
  const std::vector<json> configs{
      {{"type", "VNet"}, {"in_channels", 2}, {"num_classes", 3}, {"norm", "instance"}, {"activation", "elu"}, {"dropout", 0.25},
       {"down_kernel", {2, 2, {2, 2, 4}, {2, 2, 4}}}, {"down_stride", {2, 2, {2, 2, 1}, {2, 2, 1}}}, {"width", 4}, {"seed", 9}},
      {{"type", "VNetDeepSup"}, {"width", 2}, {"norm", "batch"}},
      {{"type", "UNet3D"}, {"channels", {4, 8}}, {"strides", {{1, 2, 2}}}, {"kernel", {1, 3, 3}}, {"up_kernel", 1},
       {"num_res_units", 2}, {"norm", "group"}, {"num_groups", 2}, {"activation", "relu"}, {"dropout", 0.1}, {"bias", false}},
      {{"type", "DynamicUNet"}, {"features", {4, 8, 16}}, {"residual_encoder", true}, {"convs_per_stage", {1, 2, 2}},
       {"negative_slope", 0.02}, {"conv_bias", false}}};
  for (const auto& c : configs) {
    INFO(c.dump());
    auto a = AnyModel<Cpu>::from_json(c, "test");
    const json j = a.to_json();
    for (const auto& [key, value] : c.items())
      if (key != "down_kernel" && key != "down_stride" && key != "strides" && key != "kernels" && key != "kernel" &&
          key != "up_kernel" && key != "dropout" && key != "negative_slope")
        CHECK(j.at(key) == value);  // triples are written as [d, h, w] and floats as float32
    auto b = AnyModel<Cpu>::from_json(j, "test");
    CHECK(b.to_json() == j);
    CHECK(nn::count_parameters(nn::parameters(a)) == nn::count_parameters(nn::parameters(b)));
  }
  CHECK(AnyModel<Cpu>::from_json(configs[0], "test").to_json().at("down_kernel") ==
        json{{2, 2, 2}, {2, 2, 2}, {2, 2, 4}, {2, 2, 4}});
}

TEST_CASE("AnyModel configuration errors name where the field what was expected and what was given") {
  auto error_of = [](const json& j) {
    try {
      AnyModel<Cpu>::from_json(j, "plan.json: model");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  using Catch::Contains;
  CHECK_THAT(error_of({{"type", "UNet"}}), Contains("plan.json: model: type") && Contains("\"UNet3D\"") && Contains("got \"UNet\""));
  CHECK_THAT(error_of({{"num_classes", 2}}), Contains("type") && Contains("missing"));
  CHECK_THAT(error_of(json::array({1, 2})), Contains("plan.json: model") && Contains("a JSON object"));
  CHECK_THAT(error_of({{"type", "VNet"}, {"num_class", 2}}),
             Contains("plan.json: model: num_class: expected a known key, got unknown key \"num_class\"") &&
                 Contains("did you mean \"num_classes\"?"));
  CHECK_THAT(error_of({{"type", "VNet"}, {"width", "wide"}}),
             Contains("width") && Contains("expected an integer") && Contains("got \"wide\""));
  CHECK_THAT(error_of({{"type", "VNet"}, {"norm", "layer"}}), Contains("norm") && Contains("\"batch\", \"group\", \"instance\""));
  CHECK_THAT(error_of({{"type", "VNet"}, {"down_stride", {2, 2, 2}}}), Contains("down_stride") && Contains("4 entries"));
  CHECK_THAT(error_of({{"type", "UNet3D"}, {"strides", {2, {2, 2}}}}),
             Contains("strides[1]") && Contains("[d, h, w]") && Contains("got [2,2]"));
  CHECK_THAT(error_of({{"type", "UNet3D"}, {"channels", {4, 8.5}}}), Contains("channels[1]") && Contains("got 8.5"));
  CHECK_THAT(error_of({{"type", "UNet3D"}, {"bias", 1}}), Contains("bias") && Contains("true or false"));
  CHECK_THAT(error_of({{"type", "DynamicUNet"}, {"seed", 1}}), Contains("seed") && Contains("unknown key"));
  // Values the model rejects: the model's own field, under the configuration's name.
  CHECK_THAT(error_of({{"type", "UNet3D"}, {"channels", {4, 8, 16}}, {"strides", {2}}}),
             Contains("plan.json: model: UNet3D: strides") && Contains("2 entries") && Contains("got 1"));
  CHECK_THAT(error_of({{"type", "DynamicUNet"}, {"features", {4, 8}}, {"kernels", {3}}}),
             Contains("plan.json: model: DynamicUNet: kernels"));
  CHECK_THAT(error_of({{"type", "VNet"}, {"dropout", 1.5}}), Contains("plan.json: model") && Contains("p"));
}

TEST_CASE("Each model's options are declared once: written then read they are equal, unknown keys fail") {
  using models::detail::read_options;
  using models::detail::write_options;
  auto read = [](const json& j, auto tag) {
    JsonReader r(j, "options.json");
    auto o = read_options<decltype(tag)>(r);
    r.finish();
    return o;
  };
  models::VNetOptions v;
  v.in_channels = 2, v.num_classes = 5, v.norm = models::Norm::group, v.activation = models::Activation::elu;
  v.dropout = 0.25f, v.down_kernel[2] = {2, 2, 4}, v.down_stride[3] = {2, 2, 1}, v.width = 4, v.seed = 7;
  const json vj = write_options(v);
  CHECK(vj.at("norm") == "group");
  CHECK(vj.at("activation") == "elu");
  CHECK(vj.at("down_stride") == json{{2, 2, 2}, {2, 2, 2}, {2, 2, 2}, {2, 2, 1}});
  const auto v2 = read(vj, models::VNetOptions{});
  CHECK(write_options(v2) == vj);
  CHECK((v2.in_channels == v.in_channels && v2.num_classes == v.num_classes && v2.norm == v.norm &&
         v2.activation == v.activation && v2.dropout == v.dropout && v2.down_kernel == v.down_kernel &&
         v2.down_stride == v.down_stride && v2.width == v.width && v2.seed == v.seed));
  // The keys written are exactly the declared ones (what exported models hold).
  std::vector<std::string> keys;
  for (const auto& [k, _] : vj.items()) keys.push_back(k);
  CHECK(keys == std::vector<std::string>{"activation", "down_kernel", "down_stride", "dropout", "in_channels", "norm",
                                         "num_classes", "seed", "width"});

  models::UNet3DOptions u;
  u.channels = {4, 8, 16}, u.strides = {{1, 2, 2}, {2, 2, 2}}, u.kernel = {1, 3, 3}, u.activation = models::UNetActivation::leaky_relu;
  u.norm = models::Norm::batch, u.bias = false, u.negative_slope = 0.2f, u.num_res_units = 2;
  const json uj = write_options(u);
  CHECK(uj.at("activation") == "leaky_relu");  // the first name of the value, not MONAI's alias
  const auto u2 = read(uj, models::UNet3DOptions{});
  CHECK((u2.channels == u.channels && u2.strides == u.strides && u2.kernel == u.kernel && u2.activation == u.activation &&
         u2.norm == u.norm && u2.bias == u.bias && u2.negative_slope == u.negative_slope && u2.num_res_units == 2));
  CHECK(write_options(u2) == uj);

  models::DynamicUNetOptions d;
  d.features = {4, 8, 16}, d.kernels = {{1, 3, 3}, {3, 3, 3}, {3, 3, 3}}, d.strides = {{1, 1, 1}, {1, 2, 2}, {2, 2, 2}};
  d.convs_per_stage = {1, 2, 2}, d.convs_per_stage_decoder = {1, 1}, d.residual_encoder = true, d.deep_supervision = false;
  const json dj = write_options(d);
  const auto d2 = read(dj, models::DynamicUNetOptions{});
  CHECK((d2.features == d.features && d2.kernels == d.kernels && d2.strides == d.strides &&
         d2.convs_per_stage == d.convs_per_stage && d2.convs_per_stage_decoder == d.convs_per_stage_decoder &&
         d2.residual_encoder && !d2.deep_supervision));
  CHECK(write_options(d2) == dj);

  json bad = vj;
  bad["widht"] = 4;
  CHECK_THROWS_WITH(read(bad, models::VNetOptions{}),
                    "options.json: widht: expected a known key, got unknown key \"widht\" (did you mean \"width\"?)");
  bad = uj;
  bad["norm"] = "layer";
  CHECK_THROWS_WITH(read(bad, models::UNet3DOptions{}),
                    "options.json: norm: expected one of \"batch\", \"group\", \"instance\", got \"layer\"");
}

TEST_CASE("A bad key reads the same in a config, a model JSON, a deploy.json and a prep.json") {
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  // A wrong type: "<file and place>: <key path>: expected <what>, got <the value as written>".
  train::Config config;
  config.file = "configs/x.json";
  config.json = {{"iters", "many"}};
  CHECK(message([&] { train::validate(config); }) == "config configs/x.json: iters: expected an integer >= 1, got \"many\"");
  CHECK(message([] { AnyModel<Cpu>::from_json({{"type", "VNet"}, {"width", "many"}}, "configs/x.json: model"); }) ==
        "configs/x.json: model: width: expected an integer, got \"many\"");
  json deploy = {{"format", "medseg-deploy"}, {"version", 1}, {"model", {{"type", "VNet"}}},
                 {"inference", {{"roi", {32, 32, 32}}, {"batch", "many"}}}, {"weights", "model.safetensors"}};
  CHECK(message([&] { infer::parse_deploy(deploy, "out/deploy.json"); }) ==
        "out/deploy.json: inference.batch: expected an integer >= 1, got \"many\"");
  CHECK(message([] {
          preprocess::parse_prepare_config({{"input", {{"images", "i"}}}, {"output", "o"}, {"split", {{"seed", "many"}}}},
                                           ".", "prep.json");
        }) == "prep.json: split.seed: expected a non-negative integer, got \"many\"");

  // An unknown key: "expected a known key, got unknown key "k" (did you mean "..."?)".
  config.json = {{"iters", 10}, {"optimizer", {{"type", "sgd"}, {"momentun", 0.9}}}};
  CHECK(message([&] { train::validate(config); }) ==
        "config configs/x.json: optimizer.momentun: expected a known key, got unknown key \"momentun\" (did you mean "
        "\"momentum\"?)");
  CHECK(message([] { AnyModel<Cpu>::from_json({{"type", "VNet"}, {"widht", 8}}, "configs/x.json: model"); }) ==
        "configs/x.json: model: widht: expected a known key, got unknown key \"widht\" (did you mean \"width\"?)");
  deploy["inference"] = {{"roi", {32, 32, 32}}, {"overlapp", 0.5}};
  CHECK(message([&] { infer::parse_deploy(deploy, "out/deploy.json"); }) ==
        "out/deploy.json: inference.overlapp: expected a known key, got unknown key \"overlapp\" (did you mean "
        "\"overlap\"?)");

  // A name from a table, and a missing required key.
  config.json = {{"optimizer", {{"type", "adamm"}}}};
  CHECK(message([&] { train::validate(config); }) ==
        "config configs/x.json: optimizer.type: expected one of \"sgd\", \"adam\", \"adamw\", got \"adamm\" (did you "
        "mean \"adam\"?)");
  CHECK(message([] { AnyModel<Cpu>::from_json({{"type", "VNet"}, {"norm", "groups"}}, "configs/x.json: model"); }) ==
        "configs/x.json: model: norm: expected one of \"batch\", \"group\", \"instance\", got \"groups\" (did you "
        "mean \"group\"?)");
  deploy["inference"] = {{"blend", "gaussian"}};
  CHECK(message([&] { infer::parse_deploy(deploy, "out/deploy.json"); }) ==
        "out/deploy.json: inference.roi: expected [d, h, w] of integers, each >= 1, got missing");
}

TEST_CASE("AnyModel trains and saves like the model it holds") {
  auto a = AnyModel<Cpu>::from_json({{"type", "VNetDeepSup"}, {"width", 2}, {"norm", "group"}, {"dropout", 0.0}}, "test");
  auto b = AnyModel<Cpu>::from_json(a.to_json(), "test");
  const auto params = nn::parameters(a);
  CHECK(params.back().path == "deep_sup256.bias");
  a.train(true);
  CHECK(a.training());
  const auto x = randn({1, 1, 16, 16, 16}, 1);
  const auto ys = a.forward_all(x);
  REQUIRE(ys.size() == 4);
  CHECK_THROWS_WITH(a.backward_all({ys[0], ys[1]}), Catch::Contains("output gradients"));
  a.forward_all(x);
  CHECK(a.backward_all(ys).shape() == x.shape());

  // Weights through a safetensors file: b, built from the same JSON, then computes what a does.
  const auto file = std::filesystem::temp_directory_path() / "medseg_any_model_test.safetensors";
  nn::save_state_dict(a, file);
  nn::load_state_dict(b, file);
  std::filesystem::remove(file);
  a.eval();
  b.eval();
  CHECK_FALSE(b.training());
  CHECK(a.forward(x).to_vector() == b.forward(x).to_vector());
  CHECK(a.forward_all(x).size() == 1);

  auto unet = AnyModel<Cpu>::from_json({{"type", "UNet3D"}, {"channels", {2, 4}}, {"strides", {2}}}, "test");
  unet.train(true);
  const auto y = unet.forward_all(randn({1, 1, 8, 8, 8}, 2));
  REQUIRE(y.size() == 1);
  CHECK_THROWS_WITH(unet.backward_all({y[0], y[0]}), Catch::Contains("UNet3D") && Catch::Contains("1 (one per returned output)"));
  CHECK(unet.backward_all(y).shape() == Shape{1, 1, 8, 8, 8});
}

TEST_CASE("A UNet3D built from JSON alone matches MONAI's UNet") {
  auto net = AnyModel<Cpu>::from_json({{"type", "UNet3D"}, {"in_channels", 2}, {"num_classes", 2}, {"channels", {4, 8, 16, 16}},
                                       {"strides", {2, {1, 2, 2}, 2}}, {"num_res_units", 2}, {"norm", "batch"}},
                                      "test");
  test::check_model_parity(net, "unet3d_res2_train");
}
