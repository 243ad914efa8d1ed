#include "medseg/loss/mixed.hpp"

#include "loss_test_support.hpp"

using namespace medseg;
using namespace loss_test;

TEST_CASE("Mixed CE and Dice matches the weighted sum computed by PyTorch") {
  const auto& ref = reference();
  for (const auto& [name, options] : cases("mixed")) {
    INFO(name << ": " << options.dump());
    const auto w = options.at("weights").get<std::vector<float>>();
    const auto logits = ref.get<float>(name + ".logits");
    loss::Mixed mixed{{w[0], w[1]}, loss::Dice{dice_options(options.at("dice"))},
                      loss::CrossEntropy{ce_options(options.at("ce"))}};
    with_labels(name + ".labels", [&](const auto& labels) {
      const float v = mixed.forward(logits, labels);
      check_value(v, ref.get<float>(name + ".loss").data()[0]);
      CHECK(v == Approx(w[0] * mixed.values()[0] + w[1] * mixed.values()[1]).epsilon(1e-6));
      check_gradient_close(mixed.backward(), ref.get<float>(name + ".grad"));
    });
  }
}

TEST_CASE("Mixed passes a finite-difference gradient check") {
  const Shape shape{2, 3, 3, 4, 2};
  auto labels = Tensor<std::int64_t>::empty({2, 1, 3, 4, 2});
  for (std::int64_t i = 0; i < labels.numel(); ++i) labels.data()[i] = (i * 7 + i / 5) % 3;
  const auto x = random_logits(shape, 41);
  auto make = [] {
    return loss::Mixed{{0.7f, 1.3f, 0.5f}, loss::CrossEntropy{}, loss::Dice{{.include_background = false}},
                       loss::BinaryCrossEntropy{}};
  };
  auto mixed = make();
  mixed.forward(x, labels);
  check_finite_differences([&](const Tensor<float>& v) { return make().forward(v, labels); }, x, mixed.backward());
}

TEST_CASE("dice_ce builds MONAI's DiceCE with lambdas") {
  const Shape shape{1, 2, 3, 3};
  auto labels = Tensor<std::uint8_t>::from({0, 1, 1, 0, 0, 1, 1, 1, 0}, {1, 3, 3});
  const auto x = random_logits(shape, 7);
  auto dice_ce = loss::dice_ce({.squared_denominator = true}, {.class_weights = {1.0f, 3.0f}}, 0.25f, 2.0f);
  loss::Dice dice{{.squared_denominator = true}};
  loss::CrossEntropy ce{{.class_weights = {1.0f, 3.0f}}};
  const float expected = 0.25f * dice.forward(x, labels) + 2.0f * ce.forward(x, labels);
  CHECK(dice_ce.forward(x, labels) == Approx(expected).epsilon(1e-6));
  const auto g = dice_ce.backward().to_vector();
  const auto gd = dice.backward().to_vector(), gc = ce.backward().to_vector();
  for (std::size_t i = 0; i < g.size(); ++i) CHECK(g[i] == Approx(0.25f * gd[i] + 2.0f * gc[i]).margin(1e-7));
  CHECK_THROWS_WITH(loss::dice_ce().forward(x, Tensor<std::uint8_t>::zeros({1, 3, 4})),
                    Catch::Contains("loss::Dice") && Catch::Contains("got [1,3,4]"));
}
