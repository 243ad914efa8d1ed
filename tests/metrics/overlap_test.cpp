// Hard Dice/IoU and MedicalSeg's soft Dice against an independent NumPy computation on random
// blobs; the empty-class conventions of nnU-Net and MONAI; errors that name what was wrong.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>

#include "medseg/metrics/overlap.hpp"
#include "medseg/metrics/soft_dice.hpp"
#include "reference.hpp"

using namespace medseg;
using namespace medseg::metrics;

TEST_CASE("Dice and IoU per class match NumPy on random blobs") {
  const auto g = metrics_test::make_golden("overlap", 7, {22, 26, 19}, 4, {2.5, 0.8, 1.1});
  const auto d = dice_per_class(g.prediction, g.reference, 4);
  const auto j = iou_per_class(g.prediction, g.reference, 4);
  for (int c = 0; c < 4; ++c) {
    INFO("class " << c);
    REQUIRE(g.has("dice", c));
    CHECK(d[static_cast<std::size_t>(c)] == Approx(g.at("dice", c)).epsilon(1e-12));
    CHECK(j[static_cast<std::size_t>(c)] == Approx(g.at("iou", c)).epsilon(1e-12));
    CHECK(d[static_cast<std::size_t>(c)] > 0.3);  // the blobs overlap: a real test, not 0 or 1
    CHECK(d[static_cast<std::size_t>(c)] < 0.99);
  }
  // Any integer label type and layout: int64 prediction against the uint8 reference.
  CHECK(dice_per_class(g.prediction.astype<std::int64_t>(), g.reference, 4) == d);
}

TEST_CASE("soft Dice matches MedicalSeg's compute_per_channel_dice") {
  const auto g = metrics_test::make_golden("soft", 11, {14, 17, 12}, 3, {1.0, 1.0, 1.0});
  const auto s = soft_dice_per_class(g.probabilities, g.reference);
  REQUIRE(s.size() == 3);
  for (int c = 0; c < 3; ++c) {
    INFO("class " << c);
    CHECK(s[static_cast<std::size_t>(c)] == Approx(g.at("soft_dice", c)).epsilon(1e-6));
  }
  // A batch of two copies: sums over the batch give the same ratio. Labels as [N,1,D,H,W].
  auto probs2 = Tensor<float>::empty({2, 3, 14, 17, 12});
  probs2[0].copy_from(g.probabilities);
  probs2[1].copy_from(g.probabilities);
  auto labels2 = Tensor<std::uint8_t>::empty({2, 1, 14, 17, 12});
  labels2[0].copy_from(g.reference.reshape({1, 14, 17, 12}));
  labels2[1].copy_from(g.reference.reshape({1, 14, 17, 12}));
  const auto s2 = soft_dice_per_class(probs2, labels2);
  for (std::size_t c = 0; c < 3; ++c) CHECK(s2[c] == Approx(s[c]).epsilon(1e-12));
  // One-hot probabilities of the reference itself: a perfect score.
  auto onehot = Tensor<float>::zeros({3, 14, 17, 12});
  for (std::int64_t i = 0; i < g.reference.numel(); ++i) onehot.data()[g.reference.data()[i] * g.reference.numel() + i] = 1;
  for (double v : soft_dice_per_class(onehot, g.reference)) CHECK(v == Approx(1.0));
}

TEST_CASE("empty classes follow the chosen convention") {
  // Class 1 only in the prediction, class 2 nowhere, class 3 a single matching voxel.
  auto ref = Tensor<std::uint8_t>::zeros({3, 4, 5});
  auto pred = Tensor<std::uint8_t>::zeros({3, 4, 5});
  pred.at(0, 0, 0) = 1;
  ref.at(2, 3, 4) = 3;
  pred.at(2, 3, 4) = 3;
  const auto n = class_counts(pred, ref, 4);
  CHECK(n[1].tp == 0);
  CHECK(n[1].fp == 1);
  CHECK(n[3].tp == 1);
  CHECK(n[0].tp == 58);
  CHECK(n[0].fn == 1);

  const auto nn = dice_per_class(pred, ref, 4, EmptyClass::nnunet);
  CHECK(nn[1] == 0.0);          // a predicted absent class is a false positive
  CHECK(std::isnan(nn[2]));     // nothing anywhere: undefined, skipped by the mean
  CHECK(nn[3] == 1.0);
  const auto ignore = dice_per_class(pred, ref, 4, EmptyClass::monai_ignore_empty);
  CHECK(std::isnan(ignore[1]));  // MONAI ignore_empty: an empty reference is never scored
  CHECK(std::isnan(ignore[2]));
  const auto count = dice_per_class(pred, ref, 4, EmptyClass::monai_count_empty);
  CHECK(count[1] == 0.0);
  CHECK(count[2] == 1.0);
  const auto j = iou_per_class(pred, ref, 4, EmptyClass::nnunet);
  CHECK(j[0] == Approx(58.0 / 59.0));
  CHECK(std::isnan(j[2]));

  CHECK(nan_mean({0.5, std::nan(""), 1.0}) == Approx(0.75));
  CHECK(std::isnan(nan_mean({std::nan("")})));
}

TEST_CASE("overlap metrics reject mismatched shapes and labels out of range") {
  auto ref = Tensor<std::int32_t>::zeros({3, 4, 5});
  auto pred = Tensor<std::int32_t>::zeros({3, 4, 5});
  CHECK_THROWS_WITH(dice_per_class(Tensor<std::int32_t>::zeros({3, 4, 6}), ref, 2),
                    Catch::Contains("prediction shape") && Catch::Contains("[3,4,5]") && Catch::Contains("[3,4,6]"));
  pred.at(1, 2, 3) = 2;
  CHECK_THROWS_WITH(dice_per_class(pred, ref, 2), Catch::Contains("prediction") &&
                                                      Catch::Contains("labels in [0, 2)") && Catch::Contains("got 2"));
  ref.at(0, 0, 1) = -1;
  CHECK_THROWS_WITH(dice_per_class(pred, ref, 3), Catch::Contains("reference") && Catch::Contains("got -1"));
  CHECK_THROWS_WITH(dice_per_class(pred, pred, 0), Catch::Contains("num_classes"));
  auto probs = Tensor<float>::zeros({2, 3, 4, 5});
  CHECK_THROWS_WITH(soft_dice_per_class(probs, Tensor<std::uint8_t>::zeros({3, 4, 6})),
                    Catch::Contains("soft_dice_per_class") && Catch::Contains("labels"));
  CHECK_THROWS_WITH(soft_dice_per_class(probs, Tensor<std::uint8_t>::full({3, 4, 5}, 2)),
                    Catch::Contains("labels in [0, 2)"));
}
