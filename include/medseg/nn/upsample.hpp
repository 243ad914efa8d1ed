// Upsample: trilinear resizing of NCDHW volumes (torch.nn.Upsample(mode='trilinear')), by a
// scale factor or to a size, with align_corners false (PyTorch's default) or true. The
// parameter-free up-sampling of MONAI-style decoders and of deep-supervision targets.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <string>

#include "../backends/conv3d.hpp"
#include "../backends/ops.hpp"
#include "concepts.hpp"

namespace medseg::nn {

struct UpsampleOptions {
  std::array<double, 3> scale_factor{2.0, 2.0, 2.0};  // used when size is {0, 0, 0}
  std::array<std::int64_t, 3> size{0, 0, 0};          // D, H, W of the output, when set
  bool align_corners = false;
};

/// [N, C, D, H, W] -> [N, C, D', H', W'] with D' = size or floor(D * scale_factor).
template <class B = Cpu>
class Upsample : public LayerBase<B> {
 public:
  using Options = UpsampleOptions;
  Upsample(const Options& o = {}) : o_(o) {  // NOLINT: implicit, as every layer
    const bool sized = o.size[0] > 0 || o.size[1] > 0 || o.size[2] > 0;
    require(sized ? (o.size[0] > 0 && o.size[1] > 0 && o.size[2] > 0)
                  : (o.scale_factor[0] > 0 && o.scale_factor[1] > 0 && o.scale_factor[2] > 0),
            [&] {
              return ErrorInfo{.where = "Upsample", .field = sized ? "size" : "scale_factor",
                               .expected = "every entry > 0",
                               .actual = sized ? medseg::detail::dhw_string(o.size)
                                               : str(o.scale_factor[0], ",", o.scale_factor[1], ",", o.scale_factor[2])};
            });
  }

  Tensor<float, B> forward(const Tensor<float, B>& x) {
    this->require_input("Upsample", x, 5, -1);
    ops::TrilinearShape s{.batch = x.size(0), .channels = x.size(1), .input = {x.size(2), x.size(3), x.size(4)},
                          .align_corners = o_.align_corners};
    const bool sized = o_.size[0] > 0;
    for (std::size_t i = 0; i < 3; ++i) {
      s.output[i] = sized ? o_.size[i]
                          : static_cast<std::int64_t>(std::floor(static_cast<double>(s.input[i]) * o_.scale_factor[i]));
      s.ratio[i] = sized ? static_cast<double>(s.input[i]) / static_cast<double>(s.output[i]) : 1.0 / o_.scale_factor[i];
    }
    require(s.output[0] >= 1 && s.output[1] >= 1 && s.output[2] >= 1, [&] {
      return ErrorInfo{.where = this->where("Upsample"), .field = "output size", .expected = ">= 1 on every axis",
                       .actual = medseg::detail::dhw_string(s.output) + " from input " + x.shape().to_string()};
    });
    auto y = this->output_buffer({s.batch, s.channels, s.output[0], s.output[1], s.output[2]});
    ops::trilinear_forward(s, x.contiguous(), y);
    shape_ = s;
    kept_ = this->training_;
    return y;
  }
  Tensor<float, B> backward(const Tensor<float, B>& dy) {
    this->require_forward("Upsample", kept_);
    this->require_grad_shape("Upsample", dy, {shape_.batch, shape_.channels, shape_.output[0], shape_.output[1], shape_.output[2]});
    auto dx = Tensor<float, B>::empty({shape_.batch, shape_.channels, shape_.input[0], shape_.input[1], shape_.input[2]});
    ops::trilinear_backward(shape_, dy.contiguous(), dx);
    kept_ = false;
    return dx;
  }

 private:
  Options o_;
  ops::TrilinearShape shape_;
  bool kept_ = false;
};

}  // namespace medseg::nn
