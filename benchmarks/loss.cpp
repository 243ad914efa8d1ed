// `medseg bench loss`: the losses of a segmentation training step, forward + backward on one
// batch of logits [2, 4, 96, 96, 96] (nnU-Net-sized patches, 4 classes), against PyTorch's
// autograd doing the same (F.cross_entropy, F.binary_cross_entropy_with_logits, and MONAI's
// Dice formula written in torch). Losses are memory-bound: the note gives the effective GB/s
// over the logits, probabilities and gradient each pass touches.
#include <cstdio>
#include <string>

#include "harness.hpp"
#include "medseg/core.hpp"
#include "medseg/loss.hpp"

namespace medseg::bench {

std::vector<Result> run_loss(const Options& options) {
  const Shape shape = options.quick ? Shape{1, 4, 16, 16, 16} : Shape{2, 4, 96, 96, 96};
  const int repeats = options.quick ? 2 : 9;
  std::string why;
  const auto peer = run_python_peer("loss.py", {shape.to_string(), std::to_string(repeats),
                                                std::to_string(options.threads)}, why);
  const std::string peer_name = peer ? peer->value("peer", std::string("torch")) : "torch (" + why + ")";
  auto peer_ms = [&](const char* key) -> std::optional<double> {
    if (peer && peer->contains(key)) return (*peer)[key].get<double>();
    return std::nullopt;
  };

  auto logits = Tensor<float>::empty(shape);
  random::normal(logits, {.seed = 1});
  Shape label_shape = shape;
  label_shape[1] = 1;
  auto labels = Tensor<std::uint8_t>::empty(label_shape);
  for (std::int64_t i = 0; i < labels.numel(); ++i) labels.data()[i] = static_cast<std::uint8_t>((i * 2654435761u >> 7) % shape[1]);
  auto mask = Tensor<float>::empty(shape);
  for (std::int64_t i = 0; i < mask.numel(); ++i) mask.data()[i] = (i * 40503u >> 5) % 3 == 0 ? 1.0f : 0.0f;

  const double mb = static_cast<double>(logits.nbytes()) / 1e6;
  auto note = [&](double ms, double passes) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "%.1f GB/s over %d logits-sized passes", passes * mb / ms, static_cast<int>(passes));
    return std::string(buf);
  };
  std::vector<Result> results;
  auto time_loss = [&](const char* label, const char* key, auto& loss, const auto& target, double passes) {
    const double ms = median_ms(
        [&] {
          loss.forward(logits, target);
          auto g = loss.backward();
        },
        repeats);
    results.push_back({std::string(label) + " fwd+bwd " + shape.to_string(), ms, peer_name, peer_ms(key), note(ms, passes)});
  };
  loss::CrossEntropy ce;
  time_loss("CrossEntropy", "ce", ce, labels, 5);
  loss::Dice dice{{.include_background = false, .batch = true}};
  time_loss("Dice softmax", "dice", dice, labels, 6);
  auto dice_ce = loss::dice_ce({.include_background = false, .batch = true});
  time_loss("DiceCE", "dice_ce", dice_ce, labels, 10);
  loss::BinaryCrossEntropy bce;
  time_loss("BinaryCrossEntropy", "bce", bce, mask, 6);
  return results;
}

}  // namespace medseg::bench
