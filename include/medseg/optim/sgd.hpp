// Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay, step for
// step as torch.optim.SGD (nnU-Net trains with momentum 0.99, Nesterov, weight decay 3e-5;
// MedicalSeg's VNet with momentum 0.9). Parameters are updated in place through their handles,
// on the CPU or the GPU (ops::sgd_update: backends/cpu/optim.hpp, backends/cuda/optim.hpp),
// with the same float operations in the same order.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "../nn/parameter.hpp"
#include "../nn/safetensors.hpp"
#include "optimizer.hpp"

namespace medseg::optim {

struct SGDOptions {
  double lr = 1e-3;
  double momentum = 0.0;
  /// Scales the new gradient into the momentum buffer by (1 - dampening); 0 in PyTorch.
  double dampening = 0.0;
  /// Nesterov momentum (needs momentum > 0 and dampening 0, as in PyTorch).
  bool nesterov = false;
  /// L2 penalty added to the gradient; skipped for parameters with decay == false.
  double weight_decay = 0.0;
};

/// Per parameter p with gradient g, as torch.optim.SGD:
///   d = g + weight_decay * p
///   buf = d on the first step, else momentum * buf + (1 - dampening) * d
///   d = nesterov ? d + momentum * buf : buf        (when momentum != 0)
///   p -= lr * d
///
///   optim::SGD opt{net.parameters(), {.lr = 1e-2, .momentum = 0.99, .nesterov = true, .weight_decay = 3e-5}};
///   opt.step();  opt.zero_grad();
template <class B = Cpu>
class SGD {
 public:
  static constexpr std::string_view name = "optim::SGD";

  SGD(nn::ParameterList<B> params, SGDOptions options);

  /// One update from the current gradients.
  void step();
  void zero_grad() { nn::zero_grad(params_); }

  double lr() const { return options_.lr; }
  void set_lr(double lr);
  const SGDOptions& options() const { return options_; }
  const nn::ParameterList<B>& parameters() const { return params_; }
  /// Steps taken so far.
  std::int64_t steps() const { return steps_; }

  /// Writes the momentum buffers ("<prefix><path>.momentum_buffer"), step count and lr.
  void save_state(safetensors::Writer& writer, const std::string& prefix = "optimizer.") const;
  /// Restores what save_state wrote; checks the kind and every buffer's shape.
  void load_state(const safetensors::File& file, const std::string& prefix = "optimizer.");

 private:
  nn::ParameterList<B> params_;
  SGDOptions options_;
  std::vector<ops::Chunk> chunks_;
  std::vector<Tensor<float, B>> momentum_;  // empty without momentum
  ops::FusedTable<B> table_;
  std::int64_t steps_ = 0;
};

template <class B>
SGD(std::vector<nn::Parameter<B>>, SGDOptions) -> SGD<B>;

// ----------------------------------------------------------------------------------------
// Implementation

template <class B>
SGD<B>::SGD(nn::ParameterList<B> params, SGDOptions options)
    : params_(std::move(params)), options_(options), chunks_(detail::plan_chunks(name, params_)) {
  detail::require_option(options_.lr >= 0, name, "lr", ">= 0", options_.lr);
  detail::require_option(options_.momentum >= 0, name, "momentum", ">= 0", options_.momentum);
  detail::require_option(options_.weight_decay >= 0, name, "weight_decay", ">= 0", options_.weight_decay);
  detail::require_option(!options_.nesterov || (options_.momentum > 0 && options_.dampening == 0), name,
                         "momentum, dampening", "momentum > 0 and dampening 0 with nesterov", options_.momentum);
  if (options_.momentum != 0) momentum_ = detail::zeros_like(params_);
}

template <class B>
void SGD<B>::set_lr(double lr) {
  detail::require_option(lr >= 0 && std::isfinite(lr), name, "lr", "a finite value >= 0", lr);
  options_.lr = lr;
}

template <class B>
void SGD<B>::step() {
  // Scalars are rounded to float once, as PyTorch does when it applies a Python float to a
  // float32 tensor, so trajectories agree to float rounding.
  const ops::SgdScalars k{.lr = static_cast<float>(options_.lr),
                          .momentum = static_cast<float>(options_.momentum),
                          .keep = static_cast<float>(1.0 - options_.dampening),
                          .weight_decay = static_cast<float>(options_.weight_decay),
                          .use_momentum = !momentum_.empty(),
                          .first = steps_ == 0,
                          .nesterov = options_.nesterov};
  table_.refresh(detail::fused_tensors(params_, {&momentum_}), chunks_);
  ops::sgd_update(table_, k);
  ++steps_;
}

template <class B>
void SGD<B>::save_state(safetensors::Writer& writer, const std::string& prefix) const {
  writer.set_metadata(prefix + "type", std::string(name));
  writer.set_metadata(prefix + "steps", std::to_string(steps_));
  writer.set_metadata(prefix + "lr", detail::exact(options_.lr));
  for (std::size_t i = 0; i < momentum_.size(); ++i)
    writer.add(prefix + params_[i].path + ".momentum_buffer", momentum_[i]);
}

template <class B>
void SGD<B>::load_state(const safetensors::File& file, const std::string& prefix) {
  detail::check_kind(file, prefix, name);
  for (std::size_t i = 0; i < momentum_.size(); ++i)
    detail::load_tensor(file, prefix + params_[i].path + ".momentum_buffer", momentum_[i]);
  steps_ = static_cast<std::int64_t>(detail::metadata_number(file, prefix + "steps", name));
  set_lr(detail::metadata_number(file, prefix + "lr", name));
}

}  // namespace medseg::optim
