#include "medseg/optim/sgd.hpp"

#include <unistd.h>

#include "optim_test_support.hpp"

using namespace medseg;
using namespace optim_test;

TEST_CASE("SGD follows torch.optim.SGD for 20 steps with every schedule") {
  for (const auto& [name, c] : cases({"sgd"})) check_trajectory(name, c);
}

TEST_CASE("SGD resumes bit-exactly from saved state") {
  const auto dir = temp_dir();
  for (const auto& [name, c] : cases({"sgd"})) check_resume(name, c, dir);
  fs::remove_all(dir);
}

TEST_CASE("SGD updates parameters through their handles") {
  auto weight = Tensor<float>::from({1.0f, 2.0f}, {2});
  auto grad = Tensor<float>::from({0.5f, -1.0f}, {2});
  optim::SGD opt{{{"layer.weight", weight, grad}}, {.lr = 0.1}};
  opt.step();
  CHECK(weight.to_vector() == std::vector<float>{0.95f, 2.1f});
  opt.zero_grad();
  CHECK(grad.to_vector() == std::vector<float>{0.0f, 0.0f});
  opt.set_lr(0.5);
  CHECK(opt.lr() == 0.5);
  CHECK(opt.steps() == 1);
}

TEST_CASE("SGD rejects bad options and parameters naming them") {
  nn::ParameterList<Cpu> params{nn::make_parameter("conv.weight", Tensor<float>::zeros({2, 3}))};
  CHECK_THROWS_WITH((optim::SGD{params, {.lr = -1.0}}), Catch::Contains("optim::SGD") && Catch::Contains("lr") &&
                                                             Catch::Contains("got -1"));
  CHECK_THROWS_WITH((optim::SGD{params, {.nesterov = true}}), Catch::Contains("nesterov"));
  auto bad = params;
  bad[0].grad = Tensor<float>::zeros({3, 2});
  CHECK_THROWS_WITH((optim::SGD{bad, {}}), Catch::Contains("optim::SGD: parameter \"conv.weight\"") &&
                                               Catch::Contains("expected contiguous [2,3]") &&
                                               Catch::Contains("got [3,2]"));
  bad = params;
  bad.push_back(params[0]);
  CHECK_THROWS_WITH((optim::SGD{bad, {}}), Catch::Contains("unique"));
  optim::SGD opt{params, {.momentum = 0.9}};
  CHECK_THROWS_WITH(opt.set_lr(NAN), Catch::Contains("lr"));

  // A checkpoint of another optimizer, or one missing a buffer, is refused by name.
  const auto dir = temp_dir();
  safetensors::Writer w;
  w.set_metadata("optimizer.type", "optim::Adam");
  w.save(dir / "adam.safetensors");
  CHECK_THROWS_WITH(opt.load_state(safetensors::File::read(dir / "adam.safetensors")),
                    Catch::Contains("expected optim::SGD") && Catch::Contains("got optim::Adam"));
  safetensors::Writer v;
  v.set_metadata("optimizer.type", "optim::SGD");
  v.save(dir / "empty.safetensors");
  CHECK_THROWS_WITH(opt.load_state(safetensors::File::read(dir / "empty.safetensors")),
                    Catch::Contains("optimizer.conv.weight.momentum_buffer") && Catch::Contains("missing"));
  fs::remove_all(dir);
}
