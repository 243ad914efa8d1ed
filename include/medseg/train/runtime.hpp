// The runtime objects a config names: an optimizer (SGD, Adam, AdamW), a learning-rate
// schedule (PaddleSeg's PolynomialDecay, CosineAnnealingDecay, StepDecay, each with an optional
// linear warm-up) and a loss (MedicalSeg's weighted MixedLoss of CrossEntropyLoss and DiceLoss).
// Each is a closed set of library types behind one value type, so the trainer stays a template.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "../loss/cross_entropy.hpp"
#include "../loss/dice.hpp"
#include "../optim/adam.hpp"
#include "../optim/schedules.hpp"
#include "../optim/sgd.hpp"
#include "config.hpp"

namespace medseg::train {

/// One of the library's optimizers; the interface the trainer and schedules use.
template <class B = Cpu>
class AnyOptimizer {
 public:
  using Impl = std::variant<optim::SGD<B>, optim::Adam<B>, optim::AdamW<B>>;
  explicit AnyOptimizer(Impl impl) : impl_(std::move(impl)) {}

  void step() { std::visit([](auto& o) { o.step(); }, impl_); }
  void zero_grad() { std::visit([](auto& o) { o.zero_grad(); }, impl_); }
  double lr() const { return std::visit([](const auto& o) { return o.lr(); }, impl_); }
  void set_lr(double lr) { std::visit([&](auto& o) { o.set_lr(lr); }, impl_); }
  const nn::ParameterList<B>& parameters() const {
    return std::visit([](const auto& o) -> const nn::ParameterList<B>& { return o.parameters(); }, impl_);
  }
  void save_state(safetensors::Writer& w, const std::string& prefix = "optimizer.") const {
    std::visit([&](const auto& o) { o.save_state(w, prefix); }, impl_);
  }
  void load_state(const safetensors::File& f, const std::string& prefix = "optimizer.") {
    std::visit([&](auto& o) { o.load_state(f, prefix); }, impl_);
  }
  std::string_view kind() const { return std::visit([](const auto& o) { return std::decay_t<decltype(o)>::name; }, impl_); }
  Impl& impl() { return impl_; }

 private:
  Impl impl_;
};

/// One of the library's schedules over optimizer O. Holds a pointer to the optimizer: make it
/// after the optimizer has its final address.
template <class O>
class AnySchedule {
 public:
  using Impl = std::variant<optim::Scheduler<O, optim::PolyOptions>, optim::Scheduler<O, optim::CosineOptions>,
                            optim::Scheduler<O, optim::StepOptions>, optim::Scheduler<O, optim::ConstantOptions>,
                            optim::Scheduler<O, optim::Warmup<optim::PolyOptions>>,
                            optim::Scheduler<O, optim::Warmup<optim::CosineOptions>>,
                            optim::Scheduler<O, optim::Warmup<optim::StepOptions>>,
                            optim::Scheduler<O, optim::Warmup<optim::ConstantOptions>>>;
  explicit AnySchedule(Impl impl) : impl_(std::move(impl)) {}

  void step() { std::visit([](auto& s) { s.step(); }, impl_); }
  double lr_at(std::int64_t t) const { return std::visit([&](const auto& s) { return s.lr_at(t); }, impl_); }
  std::int64_t iteration() const { return std::visit([](const auto& s) { return s.iteration(); }, impl_); }
  void save_state(safetensors::Writer& w, const std::string& prefix = "scheduler.") const {
    std::visit([&](const auto& s) { s.save_state(w, prefix); }, impl_);
  }
  void load_state(const safetensors::File& f, const std::string& prefix = "scheduler.") {
    std::visit([&](auto& s) { s.load_state(f, prefix); }, impl_);
  }

 private:
  Impl impl_;
};

/// A weighted sum of cross-entropy and Dice terms (MedicalSeg's MixedLoss, flattened): a
/// loss::Loss, so loss::DeepSupervision can wrap it.
template <class B = Cpu>
class AnyLoss {
 public:
  using backend = B;
  using Term = std::variant<loss::CrossEntropy<B>, loss::Dice<B>>;
  static constexpr std::string_view name = "train::AnyLoss";

  void add(double weight, Term term) { terms_.push_back({weight, std::move(term)}); }

  template <loss::LabelElement L>
  float forward(const Tensor<float, B>& logits, const Tensor<L, B>& labels);
  Tensor<float, B> backward() const;
  void backward_accumulate(const Tensor<float, B>& grad, float scale) const;

  std::size_t size() const { return terms_.size(); }
  double weight(std::size_t i) const { return terms_[i].weight; }
  const Term& term(std::size_t i) const { return terms_[i].loss; }

 private:
  struct Weighted {
    double weight;
    Term loss;
  };
  std::vector<Weighted> terms_;
  Shape shape_;
  bool ready_ = false;
};

/// The optimizer of config["optimizer"] over `params`, at lr_scheduler.learning_rate.
template <class B>
AnyOptimizer<B> make_optimizer(const Config& config, nn::ParameterList<B> params);
/// The schedule of config["lr_scheduler"] driving `optimizer`; decay_steps defaults to iters.
template <class O>
AnySchedule<O> make_schedule(const Config& config, O& optimizer);
/// The loss of config["loss"].
template <class B = Cpu>
AnyLoss<B> make_loss(const Config& config);

// ----------------------------------------------------------------------------------------
// Implementation

template <class B>
template <loss::LabelElement L>
float AnyLoss<B>::forward(const Tensor<float, B>& logits, const Tensor<L, B>& labels) {
  require(!terms_.empty(), [&] {
    return ErrorInfo{.where = std::string(name), .field = "terms", .expected = "at least one", .actual = "none"};
  });
  ready_ = false;
  double total = 0;
  for (auto& t : terms_) total += t.weight * std::visit([&](auto& l) { return double(l.forward(logits, labels)); }, t.loss);
  shape_ = logits.shape();
  ready_ = true;
  return static_cast<float>(total);
}

template <class B>
Tensor<float, B> AnyLoss<B>::backward() const {
  auto grad = Tensor<float, B>::zeros(shape_);
  backward_accumulate(grad, 1.0f);
  return grad;
}

template <class B>
void AnyLoss<B>::backward_accumulate(const Tensor<float, B>& grad, float scale) const {
  require(ready_, [&] {
    return ErrorInfo{.where = std::string(name), .field = "backward", .expected = "a forward first", .actual = "none"};
  });
  for (const auto& t : terms_)
    std::visit([&](const auto& l) { l.backward_accumulate(grad, scale * static_cast<float>(t.weight)); }, t.loss);
}

namespace detail {

inline const nlohmann::json& section(const Config& config, const char* key) {
  require(config.json.contains(key), [&] {
    return ErrorInfo{.where = "config " + config.file.string(), .field = key, .expected = "a section", .actual = "missing"};
  });
  return config.json[key];
}

inline std::vector<float> float_list(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return {};
  return j[key].get<std::vector<float>>();
}

template <class B>
void add_loss_terms(AnyLoss<B>& out, const nlohmann::json& j, double weight) {
  const auto type = j["type"].get<std::string>();
  if (type == "MixedLoss") {
    const auto& losses = j["losses"];
    for (std::size_t i = 0; i < losses.size(); ++i)
      add_loss_terms(out, losses[i], weight * (j.contains("coef") ? j["coef"][i].get<double>() : 1.0));
  } else if (type == "CrossEntropyLoss") {
    loss::CrossEntropyOptions o;
    o.class_weights = float_list(j, "weight");
    o.ignore_index = j.value("ignore_index", o.ignore_index);
    out.add(weight, loss::CrossEntropy<B>{o});
  } else {
    loss::DiceOptions o;
    o.batch = true;  // MedicalSeg's DiceLoss sums over the batch
    o.class_weights = float_list(j, "weight");
    o.include_background = j.value("include_background", o.include_background);
    o.squared_denominator = j.value("squared_denominator", o.squared_denominator);
    o.batch = j.value("batch", o.batch);
    o.smooth_numerator = o.smooth_denominator = j.value("smooth", o.smooth_numerator);
    out.add(weight, loss::Dice<B>{o});
  }
}

}  // namespace detail

template <class B>
AnyOptimizer<B> make_optimizer(const Config& config, nn::ParameterList<B> params) {
  const auto& o = detail::section(config, "optimizer");
  const double lr = detail::section(config, "lr_scheduler")["learning_rate"].get<double>();
  const auto type = o["type"].get<std::string>();
  if (type == "sgd")
    return AnyOptimizer<B>{optim::SGD<B>{std::move(params), {.lr = lr, .momentum = o.value("momentum", 0.0),
                                                            .dampening = o.value("dampening", 0.0),
                                                            .nesterov = o.value("nesterov", false),
                                                            .weight_decay = o.value("weight_decay", 0.0)}}};
  optim::AdamOptions a{.lr = lr};
  if (type == "adamw") a.weight_decay = optim::AdamWOptions{}.weight_decay;
  if (o.contains("betas")) a.beta1 = o["betas"][0].get<double>(), a.beta2 = o["betas"][1].get<double>();
  a.beta1 = o.value("beta1", a.beta1);
  a.beta2 = o.value("beta2", a.beta2);
  a.eps = o.value("epsilon", a.eps);
  a.weight_decay = o.value("weight_decay", a.weight_decay);
  a.amsgrad = o.value("amsgrad", a.amsgrad);
  if (type == "adam") return AnyOptimizer<B>{optim::Adam<B>{std::move(params), a}};
  return AnyOptimizer<B>{
      optim::AdamW<B>{std::move(params), {a.lr, a.beta1, a.beta2, a.eps, a.weight_decay, a.amsgrad}}};
}

template <class O>
AnySchedule<O> make_schedule(const Config& config, O& optimizer) {
  using Impl = typename AnySchedule<O>::Impl;
  const auto& s = detail::section(config, "lr_scheduler");
  const auto type = s["type"].get<std::string>();
  const double lr = s["learning_rate"].get<double>();
  const std::int64_t iters = config.json.value("iters", std::int64_t{1000});
  const std::int64_t warmup = s.value("warmup_iters", std::int64_t{0});
  const std::int64_t steps = s.value("decay_steps", s.value("T_max", iters - warmup));
  optimizer.set_lr(lr);  // the schedule's base lr is the optimizer's when it is made
  auto build = [&](auto after) -> Impl {
    using After = decltype(after);
    if (warmup == 0) return Impl{std::in_place_type<optim::Scheduler<O, After>>, optimizer, after};
    optim::WarmupOptions w{.iters = warmup};
    if (s.contains("warmup_start_lr") && lr > 0) w.start_factor = s["warmup_start_lr"].get<double>() / lr;
    return Impl{std::in_place_type<optim::Scheduler<O, optim::Warmup<After>>>, optimizer, optim::Warmup<After>{w, after}};
  };
  if (type == "PolynomialDecay")
    return AnySchedule<O>{build(optim::PolyOptions{.total_iters = steps, .power = s.value("power", 0.9),
                                                   .end_lr = s.value("end_lr", 0.0)})};
  if (type == "CosineAnnealingDecay")
    return AnySchedule<O>{build(optim::CosineOptions{.total_iters = steps, .eta_min = s.value("eta_min", 0.0)})};
  if (type == "StepDecay")
    return AnySchedule<O>{build(optim::StepOptions{.step_size = s.value("step_size", steps), .gamma = s.value("gamma", 0.1)})};
  return AnySchedule<O>{build(optim::ConstantOptions{})};
}

template <class B>
AnyLoss<B> make_loss(const Config& config) {
  const auto& l = detail::section(config, "loss");
  AnyLoss<B> out;
  const auto& types = l["types"];
  for (std::size_t i = 0; i < types.size(); ++i)
    detail::add_loss_terms(out, types[i], l.contains("coef") ? l["coef"][i].get<double>() : 1.0);
  return out;
}

}  // namespace medseg::train
