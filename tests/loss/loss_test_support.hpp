// Shared by the tests of loss/: the PyTorch reference file (made once per build directory by
// loss_reference.py), options read from the cases' JSON, label dispatch on the stored dtype,
// tolerance checks, and a finite-difference gradient check.
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
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "medseg/core/rng.hpp"
#include "medseg/loss.hpp"
#include "medseg/nn/safetensors.hpp"

namespace loss_test {

using namespace medseg;
namespace fs = std::filesystem;

/// The reference file, regenerated when missing or older than the script. Exits with 77
/// (CTest's skip) when Debian's python3-torch is not installed.
inline const safetensors::File& reference() {
  static const safetensors::File file = [] {
    const fs::path script = fs::path(MEDSEG_SOURCE_DIR) / "tests/loss/loss_reference.py";
    const fs::path out = fs::path(MEDSEG_TEST_BINARY_DIR) / "loss_reference.safetensors";
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
      const std::string cmd = "/usr/bin/python3 '" + script.string() + "' '" + out.string() + "'";
      REQUIRE(std::system(cmd.c_str()) == 0);
    }
    ::close(lock);  // releases the lock
    return safetensors::File::read(out);
  }();
  return file;
}

/// Names of the cases of one kind ("dice", "ce", ...), each with its JSON options.
inline std::vector<std::pair<std::string, nlohmann::json>> cases(const std::string& kind) {
  std::vector<std::pair<std::string, nlohmann::json>> out;
  for (const auto& [key, text] : reference().metadata()) {
    if (key.rfind("case.", 0) != 0) continue;
    auto j = nlohmann::json::parse(text);
    if (j.at("kind") == kind) out.emplace_back(key.substr(5), j);
  }
  REQUIRE(!out.empty());
  return out;
}

inline loss::DiceOptions dice_options(const nlohmann::json& j) {
  const std::string act = j.at("activation");
  return {.activation = act == "softmax"   ? loss::Activation::softmax
                        : act == "sigmoid" ? loss::Activation::sigmoid
                                           : loss::Activation::none,
          .include_background = j.at("include_background"),
          .squared_denominator = j.at("squared_denominator"),
          .smooth_numerator = j.at("smooth_numerator"),
          .smooth_denominator = j.at("smooth_denominator"),
          .batch = j.at("batch"),
          .class_weights = j.at("class_weights").get<std::vector<float>>()};
}

inline loss::Reduction reduction(const nlohmann::json& j) {
  return j.at("reduction") == "sum" ? loss::Reduction::sum : loss::Reduction::mean;
}

inline loss::CrossEntropyOptions ce_options(const nlohmann::json& j) {
  return {.class_weights = j.at("class_weights").get<std::vector<float>>(),
          .ignore_index = j.at("ignore_index").get<std::int64_t>(),
          .reduction = reduction(j)};
}

inline loss::BinaryCrossEntropyOptions bce_options(const nlohmann::json& j) {
  return {.pos_weight = j.at("pos_weight").get<std::vector<float>>(),
          .class_weights = j.at("class_weights").get<std::vector<float>>(),
          .reduction = reduction(j)};
}

/// Calls f(labels) with the stored labels as their own element type.
template <class F>
void with_labels(const std::string& name, F&& f) {
  const auto& file = reference();
  switch (file.info(name).dtype) {
    case DType::int64: return f(file.get<std::int64_t>(name));
    case DType::int32: return f(file.get<std::int32_t>(name));
    case DType::uint8: return f(file.get<std::uint8_t>(name));
    case DType::float32: return f(file.get<float>(name));
    default: FAIL("unexpected label dtype in " << name);
  }
}

/// Forward within 1e-4 relative.
inline void check_value(float ours, float ref) {
  CHECK(std::abs(ours - ref) <= 1e-4f * std::abs(ref) + 1e-7f);
}

/// Gradient within 1e-3 of the reference, relative to its largest element.
inline void check_gradient_close(const Tensor<float>& ours, const Tensor<float>& ref) {
  REQUIRE(ours.shape() == ref.shape());
  const auto a = ours.to_vector(), b = ref.to_vector();
  float diff = 0, scale = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(a[i] - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  INFO("max |ours - torch| = " << diff << ", max |torch| = " << scale);
  CHECK(diff <= 1e-3f * scale);
}

/// Deterministic test logits in [-range, range).
inline Tensor<float> random_logits(const Shape& shape, std::uint64_t seed, float range = 2.0f) {
  auto x = Tensor<float>::empty(shape);
  for (std::int64_t i = 0; i < x.numel(); ++i)
    x.data()[i] = (uniform_at(seed, 0, static_cast<std::uint64_t>(i)) * 2 - 1) * range;
  return x;
}

/// Central differences of `loss(x)` against `grad` on `samples` elements spread over x, and
/// along two random directions (which sums every element's error).
inline void check_finite_differences(const std::function<float(const Tensor<float>&)>& loss, const Tensor<float>& x,
                                     const Tensor<float>& grad, int samples = 24, float h = 1e-2f) {
  REQUIRE(grad.shape() == x.shape());
  const std::int64_t n = x.numel();
  float scale = 0;
  for (std::int64_t i = 0; i < n; ++i) scale = std::max(scale, std::abs(grad.data()[i]));
  for (int k = 0; k < samples; ++k) {
    const std::int64_t i = (k * 7919 + 13) % n;
    auto xp = x.clone(), xm = x.clone();
    xp.data()[i] += h;
    xm.data()[i] -= h;
    const double fd = (double(loss(xp)) - double(loss(xm))) / (2.0 * h);
    const double an = grad.data()[i];
    INFO("element " << i << ": finite difference " << fd << ", backward " << an);
    CHECK(std::abs(fd - an) <= 1e-2 * std::abs(an) + 2e-3 * scale + 1e-5);
  }
  for (int d = 0; d < 2; ++d) {
    auto xp = x.clone(), xm = x.clone();
    double an = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      const float v = uniform_at(99, static_cast<std::uint64_t>(d), static_cast<std::uint64_t>(i)) * 2 - 1;
      xp.data()[i] += h * v;
      xm.data()[i] -= h * v;
      an += double(grad.data()[i]) * v;
    }
    const double fd = (double(loss(xp)) - double(loss(xm))) / (2.0 * h);
    INFO("direction " << d << ": finite difference " << fd << ", backward " << an);
    CHECK(std::abs(fd - an) <= 1e-2 * std::abs(an) + 1e-4);
  }
}

}  // namespace loss_test
