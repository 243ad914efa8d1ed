// A trainable parameter: its PyTorch state-dict path, its value and its gradient. Layers own
// their tensors; a Parameter holds handles to them (core/tensor.hpp shares storage), so an
// optimizer that updates `value` in place updates the layer.
#pragma once

#include <string>
#include <vector>

#include "../core/tensor.hpp"

namespace medseg::nn {

template <class B = Cpu>
struct Parameter {
  std::string path;        // dotted, as in PyTorch's state_dict: "encoder.stages.0.convs.0.conv.weight"
  Tensor<float, B> value;  // updated in place by optimizers
  Tensor<float, B> grad;   // same shape; layers accumulate into it, zero_grad clears it
  /// Whether weight decay applies. PyTorch's optimizers decay every parameter they are given;
  /// set false to exclude norms and biases as nnU-Net-style parameter groups do.
  bool decay = true;
};

/// A non-trainable tensor that is part of a layer's state (BatchNorm's running mean).
template <class B = Cpu>
struct Buffer {
  std::string path;
  Tensor<float, B> value;
  /// The dtype PyTorch stores it as: BatchNorm's num_batches_tracked is int64 there. State
  /// dicts convert on the way in and out (nn/state_dict.hpp).
  DType stored_as = DType::float32;
};

template <class B = Cpu>
using ParameterList = std::vector<Parameter<B>>;

/// Sets every gradient to zero.
template <class B>
void zero_grad(const ParameterList<B>& params) {
  for (const auto& p : params) B::zero(p.grad.data(), p.grad.nbytes());
}

/// Total number of trainable values (PyTorch's sum(p.numel() for p in model.parameters())).
template <class B>
std::int64_t count_parameters(const ParameterList<B>& params) {
  std::int64_t n = 0;
  for (const auto& p : params) n += p.value.numel();
  return n;
}

/// A parameter whose gradient is allocated and zeroed alongside the value.
template <class B = Cpu>
Parameter<B> make_parameter(std::string path, Tensor<float, B> value, bool decay = true) {
  auto grad = Tensor<float, B>::zeros(value.shape());
  return {std::move(path), std::move(value), std::move(grad), decay};
}

}  // namespace medseg::nn
