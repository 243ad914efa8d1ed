// `medseg bench optim`: one optimizer step over the parameters of an nnU-Net-sized 3D UNet
// (about 31 M values in 66 tensors: conv weights, biases and norm affines) for SGD with
// Nesterov momentum and weight decay (nnU-Net's), Adam, AdamW, and clip_grad_norm, against
// torch.optim and torch.nn.utils doing the same. Steps are memory-bound: the note gives GB/s
// over the bytes each step must read and write.
#include <string>

#include "harness.hpp"
#include "medseg/core.hpp"
#include "medseg/optim.hpp"

namespace medseg::bench {

namespace {
/// The parameter shapes the peer builds too: per stage two 3x3x3 convs with bias and norm
/// weight and bias, encoder and decoder.
std::vector<Shape> unet_parameter_shapes(bool quick) {
  const std::vector<std::int64_t> features = quick ? std::vector<std::int64_t>{4, 8} : std::vector<std::int64_t>{32, 64, 128, 256, 320, 320};
  std::vector<Shape> shapes;
  for (int side = 0; side < 2; ++side) {
    std::int64_t in = side == 0 ? 1 : features.back();
    for (std::int64_t f : features) {
      for (int conv = 0; conv < 2; ++conv) {
        shapes.push_back({f, conv == 0 ? in : f, 3, 3, 3});
        shapes.push_back({f});
        shapes.push_back({f});
        shapes.push_back({f});
      }
      in = f;
    }
  }
  return shapes;
}
}  // namespace

std::vector<Result> run_optim(const Options& options) {
  const int repeats = options.quick ? 2 : 9;
  std::string why;
  const auto peer = run_python_peer("optim.py", {options.quick ? "quick" : "full", std::to_string(repeats),
                                                 std::to_string(options.threads)}, why);
  const std::string peer_name = peer ? peer->value("peer", std::string("torch")) : "torch (" + why + ")";
  auto peer_ms = [&](const char* key) -> std::optional<double> {
    if (peer && peer->contains(key)) return (*peer)[key].get<double>();
    return std::nullopt;
  };

  nn::ParameterList<Cpu> params;
  std::int64_t total = 0;
  for (const auto& s : unet_parameter_shapes(options.quick)) {
    auto p = nn::make_parameter("p" + std::to_string(params.size()), Tensor<float>::empty(s));
    random::normal(p.value, {.seed = params.size()});
    random::normal(p.grad, {.seed = 1000 + params.size()});
    total += p.value.numel();
    params.push_back(std::move(p));
  }
  const std::string count = std::to_string(total / 1000000) + "." + std::to_string(total / 100000 % 10) + " M values";
  auto note = [&](double ms, int floats_moved) {
    return std::to_string(static_cast<int>(static_cast<double>(total) * 4 * floats_moved / (ms * 1e6))) + " GB/s";
  };
  std::vector<Result> results;
  // Learning rates are tiny so that repeated steps leave the values (and the timing) alike.
  optim::SGD sgd{params, {.lr = 1e-9, .momentum = 0.99, .nesterov = true, .weight_decay = 3e-5}};
  sgd.step();  // the first step only copies into the momentum buffer
  const double sgd_ms = median_ms([&] { sgd.step(); }, repeats);
  results.push_back({"SGD nesterov+wd step, " + count, sgd_ms, peer_name, peer_ms("sgd"), note(sgd_ms, 5)});
  optim::Adam adam{params, {.lr = 1e-9}};
  const double adam_ms = median_ms([&] { adam.step(); }, repeats);
  results.push_back({"Adam step, " + count, adam_ms, peer_name, peer_ms("adam"), note(adam_ms, 7)});
  optim::AdamW adamw{params, {.lr = 1e-9}};
  const double adamw_ms = median_ms([&] { adamw.step(); }, repeats);
  results.push_back({"AdamW step, " + count, adamw_ms, peer_name, peer_ms("adamw"), note(adamw_ms, 7)});
  const double clip_ms = median_ms([&] { optim::clip_grad_norm(params, 1e30); }, repeats);
  results.push_back({"clip_grad_norm (no clip), " + count, clip_ms, peer_name, peer_ms("clip"), note(clip_ms, 1)});
  return results;
}

}  // namespace medseg::bench
