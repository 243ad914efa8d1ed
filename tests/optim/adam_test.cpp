#include "medseg/optim/adam.hpp"

#include <unistd.h>

#include "optim_test_support.hpp"

using namespace medseg;
using namespace optim_test;

TEST_CASE("Adam follows torch.optim.Adam for 20 steps") {
  for (const auto& [name, c] : cases({"adam"})) check_trajectory(name, c);
}

TEST_CASE("AdamW follows torch.optim.AdamW for 20 steps") {
  for (const auto& [name, c] : cases({"adamw"})) check_trajectory(name, c);
}

TEST_CASE("Adam and AdamW resume bit-exactly from saved state") {
  const auto dir = temp_dir();
  for (const auto& [name, c] : cases({"adam", "adamw"})) check_resume(name, c, dir);
  fs::remove_all(dir);
}

TEST_CASE("AdamW decays weights directly and Adam through the gradient") {
  // With a zero gradient Adam's update is driven by the decay term through the moments,
  // while AdamW only shrinks the weight by lr * weight_decay.
  auto w1 = Tensor<float>::from({2.0f}, {1}), w2 = Tensor<float>::from({2.0f}, {1});
  optim::AdamW adamw{{nn::make_parameter("w", w1)}, {.lr = 0.1, .weight_decay = 0.5}};
  adamw.step();
  CHECK(w1.to_vector()[0] == Approx(2.0f * (1 - 0.05f)));
  optim::Adam adam{{nn::make_parameter("w", w2)}, {.lr = 0.1, .weight_decay = 0.5}};
  adam.step();
  CHECK(w2.to_vector()[0] == Approx(2.0f - 0.1f).epsilon(1e-5));  // first step moves by lr * sign
}

TEST_CASE("Adam rejects bad options") {
  nn::ParameterList<Cpu> params{nn::make_parameter("w", Tensor<float>::zeros({2}))};
  CHECK_THROWS_WITH((optim::Adam{params, {.beta1 = 1.0}}), Catch::Contains("optim::Adam") && Catch::Contains("beta1"));
  CHECK_THROWS_WITH((optim::AdamW{params, {.eps = -1}}), Catch::Contains("optim::AdamW") && Catch::Contains("eps"));
}
