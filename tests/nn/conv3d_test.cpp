// Conv3d, ConvTranspose3d and Linear: PyTorch parity, finite-difference gradients, errors.
#include "medseg/nn/conv3d.hpp"

#include <catch2/catch.hpp>

#include "medseg/nn/conv_transpose3d.hpp"
#include "medseg/nn/linear.hpp"
#include "parity.hpp"

using namespace medseg;
using namespace medseg::nn;
using test::check_gradients;
using test::check_parity;
using test::randn;

TEST_CASE("Conv3d matches torch.nn.Conv3d") {
  Conv3d<Cpu> basic{{.in_channels = 3, .out_channels = 4, .padding = {1, 1, 1}}};
  check_parity(basic, "conv_basic");
  Conv3d<Cpu> aniso{{.in_channels = 4, .out_channels = 6, .kernel = {1, 3, 3}, .stride = {1, 2, 2}, .padding = {0, 1, 1}}};
  check_parity(aniso, "conv_aniso");
  Conv3d<Cpu> k224{{.in_channels = 2, .out_channels = 4, .kernel = {2, 2, 4}, .stride = {2, 2, 2}, .bias = false}};
  check_parity(k224, "conv_k224");
  Conv3d<Cpu> dil{{.in_channels = 4, .out_channels = 8, .padding = {2, 2, 2}, .dilation = {2, 2, 2}, .groups = 2}};
  check_parity(dil, "conv_dilated_groups");
}

TEST_CASE("ConvTranspose3d matches torch.nn.ConvTranspose3d") {
  ConvTranspose3d<Cpu> basic{{.in_channels = 4, .out_channels = 2, .kernel = {2, 2, 2}, .stride = {2, 2, 2}}};
  check_parity(basic, "convt_basic");
  ConvTranspose3d<Cpu> op{{.in_channels = 3, .out_channels = 4, .kernel = {3, 3, 3}, .stride = {2, 2, 2},
                           .padding = {1, 1, 1}, .output_padding = {1, 1, 1}}};
  check_parity(op, "convt_output_padding");
  ConvTranspose3d<Cpu> groups{{.in_channels = 4, .out_channels = 6, .kernel = {1, 2, 2}, .stride = {1, 2, 2},
                               .groups = 2, .bias = false}};
  check_parity(groups, "convt_groups");
}

TEST_CASE("Linear matches torch.nn.Linear") {
  Linear<Cpu> basic{{.in_features = 5, .out_features = 7}};
  check_parity(basic, "linear_basic");
  Linear<Cpu> tokens{{.in_features = 6, .out_features = 4, .bias = false}};
  check_parity(tokens, "linear_tokens");
}

TEST_CASE("Conv3d and ConvTranspose3d pass the finite-difference check") {
  Conv3d<Cpu> a{{.in_channels = 2, .out_channels = 3, .padding = {1, 1, 1}}};
  check_gradients(a, randn({2, 2, 3, 4, 3}, 1), {.samples = 12});
  Conv3d<Cpu> b{{.in_channels = 4, .out_channels = 2, .kernel = {1, 3, 3}, .stride = {1, 2, 2}, .padding = {0, 1, 1},
                 .groups = 2}};
  check_gradients(b, randn({1, 4, 2, 5, 4}, 2), {.samples = 12});
  ConvTranspose3d<Cpu> t{{.in_channels = 2, .out_channels = 3, .kernel = {3, 3, 3}, .stride = {2, 2, 2},
                          .padding = {1, 1, 1}, .output_padding = {1, 0, 1}}};
  check_gradients(t, randn({1, 2, 2, 3, 2}, 3), {.samples = 12});
  Linear<Cpu> l{{.in_features = 4, .out_features = 3}};
  check_gradients(l, randn({2, 3, 4}, 4));
}

TEST_CASE("Conv3d gradients accumulate across backward calls") {
  Conv3d<Cpu> c{{.in_channels = 1, .out_channels = 2, .kernel = {2, 2, 2}}};
  const auto x = randn({1, 1, 3, 3, 3}, 5);
  const auto dy = randn({1, 2, 2, 2, 2}, 6);
  c.forward(x);
  c.backward(dy);
  const auto once = c.weight().grad.to_vector();
  c.forward(x);
  c.backward(dy);
  const auto twice = c.weight().grad.to_vector();
  for (std::size_t i = 0; i < once.size(); ++i) CHECK(twice[i] == Approx(2 * once[i]).margin(1e-6));
}

TEST_CASE("Conv3d errors name the layer path and the shapes") {
  Conv3d<Cpu> c{{.in_channels = 3, .out_channels = 4}};
  c.set_path("encoder.0.conv");
  CHECK_THROWS_WITH(c.forward(Tensor<float>::zeros({1, 2, 4, 4, 4})),
                    Catch::Contains("Conv3d 'encoder.0.conv'") && Catch::Contains("input channels") &&
                        Catch::Contains("expected 3") && Catch::Contains("[1,2,4,4,4]"));
  CHECK_THROWS_WITH(c.forward(Tensor<float>::zeros({3, 4, 4, 4})), Catch::Contains("input rank") && Catch::Contains("NCDHW"));
  CHECK_THROWS_WITH(c.forward(Tensor<float>::zeros({1, 3, 2, 4, 4})),
                    Catch::Contains("encoder.0.conv") && Catch::Contains("large enough"));
  CHECK_THROWS_WITH(c.backward(Tensor<float>::zeros({1, 4, 2, 2, 2})), Catch::Contains("training-mode forward"));
  c.forward(Tensor<float>::zeros({1, 3, 4, 4, 4}));
  CHECK_THROWS_WITH(c.backward(Tensor<float>::zeros({1, 4, 3, 2, 2})),
                    Catch::Contains("grad_output") && Catch::Contains("expected [1,4,2,2,2]"));
  CHECK_THROWS_WITH((Conv3d<Cpu>{{.in_channels = 3, .out_channels = 4, .groups = 2}}), Catch::Contains("groups"));
  Linear<Cpu> l{{.in_features = 4, .out_features = 2}};
  l.set_path("head");
  CHECK_THROWS_WITH(l.forward(Tensor<float>::zeros({2, 5})), Catch::Contains("Linear 'head'") && Catch::Contains("[2,5]"));
}

// On the CPU the op allocates each output itself (after oneDNN's copy of x is gone), so a
// released output's memory comes back through the host allocator, not the layer; what the
// layer must guarantee is that it keeps nothing and never writes over an output still held.
TEST_CASE("Conv3d in eval mode keeps nothing and never overwrites a held output") {
  Conv3d<Cpu> c{{.in_channels = 1, .out_channels = 2, .padding = {1, 1, 1}}};
  c.eval();
  const auto x = randn({1, 1, 4, 4, 4}, 7);
  const auto y2 = c.forward(x);
  const auto before = y2.to_vector();
  const auto y3 = c.forward(randn({1, 1, 4, 4, 4}, 8));
  CHECK(y3.data() != y2.data());                  // still held: a fresh buffer
  CHECK(y2.to_vector() == before);
  CHECK(c.forward(x).to_vector() == before);
  CHECK_THROWS_WITH(c.backward(y3), Catch::Contains("eval mode"));
}
