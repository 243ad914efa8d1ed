#include "medseg/loss/dice.hpp"

#include "loss_test_support.hpp"

using namespace medseg;
using namespace loss_test;

TEST_CASE("Dice matches the MONAI formula computed by PyTorch") {
  const auto& ref = reference();
  for (const auto& [name, options] : cases("dice")) {
    INFO(name << ": " << options.dump());
    const auto logits = ref.get<float>(name + ".logits");
    loss::Dice dice{dice_options(options)};
    with_labels(name + ".labels", [&](const auto& labels) {
      check_value(dice.forward(logits, labels), ref.get<float>(name + ".loss").data()[0]);
      check_gradient_close(dice.backward(), ref.get<float>(name + ".grad"));
    });
  }
}

TEST_CASE("Dice passes a finite-difference gradient check in every configuration") {
  const Shape shape{2, 3, 3, 4, 2};
  const auto labels = Tensor<std::int64_t>::empty({2, 1, 3, 4, 2});
  for (std::int64_t i = 0; i < labels.numel(); ++i) labels.data()[i] = (i * 7 + i / 5) % 3;
  const auto onehot = Tensor<float>::zeros(shape);
  for (std::int64_t n = 0; n < 2; ++n)
    for (std::int64_t s = 0; s < 24; ++s) onehot.data()[(n * 3 + labels.data()[n * 24 + s]) * 24 + s] = 1.0f;
  std::vector<loss::DiceOptions> configs = {
      {},
      {.include_background = false},
      {.squared_denominator = true},
      {.smooth_numerator = 1.0, .smooth_denominator = 1.0, .batch = true},
      {.include_background = false, .batch = true, .class_weights = {0.3f, 2.0f}},
      {.activation = loss::Activation::sigmoid},
      {.activation = loss::Activation::sigmoid, .squared_denominator = true, .class_weights = {1.0f, 0.5f, 2.0f}},
      {.activation = loss::Activation::none, .batch = true},
  };
  for (std::size_t k = 0; k < configs.size(); ++k) {
    INFO("configuration " << k);
    auto x = random_logits(shape, 10 + k);
    if (configs[k].activation == loss::Activation::none)  // probabilities in (0.1, 0.9)
      for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] = 0.5f + 0.2f * x.data()[i];
    for (bool use_onehot : {false, true}) {
      loss::Dice dice{configs[k]};
      auto f = [&](const Tensor<float>& v) {
        loss::Dice d{configs[k]};
        return use_onehot ? d.forward(v, onehot) : d.forward(v, labels);
      };
      const float value = use_onehot ? dice.forward(x, onehot) : dice.forward(x, labels);
      CHECK(value == f(x));
      check_finite_differences(f, x, dice.backward());
    }
  }
}

TEST_CASE("Dice of a perfect prediction is zero and of a disjoint one is one") {
  const auto labels = Tensor<std::uint8_t>::from({0, 1, 1, 0, 1, 0}, {1, 6});
  auto perfect = Tensor<float>::zeros({1, 2, 6});
  auto wrong = Tensor<float>::zeros({1, 2, 6});
  for (int s = 0; s < 6; ++s) {
    perfect(0, labels(0, s), s) = 40.0f;
    wrong(0, 1 - labels(0, s), s) = 40.0f;
  }
  loss::Dice dice{{.smooth_numerator = 0, .smooth_denominator = 0}};
  CHECK(dice.forward(perfect, labels) == Approx(0.0f).margin(1e-6));
  CHECK(dice.forward(wrong, labels) == Approx(1.0f).margin(1e-6));
}

TEST_CASE("Dice does not depend on the thread count") {
  const auto x = random_logits({2, 4, 40, 30, 9}, 5);
  auto labels = Tensor<std::int32_t>::empty({2, 40, 30, 9});
  for (std::int64_t i = 0; i < labels.numel(); ++i) labels.data()[i] = static_cast<std::int32_t>((i * 31) % 4);
  const int threads = num_threads();
  loss::Dice dice{{.batch = true}};
  set_num_threads(1);
  const float one = dice.forward(x, labels);
  const auto g1 = dice.backward().to_vector();
  set_num_threads(3);
  const float three = dice.forward(x, labels);
  const auto g3 = dice.backward().to_vector();
  set_num_threads(threads);
  CHECK(one == three);
  CHECK(g1 == g3);
}

TEST_CASE("Dice rejects bad labels and logits with the loss name and the shapes") {
  loss::Dice dice;
  const auto x = Tensor<float>::zeros({2, 3, 4, 4, 4});
  CHECK_THROWS_WITH(dice.forward(x, Tensor<std::int64_t>::zeros({2, 1, 4, 4, 5})),
                    Catch::Contains("loss::Dice") && Catch::Contains("labels shape") &&
                        Catch::Contains("[2,1,4,4,4]") && Catch::Contains("got [2,1,4,4,5]"));
  CHECK_THROWS_WITH(dice.forward(x, Tensor<float>::zeros({2, 2, 4, 4, 4})),
                    Catch::Contains("loss::Dice") && Catch::Contains("[2,3,4,4,4]") && Catch::Contains("[2,2,4,4,4]"));
  auto labels = Tensor<std::uint8_t>::zeros({2, 4, 4, 4});
  labels(1, 2, 3, 0) = 3;
  CHECK_THROWS_WITH(dice.forward(x, labels), Catch::Contains("loss::Dice") && Catch::Contains("[0, 3)") &&
                                                 Catch::Contains("got 3 at flat index 108"));
  auto nan = Tensor<float>::zeros({2, 3, 4, 4, 4});
  nan(1, 0, 0, 0, 1) = std::nanf("");
  CHECK_THROWS_WITH(dice.forward(nan, Tensor<std::uint8_t>::zeros({2, 4, 4, 4})),
                    Catch::Contains("loss::Dice") && Catch::Contains("logits [2,3,4,4,4]") &&
                        Catch::Contains("finite") && Catch::Contains("flat index 193"));
  CHECK_THROWS_WITH(dice.backward(), Catch::Contains("loss::Dice") && Catch::Contains("forward"));
  loss::Dice weighted{{.include_background = false, .class_weights = {1.0f, 1.0f, 1.0f}}};
  CHECK_THROWS_WITH(weighted.forward(x, labels.slice(0, 0, 2)), Catch::Contains("class_weights") &&
                                                                   Catch::Contains("2 weights") && Catch::Contains("got 3"));
  loss::Dice no_classes{{.include_background = false}};
  CHECK_THROWS_WITH(no_classes.forward(Tensor<float>::zeros({1, 1, 4}), Tensor<std::int64_t>::zeros({1, 4})),
                    Catch::Contains("include_background"));
}
