// Test support for the layer tests: PyTorch parity against references made by
// tests/nn/reference/make_layer_reference.py (run once per build tree, under a file lock,
// whichever test process gets there first), and tensor comparisons by relative error.
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

#include "medseg/nn.hpp"

namespace medseg::test {

namespace fs = std::filesystem;

/// max |a - b| / max(max |b|, floor): the error relative to the reference's scale. The floor
/// keeps gradients that are zero in exact arithmetic (a conv bias before a norm) from
/// dividing float32 round-off by double round-off.
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
inline fs::path reference_dir() {
  static const fs::path dir = [] {
    const fs::path d = MEDSEG_NN_REFERENCE_DIR;
    const fs::path script = fs::path(MEDSEG_SOURCE_DIR) / "tests/nn/reference/make_layer_reference.py";
    fs::create_directories(d);
    const fs::path stamp = d / "stamp";
    const fs::path lite = fs::path(MEDSEG_SOURCE_DIR) / "tests/python/safetensors_lite.py";
    auto fresh = [&] {
      return fs::exists(stamp) && fs::last_write_time(stamp) >= fs::last_write_time(script) &&
             fs::last_write_time(stamp) >= fs::last_write_time(lite);
    };
    if (fresh()) return d;
    // CTest runs test cases as parallel processes: one generates, the others wait.
    const int lock = ::open((d / "lock").c_str(), O_CREAT | O_RDWR, 0644);
    REQUIRE(lock >= 0);
    ::flock(lock, LOCK_EX);
    if (!fresh()) {
      const std::string cmd = "/usr/bin/python3 '" + script.string() + "' '" + d.string() + "' > '" +
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

struct ParityOptions {
  bool train = true;
  double forward_tolerance = 1e-4;
  double gradient_tolerance = 1e-3;
};

/// Loads the case's PyTorch weights into `layer` (strict), runs forward (and backward in
/// training mode) on the reference input, and compares output, input gradient, every
/// parameter gradient and every buffer after the forward.
template <nn::Layer L>
void check_parity(L& layer, const std::string& name, ParityOptions o = {}) {
  INFO("reference case " << name);
  const fs::path dir = reference_dir();
  nn::load_state_dict(layer, dir / (name + ".weights.safetensors"));
  const auto io = safetensors::File::read(dir / (name + ".io.safetensors"));
  layer.train(o.train);
  nn::zero_grad(layer);
  const auto y = layer.forward(io.get<float>("input"));
  CHECK(relative_error(y, io.get<float>("output")) <= o.forward_tolerance);
  layer.visit_buffers([&](nn::Buffer<Cpu>& b) {
    INFO("buffer " << b.path);
    if (b.stored_as == DType::int64)
      CHECK(b.value.to_vector() == io.get<std::int64_t>("after." + b.path).astype<float>().to_vector());
    else
      CHECK(relative_error(b.value, io.get<float>("after." + b.path)) <= o.forward_tolerance);
  });
  if (!o.train) return;
  const auto dx = layer.backward(io.get<float>("grad_output"));
  CHECK(relative_error(dx, io.get<float>("grad_input")) <= o.gradient_tolerance);
  layer.visit_parameters([&](nn::Parameter<Cpu>& p) {
    INFO("gradient of " << p.path);
    CHECK(relative_error(p.grad, io.get<float>("grad." + p.path)) <= o.gradient_tolerance);
  });
}

/// A tensor of standard normals (scaled), seeded.
inline Tensor<float> randn(const Shape& s, std::uint64_t seed, float scale = 1.0f) {
  auto t = Tensor<float>::empty(s);
  random::normal(t, {seed, 99, 0}, 0.0f, scale);
  return t;
}

/// Runs the finite-difference check and reports the failing entries.
template <nn::Layer L, class Prepare = void (*)(L&)>
void check_gradients(L& layer, const Tensor<float>& x, nn::GradcheckOptions o = {}, Prepare prepare = [](L&) {}) {
  const auto r = nn::gradcheck(layer, x, o, prepare);
  INFO(r.report);
  CHECK(r.ok);
  CHECK(r.checked > 0);
}

}  // namespace medseg::test
