#include "medseg/optim/clip.hpp"

#include "optim_test_support.hpp"

using namespace medseg;
using namespace optim_test;

TEST_CASE("clip_grad_norm matches torch.nn.utils.clip_grad_norm_") {
  const auto& ref = reference();
  for (int k = 0; k < 4; ++k) {
    const auto c = json::parse(ref.metadata().at("clip." + std::to_string(k)));
    INFO(c.dump());
    const double norm_type = c.at("norm_type") == "inf" ? INFINITY : c.at("norm_type").get<double>();
    nn::ParameterList<Cpu> params;
    for (int j = 0; j < param_count; ++j) {
      auto g = ref.get<float>("clip" + std::to_string(k) + ".grad." + std::to_string(j));
      params.push_back({"p" + std::to_string(j), Tensor<float>::zeros(g.shape()), g});
    }
    const double total = optim::clip_grad_norm(params, c.at("max_norm").get<double>(), {.norm_type = norm_type});
    CHECK(total == Approx(ref.get<double>("clip" + std::to_string(k) + ".total").data()[0]).epsilon(1e-6));
    for (int j = 0; j < param_count; ++j) {
      const auto expected = ref.get<float>("clip" + std::to_string(k) + ".clipped." + std::to_string(j)).to_vector();
      const auto ours = params[static_cast<std::size_t>(j)].grad.to_vector();
      for (std::size_t i = 0; i < ours.size(); ++i) CHECK(ours[i] == Approx(expected[i]).epsilon(1e-5).margin(1e-7));
    }
  }
}

TEST_CASE("clip_grad_norm is independent of the thread count and reports non-finite gradients") {
  auto big = Tensor<float>::empty({300000});
  for (std::int64_t i = 0; i < big.numel(); ++i) big.data()[i] = std::sin(0.001f * static_cast<float>(i));
  nn::ParameterList<Cpu> params{{"a", Tensor<float>::zeros({300000}), big}};
  const int threads = num_threads();
  set_num_threads(1);
  const double one = optim::clip_grad_norm(params, 1e9);
  set_num_threads(3);
  const double three = optim::clip_grad_norm(params, 1e9);
  set_num_threads(threads);
  CHECK(one == three);

  auto bad = Tensor<float>::from({1.0f, NAN}, {2});
  nn::ParameterList<Cpu> nan_params{{"enc.conv.weight", Tensor<float>::zeros({2}), bad}};
  CHECK_THROWS_WITH(optim::clip_grad_norm(nan_params, 1.0, {.error_if_nonfinite = true}),
                    Catch::Contains("optim::clip_grad_norm") && Catch::Contains("enc.conv.weight"));
  CHECK(std::isnan(optim::clip_grad_norm(nan_params, 1.0)));
  CHECK(std::isnan(optim::clip_grad_norm(nan_params, 1.0, {.norm_type = INFINITY})));
  CHECK_THROWS_WITH(optim::clip_grad_norm(nan_params, -1.0), Catch::Contains("max_norm"));
}
