// What every optimizer in optim/ shares: the LrControlled concept schedules drive, the
// parameter checks, the fused multi-tensor loop (one parallel_for over fixed-size chunks of
// all parameters, so a network of a hundred small tensors costs one pool dispatch per step),
// and exact text for scalars kept in checkpoint metadata.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
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

/// A piece of one parameter: elements [begin, end) of params[param].
struct Chunk {
  std::size_t param;
  std::int64_t begin, end;
};

/// 32 Ki floats: 128 KiB of each state tensor, small enough to stay in L2 while a chunk's
/// value, gradient and moments are read and written.
inline constexpr std::int64_t chunk_elements = 1 << 15;

/// Checks `params` (defined, contiguous, gradient of the value's shape, unique paths) and
/// splits them into chunks for the fused loop.
template <class B>
std::vector<Chunk> plan_chunks(std::string_view optimizer, const nn::ParameterList<B>& params) {
  static_assert(B::is_host, "medseg: the optimizers of optim/ have CPU kernels only; use Tensor<float, Cpu> parameters");
  std::vector<Chunk> chunks;
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
    for (std::int64_t b = 0; b < p.value.numel(); b += chunk_elements)
      chunks.push_back({i, b, std::min(p.value.numel(), b + chunk_elements)});
  }
  return chunks;
}

/// Calls body(chunk) for every chunk on the thread pool.
template <class Body>
void for_each_chunk(const std::vector<Chunk>& chunks, Body&& body) {
  parallel_for(0, static_cast<std::int64_t>(chunks.size()), 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) body(chunks[static_cast<std::size_t>(i)]);
  });
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
