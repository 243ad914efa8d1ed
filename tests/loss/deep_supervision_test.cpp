#include "medseg/loss/deep_supervision.hpp"

#include "medseg/loss/mixed.hpp"

#include "loss_test_support.hpp"

using namespace medseg;
using namespace loss_test;

TEST_CASE("Deep supervision weights are nnU-Net's") {
  const auto w = loss::deep_supervision_weights(4);
  REQUIRE(w.size() == 4);
  CHECK(w[0] == Approx(8.0 / 14));
  CHECK(w[1] == Approx(4.0 / 14));
  CHECK(w[2] == Approx(2.0 / 14));
  CHECK(w[3] == 0.0);
  CHECK(loss::deep_supervision_weights(1) == std::vector<double>{1.0});
  CHECK(loss::deep_supervision_weights(2) == std::vector<double>{1.0, 0.0});
  CHECK_THROWS_WITH(loss::deep_supervision_weights(0), Catch::Contains("scales"));
}

TEST_CASE("Deep supervision over DiceCE matches PyTorch") {
  const auto& ref = reference();
  for (const auto& [name, options] : cases("deep")) {
    const auto scales = options.at("scales").get<std::size_t>();
    loss::DeepSupervision ds{loss::dice_ce(dice_options(options.at("dice")), ce_options(options.at("ce"))), scales};
    const auto w = options.at("weights").get<std::vector<double>>();
    for (std::size_t i = 0; i < scales; ++i) CHECK(ds.weights()[i] == Approx(w[i]).epsilon(1e-12));
    std::vector<Tensor<float>> logits;
    std::vector<Tensor<std::int64_t>> labels;
    for (std::size_t i = 0; i < scales; ++i) {
      logits.push_back(ref.get<float>(name + ".logits." + std::to_string(i)));
      labels.push_back(ref.get<std::int64_t>(name + ".labels." + std::to_string(i)));
    }
    check_value(ds.forward(logits, labels), ref.get<float>(name + ".loss").data()[0]);
    CHECK(ds.values().back() == 0.0f);  // weight 0: not computed
    const auto grads = ds.backward();
    REQUIRE(grads.size() == scales);
    for (std::size_t i = 0; i + 1 < scales; ++i) check_gradient_close(grads[i], ref.get<float>(name + ".grad." + std::to_string(i)));
    const auto last = grads.back().to_vector();
    CHECK(std::all_of(last.begin(), last.end(), [](float v) { return v == 0.0f; }));
  }
}

TEST_CASE("Deep supervision passes a finite-difference gradient check on every scale") {
  std::vector<Tensor<float>> logits{random_logits({2, 3, 4, 4, 2}, 1), random_logits({2, 3, 2, 2, 1}, 2)};
  std::vector<Tensor<std::uint8_t>> labels{Tensor<std::uint8_t>::empty({2, 4, 4, 2}),
                                           Tensor<std::uint8_t>::empty({2, 2, 2, 1})};
  for (auto& l : labels)
    for (std::int64_t i = 0; i < l.numel(); ++i) l.data()[i] = static_cast<std::uint8_t>((i * 5 + i / 3) % 3);
  const std::vector<double> weights{0.6, 0.4};
  auto make = [&] { return loss::DeepSupervision{loss::dice_ce(), weights}; };
  auto ds = make();
  ds.forward(logits, labels);
  const auto grads = ds.backward();
  for (std::size_t i = 0; i < logits.size(); ++i) {
    INFO("scale " << i);
    check_finite_differences(
        [&](const Tensor<float>& v) {
          auto copy = logits;
          copy[i] = v;
          return make().forward(copy, labels);
        },
        logits[i], grads[i]);
  }
}

TEST_CASE("Deep supervision errors name the scale") {
  loss::DeepSupervision ds{loss::CrossEntropy{}, 2};
  std::vector<Tensor<float>> logits{Tensor<float>::zeros({1, 2, 4, 4}), Tensor<float>::zeros({1, 2, 2, 2})};
  std::vector<Tensor<std::int64_t>> labels{Tensor<std::int64_t>::zeros({1, 4, 4})};
  CHECK_THROWS_WITH(ds.forward(logits, labels), Catch::Contains("loss::DeepSupervision") &&
                                                    Catch::Contains("2 logits and labels") &&
                                                    Catch::Contains("got 2 logits, 1 labels"));
  labels.push_back(Tensor<std::int64_t>::zeros({1, 2, 2}));
  labels[0] = Tensor<std::int64_t>::zeros({1, 2, 2});
  CHECK_THROWS_WITH(ds.forward(logits, labels), Catch::Contains("loss::DeepSupervision scale 0: loss::CrossEntropy") &&
                                                    Catch::Contains("got [1,2,2]"));
  CHECK_THROWS_WITH(ds.backward(), Catch::Contains("forward"));
  CHECK_THROWS_WITH((loss::DeepSupervision{loss::CrossEntropy{}, std::vector<double>{1.0, -1.0}}),
                    Catch::Contains("weights[1]"));
}
