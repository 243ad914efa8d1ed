// Adam and AdamW, step for step as torch.optim.Adam and torch.optim.AdamW (with the optional
// AMSGrad maximum). Adam adds weight decay to the gradient (L2); AdamW decays the weights
// directly (Loshchilov & Hutter), which is what transformer models (UNETR, nnFormer) train with.
// On the CPU or the GPU (ops::adam_update: backends/cpu/optim.hpp, backends/cuda/optim.hpp),
// with the same float operations in the same order.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "../nn/parameter.hpp"
#include "../nn/safetensors.hpp"
#include "optimizer.hpp"

namespace medseg::optim {

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  /// L2 penalty added to the gradient (PyTorch's Adam); skipped where decay == false.
  double weight_decay = 0.0;
  /// Divide by the running maximum of the second moment (Reddi et al., AMSGrad).
  bool amsgrad = false;
};

/// AdamW's options: the same fields, PyTorch's AdamW default weight decay.
struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  /// Decoupled decay p *= 1 - lr * weight_decay; skipped where decay == false.
  double weight_decay = 1e-2;
  bool amsgrad = false;
};

namespace detail {

/// The shared engine; `Decoupled` picks AdamW's decay. Per parameter p, gradient g, step t:
///   Adam:  g += weight_decay * p          AdamW:  p *= 1 - lr * weight_decay
///   m = beta1 m + (1 - beta1) g;   v = beta2 v + (1 - beta2) g^2;   vmax = max(vmax, v)
///   p -= lr / (1 - beta1^t) * m / (sqrt(v or vmax) / sqrt(1 - beta2^t) + eps)
template <class B, bool Decoupled>
class AdamCore {
 public:
  static constexpr std::string_view name = Decoupled ? "optim::AdamW" : "optim::Adam";

  AdamCore(nn::ParameterList<B> params, AdamOptions options);

  void step();
  void zero_grad() { nn::zero_grad(params_); }

  double lr() const { return options_.lr; }
  void set_lr(double lr);
  const AdamOptions& options() const { return options_; }
  const nn::ParameterList<B>& parameters() const { return params_; }
  std::int64_t steps() const { return steps_; }

  /// Writes "<prefix><path>.exp_avg", ".exp_avg_sq" (and ".max_exp_avg_sq"), step count, lr.
  void save_state(safetensors::Writer& writer, const std::string& prefix = "optimizer.") const;
  void load_state(const safetensors::File& file, const std::string& prefix = "optimizer.");

 private:
  nn::ParameterList<B> params_;
  AdamOptions options_;
  std::vector<ops::Chunk> chunks_;
  std::vector<Tensor<float, B>> exp_avg_, exp_avg_sq_, max_exp_avg_sq_;
  ops::FusedTable<B> table_;
  std::int64_t steps_ = 0;
};

}  // namespace detail

///   optim::Adam opt{params, {.lr = 3e-4}};
template <class B = Cpu>
class Adam : public detail::AdamCore<B, false> {
 public:
  Adam(nn::ParameterList<B> params, AdamOptions options) : detail::AdamCore<B, false>(std::move(params), options) {}
};

///   optim::AdamW opt{params, {.lr = 1e-4, .weight_decay = 1e-5}};
template <class B = Cpu>
class AdamW : public detail::AdamCore<B, true> {
 public:
  AdamW(nn::ParameterList<B> params, AdamWOptions o)
      : detail::AdamCore<B, true>(std::move(params), {o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, o.amsgrad}) {}
};

template <class B>
Adam(std::vector<nn::Parameter<B>>, AdamOptions) -> Adam<B>;
template <class B>
AdamW(std::vector<nn::Parameter<B>>, AdamWOptions) -> AdamW<B>;

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

template <class B, bool Decoupled>
AdamCore<B, Decoupled>::AdamCore(nn::ParameterList<B> params, AdamOptions options)
    : params_(std::move(params)), options_(options), chunks_(plan_chunks(name, params_)) {
  require_option(options_.lr >= 0, name, "lr", ">= 0", options_.lr);
  require_option(options_.beta1 >= 0 && options_.beta1 < 1, name, "beta1", "in [0, 1)", options_.beta1);
  require_option(options_.beta2 >= 0 && options_.beta2 < 1, name, "beta2", "in [0, 1)", options_.beta2);
  require_option(options_.eps >= 0, name, "eps", ">= 0", options_.eps);
  require_option(options_.weight_decay >= 0, name, "weight_decay", ">= 0", options_.weight_decay);
  exp_avg_ = zeros_like(params_);
  exp_avg_sq_ = zeros_like(params_);
  if (options_.amsgrad) max_exp_avg_sq_ = zeros_like(params_);
}

template <class B, bool Decoupled>
void AdamCore<B, Decoupled>::set_lr(double lr) {
  require_option(lr >= 0 && std::isfinite(lr), name, "lr", "a finite value >= 0", lr);
  options_.lr = lr;
}

template <class B, bool Decoupled>
void AdamCore<B, Decoupled>::step() {
  ++steps_;
  const auto t = static_cast<double>(steps_);
  // Bias corrections in double, then rounded once, as PyTorch's Python-float scalars are.
  const double bc1 = 1.0 - std::pow(options_.beta1, t);
  const double bc2 = 1.0 - std::pow(options_.beta2, t);
  const float neg_step = static_cast<float>(-(options_.lr / bc1));
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  const float b1 = static_cast<float>(options_.beta1), one_b1 = static_cast<float>(1.0 - options_.beta1);
  const float b2 = static_cast<float>(options_.beta2), one_b2 = static_cast<float>(1.0 - options_.beta2);
  const float eps = static_cast<float>(options_.eps);
  auto scalars = [&](double wd) {
    return ops::AdamScalars{.b1 = b1, .one_b1 = one_b1, .b2 = b2, .one_b2 = one_b2, .eps = eps,
                            .neg_step = neg_step, .bc2_sqrt = bc2_sqrt,
                            .l2 = Decoupled ? 0.0f : static_cast<float>(wd),
                            .shrink = Decoupled ? static_cast<float>(1.0 - options_.lr * wd) : 1.0f};
  };
  table_.refresh(fused_tensors(params_, {&exp_avg_, &exp_avg_sq_, &max_exp_avg_sq_}), chunks_);
  ops::adam_update(table_, {.decayed = scalars(options_.weight_decay), .undecayed = scalars(0.0)});
}

template <class B, bool Decoupled>
void AdamCore<B, Decoupled>::save_state(safetensors::Writer& writer, const std::string& prefix) const {
  writer.set_metadata(prefix + "type", std::string(name));
  writer.set_metadata(prefix + "steps", std::to_string(steps_));
  writer.set_metadata(prefix + "lr", exact(options_.lr));
  for (std::size_t i = 0; i < params_.size(); ++i) {
    writer.add(prefix + params_[i].path + ".exp_avg", exp_avg_[i]);
    writer.add(prefix + params_[i].path + ".exp_avg_sq", exp_avg_sq_[i]);
    if (options_.amsgrad) writer.add(prefix + params_[i].path + ".max_exp_avg_sq", max_exp_avg_sq_[i]);
  }
}

template <class B, bool Decoupled>
void AdamCore<B, Decoupled>::load_state(const safetensors::File& file, const std::string& prefix) {
  check_kind(file, prefix, name);
  for (std::size_t i = 0; i < params_.size(); ++i) {
    load_tensor(file, prefix + params_[i].path + ".exp_avg", exp_avg_[i]);
    load_tensor(file, prefix + params_[i].path + ".exp_avg_sq", exp_avg_sq_[i]);
    if (options_.amsgrad) load_tensor(file, prefix + params_[i].path + ".max_exp_avg_sq", max_exp_avg_sq_[i]);
  }
  steps_ = static_cast<std::int64_t>(metadata_number(file, prefix + "steps", name));
  set_lr(metadata_number(file, prefix + "lr", name));
}

}  // namespace detail
}  // namespace medseg::optim
