// Activations, Softmax, pooling, Upsample and the dropout family: PyTorch parity,
// finite-difference gradients, seeded dropout masks and errors.
#include "medseg/nn/activations.hpp"

#include <catch2/catch.hpp>

#include "medseg/nn/dropout.hpp"
#include "medseg/nn/pooling.hpp"
#include "medseg/nn/softmax.hpp"
#include "medseg/nn/upsample.hpp"
#include "parity.hpp"

using namespace medseg;
using namespace medseg::nn;
using test::check_gradients;
using test::check_parity;
using test::randn;

TEST_CASE("Activations match torch.nn") {
  ReLU<Cpu> relu;
  check_parity(relu, "relu");
  LeakyReLU<Cpu> leaky{{.negative_slope = 0.1f}};
  check_parity(leaky, "leaky_relu");
  PReLU<Cpu> shared;
  check_parity(shared, "prelu_shared");
  PReLU<Cpu> per_channel{{.num_parameters = 3, .init = 0.1f}};
  check_parity(per_channel, "prelu_channels");
  ELU<Cpu> elu{{.alpha = 0.7f}};
  check_parity(elu, "elu");
  GELU<Cpu> gelu;
  check_parity(gelu, "gelu");
  Sigmoid<Cpu> sigmoid;
  check_parity(sigmoid, "sigmoid");
  Softmax<Cpu> softmax;
  check_parity(softmax, "softmax");
}

TEST_CASE("Activations match torch.nn on token tensors and default options") {
  ReLU<Cpu> relu;
  check_parity(relu, "relu_tokens");
  LeakyReLU<Cpu> leaky;
  check_parity(leaky, "leaky_relu_default");
  ELU<Cpu> elu;
  check_parity(elu, "elu_default");
  GELU<Cpu> gelu;
  check_parity(gelu, "gelu_tokens");
  Sigmoid<Cpu> sigmoid;
  check_parity(sigmoid, "sigmoid_tokens");
  Softmax<Cpu> softmax;
  check_parity(softmax, "softmax_tokens");
  PReLU<Cpu> prelu{{.num_parameters = 5, .init = 0.3f}};
  check_parity(prelu, "prelu_tokens");
}

TEST_CASE("Pooling matches torch.nn.MaxPool3d and AvgPool3d") {
  MaxPool3d<Cpu> m2{{.kernel = {2, 2, 2}}};
  check_parity(m2, "maxpool_2");
  MaxPool3d<Cpu> m3{{.kernel = {3, 3, 3}, .stride = {2, 2, 2}, .padding = {1, 1, 1}}};
  check_parity(m3, "maxpool_k3s2p1");
  MaxPool3d<Cpu> ma{{.kernel = {1, 2, 2}}};
  check_parity(ma, "maxpool_aniso");
  AvgPool3d<Cpu> a2{{.kernel = {2, 2, 2}}};
  check_parity(a2, "avgpool_2");
  AvgPool3d<Cpu> a3{{.kernel = {3, 3, 3}, .stride = {2, 2, 2}, .padding = {1, 1, 1}}};
  check_parity(a3, "avgpool_k3s2p1");
  AvgPool3d<Cpu> ax{{.kernel = {3, 3, 3}, .stride = {2, 2, 2}, .padding = {1, 1, 1}, .count_include_pad = false}};
  check_parity(ax, "avgpool_exclude_pad");
}

TEST_CASE("Upsample matches trilinear torch interpolate") {
  Upsample<Cpu> x2{{.scale_factor = {2, 2, 2}}};
  check_parity(x2, "upsample_x2");
  Upsample<Cpu> corners{{.scale_factor = {2, 2, 2}, .align_corners = true}};
  check_parity(corners, "upsample_x2_corners");
  Upsample<Cpu> sized{{.size = {5, 7, 6}}};
  check_parity(sized, "upsample_size");
  Upsample<Cpu> aniso{{.scale_factor = {1, 2, 2}}};
  check_parity(aniso, "upsample_aniso");
}

TEST_CASE("Activations pass the finite-difference check") {
  const auto x = randn({2, 3, 2, 2, 3}, 21, 1.5f);
  ReLU<Cpu> relu;
  check_gradients(relu, x);
  LeakyReLU<Cpu> leaky{{.negative_slope = 0.2f}};
  check_gradients(leaky, x);
  PReLU<Cpu> prelu{{.num_parameters = 3}};
  check_gradients(prelu, x);
  ELU<Cpu> elu;
  check_gradients(elu, x);
  GELU<Cpu> gelu;
  check_gradients(gelu, x);
  Sigmoid<Cpu> sigmoid;
  check_gradients(sigmoid, x);
  Softmax<Cpu> softmax;
  check_gradients(softmax, x);
}

TEST_CASE("PReLU gradients are right whether it keeps its output (positive slopes) or its input") {
  for (const float init : {0.25f, -0.2f, 0.0f}) {
    INFO("slope " << init);
    PReLU<Cpu> per_channel{{.num_parameters = 3, .init = init}};
    check_gradients(per_channel, randn({2, 3, 3, 4, 4}, 41));
    PReLU<Cpu> shared{{.init = init}};
    check_gradients(shared, randn({2, 3, 3, 4, 4}, 42));
  }
}

TEST_CASE("Pooling and Upsample pass the finite-difference check") {
  const auto x = randn({1, 2, 4, 5, 4}, 22);
  MaxPool3d<Cpu> max{{.kernel = {2, 2, 2}}};
  check_gradients(max, x);
  AvgPool3d<Cpu> avg{{.kernel = {3, 3, 3}, .stride = {2, 2, 2}, .padding = {1, 1, 1}}};
  check_gradients(avg, x);
  Upsample<Cpu> up{{.scale_factor = {2, 2, 2}}};
  check_gradients(up, x);
  Upsample<Cpu> corners{{.size = {3, 7, 6}, .align_corners = true}};
  check_gradients(corners, x);
}

TEST_CASE("Dropout masks repeat with the seed and pass the gradient check") {
  const auto x = randn({2, 4, 3, 3, 3}, 23);
  Dropout<Cpu> a{{.p = 0.3f, .seed = 5}}, b{{.p = 0.3f, .seed = 5}};
  const auto ya = a.forward(x).to_vector(), yb = b.forward(x).to_vector();
  CHECK(ya == yb);
  CHECK(a.forward(x).to_vector() != ya);  // the next step draws a new mask
  std::size_t zeros = 0;
  const auto xv = x.to_vector();
  for (std::size_t i = 0; i < ya.size(); ++i) {
    if (ya[i] == 0.0f) ++zeros;
    else CHECK(ya[i] == Approx(xv[i] / 0.7f));
  }
  CHECK(zeros > ya.size() / 6);
  CHECK(zeros < ya.size() / 2);
  a.eval();
  CHECK(a.forward(x).to_vector() == xv);

  Dropout<Cpu> d{{.p = 0.4f}};
  check_gradients(d, x, {}, [](Dropout<Cpu>& l) { l.set_step(0); });
  Dropout3d<Cpu> d3{{.p = 0.5f}};
  check_gradients(d3, x, {}, [](Dropout3d<Cpu>& l) { l.set_step(0); });
  DropPath<Cpu> dp{{.p = 0.5f}};
  check_gradients(dp, x, {}, [](DropPath<Cpu>& l) { l.set_step(0); });
}

TEST_CASE("Dropout3d drops whole channels and DropPath whole samples") {
  const auto x = Tensor<float>::ones({4, 8, 2, 2, 2});
  Dropout3d<Cpu> d3{{.p = 0.5f, .seed = 1}};
  const auto y = d3.forward(x).to_vector();
  int dropped = 0;
  for (int c = 0; c < 32; ++c) {
    for (int i = 1; i < 8; ++i) CHECK(y[c * 8 + i] == y[c * 8]);
    dropped += y[c * 8] == 0.0f;
  }
  CHECK(dropped > 4);
  CHECK(dropped < 28);
  DropPath<Cpu> dp{{.p = 0.5f, .seed = 3}};
  for (int step = 0; step < 3; ++step) {
    const auto z = dp.forward(x).to_vector();
    for (int n = 0; n < 4; ++n)
      for (int i = 1; i < 64; ++i) CHECK(z[n * 64 + i] == z[n * 64]);
  }
  CHECK_THROWS_WITH(Dropout<Cpu>({.p = 1.0f}), Catch::Contains("[0, 1)"));
}

TEST_CASE("Pooling and resizing errors name the layer") {
  MaxPool3d<Cpu> pool{{.kernel = {2, 2, 2}}};
  pool.set_path("down.1");
  CHECK_THROWS_WITH(pool.forward(Tensor<float>::zeros({1, 1, 1, 4, 4})),
                    Catch::Contains("MaxPool3d 'down.1'") && Catch::Contains("[1,1,1,4,4]"));
  CHECK_THROWS_WITH(pool.forward(Tensor<float>::zeros({4, 4, 4})), Catch::Contains("input rank"));
  PReLU<Cpu> prelu{{.num_parameters = 3}};
  CHECK_THROWS_WITH(prelu.forward(Tensor<float>::zeros({1, 2, 2, 2, 2})), Catch::Contains("expected 3"));
  CHECK_THROWS_WITH(Upsample<Cpu>({.scale_factor = {2, 0, 2}}), Catch::Contains("scale_factor"));
  ReLU<Cpu> relu;
  relu.forward(Tensor<float>::zeros({2, 3}));
  CHECK_THROWS_WITH(relu.backward(Tensor<float>::zeros({3, 2})), Catch::Contains("ReLU") && Catch::Contains("expected [2,3]"));
}

TEST_CASE("Vectorisable exp and erf stay within float accuracy") {
  double worst_exp = 0.0, worst_erf = 0.0;
  for (float x = -87.0f; x <= 88.0f; x += 0.01f) {
    const double ref = std::exp(static_cast<double>(x));
    worst_exp = std::max(worst_exp, std::abs(ops::detail::exp_approx(x) - ref) / ref);
  }
  for (float x = -6.0f; x <= 6.0f; x += 0.001f)
    worst_erf = std::max(worst_erf, std::abs(ops::detail::erf_approx(x) - std::erf(static_cast<double>(x))));
  CHECK(worst_exp < 5e-7);
  CHECK(worst_erf < 6e-7);
  CHECK(ops::detail::exp_approx(-1000.0f) < 1e-37f);
  CHECK(ops::detail::exp_approx(1000.0f) > 1e38f);
  CHECK(ops::detail::erf_approx(-0.0f) == 0.0f);
}
