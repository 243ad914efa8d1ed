// Test support for whole-model parity: references made by
// tests/models/reference/make_model_reference.py (once per build tree, under a file lock),
// compared by relative error as the layer tests do. Models may return several outputs
// (deep supervision), so the comparison takes a forward and a backward function.
#pragma once

#include <catch2/catch.hpp>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "medseg/nn.hpp"

namespace medseg::test {

namespace fs = std::filesystem;

/// max |a - b| / max(max |b|, floor).
inline double relative_error(const Tensor<float>& a, const Tensor<float>& b, double floor = 1e-2) {
  REQUIRE(a.shape() == b.shape());
  const auto va = a.to_vector(), vb = b.to_vector();
  double diff = 0.0, scale = floor;
  for (std::size_t i = 0; i < va.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(va[i]) - vb[i]));
    scale = std::max(scale, std::abs(static_cast<double>(vb[i])));
  }
  return diff / scale;
}

/// The folder of reference files, generated on first use.
inline fs::path model_reference_dir() {
  static const fs::path dir = [] {
    const fs::path d = MEDSEG_MODELS_REFERENCE_DIR;
    const fs::path ref = fs::path(MEDSEG_SOURCE_DIR) / "tests/models/reference";
    const std::vector<fs::path> inputs{ref / "make_model_reference.py", ref / "vnet.py", ref / "dynamic_unet.py",
                                       ref / "vnet_deep_supervision.py", ref / "unet3d.py",
                                       fs::path(MEDSEG_SOURCE_DIR) / "tests/python/safetensors_lite.py"};
    fs::create_directories(d);
    const fs::path stamp = d / "stamp";
    auto fresh = [&] {
      if (!fs::exists(stamp)) return false;
      for (const auto& f : inputs)
        if (fs::last_write_time(stamp) < fs::last_write_time(f)) return false;
      return true;
    };
    if (fresh()) return d;
    // CTest runs test cases as parallel processes: one generates, the others wait.
    const int lock = ::open((d / "lock").c_str(), O_CREAT | O_RDWR, 0644);
    REQUIRE(lock >= 0);
    ::flock(lock, LOCK_EX);
    if (!fresh()) {
      const std::string cmd = "/usr/bin/python3 '" + inputs[0].string() + "' '" + d.string() + "' > '" +
                              (d / "log.txt").string() + "' 2>&1";
      const int rc = std::system(cmd.c_str());
      INFO("reference script failed; see " << (d / "log.txt") << " (needs /usr/bin/python3 with torch: scripts/setup.sh --python)");
      REQUIRE(rc == 0);
      std::FILE* f = std::fopen(stamp.c_str(), "w");
      REQUIRE(f);
      std::fclose(f);
    }
    ::flock(lock, LOCK_UN);
    ::close(lock);
    return d;
  }();
  return dir;
}

/// Names in the reference state dict that are aliases of other entries (nnU-Net's
/// ConvDropoutNormReLU.all_modules), which a model need not have.
inline bool is_alias(const std::string& name) { return name.find(".all_modules.") != std::string::npos; }

/// The scale below which a parameter gradient counts as zero. A conv bias right before a
/// norm has a gradient of exactly zero (the norm removes any per-channel shift), so float32
/// round-off summed over a volume can only be judged against the gradient scale of the same
/// conv's weight; every other gradient keeps the layer tests' floor of 1e-2.
inline double gradient_floor(const safetensors::File& io, const std::string& path, const Tensor<float>& ref) {
  constexpr double floor = 1e-2;
  if (!path.ends_with(".bias")) return floor;
  const std::string weight = "grad." + path.substr(0, path.size() - 4) + "weight";
  if (!io.contains(weight)) return floor;
  double ref_scale = 0.0, weight_scale = 0.0;
  for (float v : ref.to_vector()) ref_scale = std::max(ref_scale, std::abs(static_cast<double>(v)));
  for (float v : io.get<float>(weight).to_vector()) weight_scale = std::max(weight_scale, std::abs(static_cast<double>(v)));
  return ref_scale < 1e-4 * weight_scale ? std::max(floor, weight_scale) : floor;
}

struct ModelParityOptions {
  bool train = true;
  double forward_tolerance = 1e-4;
  double gradient_tolerance = 1e-3;
};

/// Loads the case's weights into `model` (every model tensor must be present; the file may
/// hold only aliases beyond them), checks the parameter count and that the model's names are
/// exactly the file's non-alias names, runs `forward` on the reference input, compares every
/// output and buffer, then (training) runs `backward` on the reference output gradients and
/// compares the input gradient and every parameter gradient.
template <nn::Parametric M, class Forward, class Backward>
void check_model_parity(M& model, const std::string& name, Forward forward, Backward backward, ModelParityOptions o = {}) {
  INFO("reference case " << name);
  const fs::path dir = model_reference_dir();
  const auto weights = safetensors::File::read(dir / (name + ".weights.safetensors"));
  nn::load_state_dict(model, weights, {.strict = false});
  std::set<std::string> ours, theirs;
  model.visit_parameters([&](nn::Parameter<Cpu>& p) { ours.insert(p.path); });
  model.visit_buffers([&](nn::Buffer<Cpu>& b) { ours.insert(b.path); });
  for (const auto& n : weights.names())
    if (!is_alias(n)) theirs.insert(n);
  CHECK(ours == theirs);
  const auto io = safetensors::File::read(dir / (name + ".io.safetensors"));
  CHECK(nn::count_parameters(nn::parameters(model)) == io.get<std::int64_t>("parameter_count").to_vector().at(0));
  model.train(o.train);
  nn::zero_grad(model);
  const std::vector<Tensor<float>> ys = forward(io.get<float>("input"));
  std::vector<Tensor<float>> dys;
  for (std::size_t i = 0; io.contains("output." + std::to_string(i)); ++i) {
    INFO("output " << i);
    REQUIRE(i < ys.size());
    CHECK(relative_error(ys[i], io.get<float>("output." + std::to_string(i))) <= o.forward_tolerance);
    dys.push_back(io.get<float>("grad_output." + std::to_string(i)));
  }
  CHECK(ys.size() == dys.size());
  model.visit_buffers([&](nn::Buffer<Cpu>& b) {
    INFO("buffer " << b.path);
    if (b.stored_as == DType::int64)
      CHECK(b.value.to_vector() == io.get<std::int64_t>("after." + b.path).astype<float>().to_vector());
    else
      CHECK(relative_error(b.value, io.get<float>("after." + b.path)) <= o.forward_tolerance);
  });
  if (!o.train) return;
  const Tensor<float> dx = backward(dys);
  CHECK(relative_error(dx, io.get<float>("grad_input")) <= o.gradient_tolerance);
  model.visit_parameters([&](nn::Parameter<Cpu>& p) {
    INFO("gradient of " << p.path);
    const auto ref = io.get<float>("grad." + p.path);
    CHECK(relative_error(p.grad, ref, gradient_floor(io, p.path, ref)) <= o.gradient_tolerance);
  });
}

/// The same for a single-output Layer.
template <nn::Layer M>
void check_model_parity(M& model, const std::string& name, ModelParityOptions o = {}) {
  check_model_parity(
      model, name, [&](const Tensor<float>& x) { return std::vector<Tensor<float>>{model.forward(x)}; },
      [&](const std::vector<Tensor<float>>& dys) { return model.backward(dys.at(0)); }, o);
}

}  // namespace medseg::test
