// MaxPool3d and AvgPool3d (torch.nn.MaxPool3d / AvgPool3d, floor mode): the fixed
// down-sampling of classic U-Nets. Max pooling keeps the argmax of every window for
// backward; average pooling keeps only the problem description.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "../backends/conv3d.hpp"
#include "../backends/ops.hpp"
#include "concepts.hpp"

namespace medseg::nn {

struct Pool3dOptions {
  std::array<std::int64_t, 3> kernel{2, 2, 2};
  std::array<std::int64_t, 3> stride{0, 0, 0};  // 0: equal to the kernel (PyTorch's stride=None)
  std::array<std::int64_t, 3> padding{0, 0, 0};
  bool count_include_pad = true;  // AvgPool3d only
};

namespace detail {
template <class B, bool Max>
class PoolLayer : public LayerBase<B> {
 public:
  using Options = Pool3dOptions;
  PoolLayer(const Options& o = {}) : o_(o) {  // NOLINT: implicit, as every layer
    for (std::size_t i = 0; i < 3; ++i) {
      if (o_.stride[i] == 0) o_.stride[i] = o_.kernel[i];
      require(o_.kernel[i] >= 1 && o_.stride[i] >= 1 && o_.padding[i] >= 0 && 2 * o_.padding[i] <= o_.kernel[i], [&] {
        return ErrorInfo{.where = kind(), .field = "kernel/stride/padding",
                         .expected = "kernel, stride >= 1 and 0 <= padding <= kernel / 2",
                         .actual = str("kernel ", medseg::detail::dhw_string(o_.kernel), " stride ",
                                       medseg::detail::dhw_string(o_.stride), " padding ",
                                       medseg::detail::dhw_string(o_.padding))};
      });
    }
  }

  Tensor<float, B> forward(const Tensor<float, B>& x) {
    this->require_input(kind(), x, 5, -1);
    ops::Pool3dShape s{x.size(0), x.size(1), {x.size(2), x.size(3), x.size(4)}, o_.kernel, o_.stride, o_.padding};
    const auto out = s.output();
    require(out[0] >= 1 && out[1] >= 1 && out[2] >= 1, [&] {
      return ErrorInfo{.where = this->where(kind()), .field = "input", .expected = "at least the kernel " +
                                                                           medseg::detail::dhw_string(o_.kernel),
                       .actual = x.shape().to_string()};
    });
    const Tensor<float, B> xc = x.contiguous();
    auto y = this->output_buffer(s.output_shape());
    if constexpr (Max) {
      auto arg = Tensor<std::int32_t, B>::empty(s.output_shape());
      ops::max_pool3d_forward(s, xc, y, arg);
      if (this->training_) argmax_ = arg;
    } else {
      ops::avg_pool3d_forward(s, o_.count_include_pad, xc, y);
    }
    shape_ = s;
    kept_ = this->training_;
    return y;
  }
  Tensor<float, B> backward(const Tensor<float, B>& dy) {
    this->require_forward(kind(), kept_);
    this->require_grad_shape(kind(), dy, shape_.output_shape());
    auto dx = Tensor<float, B>::empty({shape_.batch, shape_.channels, shape_.input[0], shape_.input[1], shape_.input[2]});
    if constexpr (Max) {
      ops::max_pool3d_backward(shape_, argmax_, dy.contiguous(), dx);
      argmax_ = Tensor<std::int32_t, B>();
    } else {
      ops::avg_pool3d_backward(shape_, o_.count_include_pad, dy.contiguous(), dx);
    }
    kept_ = false;
    return dx;
  }

 private:
  static constexpr const char* kind() { return Max ? "MaxPool3d" : "AvgPool3d"; }
  Options o_;
  ops::Pool3dShape shape_;
  Tensor<std::int32_t, B> argmax_;
  bool kept_ = false;
};
}  // namespace detail

/// Max over each kernel window: [N, C, D, H, W] -> [N, C, D', H', W'].
///   MaxPool3d<Cpu> pool{{.kernel = {2, 2, 2}}};
template <class B = Cpu>
using MaxPool3d = detail::PoolLayer<B, true>;
/// Mean over each kernel window.
template <class B = Cpu>
using AvgPool3d = detail::PoolLayer<B, false>;

}  // namespace medseg::nn
