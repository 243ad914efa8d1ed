// ConvTranspose3d: the transposed 3-D convolution (torch.nn.ConvTranspose3d), the learned
// up-sampling of U-Net decoders. Same machinery as Conv3d (detail::ConvolutionLayer) with the
// weight laid out [in, out/groups, k...] and output_padding resolving the size ambiguity.
#pragma once

#include "conv3d.hpp"

namespace medseg::nn {

/// torch.nn.ConvTranspose3d's arguments. D' = (D - 1) s - 2p + d(k - 1) + output_padding + 1.
struct ConvTranspose3dOptions {
  std::int64_t in_channels = 1, out_channels = 1;
  std::array<std::int64_t, 3> kernel{2, 2, 2}, stride{1, 1, 1}, padding{0, 0, 0}, output_padding{0, 0, 0},
      dilation{1, 1, 1};
  std::int64_t groups = 1;
  bool bias = true;
};

/// x [N, in, D, H, W] -> y [N, out, D', H', W']. Parameters "weight" [in, out/groups, kD, kH, kW]
/// and "bias" [out], initialised as PyTorch does.
///   ConvTranspose3d<Cpu> up{{.in_channels = 32, .out_channels = 16, .kernel = {2, 2, 2}, .stride = {2, 2, 2}}};
template <class B = Cpu>
class ConvTranspose3d : public detail::ConvolutionLayer<B, true> {
 public:
  using Options = ConvTranspose3dOptions;
  ConvTranspose3d(const Options& o) {  // NOLINT: implicit, as Conv3d
    for (std::size_t i = 0; i < 3; ++i)
      require(o.kernel[i] >= 1 && o.stride[i] >= 1 && o.dilation[i] >= 1 && o.padding[i] >= 0 &&
                  o.output_padding[i] >= 0 && (o.output_padding[i] < o.stride[i] || o.output_padding[i] < o.dilation[i]),
              [&] {
                return ErrorInfo{.where = "ConvTranspose3d", .field = "kernel/stride/dilation/padding/output_padding",
                                 .expected = "kernel, stride, dilation >= 1, padding >= 0, output_padding < stride or dilation",
                                 .actual = str("kernel ", medseg::detail::dhw_string(o.kernel), " stride ",
                                               medseg::detail::dhw_string(o.stride), " output_padding ",
                                               medseg::detail::dhw_string(o.output_padding))};
              });
    this->build(Conv3dShape{.in_channels = o.in_channels, .out_channels = o.out_channels, .kernel = o.kernel,
                            .stride = o.stride, .padding = o.padding, .dilation = o.dilation,
                            .output_padding = o.output_padding, .groups = o.groups},
                o.bias);
  }
};

}  // namespace medseg::nn
