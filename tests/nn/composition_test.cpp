// Sequential, Repeated, Residual, Concat and UNetLevel: PyTorch parity of whole blocks,
// parameter paths, gradient checks through the composition, state dicts and initialisers.
#include "medseg/nn/sequential.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <optional>
#include <variant>

#include "medseg/nn.hpp"
#include "parity.hpp"

using namespace medseg;
using namespace medseg::nn;
using test::check_gradients;
using test::check_parity;
using test::randn;

namespace {
template <class B>
using ConvNormAct = Sequential<Named<"conv", Conv3d<B>>, Named<"norm", GroupNorm<B>>, Named<"nonlin", PReLU<B>>>;

ConvNormAct<Cpu> conv_norm_act(std::int64_t in, std::int64_t out) {
  return {{{.in_channels = in, .out_channels = out, .padding = {1, 1, 1}}}, {{.num_groups = 2, .num_channels = out}}, {}};
}
Conv3d<Cpu> down_conv(std::int64_t c) {
  return {{.in_channels = c, .out_channels = c, .kernel = {2, 2, 2}, .stride = {2, 2, 2}}};
}
ConvTranspose3d<Cpu> up_conv(std::int64_t c) {
  return {{.in_channels = c, .out_channels = c, .kernel = {2, 2, 2}, .stride = {2, 2, 2}}};
}
auto two_level_unet() {
  UNetLevel inner{conv_norm_act(4, 8), MaxPool3d<Cpu>{}, conv_norm_act(8, 8), up_conv(8), conv_norm_act(16, 4)};
  return UNetLevel{conv_norm_act(1, 4), down_conv(4), std::move(inner), up_conv(4), conv_norm_act(8, 2)};
}
std::vector<std::string> paths(auto& layer) {
  std::vector<std::string> p;
  for (const auto& q : parameters(layer)) p.push_back(q.path);
  return p;
}
}  // namespace

TEST_CASE("Composed blocks match the same PyTorch modules") {
  auto seq = conv_norm_act(2, 4);
  check_parity(seq, "seq_conv_norm_act");
  Residual two{repeat(2, [] { return conv_norm_act(4, 4); })};
  check_parity(two, "residual_two_blocks");
  Residual projected{conv_norm_act(2, 4), Conv3d<Cpu>{{.in_channels = 2, .out_channels = 4, .kernel = {1, 1, 1}}}};
  check_parity(projected, "residual_projection");
  Concat skip{conv_norm_act(2, 4)};
  check_parity(skip, "concat_skip");
  auto unet = two_level_unet();
  check_parity(unet, "unet_two_levels");
}

TEST_CASE("Parameter paths follow PyTorch state_dict names") {
  auto seq = conv_norm_act(2, 4);
  CHECK(paths(seq) == std::vector<std::string>{"conv.weight", "conv.bias", "norm.weight", "norm.bias", "nonlin.weight"});
  Sequential plain{Conv3d<Cpu>{{.in_channels = 1, .out_channels = 2}}, ReLU<Cpu>{}, BatchNorm3d<Cpu>{{.num_features = 2}}};
  CHECK(paths(plain) == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});
  std::vector<std::string> buffer_paths;
  for (const auto& b : buffers(plain)) buffer_paths.push_back(b.path);
  CHECK(buffer_paths == std::vector<std::string>{"2.running_mean", "2.running_var", "2.num_batches_tracked"});
  auto unet = two_level_unet();
  const auto p = paths(unet);
  CHECK(p.front() == "encoder.conv.weight");
  CHECK(std::count(p.begin(), p.end(), "inner.decoder.nonlin.weight") == 1);
  CHECK(std::count(p.begin(), p.end(), "inner.up.bias") == 1);
  CHECK(p.back() == "decoder.nonlin.weight");
  // Named<"", L> puts L's parameters directly under the parent; name_root adds a prefix.
  Residual flat{Named<"", ConvNormAct<Cpu>>{conv_norm_act(2, 2)}};
  name_root(flat, "stages.0");
  CHECK(paths(flat).front() == "stages.0.conv.weight");
  CHECK(count_parameters(parameters(seq)) == 4 * 2 * 27 + 4 + 4 + 4 + 1);
}

TEST_CASE("Gradients chain through every composition type") {
  Residual res{Sequential{Conv3d<Cpu>{{.in_channels = 2, .out_channels = 2, .padding = {1, 1, 1}}}, GELU<Cpu>{}},
               Conv3d<Cpu>{{.in_channels = 2, .out_channels = 2, .kernel = {1, 1, 1}}}};
  check_gradients(res, randn({1, 2, 3, 3, 3}, 31), {.samples = 8});
  Concat cat{repeat(2, [](std::size_t i) { return Conv3d<Cpu>{{.in_channels = 2, .out_channels = 2, .padding = {1, 1, 1}, .bias = i == 0}}; }), true};
  check_gradients(cat, randn({1, 2, 3, 2, 3}, 32), {.samples = 8});
  UNetLevel level{Conv3d<Cpu>{{.in_channels = 1, .out_channels = 2, .padding = {1, 1, 1}}}, AvgPool3d<Cpu>{},
                  // GELU, being smooth: a ReLU kink within eps of an input skews the differences
                  GELU<Cpu>{}, Upsample<Cpu>{}, Conv3d<Cpu>{{.in_channels = 4, .out_channels = 1, .kernel = {1, 1, 1}}},
                  SkipOrder::skip_first};
  check_gradients(level, randn({1, 1, 4, 4, 2}, 33), {.samples = 8});
}

TEST_CASE("Composition errors name the child by its path") {
  auto unet = two_level_unet();
  CHECK_THROWS_WITH(unet.forward(Tensor<float>::zeros({1, 2, 8, 8, 8})),
                    Catch::Contains("Conv3d 'encoder.conv'") && Catch::Contains("[1,2,8,8,8]"));
  CHECK_THROWS_WITH(unet.forward(Tensor<float>::zeros({1, 1, 6, 8, 8})),
                    Catch::Contains("UNetLevel 'inner'") && Catch::Contains("[1,8,3,4,4]") &&
                        Catch::Contains("[1,8,2,4,4]"));
  Residual res{Conv3d<Cpu>{{.in_channels = 2, .out_channels = 3, .padding = {1, 1, 1}}}};
  CHECK_THROWS_WITH(res.forward(Tensor<float>::zeros({1, 2, 2, 2, 2})),
                    Catch::Contains("Residual") && Catch::Contains("[1,3,2,2,2] vs [1,2,2,2,2]"));
}

TEST_CASE("Inference mode keeps nothing and reuses buffers") {
  auto seq = conv_norm_act(1, 2);
  seq.eval();
  const auto x = randn({1, 1, 4, 4, 4}, 34);
  const float* first = nullptr;
  {
    const auto y = seq.forward(x);
    first = y.data();
  }
  const auto y = seq.forward(x);
  CHECK(y.data() == first);
  CHECK_THROWS_WITH(seq.backward(y), Catch::Contains("eval mode"));
}

TEST_CASE("State dicts round-trip and reject mismatches with clear errors") {
  const auto dir = std::filesystem::temp_directory_path() / ("medseg_nn_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  Sequential a{conv_norm_act(2, 4), BatchNorm3d<Cpu>{{.num_features = 4}}};
  a.forward(randn({2, 2, 3, 3, 3}, 35));  // moves the running statistics
  save_state_dict(a, dir / "a.safetensors");
  const auto file = safetensors::File::read(dir / "a.safetensors");
  CHECK(file.info("1.num_batches_tracked").dtype == DType::int64);
  Sequential b{conv_norm_act(2, 4), BatchNorm3d<Cpu>{{.num_features = 4}}};
  load_state_dict(b, dir / "a.safetensors");
  a.eval(), b.eval();
  const auto x = randn({1, 2, 3, 3, 3}, 36);
  CHECK(a.forward(x).to_vector() == b.forward(x).to_vector());

  Sequential wide{conv_norm_act(2, 8), BatchNorm3d<Cpu>{{.num_features = 8}}};
  CHECK_THROWS_WITH(load_state_dict(wide, dir / "a.safetensors"),
                    Catch::Contains("'0.conv.weight'") && Catch::Contains("a.safetensors") &&
                        Catch::Contains("expected [8,2,3,3,3]") && Catch::Contains("got [4,2,3,3,3]"));
  auto small = conv_norm_act(2, 4);
  CHECK_THROWS_WITH(load_state_dict(small, dir / "a.safetensors"), Catch::Contains("missing"));
  CHECK_THROWS_WITH(load_state_dict(small, dir / "a.safetensors", {.strict = false, .prefix = ""}),
                    Catch::Contains("\"conv.weight\"") && Catch::Contains("missing"));
  load_state_dict(small, dir / "a.safetensors", {.strict = false, .prefix = "0."});
  Sequential<ConvNormAct<Cpu>> extra{conv_norm_act(2, 4)};  // (CTAD would copy a lone Sequential)
  CHECK_THROWS_WITH(load_state_dict(extra, dir / "a.safetensors"),
                    Catch::Contains("unexpected") && Catch::Contains("1.running_mean"));

  safetensors::Writer w;
  add_state_dict(small, w);
  w.add("conv.bias", Tensor<double>::zeros({4}));
  w.save(dir / "f64.safetensors");
  CHECK_THROWS_WITH(load_state_dict(small, dir / "f64.safetensors"),
                    Catch::Contains("'conv.bias'") && Catch::Contains("expected float32") && Catch::Contains("got float64"));
  std::filesystem::remove_all(dir);
}

namespace {
/// A layer declared with nn::members alone: a child, an optional child, a child chosen at run
/// time (std::variant), a list of children, its own parameters (one optional) and a buffer.
template <class B>
class DeclaredBlock : public Module<DeclaredBlock<B>, B> {
 public:
  explicit DeclaredBlock(bool extras)
      : conv_({.in_channels = 2, .out_channels = 2, .padding = {1, 1, 1}}), act_(ReLU<B>{}), extras_(extras) {
    if (extras) {
      norm_.emplace(GroupNorm<B>{{.num_groups = 1, .num_channels = 2}});
      act_ = PReLU<B>{};
    }
    for (int i = 0; i < 2; ++i) heads_.push_back(Conv3d<B>{{.in_channels = 2, .out_channels = 1, .kernel = {1, 1, 1}, .bias = false}});
    scale_ = make_parameter<B>("", Tensor<float, B>::ones({1}));
    shift_ = make_parameter<B>("", Tensor<float, B>::zeros({1}));
    count_ = {"", Tensor<float, B>::zeros({1})};
    this->set_path("");
  }
  Tensor<float, B> forward(const Tensor<float, B>& x) { return conv_.forward(x); }
  Tensor<float, B> backward(const Tensor<float, B>& dy) { return conv_.backward(dy); }

  auto members() {
    return nn::members(child("conv", conv_), child("norm", norm_), child("act", act_),
                       children(heads_, [](std::size_t i) { return "heads." + std::to_string(i); }),
                       param("scale", scale_), param("shift", shift_, extras_), buffer("count", count_));
  }

  Conv3d<B> conv_;
  std::optional<GroupNorm<B>> norm_;
  std::variant<ReLU<B>, PReLU<B>> act_;
  std::vector<Conv3d<B>> heads_;
  Parameter<B> scale_, shift_;
  Buffer<B> count_;
  bool extras_;
};
}  // namespace

TEST_CASE("A layer declared with nn::members gets its paths, visiting order and mode from that list") {
  DeclaredBlock<Cpu> plain{false};
  CHECK(paths(plain) == std::vector<std::string>{"conv.weight", "conv.bias", "heads.0.weight", "heads.1.weight", "scale"});
  DeclaredBlock<Cpu> full{true};
  name_root(full, "block");
  CHECK(paths(full) == std::vector<std::string>{"block.conv.weight", "block.conv.bias", "block.norm.weight", "block.norm.bias",
                                                "block.act.weight", "block.heads.0.weight", "block.heads.1.weight",
                                                "block.scale", "block.shift"});
  std::vector<std::string> buffer_paths;
  for (const auto& b : buffers(full)) buffer_paths.push_back(b.path);
  CHECK(buffer_paths == std::vector<std::string>{"block.count"});
  // Inside a composition, under a Named child name, and spliced after the composition's own.
  Sequential<Named<"first", DeclaredBlock<Cpu>>, DeclaredBlock<Cpu>> seq{DeclaredBlock<Cpu>{false}, DeclaredBlock<Cpu>{true}};
  const auto p = paths(seq);
  CHECK(p.front() == "first.conv.weight");
  CHECK(std::count(p.begin(), p.end(), "1.norm.bias") == 1);
  CHECK(p.back() == "1.shift");
  // train/eval reach every child, the variant's and the optional's included.
  seq.eval();
  auto& block = seq.get<1>();
  CHECK(!block.training());
  CHECK(!block.conv_.training());
  CHECK(!block.norm_->training());
  CHECK(!std::get<PReLU<Cpu>>(block.act_).training());
  CHECK(!block.heads_[1].training());
  seq.train();
  CHECK((block.heads_[0].training() && block.norm_->training() && std::get<PReLU<Cpu>>(block.act_).training()));
  // Visiting order is the members() order, and zero_grad reaches every parameter.
  std::vector<std::string> order;
  for_each_member(full, [&](auto& m) {
    if constexpr (requires { m.parameter; }) order.push_back(std::string(m.name));
  });
  CHECK(order == std::vector<std::string>{"scale", "shift"});
  full.scale_.grad.fill(3.0f);
  zero_grad(full);
  CHECK(full.scale_.grad.to_vector() == std::vector<float>{0.0f});
}

TEST_CASE("Initialisers draw the documented distributions reproducibly") {
  auto w = Tensor<float>::empty({64, 32, 3, 3, 3});  // fan_in 864, fan_out 1728
  const auto stats = [&] {
    double s = 0, q = 0, mx = 0;
    for (float v : w.to_vector()) s += v, q += double(v) * v, mx = std::max(mx, std::abs(double(v)));
    const double n = double(w.numel());
    return std::array<double, 3>{s / n, std::sqrt(q / n - (s / n) * (s / n)), mx};
  };
  init::kaiming_normal(w, 0.0, init::FanMode::fan_in, init::Nonlinearity::relu);
  CHECK(stats()[0] == Approx(0.0).margin(2e-3));
  CHECK(stats()[1] == Approx(std::sqrt(2.0 / 864)).epsilon(0.02));
  init::kaiming_uniform(w, 0.0, init::FanMode::fan_out, init::Nonlinearity::relu);
  CHECK(stats()[2] <= std::sqrt(6.0 / 1728));
  CHECK(stats()[1] == Approx(std::sqrt(2.0 / 1728)).epsilon(0.02));
  init::xavier_normal(w);
  CHECK(stats()[1] == Approx(std::sqrt(2.0 / (864 + 1728))).epsilon(0.02));
  init::xavier_uniform(w, 2.0);
  CHECK(stats()[2] <= 2.0 * std::sqrt(6.0 / (864 + 1728)));
  init::constant(w, 0.5f);
  CHECK(stats()[0] == Approx(0.5));
  CHECK(init::gain(init::Nonlinearity::leaky_relu, 0.2) == Approx(std::sqrt(2.0 / 1.04)));

  init::manual_seed(42);
  Conv3d<Cpu> c1{{.in_channels = 4, .out_channels = 8}};
  init::manual_seed(42);
  Conv3d<Cpu> c2{{.in_channels = 4, .out_channels = 8}};
  CHECK(c1.weight().value.to_vector() == c2.weight().value.to_vector());
  CHECK(c1.bias().value.to_vector() == c2.bias().value.to_vector());
  CHECK(c1.weight().value.to_vector() != c1.bias().value.to_vector());
  double mx = 0;
  for (float v : c1.weight().value.to_vector()) mx = std::max(mx, std::abs(double(v)));
  CHECK(mx <= 1.0 / std::sqrt(4.0 * 27));  // PyTorch's default: U(+-1/sqrt(fan_in))
  CHECK(mx > 0.8 / std::sqrt(4.0 * 27));
}

static_assert(Layer<ConvNormAct<Cpu>>);
static_assert(Layer<Repeated<ConvNormAct<Cpu>>>);
static_assert(Layer<Residual<ConvNormAct<Cpu>>>);
static_assert(Parametric<Identity<Cpu>>);
static_assert(Layer<DeclaredBlock<Cpu>>);
