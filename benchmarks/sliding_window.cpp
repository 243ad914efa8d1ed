// `medseg bench sliding_window`: whole-volume inference as nnU-Net runs it, on a [1,128,160,144]
// image with 64^3 windows (overlap 0.5, Gaussian weights, 3 classes), without and with
// mirroring over all three axes, against nnU-Net v2's own loop (predict_sliding_window_return_logits:
// slicing, `+= prediction * gaussian`, divide, softmax) in PyTorch. The predictor is the same
// cheap pointwise layer on both sides, so the times are the window bookkeeping, blending and
// flips that sliding-window inference adds around a network.
#include <string>

#include "harness.hpp"
#include "medseg/core.hpp"
#include "medseg/infer/sliding_window.hpp"

namespace medseg::bench {

std::vector<Result> run_sliding_window(const Options& options) {
  const std::int64_t K = 3;
  const Shape shape = options.quick ? Shape{1, 40, 48, 36} : Shape{1, 128, 160, 144};
  const infer::Index3 roi = options.quick ? infer::Index3{16, 16, 16} : infer::Index3{64, 64, 64};
  const int repeats = options.quick ? 2 : 3;
  std::string why;
  const auto peer = run_python_peer("sliding_window.py", {shape.to_string(), std::to_string(roi[0]),
                                                          std::to_string(repeats), std::to_string(options.threads)},
                                    why);
  const std::string peer_name = peer ? peer->value("peer", std::string("torch")) : "torch (" + why + ")";
  auto peer_ms = [&](const char* key) -> std::optional<double> {
    if (peer && peer->contains(key)) return (*peer)[key].get<double>();
    return std::nullopt;
  };

  auto image = Tensor<float>::empty(shape);
  random::normal(image, {.seed = 3});
  // logits[k] = (k + 1) * 0.5 * x + (k - 1): a pointwise layer, the same in the peer.
  auto predict = [&](const Tensor<float>& x) {
    const std::int64_t n = x.size(0), v = x.numel() / n;
    auto y = Tensor<float>::empty({n, K, x.size(2), x.size(3), x.size(4)});
    parallel_for(0, n * K, 1, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t nk = b; nk < e; ++nk) {
        const std::int64_t i = nk / K, k = nk % K;
        const float a = 0.5f * static_cast<float>(k + 1), c = static_cast<float>(k - 1);
        const float* src = x.data() + i * v;
        float* dst = y.data() + nk * v;
        for (std::int64_t j = 0; j < v; ++j) dst[j] = a * src[j] + c;
      }
    });
    return y;
  };
  std::vector<Result> results;
  const std::string what = shape.to_string() + " roi " + std::to_string(roi[0]) + "^3";
  for (const bool mirror : {false, true}) {
    infer::SlidingWindowOptions o{.roi = roi};
    if (mirror) o.mirror_axes = {0, 1, 2};
    const double ms = median_ms([&] { (void)infer::sliding_window(image, predict, o); }, repeats);
    results.push_back({std::string(mirror ? "mirrored x8 " : "plain ") + what, ms, peer_name,
                       peer_ms(mirror ? "mirrored" : "plain"), "Gaussian blend, softmax, 3 classes"});
  }
  return results;
}

}  // namespace medseg::bench
