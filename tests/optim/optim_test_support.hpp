// Shared by the tests of optim/: the torch.optim reference file (made once per build
// directory by optim_reference.py), parameters built from it, schedules read from the cases'
// JSON, and the 20-step trajectory comparison.
#pragma once

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "medseg/nn/safetensors.hpp"
#include "medseg/optim.hpp"

namespace optim_test {

using namespace medseg;
namespace fs = std::filesystem;
using nlohmann::json;

inline constexpr int steps = 20;
inline constexpr int param_count = 3;

/// The reference file, regenerated when missing or older than the script. Exits with 77
/// (CTest's skip) when Debian's python3-torch is not installed.
inline const safetensors::File& reference() {
  static const safetensors::File file = [] {
    const fs::path script = fs::path(MEDSEG_SOURCE_DIR) / "tests/optim/optim_reference.py";
    const fs::path out = fs::path(MEDSEG_TEST_BINARY_DIR) / "optim_reference.safetensors";
    // CTest runs test cases as parallel processes: the first to take the lock writes the
    // file, the others wait for it and then find it fresh.
    const int lock = ::open((out.string() + ".lock").c_str(), O_CREAT | O_RDWR, 0644);
    REQUIRE(lock >= 0);
    ::flock(lock, LOCK_EX);
    if (!fs::exists(out) || fs::last_write_time(out) < fs::last_write_time(script)) {
      if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) {
        WARN("skipped: /usr/bin/python3 has no torch (scripts/setup.sh --python installs python3-torch)");
        std::exit(77);
      }
      const std::string cmd = "/usr/bin/python3 -W ignore '" + script.string() + "' '" + out.string() + "'";
      REQUIRE(std::system(cmd.c_str()) == 0);
    }
    ::close(lock);  // releases the lock
    return safetensors::File::read(out);
  }();
  return file;
}

/// The cases whose optimizer is one of `kinds`.
inline std::vector<std::pair<std::string, json>> cases(std::initializer_list<std::string> kinds) {
  std::vector<std::pair<std::string, json>> out;
  for (const auto& [key, text] : reference().metadata()) {
    if (key.rfind("case.", 0) != 0) continue;
    auto j = json::parse(text);
    if (std::find(kinds.begin(), kinds.end(), j.at("opt").get<std::string>()) != kinds.end())
      out.emplace_back(key.substr(5), j);
  }
  REQUIRE(!out.empty());
  return out;
}

/// Fresh parameters "p0".."p2" at the stored initial values; those in no_decay skip decay.
inline nn::ParameterList<Cpu> initial_parameters(const json& c) {
  nn::ParameterList<Cpu> params;
  const auto no_decay = c.value("no_decay", std::vector<int>{});
  for (int j = 0; j < param_count; ++j) {
    const bool decay = std::find(no_decay.begin(), no_decay.end(), j) == no_decay.end();
    params.push_back(nn::make_parameter("p" + std::to_string(j), reference().get<float>("init." + std::to_string(j)), decay));
  }
  return params;
}

/// Sets every gradient to the stored gradient of step t.
inline void set_gradients(const nn::ParameterList<Cpu>& params, int t) {
  for (int j = 0; j < param_count; ++j) {
    const auto all = reference().get<float>("grad." + std::to_string(j));
    params[static_cast<std::size_t>(j)].grad.copy_from(all[t]);
  }
}

/// Calls f(options) with the schedule options of a JSON schedule without warm-up.
template <class F>
void with_basic_schedule(const json& s, F&& f) {
  const std::string kind = s.at("kind");
  if (kind == "constant") return f(optim::ConstantOptions{});
  if (kind == "step") return f(optim::StepOptions{.step_size = s.at("step_size"), .gamma = s.at("gamma")});
  if (kind == "cosine") return f(optim::CosineOptions{.total_iters = s.at("total_iters"), .eta_min = s.at("eta_min")});
  if (kind == "poly")
    return f(optim::PolyOptions{.total_iters = s.at("total_iters"), .power = s.at("power"),
                                .end_lr = s.value("end_lr", 0.0)});
  FAIL("unknown schedule " << kind);
}

/// Calls f(options) with the schedule options of any JSON schedule.
template <class F>
void with_schedule(const json& s, F&& f) {
  if (s.at("kind") != "warmup") return with_basic_schedule(s, f);
  const optim::WarmupOptions w{.iters = s.at("iters"), .start_factor = s.at("start_factor")};
  with_basic_schedule(s.at("after"), [&](auto after) { f(optim::Warmup<decltype(after)>{w, after}); });
}

/// Calls f(optimizer) with the case's optimizer over `params`.
template <class F>
void with_optimizer(const json& c, const nn::ParameterList<Cpu>& params, F&& f) {
  const std::string kind = c.at("opt");
  if (kind == "sgd") {
    optim::SGD opt{params, {.lr = c.at("lr"), .momentum = c.value("momentum", 0.0), .dampening = c.value("dampening", 0.0),
                            .nesterov = c.value("nesterov", false), .weight_decay = c.value("weight_decay", 0.0)}};
    return f(opt);
  }
  const double lr = c.at("lr"), b1 = c.value("beta1", 0.9), b2 = c.value("beta2", 0.999), eps = c.value("eps", 1e-8);
  const double wd = c.value("weight_decay", 0.0);
  const bool ams = c.value("amsgrad", false);
  if (kind == "adam") {
    optim::Adam opt{params, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps, .weight_decay = wd, .amsgrad = ams}};
    return f(opt);
  }
  optim::AdamW opt{params, {.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps, .weight_decay = wd, .amsgrad = ams}};
  f(opt);
}

/// One iteration as the reference script runs it: gradients, optional clipping, step, schedule.
template <class O, class S>
double iterate(const json& c, const nn::ParameterList<Cpu>& params, O& opt, S& sched, int t) {
  set_gradients(params, t);
  double norm = 0;
  if (c.contains("clip"))
    norm = optim::clip_grad_norm(params, c.at("clip").get<double>(),
                                 {.norm_type = c.value("clip_norm_type", "2") == "inf" ? INFINITY : 2.0});
  opt.step();
  sched.step();
  return norm;
}

/// Runs case `name` for 20 steps and compares lr, clip norm and parameters after every step.
inline void check_trajectory(const std::string& name, const json& c) {
  INFO(name << ": " << c.dump());
  const auto& ref = reference();
  const auto params = initial_parameters(c);
  const auto lrs = ref.get<double>(name + ".lr");
  with_optimizer(c, params, [&](auto& opt) {
    with_schedule(c.at("schedule"), [&](auto schedule) {
      optim::Scheduler sched{opt, schedule};
      for (int t = 0; t < steps; ++t) {
        INFO("step " << t);
        CHECK(opt.lr() == Approx(lrs.data()[t]).epsilon(1e-12));
        const double norm = iterate(c, params, opt, sched, t);
        if (c.contains("clip")) CHECK(norm == Approx(ref.get<double>(name + ".norm").data()[t]).epsilon(1e-6));
        for (int j = 0; j < param_count; ++j) {
          const auto expected = ref.get<float>(name + ".traj." + std::to_string(j))[t].to_vector();
          const auto ours = params[static_cast<std::size_t>(j)].value.to_vector();
          float diff = 0, scale = 0;
          for (std::size_t i = 0; i < ours.size(); ++i) {
            diff = std::max(diff, std::abs(ours[i] - expected[i]));
            scale = std::max(scale, std::abs(expected[i]));
          }
          INFO("parameter " << j << ": max |ours - torch| = " << diff << ", max |torch| = " << scale);
          CHECK(diff <= 1e-5f * scale);
        }
      }
    });
  });
}

/// Runs case `name` 20 steps straight, and 10 steps + save + restore into fresh objects + 10
/// steps; the two must end bit-identical.
inline void check_resume(const std::string& name, const json& c, const fs::path& dir) {
  INFO(name << ": " << c.dump());
  std::vector<std::vector<float>> straight;
  {
    const auto params = initial_parameters(c);
    with_optimizer(c, params, [&](auto& opt) {
      with_schedule(c.at("schedule"), [&](auto schedule) {
        optim::Scheduler sched{opt, schedule};
        for (int t = 0; t < steps; ++t) iterate(c, params, opt, sched, t);
      });
    });
    for (const auto& p : params) straight.push_back(p.value.to_vector());
  }
  const fs::path file = dir / (name + ".safetensors");
  {
    const auto params = initial_parameters(c);
    with_optimizer(c, params, [&](auto& opt) {
      with_schedule(c.at("schedule"), [&](auto schedule) {
        optim::Scheduler sched{opt, schedule};
        for (int t = 0; t < steps / 2; ++t) iterate(c, params, opt, sched, t);
        safetensors::Writer w;
        for (const auto& p : params) w.add(p.path, p.value);
        opt.save_state(w);
        sched.save_state(w);
        w.save(file);
      });
    });
  }
  const auto saved = safetensors::File::read(file);
  const auto params = initial_parameters(c);
  for (const auto& p : params) p.value.copy_from(saved.get<float>(p.path, p.value.shape()));
  with_optimizer(c, params, [&](auto& opt) {
    with_schedule(c.at("schedule"), [&](auto schedule) {
      optim::Scheduler sched{opt, schedule};
      opt.load_state(saved);
      sched.load_state(saved);
      CHECK(sched.iteration() == steps / 2);
      CHECK(opt.steps() == steps / 2);
      for (int t = steps / 2; t < steps; ++t) iterate(c, params, opt, sched, t);
    });
  });
  for (int j = 0; j < param_count; ++j) CHECK(params[static_cast<std::size_t>(j)].value.to_vector() == straight[static_cast<std::size_t>(j)]);
}

inline fs::path temp_dir() {
  auto d = fs::temp_directory_path() / ("medseg_optim_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

}  // namespace optim_test
