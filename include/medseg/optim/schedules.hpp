// Learning-rate schedules, stepped once per iteration: polynomial decay (nnU-Net, MedicalSeg),
// cosine annealing, step decay, and a linear warm-up that runs before any of them. A schedule
// is a pure function of (base lr, iteration), so a run resumed from a checkpoint gets the same
// learning rates as one that never stopped; the scheduler only counts and sets.
#pragma once

#include <cmath>
#include <cstdint>
#include <numbers>
#include <string>
#include <string_view>

#include "../core/error.hpp"
#include "../nn/safetensors.hpp"
#include "optimizer.hpp"

namespace medseg::optim {

/// lr(t) = (base - end_lr) * (1 - min(t, T) / T)^power + end_lr. nnU-Net: power 0.9,
/// end 0 (torch's PolynomialLR); MedicalSeg/Paddle's PolynomialDecay adds end_lr.
struct PolyOptions {
  std::int64_t total_iters = 0;
  double power = 0.9;
  double end_lr = 0.0;

  static constexpr std::string_view name = "optim::PolyLR";
  double lr(double base, std::int64_t t) const;
  void validate() const;
};

/// lr(t) = eta_min + (base - eta_min) (1 + cos(pi min(t, T) / T)) / 2 (torch's
/// CosineAnnealingLR closed form; held at eta_min after T instead of rising again).
struct CosineOptions {
  std::int64_t total_iters = 0;
  double eta_min = 0.0;

  static constexpr std::string_view name = "optim::CosineLR";
  double lr(double base, std::int64_t t) const;
  void validate() const;
};

/// lr(t) = base * gamma^floor(t / step_size) (torch's StepLR).
struct StepOptions {
  std::int64_t step_size = 0;
  double gamma = 0.1;

  static constexpr std::string_view name = "optim::StepLR";
  double lr(double base, std::int64_t t) const;
  void validate() const;
};

/// The base learning rate throughout: what a warm-up hands over to when nothing follows it.
struct ConstantOptions {
  static constexpr std::string_view name = "optim::ConstantLR";
  double lr(double base, std::int64_t) const { return base; }
  void validate() const {}
};

/// lr(t) = base * (start_factor + (1 - start_factor) t / iters) for t < iters (torch's
/// LinearLR), then the `after` schedule counted from the end of the warm-up (torch's
/// SequentialLR with one milestone at `iters`).
struct WarmupOptions {
  std::int64_t iters = 0;
  double start_factor = 1e-3;
};

template <class After>
struct Warmup {
  WarmupOptions warmup;
  After after;

  static constexpr std::string_view name = "optim::WarmupLR";
  double lr(double base, std::int64_t t) const;
  void validate() const;
};

/// Drives `optimizer.set_lr` from a schedule. The base lr is the optimizer's lr when the
/// scheduler is made; the constructor sets lr(0), and each step() advances one iteration.
template <LrControlled O, class Schedule>
class Scheduler {
 public:
  Scheduler(O& optimizer, Schedule schedule);

  /// Advances one iteration and sets the optimizer's lr.
  void step();
  std::int64_t iteration() const { return iteration_; }
  double base_lr() const { return base_lr_; }
  /// The lr the schedule gives at iteration t.
  double lr_at(std::int64_t t) const { return schedule_.lr(base_lr_, t); }
  const Schedule& schedule() const { return schedule_; }

  /// Writes "<prefix>iteration" and "<prefix>base_lr" as checkpoint metadata.
  void save_state(safetensors::Writer& writer, const std::string& prefix = "scheduler.") const;
  /// Restores them and sets the optimizer's lr for the restored iteration.
  void load_state(const safetensors::File& file, const std::string& prefix = "scheduler.");

 private:
  O* optimizer_;
  Schedule schedule_;
  double base_lr_;
  std::int64_t iteration_ = 0;
};

///   optim::PolyLR sched{opt, {.total_iters = 1000, .power = 0.9}};  sched.step();
template <LrControlled O>
struct PolyLR : Scheduler<O, PolyOptions> {
  PolyLR(O& o, PolyOptions s) : Scheduler<O, PolyOptions>(o, s) {}
};
template <LrControlled O>
struct CosineLR : Scheduler<O, CosineOptions> {
  CosineLR(O& o, CosineOptions s) : Scheduler<O, CosineOptions>(o, s) {}
};
template <LrControlled O>
struct StepLR : Scheduler<O, StepOptions> {
  StepLR(O& o, StepOptions s) : Scheduler<O, StepOptions>(o, s) {}
};
///   optim::WarmupLR sched{opt, {.iters = 50}, optim::PolyOptions{.total_iters = 950}};
template <LrControlled O, class After = ConstantOptions>
struct WarmupLR : Scheduler<O, Warmup<After>> {
  WarmupLR(O& o, WarmupOptions w, After after = {}) : Scheduler<O, Warmup<After>>(o, {w, after}) {}
};

template <class O>
PolyLR(O&, PolyOptions) -> PolyLR<O>;
template <class O>
CosineLR(O&, CosineOptions) -> CosineLR<O>;
template <class O>
StepLR(O&, StepOptions) -> StepLR<O>;
template <class O>
WarmupLR(O&, WarmupOptions) -> WarmupLR<O, ConstantOptions>;
template <class O, class After>
WarmupLR(O&, WarmupOptions, After) -> WarmupLR<O, After>;

// ----------------------------------------------------------------------------------------
// Implementation

inline double PolyOptions::lr(double base, std::int64_t t) const {
  const double done = static_cast<double>(std::min(t, total_iters)) / static_cast<double>(total_iters);
  return (base - end_lr) * std::pow(1.0 - done, power) + end_lr;
}

inline void PolyOptions::validate() const {
  detail::require_option(total_iters > 0, name, "total_iters", "> 0", static_cast<double>(total_iters));
  detail::require_option(power >= 0, name, "power", ">= 0", power);
  detail::require_option(end_lr >= 0, name, "end_lr", ">= 0", end_lr);
}

inline double CosineOptions::lr(double base, std::int64_t t) const {
  const double done = static_cast<double>(std::min(t, total_iters)) / static_cast<double>(total_iters);
  return eta_min + (base - eta_min) * (1.0 + std::cos(std::numbers::pi * done)) / 2.0;
}

inline void CosineOptions::validate() const {
  detail::require_option(total_iters > 0, name, "total_iters", "> 0", static_cast<double>(total_iters));
  detail::require_option(eta_min >= 0, name, "eta_min", ">= 0", eta_min);
}

inline double StepOptions::lr(double base, std::int64_t t) const {
  return base * std::pow(gamma, static_cast<double>(t / step_size));
}

inline void StepOptions::validate() const {
  detail::require_option(step_size > 0, name, "step_size", "> 0", static_cast<double>(step_size));
  detail::require_option(gamma > 0, name, "gamma", "> 0", gamma);
}

template <class After>
double Warmup<After>::lr(double base, std::int64_t t) const {
  if (t >= warmup.iters) return after.lr(base, t - warmup.iters);
  const double f = warmup.start_factor +
                   (1.0 - warmup.start_factor) * static_cast<double>(t) / static_cast<double>(warmup.iters);
  return base * f;
}

template <class After>
void Warmup<After>::validate() const {
  detail::require_option(warmup.iters >= 0, name, "iters", ">= 0", static_cast<double>(warmup.iters));
  detail::require_option(warmup.start_factor > 0 && warmup.start_factor <= 1, name, "start_factor", "in (0, 1]",
                         warmup.start_factor);
  after.validate();
}

template <LrControlled O, class Schedule>
Scheduler<O, Schedule>::Scheduler(O& optimizer, Schedule schedule)
    : optimizer_(&optimizer), schedule_(std::move(schedule)), base_lr_(optimizer.lr()) {
  schedule_.validate();
  optimizer_->set_lr(lr_at(0));
}

template <LrControlled O, class Schedule>
void Scheduler<O, Schedule>::step() {
  ++iteration_;
  optimizer_->set_lr(lr_at(iteration_));
}

template <LrControlled O, class Schedule>
void Scheduler<O, Schedule>::save_state(safetensors::Writer& writer, const std::string& prefix) const {
  writer.set_metadata(prefix + "type", std::string(Schedule::name));
  writer.set_metadata(prefix + "iteration", std::to_string(iteration_));
  writer.set_metadata(prefix + "base_lr", detail::exact(base_lr_));
}

template <LrControlled O, class Schedule>
void Scheduler<O, Schedule>::load_state(const safetensors::File& file, const std::string& prefix) {
  detail::check_kind(file, prefix, Schedule::name);
  iteration_ = static_cast<std::int64_t>(detail::metadata_number(file, prefix + "iteration", Schedule::name));
  base_lr_ = detail::metadata_number(file, prefix + "base_lr", Schedule::name);
  optimizer_->set_lr(lr_at(iteration_));
}

}  // namespace medseg::optim
