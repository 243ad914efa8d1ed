// What every optimizer in optim/ shares: the LrControlled concept schedules drive, the
// parameter checks and their split into the chunks of the fused update (the table and the
// kernels: backends/optim.hpp, reached with every backend's kernels through backends/ops.hpp),
// and exact text for scalars kept in checkpoint metadata. Backend-generic: state tensors
// live where the parameters live, and checkpoints copy them through the host.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "../backends/ops.hpp"
#include "../core/error.hpp"
#include "../nn/parameter.hpp"
#include "../nn/safetensors.hpp"

namespace medseg::optim {

/// What a learning-rate schedule needs of an optimizer.
template <class O>
concept LrControlled = requires(O& o, const O& co, double lr) {
  { co.lr() } -> std::convertible_to<double>;
  { o.set_lr(lr) };
};

namespace detail {

/// Checks `params` (defined, contiguous, gradient of the value's shape, unique paths) and
/// splits them into chunks for the fused loop.
template <class B>
std::vector<ops::Chunk> plan_chunks(std::string_view optimizer, const nn::ParameterList<B>& params) {
  std::vector<ops::Chunk> chunks;
  std::set<std::string> seen;
  for (std::size_t i = 0; i < params.size(); ++i) {
    const auto& p = params[i];
    const std::string where = std::string(optimizer) + ": parameter \"" + p.path + "\"";
    require(p.value.defined() && p.value.is_contiguous(), [&] {
      return ErrorInfo{.where = where, .field = "value", .expected = "a defined contiguous tensor",
                       .actual = p.value.defined() ? p.value.layout().to_string() : "undefined"};
    });
    require(p.grad.defined() && p.grad.shape() == p.value.shape() && p.grad.is_contiguous(), [&] {
      return ErrorInfo{.where = where, .field = "grad", .expected = "contiguous " + p.value.shape().to_string(),
                       .actual = p.grad.defined() ? p.grad.layout().to_string() : "undefined"};
    });
    require(seen.insert(p.path).second, [&] {
      return ErrorInfo{.where = where, .field = "path", .expected = "unique parameter paths", .actual = "a duplicate"};
    });
    for (std::int64_t b = 0; b < p.value.numel(); b += ops::chunk_elements)
      chunks.push_back({i, b, std::min(p.value.numel(), b + ops::chunk_elements)});
  }
  return chunks;
}

/// The fused table's entries for `params` with up to three state tensors each (`states[k]`
/// empty: slot k unused).
template <class B>
std::vector<ops::FusedTensor> fused_tensors(const nn::ParameterList<B>& params,
                                            std::initializer_list<const std::vector<Tensor<float, B>>*> states) {
  std::vector<ops::FusedTensor> out(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    out[i] = {.value = params[i].value.data(), .grad = params[i].grad.data(), .numel = params[i].value.numel(),
              .decay = params[i].decay};
    int k = 0;
    for (const auto* state : states) {
      if (!state->empty()) out[i].state[k] = (*state)[i].data();
      ++k;
    }
  }
  return out;
}

/// One state tensor per parameter, zeroed, shaped like it.
template <class B>
std::vector<Tensor<float, B>> zeros_like(const nn::ParameterList<B>& params) {
  std::vector<Tensor<float, B>> out;
  for (const auto& p : params) out.push_back(Tensor<float, B>::zeros(p.value.shape()));
  return out;
}

/// A double as text that reads back to the same bits ("%.17g").
inline std::string exact(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

/// Metadata entry `key` of a checkpoint as a number; throws naming the file's key when absent.
inline double metadata_number(const safetensors::File& file, const std::string& key, std::string_view who) {
  const auto it = file.metadata().find(key);
  require(it != file.metadata().end(), [&] {
    return ErrorInfo{.where = std::string(who), .field = "checkpoint metadata \"" + key + "\"",
                     .expected = "present", .actual = "missing"};
  });
  char* end = nullptr;
  const double v = std::strtod(it->second.c_str(), &end);
  require(end && *end == '\0' && !it->second.empty(), [&] {
    return ErrorInfo{.where = std::string(who), .field = "checkpoint metadata \"" + key + "\"",
                     .expected = "a number", .actual = "\"" + it->second + "\""};
  });
  return v;
}

/// Checks the optimizer kind stored under `prefix` + "type".
inline void check_kind(const safetensors::File& file, const std::string& prefix, std::string_view kind) {
  const auto it = file.metadata().find(prefix + "type");
  require(it != file.metadata().end() && it->second == kind, [&] {
    return ErrorInfo{.where = std::string(kind), .field = "checkpoint metadata \"" + prefix + "type\"",
                     .expected = std::string(kind),
                     .actual = it == file.metadata().end() ? std::string("missing") : it->second};
  });
}

/// Copies the state tensor `name` of the checkpoint into `into` (shape checked).
template <class B>
void load_tensor(const safetensors::File& file, const std::string& name, const Tensor<float, B>& into) {
  into.copy_from(file.get<float>(name, into.shape()));
}

inline void require_option(bool ok, std::string_view who, const char* field, const char* expected, double actual) {
  require(ok, [&] {
    return ErrorInfo{.where = std::string(who), .field = field, .expected = expected, .actual = str(actual)};
  });
}

}  // namespace detail
}  // namespace medseg::optim
