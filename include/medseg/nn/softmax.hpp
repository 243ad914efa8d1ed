// Softmax over the channel axis of [N, C, ...] (torch.nn.Softmax(dim=1)): the class
// probabilities of a segmentation head. It keeps its output, from which the backward
// y * (dy - sum_c dy y) follows without recomputing exponentials.
#pragma once

#include <string>

#include "../backends/ops.hpp"
#include "concepts.hpp"

namespace medseg::nn {

/// x [N, C, ...] -> y, same shape, each voxel's channels summing to 1.
template <class B = Cpu>
class Softmax : public LayerBase<B> {
 public:
  struct Options {};
  Softmax(const Options& = {}) {}  // NOLINT: implicit, as every layer

  Tensor<float, B> forward(const Tensor<float, B>& x) {
    require(x.defined() && x.rank() >= 2, [&] {
      return ErrorInfo{.where = this->where("Softmax"), .field = "input rank", .expected = ">= 2 ([N, C, ...])",
                       .actual = x.defined() ? x.shape().to_string() : "an undefined tensor"};
    });
    auto y = this->output_buffer(x.shape());
    ops::softmax_channels_forward(x.contiguous(), y);
    if (this->training_) y_ = y;
    return y;
  }
  Tensor<float, B> backward(const Tensor<float, B>& dy) {
    this->require_forward("Softmax", y_.defined());
    this->require_grad_shape("Softmax", dy, y_.shape());
    auto dx = Tensor<float, B>::empty(y_.shape());
    ops::softmax_channels_backward(y_, dy.contiguous(), dx);
    y_ = Tensor<float, B>();
    return dx;
  }

 private:
  Tensor<float, B> y_;
};

}  // namespace medseg::nn
