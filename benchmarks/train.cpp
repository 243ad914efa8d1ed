// `medseg bench train` and `medseg bench infer`: one training iteration (forward, Dice + CE,
// backward, SGD step with momentum) and one eval-mode forward of nnU-Net's DynamicUNet and
// MedicalSeg's VNet, against the same architectures in PyTorch, in the same run: on the CPU
// with the same thread count, or with --device cuda on the same GPU (128^3 batch 2, float32
// and TF32, PyTorch with cudnn.benchmark as nnU-Net sets it, and our cuDNN search likewise).
// On a CPU with bfloat16 convolutions, each model runs again under bfloat16 autocast (ours:
// AutocastScope, as TrainerOptions::amp; PyTorch: torch.autocast around forward and loss).
// Each case runs in a fresh process on each side, so the peak memory it reports is that
// case's own and not what an earlier case left cached.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <concepts>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "harness.hpp"
#include "medseg/backends/autocast.hpp"
#include "medseg/core.hpp"
#include "medseg/loss.hpp"
#include "medseg/nnunet.hpp"
#include "medseg/optim.hpp"
#include "medseg/vnet.hpp"
#if defined(MEDSEG_WITH_CUDA) && MEDSEG_WITH_CUDA
#include "medseg/cuda.hpp"
#endif

extern char** environ;

namespace medseg::bench {

namespace {

enum class Architecture { dynamic_unet, vnet };
enum class Mode { train, infer };

/// One model at one input size. The peer gets the same fields on its command line.
struct ModelCase {
  const char* key;  // the peer's name for the architecture
  Architecture architecture;
  std::int64_t batch, size, classes;
  bool tf32 = false;  // GPU only: TF32 tensor cores for convolutions and GEMMs
  bool bf16 = false;  // CPU only: bfloat16 autocast (TrainerOptions::amp)
};

std::vector<ModelCase> model_cases(const Options& options, Mode mode) {
  if (options.device == "cuda") {
    // The GPU cases: training at 128^3 batch 2, inference of one 128^3 window.
    const std::int64_t size = options.quick ? 64 : 128, batch = mode == Mode::train ? 2 : 1;
    std::vector<ModelCase> cases;
    for (const bool tf32 : {false, true}) {
      cases.push_back({"dynamic_unet", Architecture::dynamic_unet, batch, size, 3, tf32});
      cases.push_back({"vnet", Architecture::vnet, batch, size, 3, tf32});
    }
    return cases;
  }
  // Quick runs (tests of the harness) use 32^3, the smallest size VNet's four 2x down-samplings
  // allow in every stage with room to spare: same code paths, an eighth of the work.
  const std::int64_t size = options.quick ? 32 : 64;
  std::vector<ModelCase> cases{{"dynamic_unet", Architecture::dynamic_unet, 2, size, 3},
                               {"vnet", Architecture::vnet, 1, size, 3}};
  if (cpu::bf16_convolutions() != cpu::Bf16Convolutions::none) {
    cases.push_back({"dynamic_unet", Architecture::dynamic_unet, 2, size, 3, false, true});
    cases.push_back({"vnet", Architecture::vnet, 1, size, 3, false, true});
  }
  return cases;
}

std::string case_label(const ModelCase& c, const Options& options) {
  const std::string model = c.architecture == Architecture::dynamic_unet ? "DynamicUNet 32-64-128-256" : "VNet width 16";
  const std::string precision = options.device == "cuda" ? (c.tf32 ? " tf32" : " fp32") : (c.bf16 ? " bf16" : "");
  return model + " " + std::to_string(c.size) + "^3 b" + std::to_string(c.batch) + precision;
}

/// What one side measured for one case, in one process of its own.
struct Measurement {
  double ms = 0;            // median over the timed iterations
  double peak_mib = 0;      // RSS high-water mark over the timed iterations minus the RSS before the model existed
  double hwm_mib = 0;       // the process's RSS high-water mark over the timed iterations, all of it
  double cache_peak_mib = -1;  // ours only: the host allocator's peak bytes in use
  // Training only: where the step's time goes, each phase timed to its end (medians over extra
  // iterations run after the timed ones, so the synchronisations do not touch `ms`).
  double forward_ms = 0, loss_ms = 0, backward_ms = 0, optimizer_ms = 0;
};

/// A training step cut where a profile wants it cut.
struct StepPhases {
  std::function<void()> forward, loss, backward, optimizer;
};

// ----------------------------------------------------------------------------------------
// Resident memory of this process, from /proc. Writing "5" to clear_refs (Linux >= 4.0)
// resets VmHWM to the current RSS, so the high-water mark covers the timed iterations alone.

double status_mib(const std::string& field) {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind(field + ":", 0) == 0) return std::stod(line.substr(field.size() + 1)) / 1024.0;  // kB
  return 0;
}

bool reset_high_water_mark() {
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";
  clear.flush();
  return static_cast<bool>(clear);
}

Tensor<std::int64_t> random_labels(std::int64_t batch, std::int64_t size, std::int64_t classes) {
  auto labels = Tensor<std::int64_t>::empty({batch, 1, size, size, size});
  auto u = Tensor<float>::empty(labels.shape());
  random::uniform(u, {.seed = 7});
  const float* src = u.data();
  std::int64_t* dst = labels.data();
  for (std::int64_t i = 0; i < labels.numel(); ++i)
    dst[i] = std::min(classes - 1, static_cast<std::int64_t>(src[i] * static_cast<float>(classes)));
  return labels;
}

/// Nearest down-sampling by an integer factor: the deep-supervision targets nnU-Net derives.
Tensor<std::int64_t> downsample_labels(const Tensor<std::int64_t>& full, std::int64_t factor) {
  const std::int64_t n = full.size(0), s = full.size(2), t = s / factor;
  auto out = Tensor<std::int64_t>::empty({n, 1, t, t, t});
  const std::int64_t* src = full.data();
  std::int64_t* dst = out.data();
  for (std::int64_t b = 0; b < n; ++b)
    for (std::int64_t z = 0; z < t; ++z)
      for (std::int64_t y = 0; y < t; ++y)
        for (std::int64_t x = 0; x < t; ++x)
          dst[((b * t + z) * t + y) * t + x] = src[((b * s + z * factor) * s + y * factor) * s + x * factor];
  return out;
}

/// Device memory, for the GPU cases: the caching allocator's peak bytes in tensors (PyTorch's
/// side reports torch.cuda.max_memory_allocated, the same quantity).
template <class B>
void reset_device_peak() {
#if defined(MEDSEG_WITH_CUDA) && MEDSEG_WITH_CUDA
  if constexpr (std::same_as<B, Cuda>) cuda::device_allocator().reset_peak();
#endif
}
template <class B>
double device_peak_mib() {
#if defined(MEDSEG_WITH_CUDA) && MEDSEG_WITH_CUDA
  if constexpr (std::same_as<B, Cuda>) return static_cast<double>(cuda::device_allocator().stats().peak_allocated) / (1 << 20);
#endif
  return -1;
}

/// Median ms of `repeats` calls of `step` after `warmup` untimed ones, and the memory the timed
/// calls needed: above `rss_before` on the host, or the device allocator's peak on a GPU.
template <class B>
Measurement time_and_memory(const std::function<void()>& step, int warmup, int repeats, double rss_before) {
  // A GPU step is timed to its end, not to the last kernel launch.
  const auto synchronized_step = [&] {
    step();
    B::synchronize();
  };
  for (int i = 0; i < warmup; ++i) synchronized_step();
  // Where clear_refs cannot be written, VmHWM stays the lifetime peak, warm-up included.
  (void)reset_high_water_mark();
  reset_device_peak<B>();
  Measurement m;
  m.ms = median_ms(synchronized_step, repeats, 0);
  m.hwm_mib = status_mib("VmHWM");
  m.peak_mib = B::is_host ? m.hwm_mib - rss_before : device_peak_mib<B>();
  m.cache_peak_mib = static_cast<double>(host_allocator().stats().peak_in_use) / (1 << 20);
  return m;
}

/// A training step timed whole (as above), then phase by phase over `repeats` more iterations.
template <class B>
Measurement time_step_and_phases(const StepPhases& p, int warmup, int repeats, double rss_before) {
  Measurement m = time_and_memory<B>(
      [&] {
        p.forward();
        p.loss();
        p.backward();
        p.optimizer();
      },
      warmup, repeats, rss_before);
  std::vector<double> phase[4];
  const std::function<void()>* parts[4] = {&p.forward, &p.loss, &p.backward, &p.optimizer};
  for (int i = 0; i < repeats; ++i)
    for (int k = 0; k < 4; ++k)
      phase[k].push_back(median_ms(
          [&] {
            (*parts[k])();
            B::synchronize();
          },
          1, 0));
  const auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  m.forward_ms = median(phase[0]);
  m.loss_ms = median(phase[1]);
  m.backward_ms = median(phase[2]);
  m.optimizer_ms = median(phase[3]);
  return m;
}

template <class B>
Measurement measure_ours(const ModelCase& c, Mode mode, int warmup, int repeats) {
  const double rss_before = status_mib("VmRSS");
  auto host_x = Tensor<float>::empty({c.batch, 1, c.size, c.size, c.size});
  random::normal(host_x, {.seed = 1});
  const auto x = host_x.to<B>();
  const auto host_labels = random_labels(c.batch, c.size, c.classes);
  const auto labels = host_labels.to<B>();

  if (c.architecture == Architecture::dynamic_unet) {
    // nnU-Net's 3d_fullres recipe: PlainConvUNet with deep supervision, DC_and_CE_loss (batch
    // Dice without background) at every head but the coarsest, SGD 0.01 / Nesterov 0.99 / 3e-5.
    models::DynamicUNet<B> net{{.in_channels = 1, .num_classes = c.classes}};
    if (mode == Mode::infer) {
      net.eval();
      return time_and_memory<B>([&] { (void)net.forward(x); }, warmup, repeats, rss_before);
    }
    net.train(true);
    net.set_input_gradient(false);  // as PyTorch's, whose input does not require grad (and our Trainer)
    const std::vector<Tensor<std::int64_t, B>> targets{labels, downsample_labels(host_labels, 2).to<B>(),
                                                       downsample_labels(host_labels, 4).to<B>()};
    loss::DeepSupervision ds{loss::dice_ce<B>({.include_background = false, .batch = true}), targets.size()};
    optim::SGD opt{nn::parameters(net), {.lr = 0.01, .momentum = 0.99, .nesterov = true, .weight_decay = 3e-5}};
    std::vector<Tensor<float, B>> outputs;
    return time_step_and_phases<B>({.forward = [&] { outputs = net.forward_all(x); },
                                    .loss = [&] { (void)ds.forward(outputs, targets); },
                                    .backward =
                                        [&] {
                                          outputs.clear();
                                          opt.zero_grad();
                                          (void)net.backward_all(ds.backward());
                                        },
                                    .optimizer = [&] { opt.step(); }},
                                   warmup, repeats, rss_before);
  }
  // MedicalSeg's VNet config: BatchNorm, PReLU, dropout on the two deepest levels, MixedLoss
  // (CrossEntropy + Dice, 1:1), SGD with momentum 0.9 and weight decay 1e-4.
  models::VNet<B> net{{.in_channels = 1, .num_classes = c.classes}};
  if (mode == Mode::infer) {
    net.eval();
    return time_and_memory<B>([&] { (void)net.forward(x); }, warmup, repeats, rss_before);
  }
  net.train(true);
  net.set_input_gradient(false);
  loss::Mixed loss{loss::CrossEntropy<B>{}, loss::Dice<B>{}};
  optim::SGD opt{nn::parameters(net), {.lr = 0.01, .momentum = 0.9, .weight_decay = 1e-4}};
  Tensor<float, B> output;
  return time_step_and_phases<B>({.forward = [&] { output = net.forward(x); },
                                  .loss = [&] { (void)loss.forward(output, labels); },
                                  .backward =
                                      [&] {
                                        output = {};
                                        opt.zero_grad();
                                        (void)net.backward(loss.backward());
                                      },
                                  .optimizer = [&] { opt.step(); }},
                                 warmup, repeats, rss_before);
}

Measurement measure_case(const ModelCase& c, Mode mode, const Options& options, int warmup, int repeats) {
  if (options.device == "cuda") {
#if defined(MEDSEG_WITH_CUDA) && MEDSEG_WITH_CUDA
    require(cuda::available(), [] {
      return ErrorInfo{.where = "medseg bench --device cuda", .field = "GPU", .expected = "a CUDA device",
                       .actual = "none visible"};
    });
    cuda::set_allow_tf32(c.tf32);
    return measure_ours<Cuda>(c, mode, warmup, repeats);
#else
    throw Error{{.where = "medseg bench --device cuda", .field = "build", .expected = "medseg built with CUDA",
                 .actual = "a CPU-only build"}};
#endif
  }
  const AutocastScope amp(c.bf16);
  return measure_ours<Cpu>(c, mode, warmup, repeats);
}

// ----------------------------------------------------------------------------------------
// Our side in a child process: the medseg command itself, started again as
// `medseg bench <name> --threads N [--quick]` with MEDSEG_BENCH_CHILD=<case index>:<file>.
// The child measures that one case, writes "ms peak_mib hwm_mib cache_peak_mib" to the file
// and reports nothing.

constexpr const char* child_variable = "MEDSEG_BENCH_CHILD";

struct ChildRequest {
  std::size_t index = 0;
  std::string file;
};

std::optional<ChildRequest> child_request() {
  const char* env = std::getenv(child_variable);
  if (!env || !*env) return std::nullopt;
  const std::string v = env;
  const auto colon = v.find(':');
  require(colon != std::string::npos, [&] {
    return ErrorInfo{.where = "medseg bench", .field = child_variable, .expected = "<case index>:<result file>",
                     .actual = "\"" + v + "\""};
  });
  return ChildRequest{static_cast<std::size_t>(std::stoul(v.substr(0, colon))), v.substr(colon + 1)};
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

Measurement run_child(std::string_view bench_name, std::size_t index, const Options& options) {
  char dir_template[] = "/tmp/medseg-bench-XXXXXX";
  require(mkdtemp(dir_template) != nullptr, [&] {
    return ErrorInfo{.where = "medseg bench " + std::string(bench_name), .field = "temporary directory",
                     .expected = "one created under /tmp", .actual = "mkdtemp failed"};
  });
  const std::string dir = dir_template, result = dir + "/result", log = dir + "/log";

  std::vector<std::string> args{"medseg", "bench", std::string(bench_name), "--threads", std::to_string(options.threads),
                                "--device", options.device};
  if (options.quick) args.emplace_back("--quick");
  std::vector<std::string> env{std::string(child_variable) + "=" + std::to_string(index) + ":" + result};
  for (char** e = environ; *e; ++e)
    if (std::string_view(*e).rfind(std::string(child_variable) + "=", 0) != 0) env.emplace_back(*e);
  auto pointers = [](std::vector<std::string>& v) {
    std::vector<char*> p;
    for (auto& s : v) p.push_back(s.data());
    p.push_back(nullptr);
    return p;
  };
  auto argv = pointers(args), envp = pointers(env);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, "/proc/self/exe", &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  int status = 0;
  if (spawned == 0) waitpid(pid, &status, 0);
  const std::string text = read_text(result), output = read_text(log);
  std::remove(result.c_str());
  std::remove(log.c_str());
  rmdir(dir.c_str());

  Measurement m;
  std::istringstream in(text);
  const bool ok = spawned == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
                  static_cast<bool>(in >> m.ms >> m.peak_mib >> m.hwm_mib >> m.cache_peak_mib >> m.forward_ms >> m.loss_ms >>
                                                      m.backward_ms >> m.optimizer_ms);
  require(ok, [&] {
    return ErrorInfo{.where = "medseg bench " + std::string(bench_name), .field = "child process for case " + std::to_string(index),
                     .expected = "a measurement",
                     .actual = spawned != 0 ? "posix_spawn of /proc/self/exe failed" : "exit status " + std::to_string(status),
                     .detail = output.substr(output.size() > 600 ? output.size() - 600 : 0)};
  });
  return m;
}

std::string mib(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

std::string tenths(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::vector<Result> run_models(std::string_view bench_name, Mode mode, const Options& options) {
  const auto cases = model_cases(options, mode);
  const bool gpu = options.device == "cuda";
  // Training iterations take seconds on the CPU: one warm-up builds every primitive and fills
  // the caches, then the median of three. Inference is cheaper, so five. A GPU iteration takes
  // tenths of a second, after a first one that searches cuDNN's algorithms: 2 warm-ups, 5 timed.
  const int warmup = gpu ? 2 : 1, repeats = options.quick ? 1 : gpu ? 5 : mode == Mode::train ? 3 : 5;
  if (const auto request = child_request()) {
    require(request->index < cases.size(), [&] {
      return ErrorInfo{.where = "medseg bench " + std::string(bench_name), .field = child_variable,
                       .expected = "a case index below " + std::to_string(cases.size()),
                       .actual = std::to_string(request->index)};
    });
    const Measurement m = measure_case(cases[request->index], mode, options, warmup, repeats);
    std::ofstream(request->file) << m.ms << " " << m.peak_mib << " " << m.hwm_mib << " " << m.cache_peak_mib << " "
                                 << m.forward_ms << " " << m.loss_ms << " " << m.backward_ms << " " << m.optimizer_ms << "\n";
    return {};
  }

  std::vector<Result> results;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const Measurement ours = run_child(bench_name, i, options);
    std::string why;
    const auto peer = run_python_peer(
        "train.py", {mode == Mode::train ? "train" : "infer", c.key, std::to_string(c.batch), std::to_string(c.size),
                     std::to_string(c.classes), std::to_string(options.threads), std::to_string(warmup),
                     std::to_string(repeats), options.device, c.tf32 ? "tf32" : c.bf16 ? "bf16" : "fp32"},
        why);
    Result r{case_label(c, options) + (mode == Mode::train ? " train" : " infer"), ours.ms,
             peer ? peer->value("peer", std::string("torch")) : "torch (" + why + ")", std::nullopt, ""};
    r.note = "peak MiB ours " + mib(ours.peak_mib);
    if (peer && peer->contains("ms")) {
      r.peer_ms = (*peer)["ms"].get<double>();
      r.note += " / torch " + mib((*peer)["peak_mib"].get<double>()) + " (whole process: ours " + mib(ours.hwm_mib) +
                " / torch " + mib((*peer)["hwm_mib"].get<double>()) + ")";
    }
    if (!gpu) r.note += "; host cache peak in use " + mib(ours.cache_peak_mib) + " MiB";
    if (mode == Mode::train)
      r.note += "; ours by phase, ms: forward " + tenths(ours.forward_ms) + ", loss " + tenths(ours.loss_ms) +
                ", backward " + tenths(ours.backward_ms) + ", optimizer " + tenths(ours.optimizer_ms);
    // Progress on stderr, so a run stopped by a time limit still shows the cases it finished.
    std::cerr << "medseg bench " << bench_name << ": " << r.case_name << ": ours " << r.ours_ms << " ms, "
              << (r.peer_ms ? std::to_string(*r.peer_ms) + " ms" : r.peer) << "\n";
    results.push_back(r);
  }
  results.back().note += "; ms: median of " + std::to_string(repeats) + " after " + std::to_string(warmup) +
                         " warm-up; peak MiB: " +
                         (gpu ? std::string("device memory in tensors at its peak over the timed iterations (ours: the "
                                            "caching allocator; torch: max_memory_allocated)")
                              : std::string("RSS high-water mark over the timed iterations minus the RSS before the "
                                            "model was built")) +
                         ", each case in its own process on each side";
  return results;
}

}  // namespace

std::vector<Result> run_train(const Options& options) { return run_models("train", Mode::train, options); }
std::vector<Result> run_infer(const Options& options) { return run_models("infer", Mode::infer, options); }

}  // namespace medseg::bench
