#include "medseg/loss/cross_entropy.hpp"

#include "loss_test_support.hpp"

using namespace medseg;
using namespace loss_test;

TEST_CASE("CrossEntropy matches torch cross_entropy") {
  const auto& ref = reference();
  for (const auto& [name, options] : cases("ce")) {
    INFO(name << ": " << options.dump());
    const auto logits = ref.get<float>(name + ".logits");
    loss::CrossEntropy ce{ce_options(options)};
    with_labels(name + ".labels", [&](const auto& labels) {
      check_value(ce.forward(logits, labels), ref.get<float>(name + ".loss").data()[0]);
      check_gradient_close(ce.backward(), ref.get<float>(name + ".grad"));
    });
  }
}

TEST_CASE("BinaryCrossEntropy matches torch binary_cross_entropy_with_logits") {
  const auto& ref = reference();
  for (const auto& [name, options] : cases("bce")) {
    INFO(name << ": " << options.dump());
    const auto logits = ref.get<float>(name + ".logits");
    loss::BinaryCrossEntropy bce{bce_options(options)};
    with_labels(name + ".labels", [&](const auto& labels) {
      check_value(bce.forward(logits, labels), ref.get<float>(name + ".loss").data()[0]);
      check_gradient_close(bce.backward(), ref.get<float>(name + ".grad"));
    });
  }
}

TEST_CASE("CrossEntropy passes a finite-difference gradient check") {
  const Shape shape{2, 3, 3, 4, 2};
  auto labels = Tensor<std::int64_t>::empty({2, 3, 4, 2});
  for (std::int64_t i = 0; i < labels.numel(); ++i) labels.data()[i] = i % 5 == 0 ? 7 : (i * 7 + i / 5) % 3;
  const auto soft = random_logits(shape, 3, 1.0f);
  for (std::int64_t i = 0; i < soft.numel(); ++i) soft.data()[i] = 0.5f + 0.5f * soft.data()[i];
  const std::vector<loss::CrossEntropyOptions> configs = {
      {.ignore_index = 7},
      {.class_weights = {0.2f, 1.0f, 3.0f}, .ignore_index = 7},
      {.class_weights = {0.2f, 1.0f, 3.0f}, .ignore_index = 7, .reduction = loss::Reduction::sum},
  };
  for (std::size_t k = 0; k < configs.size(); ++k) {
    INFO("configuration " << k);
    const auto x = random_logits(shape, 20 + k, 3.0f);
    for (bool use_soft : {false, true}) {
      auto f = [&](const Tensor<float>& v) {
        loss::CrossEntropy ce{configs[k]};
        return use_soft ? ce.forward(v, soft) : ce.forward(v, labels);
      };
      loss::CrossEntropy ce{configs[k]};
      use_soft ? ce.forward(x, soft) : ce.forward(x, labels);
      check_finite_differences(f, x, ce.backward());
    }
  }
}

TEST_CASE("BinaryCrossEntropy passes a finite-difference gradient check") {
  const Shape shape{2, 2, 3, 4, 2};
  const auto labels = Tensor<std::uint8_t>::empty({2, 1, 3, 4, 2});
  for (std::int64_t i = 0; i < labels.numel(); ++i) labels.data()[i] = static_cast<std::uint8_t>((i * 5 + i / 3) % 2);
  const std::vector<loss::BinaryCrossEntropyOptions> configs = {
      {},
      {.pos_weight = {3.0f, 0.5f}, .class_weights = {1.0f, 2.0f}},
      {.pos_weight = {2.0f, 2.0f}, .reduction = loss::Reduction::sum},
  };
  for (std::size_t k = 0; k < configs.size(); ++k) {
    INFO("configuration " << k);
    const auto x = random_logits(shape, 30 + k, 3.0f);
    auto f = [&](const Tensor<float>& v) { return loss::BinaryCrossEntropy{configs[k]}.forward(v, labels); };
    loss::BinaryCrossEntropy bce{configs[k]};
    bce.forward(x, labels);
    check_finite_differences(f, x, bce.backward());
  }
}

TEST_CASE("CrossEntropy stays finite on confident mistakes and is zero when all is ignored") {
  auto x = Tensor<float>::from({200.0f, -200.0f}, {1, 2, 1});
  loss::CrossEntropy ce;
  CHECK(ce.forward(x, Tensor<std::int64_t>::from({1}, {1, 1})) == Approx(400.0f));
  const auto g = ce.backward().to_vector();
  CHECK(g[0] == Approx(1.0f));
  CHECK(g[1] == Approx(-1.0f));
  loss::CrossEntropy ignoring{{.ignore_index = 255}};
  CHECK(ignoring.forward(x, Tensor<std::uint8_t>::from({255}, {1, 1})) == 0.0f);
  CHECK(ignoring.backward().to_vector() == std::vector<float>{0.0f, 0.0f});
  loss::BinaryCrossEntropy bce;
  CHECK(bce.forward(Tensor<float>::from({-100.0f}, {1, 1}), Tensor<float>::from({1.0f}, {1, 1})) == Approx(100.0f));
}

TEST_CASE("Cross-entropies reject bad labels and logits with the loss name and the shapes") {
  const auto x = Tensor<float>::zeros({2, 3, 4, 4});
  loss::CrossEntropy ce{{.ignore_index = 255}};
  CHECK_THROWS_WITH(ce.forward(x, Tensor<std::int64_t>::zeros({2, 4, 3})),
                    Catch::Contains("loss::CrossEntropy") && Catch::Contains("[2,1,4,4] or [2,4,4]") &&
                        Catch::Contains("got [2,4,3]"));
  auto labels = Tensor<std::int32_t>::zeros({2, 4, 4});
  labels(0, 1, 1) = -1;
  CHECK_THROWS_WITH(ce.forward(x, labels), Catch::Contains("loss::CrossEntropy") &&
                                               Catch::Contains("or ignore_index 255") && Catch::Contains("got -1"));
  auto inf = Tensor<float>::zeros({2, 3, 4, 4});
  inf(0, 2, 1, 1) = INFINITY;
  CHECK_THROWS_WITH(ce.forward(inf, Tensor<std::int32_t>::zeros({2, 4, 4})),
                    Catch::Contains("loss::CrossEntropy") && Catch::Contains("logits [2,3,4,4]") &&
                        Catch::Contains("inf at flat index 37"));
  loss::CrossEntropy weighted{{.class_weights = {1.0f, 2.0f}}};
  CHECK_THROWS_WITH(weighted.forward(x, Tensor<std::int32_t>::zeros({2, 4, 4})),
                    Catch::Contains("class_weights") && Catch::Contains("3 values") && Catch::Contains("got 2"));
  loss::BinaryCrossEntropy bce{{.pos_weight = {1.0f}}};
  CHECK_THROWS_WITH(bce.forward(x, x), Catch::Contains("loss::BinaryCrossEntropy") && Catch::Contains("pos_weight") &&
                                           Catch::Contains("[2,3,4,4]"));
  loss::BinaryCrossEntropy plain;
  CHECK_THROWS_WITH(plain.forward(x, Tensor<float>::full({2, 3, 4, 4}, 1.5f)),
                    Catch::Contains("loss::BinaryCrossEntropy") && Catch::Contains("[0, 1]") &&
                        Catch::Contains("got 1.5"));
  CHECK_THROWS_WITH(plain.backward(), Catch::Contains("forward"));
}
