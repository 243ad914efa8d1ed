// The iteration-based trainer of MedicalSeg and nnU-Net: take batches, forward, loss (deep
// supervision when the model returns several heads), backward, optional gradient clipping,
// optimizer and schedule step; log, evaluate, checkpoint and keep the best model on a fixed
// cadence. A run interrupted anywhere and resumed from its latest checkpoint ends bit-identical.
// With options.amp, forward, backward and evaluation run under AutocastScope (mixed precision).
#pragma once

#include <chrono>
#include <concepts>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../backends/autocast.hpp"
#include "../backends/ops.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../loss/deep_supervision.hpp"
#include "../optim/clip.hpp"
#include "checkpoint.hpp"
#include "report.hpp"

namespace medseg::train {

/// MedicalSeg's knobs (train.py's arguments), as plain values with its defaults where it has them.
struct TrainerOptions {
  std::int64_t iters = 1000;         // optimizer steps
  std::int64_t accumulation = 1;     // batches whose gradients sum into one step (mean of their losses)
  std::int64_t log_every = 10;       // MedicalSeg --log_iters
  std::int64_t save_every = 1000;    // MedicalSeg --save_interval; 0: only the final checkpoint
  std::int64_t eval_every = 0;       // 0: evaluate when saving (MedicalSeg's do_eval cadence)
  std::size_t keep_checkpoint_max = 5;  // MedicalSeg's default; 0 keeps every checkpoint
  std::filesystem::path save_dir = "output";  // MedicalSeg's default
  std::string resume{};              // "": fresh; "latest": newest iter_N in save_dir (fresh if none); or a folder
  std::uint64_t seed = 0;            // recorded in checkpoints; resuming under another seed is refused
  // Mixed precision, PyTorch's torch.autocast("cpu", dtype=torch.bfloat16) for convolutions: on
  // the CPU, every convolution of the forward and backward passes and of evaluation reads its
  // input, weights and incoming gradient as bfloat16 and accumulates and writes float32
  // (backends/cpu/math_mode.hpp; a transposed convolution's weight gradient stays float32).
  // Weights, optimizer state, activations, norms, losses and GEMMs stay float32. bfloat16's 8
  // exponent bits need no loss scaling. Pays on CPUs with AMX (Sapphire Rapids and later); it is
  // slower without, and refused where oneDNN has no bfloat16 convolution (AVX2) and on the GPU
  // (not implemented there yet). A run's results differ from float32 (~0.4% per convolution) but
  // stay deterministic: resume is exact with amp too.
  bool amp = false;
  std::optional<double> clip_grad_norm{};  // max global L2 norm of the gradients
  std::ostream* progress = &std::cout;     // the progress line; nullptr: silent
  std::optional<bool> tty{};               // rewrite the line with \r; default: isatty
};

/// Trains `Model` (the nn::Layer interface; forward_all/backward_all when it has deep
/// supervision heads) with `Loss` (loss::Loss), `Optimizer` (step, zero_grad, lr, parameters,
/// save_state/load_state) and `Scheduler` (step, save_state/load_state). The trainer holds
/// references: the objects must outlive it. A model with set_input_gradient is switched to
/// skip the gradient of its input (nothing reads it); switch it back to read one later.
///
///   train::Trainer trainer{net, loss, opt, sched, {.iters = 15000, .eval_every = 500, .save_dir = "out/vnet"}};
///   trainer.fit(loader, [&](auto& m) { return my_validation(m); });
///
/// The loader is anything with `Batch next()` whose batches have `image` [N,C,D,H,W] float and
/// `label` [N,1,D,H,W] integer, on the host or already on the model's backend (a GPU loader,
/// data/cuda.hpp: then nothing is copied); with `Batch batch(std::uint64_t b)` too
/// (data::Loader), a resumed run asks for its next batch by number, so resuming needs no
/// loader state.
template <class Model, class Loss, class Optimizer, class Scheduler>
class Trainer {
 public:
  using backend = typename Model::backend;
  using Evaluator = std::function<EvalResult(Model&)>;

  Trainer(Model& model, Loss& loss, Optimizer& optimizer, Scheduler& scheduler, TrainerOptions options = {});

  /// Trains until options.iters steps are done: resumes first when options.resume says so,
  /// evaluates every eval_every steps and after the last one (model in eval mode), saves
  /// every save_every steps and after the last one.
  template <class LoaderLike>
  void fit(LoaderLike& loader, Evaluator evaluator = {});

  /// One batch of a loop the caller drives: forward, loss, backward; every `accumulation`-th
  /// call also steps the optimizer and schedule and then logs, evaluates (with the evaluator
  /// given to set_evaluator or fit) and saves as fit does. Returns the batch's loss.
  template <class BatchLike>
  double step(const BatchLike& batch);

  void on_iteration(std::function<void(const IterationInfo&)> hook) { iteration_hooks_.push_back(std::move(hook)); }
  void on_eval(std::function<void(const EvalResult&)> hook) { eval_hooks_.push_back(std::move(hook)); }
  void set_evaluator(Evaluator evaluator) { evaluator_ = std::move(evaluator); }

  /// Applies options.resume; returns whether a checkpoint was loaded.
  bool resume();
  /// Loads checkpoint folder `dir` into the model, optimizer, scheduler and trainer state.
  void resume_from(const std::filesystem::path& dir);
  /// Writes save_dir/iter_N for the current iteration and rotates old ones.
  void save_checkpoint();
  /// Runs the evaluator now (eval mode), logs the result and updates best_model/.
  EvalResult evaluate();

  const TrainerState& state() const { return state_; }
  const TrainerOptions& options() const { return options_; }
  const Report& report() const { return report_; }

 private:
  static constexpr bool deep_supervised = requires(Model& m, const Tensor<float, backend>& x,
                                                   const std::vector<Tensor<float, backend>>& dys) {
    { m.forward_all(x) } -> std::convertible_to<std::vector<Tensor<float, backend>>>;
    m.backward_all(dys);
  };

  template <class L, class LabelBackend>
  float forward_backward(const Tensor<float, backend>& image, const Tensor<L, LabelBackend>& label);
  template <class LoaderLike>
  auto fetch(LoaderLike& loader, std::uint64_t b);
  void finish_iteration();
  void write_best(const EvalResult& result);
  /// dL/dy of one batch enters the sum of the step's gradients as dL/dy / accumulation.
  void scale_for_accumulation(const Tensor<float, backend>& grad) const;

  Model& model_;
  Loss& loss_;
  Optimizer& optimizer_;
  Scheduler& scheduler_;
  TrainerOptions options_;
  TrainerState state_;
  Report report_;
  Evaluator evaluator_;
  std::vector<std::function<void(const IterationInfo&)>> iteration_hooks_;
  std::vector<std::function<void(const EvalResult&)>> eval_hooks_;
  std::optional<loss::DeepSupervision<Loss>> deep_supervision_;

  // The step being accumulated, and throughput since the last log line.
  std::int64_t pending_batches_ = 0;
  double pending_loss_ = 0.0;
  std::int64_t samples_since_log_ = 0;
  std::int64_t last_evaluated_ = -1, last_saved_ = -1;
  bool use_next_ = true;
  bool resumed_ = false;
  std::chrono::steady_clock::time_point started_, last_log_;
  std::int64_t first_iteration_ = 0;  // of this process, for the ETA
};

/// Labels [N,1,D,H,W] resized by nearest neighbour (PyTorch's "nearest-exact": source index
/// floor((i + 0.5) * in / out)) to the spatial size of `like` [N,C,d,h,w]: the targets of the
/// lower-resolution deep-supervision heads.
/// On the labels' backend (ops::resize_nearest_exact): device labels stay on the device.
template <class L, class B>
Tensor<L, B> nearest_labels(const Tensor<L, B>& labels, const Shape& like);

// ----------------------------------------------------------------------------------------
// Implementation

template <class L, class B>
Tensor<L, B> nearest_labels(const Tensor<L, B>& labels, const Shape& like) {
  require(labels.rank() == 5 && like.rank() == 5, [&] {
    return ErrorInfo{.where = "train::nearest_labels", .field = "shapes", .expected = "labels [N,1,D,H,W] and a 5-D output",
                     .actual = labels.shape().to_string() + " and " + like.to_string()};
  });
  const Shape in = labels.shape();
  if (in[2] == like[2] && in[3] == like[3] && in[4] == like[4]) return labels;
  auto out = Tensor<L, B>::empty({in[0], in[1], like[2], like[3], like[4]});
  ops::resize_nearest_exact(labels.contiguous(), out);
  return out;
}

template <class Model, class Loss, class Optimizer, class Scheduler>
Trainer<Model, Loss, Optimizer, Scheduler>::Trainer(Model& model, Loss& loss, Optimizer& optimizer,
                                                    Scheduler& scheduler, TrainerOptions options)
    : model_(model), loss_(loss), optimizer_(optimizer), scheduler_(scheduler), options_(std::move(options)),
      report_(options_.save_dir, options_.progress, options_.tty) {
  // Training never reads the gradient of the images: the first layer skips computing it.
  if constexpr (requires { model.set_input_gradient(false); }) model_.set_input_gradient(false);
  auto positive = [](const char* field, std::int64_t v, std::int64_t min) {
    require(v >= min, [&] {
      return ErrorInfo{.where = "train::Trainer", .field = field, .expected = ">= " + std::to_string(min),
                       .actual = std::to_string(v)};
    });
  };
  positive("iters", options_.iters, 1);
  positive("accumulation", options_.accumulation, 1);
  positive("log_every", options_.log_every, 1);
  positive("save_every", options_.save_every, 0);
  positive("eval_every", options_.eval_every, 0);
  require(!options_.amp || autocast_supported<backend>(), [&] {
    return ErrorInfo{.where = "train::Trainer", .field = "amp", .expected = "false on " + std::string(backend::name),
                     .actual = "true", .detail = "mixed precision is implemented on the CPU only"};
  });
  if constexpr (std::is_same_v<backend, Cpu>) {
    require(!options_.amp || cpu::bf16_convolutions() != cpu::Bf16Convolutions::none, [&] {
      return ErrorInfo{.where = "train::Trainer", .field = "amp", .expected = "a CPU with bfloat16 convolutions (AVX-512)",
                       .actual = "none here", .detail = "oneDNN 2.6 has no bfloat16 convolution below AVX-512"};
    });
  }
  require(!options_.clip_grad_norm || *options_.clip_grad_norm > 0, [&] {
    return ErrorInfo{.where = "train::Trainer", .field = "clip_grad_norm", .expected = "> 0",
                     .actual = str(*options_.clip_grad_norm)};
  });
  state_.seed = options_.seed;
  started_ = last_log_ = std::chrono::steady_clock::now();
}

template <class Model, class Loss, class Optimizer, class Scheduler>
template <class LoaderLike>
void Trainer<Model, Loss, Optimizer, Scheduler>::fit(LoaderLike& loader, Evaluator evaluator) {
  if (evaluator) evaluator_ = std::move(evaluator);
  if (!resumed_) resume();
  report_.resume_at(state_.iteration);  // a fresh run starts an empty log
  // A fresh loader starts at batch 0: after a resume its next() is out of step with the run.
  use_next_ = state_.batches == 0;
  started_ = last_log_ = std::chrono::steady_clock::now();
  first_iteration_ = state_.iteration;
  model_.train(true);
  while (state_.iteration < options_.iters) step(fetch(loader, state_.batches));
  if (evaluator_ && last_evaluated_ != state_.iteration) evaluate();  // the final model is always scored
  if (last_saved_ != state_.iteration) save_checkpoint();
  report_.finish();
}

template <class Model, class Loss, class Optimizer, class Scheduler>
template <class LoaderLike>
auto Trainer<Model, Loss, Optimizer, Scheduler>::fetch(LoaderLike& loader, std::uint64_t b) {
  constexpr bool numbered = requires(LoaderLike& l) { l.batch(b); };
  if constexpr (numbered) {
    if (!use_next_) return loader.batch(b);
  }
  auto batch = loader.next();
  if constexpr (requires { batch.number; }) {
    if (batch.number != b) {
      if constexpr (numbered) {
        use_next_ = false;
        return loader.batch(b);
      } else {
        throw Error{ErrorInfo{.where = "train::Trainer::fit", .field = "loader batch number", .expected = std::to_string(b),
                              .actual = std::to_string(batch.number),
                              .detail = "a loader without batch(b) must be positioned at the run's next batch"}};
      }
    }
  }
  return batch;
}

template <class Model, class Loss, class Optimizer, class Scheduler>
template <class BatchLike>
double Trainer<Model, Loss, Optimizer, Scheduler>::step(const BatchLike& batch) {
  require(batch.image.defined() && batch.image.rank() == 5 && batch.label.defined(), [&] {
    return ErrorInfo{.where = "train::Trainer::step", .field = "batch",
                     .expected = "image [N,C,D,H,W] and label [N,1,D,H,W]",
                     .actual = batch.image.defined() ? batch.image.shape().to_string() + (batch.label.defined() ? "" : " without labels")
                                                     : "no image"};
  });
  if (!model_.training()) model_.train(true);
  if (pending_batches_ == 0) optimizer_.zero_grad();
  Tensor<float, backend> image;
  if constexpr (std::is_same_v<std::remove_cvref_t<decltype(batch.image)>, Tensor<float, backend>>)
    image = batch.image;
  else
    image = batch.image.template to<backend>();
  const double value = forward_backward(image, batch.label);
  pending_loss_ += value;
  samples_since_log_ += batch.image.size(0);
  ++state_.batches;
  if (++pending_batches_ == options_.accumulation) finish_iteration();
  return value;
}

template <class Model, class Loss, class Optimizer, class Scheduler>
void Trainer<Model, Loss, Optimizer, Scheduler>::scale_for_accumulation(const Tensor<float, backend>& grad) const {
  if (options_.accumulation > 1) ops::scale(grad, 1.0f / static_cast<float>(options_.accumulation), grad);
}

template <class Model, class Loss, class Optimizer, class Scheduler>
template <class L, class LabelBackend>
float Trainer<Model, Loss, Optimizer, Scheduler>::forward_backward(const Tensor<float, backend>& image,
                                                                    const Tensor<L, LabelBackend>& label) {
  auto on_device = []<class B>(const Tensor<L, B>& t) {
    if constexpr (std::is_same_v<B, backend>)
      return t;
    else
      return t.template to<backend>();
  };
  // Mixed precision for both passes when asked for; otherwise the process's setting stands.
  std::optional<AutocastScope> amp;
  if (options_.amp) amp.emplace(true);
  if constexpr (deep_supervised) {
    std::vector<Tensor<float, backend>> outputs = model_.forward_all(image);
    if (outputs.size() > 1) {
      if (!deep_supervision_ || deep_supervision_->weights().size() != outputs.size())
        deep_supervision_.emplace(loss_, outputs.size());
      std::vector<Tensor<L, backend>> labels;
      // The targets are resized where the model runs: a device batch never comes down for them.
      const Tensor<L, backend> full = on_device(label);
      for (const auto& o : outputs) labels.push_back(nearest_labels(full, o.shape()));
      const float value = deep_supervision_->forward(outputs, labels);
      auto grads = deep_supervision_->backward();
      for (const auto& g : grads) scale_for_accumulation(g);
      model_.backward_all(grads);
      return value;
    }
    const float value = loss_.forward(outputs.front(), on_device(label));
    auto grad = loss_.backward();
    scale_for_accumulation(grad);
    model_.backward_all({grad});
    return value;
  } else {
    const auto logits = model_.forward(image);
    const float value = loss_.forward(logits, on_device(label));
    auto grad = loss_.backward();
    scale_for_accumulation(grad);
    model_.backward(grad);
    return value;
  }
}

template <class Model, class Loss, class Optimizer, class Scheduler>
void Trainer<Model, Loss, Optimizer, Scheduler>::finish_iteration() {
  IterationInfo info;
  if (options_.clip_grad_norm) info.grad_norm = optim::clip_grad_norm(optimizer_.parameters(), *options_.clip_grad_norm);
  info.lr = optimizer_.lr();
  optimizer_.step();
  scheduler_.step();
  ++state_.iteration;
  info.iteration = state_.iteration;
  info.iters = options_.iters;
  info.loss = pending_loss_ / static_cast<double>(pending_batches_);
  pending_loss_ = 0.0;
  pending_batches_ = 0;

  const auto now = std::chrono::steady_clock::now();
  info.elapsed_seconds = std::chrono::duration<double>(now - started_).count();
  const double since_log = std::chrono::duration<double>(now - last_log_).count();
  info.samples_per_second = since_log > 0 ? static_cast<double>(samples_since_log_) / since_log : 0.0;
  for (const auto& hook : iteration_hooks_) hook(info);
  const std::int64_t it = state_.iteration;
  if (it % options_.log_every == 0 || it == options_.iters) {
    const double per_iteration = info.elapsed_seconds / static_cast<double>(std::max<std::int64_t>(1, it - first_iteration_));
    report_.iteration(info, per_iteration * static_cast<double>(options_.iters - it));
    samples_since_log_ = 0;
    last_log_ = now;
  }
  const std::int64_t eval_every = options_.eval_every > 0 ? options_.eval_every : options_.save_every;
  if (evaluator_ && eval_every > 0 && it % eval_every == 0) evaluate();
  if (options_.save_every > 0 && it % options_.save_every == 0) save_checkpoint();
}

template <class Model, class Loss, class Optimizer, class Scheduler>
EvalResult Trainer<Model, Loss, Optimizer, Scheduler>::evaluate() {
  require(static_cast<bool>(evaluator_), [&] {
    return ErrorInfo{.where = "train::Trainer::evaluate", .field = "evaluator", .expected = "one (fit's or set_evaluator's)",
                     .actual = "none"};
  });
  model_.eval();
  EvalResult result = [&] {
    std::optional<AutocastScope> amp;
    if (options_.amp) amp.emplace(true);
    return evaluator_(model_);
  }();
  model_.train(true);
  last_evaluated_ = state_.iteration;
  report_.evaluation(state_.iteration, result);
  if (result.mean_dice > state_.best_mean_dice) {
    state_.best_mean_dice = result.mean_dice;
    state_.best_iteration = state_.iteration;
    write_best(result);
  }
  for (const auto& hook : eval_hooks_) hook(result);
  report_.flush_plot();
  return result;
}

template <class Model, class Loss, class Optimizer, class Scheduler>
void Trainer<Model, Loss, Optimizer, Scheduler>::write_best(const EvalResult& result) {
  write_atomically(options_.save_dir / "best_model", [&](const std::filesystem::path& tmp) {
    nn::save_state_dict(model_, tmp / model_file);
    std::ofstream out(tmp / "best.json");
    out << nlohmann::json{{"iteration", state_.iteration},
                          {"mean_dice", result.mean_dice},
                          {"per_class_dice", result.per_class_dice}}
               .dump(2)
        << '\n';
  });
}

template <class Model, class Loss, class Optimizer, class Scheduler>
void Trainer<Model, Loss, Optimizer, Scheduler>::save_checkpoint() {
  require(pending_batches_ == 0, [&] {
    return ErrorInfo{.where = "train::Trainer::save_checkpoint", .field = "accumulated batches",
                     .expected = "none (save between steps)", .actual = std::to_string(pending_batches_)};
  });
  train::save_checkpoint(options_.save_dir / ("iter_" + std::to_string(state_.iteration)), model_, optimizer_,
                         scheduler_, state_);
  last_saved_ = state_.iteration;
  rotate_checkpoints(options_.save_dir, options_.keep_checkpoint_max);
  report_.flush_plot();
}

template <class Model, class Loss, class Optimizer, class Scheduler>
bool Trainer<Model, Loss, Optimizer, Scheduler>::resume() {
  if (options_.resume.empty()) return false;
  if (options_.resume == "latest") {
    const auto latest = latest_checkpoint(options_.save_dir);
    if (!latest) return false;  // nothing saved yet: a preempted job's first start
    resume_from(*latest);
  } else {
    resume_from(options_.resume);
  }
  return true;
}

template <class Model, class Loss, class Optimizer, class Scheduler>
void Trainer<Model, Loss, Optimizer, Scheduler>::resume_from(const std::filesystem::path& dir) {
  TrainerState s = load_checkpoint(dir, model_, optimizer_, scheduler_);
  require(s.seed == options_.seed, [&] {
    return ErrorInfo{.where = "train::Trainer::resume: " + dir.string(), .field = "seed",
                     .expected = std::to_string(options_.seed) + " (this run's)", .actual = std::to_string(s.seed),
                     .detail = "a resumed run must continue the random sequence it started"};
  });
  state_ = s;
  pending_batches_ = 0;
  pending_loss_ = 0.0;
  last_saved_ = last_evaluated_ = state_.iteration;
  resumed_ = true;
  use_next_ = false;
}

}  // namespace medseg::train
