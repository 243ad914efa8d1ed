// A layer's parameters and buffers to and from safetensors files under PyTorch's state_dict
// names, so weights move both ways between medseg and torch (torch side: see
// tests/python/safetensors_lite.py). Loading checks every name, dtype and shape and says
// which layer path, which file and which shapes disagree.
#pragma once

#include <filesystem>
#include <map>
#include <set>
#include <string>

#include "concepts.hpp"
#include "safetensors.hpp"

namespace medseg::nn {

struct LoadOptions {
  /// Every tensor in the file must belong to the layer (PyTorch's strict=True).
  bool strict = true;
  /// Only file names under this prefix are read, with the prefix removed ("model.").
  std::string prefix = "";
};

/// Writes every parameter and buffer of `layer` (buffers in their PyTorch dtype).
template <Parametric L>
void save_state_dict(L& layer, const std::filesystem::path& file, const std::map<std::string, std::string>& metadata = {});
/// Adds them to a writer (for checkpoints that hold more than the model).
template <Parametric L>
void add_state_dict(L& layer, safetensors::Writer& writer, const std::string& prefix = "");

/// Copies the file's tensors into the layer's parameters and buffers (in place: optimizers
/// holding the parameters see the new values). Throws Error on a missing or (strict)
/// unexpected name, a dtype other than float32 (int64 for integer buffers), or a shape
/// mismatch, naming the layer path, the file and both shapes.
template <Parametric L>
void load_state_dict(L& layer, const safetensors::File& file, const LoadOptions& options = {});
template <Parametric L>
void load_state_dict(L& layer, const std::filesystem::path& file, const LoadOptions& options = {});

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {
template <Parametric L>
void load_state_dict_from(L& layer, const safetensors::File& file, const LoadOptions& options, const std::string& label);
}  // namespace detail

template <Parametric L>
void add_state_dict(L& layer, safetensors::Writer& writer, const std::string& prefix) {
  using B = typename L::backend;
  layer.visit_parameters([&](Parameter<B>& p) { writer.add(prefix + p.path, p.value); });
  layer.visit_buffers([&](Buffer<B>& b) {
    if (b.stored_as == DType::int64)
      writer.add(prefix + b.path, b.value.template to<Cpu>().template astype<std::int64_t>());
    else
      writer.add(prefix + b.path, b.value);
  });
}

template <Parametric L>
void save_state_dict(L& layer, const std::filesystem::path& file, const std::map<std::string, std::string>& metadata) {
  safetensors::Writer w;
  add_state_dict(layer, w);
  for (const auto& [k, v] : metadata) w.set_metadata(k, v);
  w.save(file);
}

namespace detail {
template <class B>
void load_one(const safetensors::File& file, const std::string& file_name, const std::string& path,
              const Tensor<float, B>& dst, bool integer_allowed, const std::string& file_label) {
  const std::string where = "load_state_dict: '" + path + "' from " + file_label;
  require(file.contains(file_name), [&] {
    return ErrorInfo{.where = where, .field = "tensor \"" + file_name + "\"", .expected = "present in the file",
                     .actual = "missing", .detail = "the layer expects shape " + dst.shape().to_string()};
  });
  const auto& info = file.info(file_name);
  require(info.shape == dst.shape(), [&] {
    return ErrorInfo{.where = where, .field = "shape", .expected = dst.shape().to_string(),
                     .actual = info.shape.to_string()};
  });
  const bool integer = info.dtype == DType::int64;
  require(info.dtype == DType::float32 || (integer && integer_allowed), [&] {
    return ErrorInfo{.where = where, .field = "dtype", .expected = integer_allowed ? "float32 or int64" : "float32",
                     .actual = std::string(name(info.dtype))};
  });
  if (integer)
    dst.copy_from(file.get<std::int64_t>(file_name).astype<float>().template to<B>());
  else
    dst.copy_from(file.get<float>(file_name));
}
}  // namespace detail

template <Parametric L>
void load_state_dict(L& layer, const safetensors::File& file, const LoadOptions& options) {
  detail::load_state_dict_from(layer, file, options, "a safetensors file");
}

template <Parametric L>
void load_state_dict(L& layer, const std::filesystem::path& file, const LoadOptions& options) {
  detail::load_state_dict_from(layer, safetensors::File::read(file), options, file.string());
}

namespace detail {
template <Parametric L>
void load_state_dict_from(L& layer, const safetensors::File& file, const LoadOptions& options, const std::string& label) {
  using B = typename L::backend;
  std::set<std::string> used;
  layer.visit_parameters([&](Parameter<B>& p) {
    detail::load_one(file, options.prefix + p.path, p.path, p.value, false, label);
    used.insert(options.prefix + p.path);
  });
  layer.visit_buffers([&](Buffer<B>& b) {
    detail::load_one(file, options.prefix + b.path, b.path, b.value, b.stored_as == DType::int64, label);
    used.insert(options.prefix + b.path);
  });
  if (!options.strict) return;
  std::string unexpected;
  for (const auto& n : file.names())
    if (n.starts_with(options.prefix) && !used.count(n)) unexpected += (unexpected.empty() ? "" : ", ") + n;
  require(unexpected.empty(), [&] {
    return ErrorInfo{.where = "load_state_dict" + (layer.path().empty() ? std::string() : " '" + layer.path() + "'"),
                     .field = "names", .expected = "only the layer's parameters and buffers (strict)",
                     .actual = "unexpected " + unexpected + " in " + label,
                     .detail = "pass LoadOptions{.strict = false} to ignore them"};
  });
}
}  // namespace detail

}  // namespace medseg::nn
