// Conv3dShape: one 3-D convolution or transposed convolution problem, described by name
// (CUTLASS's ConvProblemShape) rather than by a row of positional integers. Every backend's
// convolution takes it, validates with it, and caches its primitives or plans keyed by it; the
// tensor checks every backend's convolution makes are here too, so their messages agree.
// The size formulas and weight layouts are PyTorch's, so weights move between the two as-is.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"

namespace medseg {

/// A (transposed) convolution over NCDHW tensors. Spatial arrays are ordered D, H, W.
///   Conv3dShape s{.in_channels = 16, .out_channels = 32, .input = {64, 64, 64},
///                 .kernel = {2, 2, 2}, .stride = {2, 2, 2}};
///   s.output() == {32, 32, 32};  s.weight_shape() == [32,16,2,2,2]
/// Output sizes (per axis, PyTorch's formulas, d = dilation):
///   convolution: floor((in + 2p - d(k-1) - 1) / s) + 1
///   transposed:  (in - 1) s - 2p + d(k-1) + output_padding + 1
struct Conv3dShape {
  std::int64_t batch = 1, in_channels = 1, out_channels = 1;
  std::array<std::int64_t, 3> input{};  // D, H, W of the input
  std::array<std::int64_t, 3> kernel{3, 3, 3}, stride{1, 1, 1}, padding{0, 0, 0}, dilation{1, 1, 1};
  std::array<std::int64_t, 3> output_padding{0, 0, 0};  // transposed only; each < stride or < dilation
  std::int64_t groups = 1;
  bool transposed = false;

  /// D, H, W of the output. Call validate() first: this does no checking.
  std::array<std::int64_t, 3> output() const;
  /// [batch, in_channels, D, H, W]
  Shape input_shape() const;
  /// [batch, out_channels, D', H', W']
  Shape output_shape() const;
  /// PyTorch's layout: convolution [O, I/g, kD, kH, kW], transposed [I, O/g, kD, kH, kW].
  Shape weight_shape() const;
  /// [out_channels]
  Shape bias_shape() const { return Shape{out_channels}; }
  /// Multiply-adds of the forward pass (each counts as 2 FLOPs); backward-data and
  /// backward-weights do the same number.
  std::int64_t multiply_adds() const;

  /// Throws Error naming `where` (an op or a layer's parameter path) and the first field out
  /// of range: non-positive sizes, channels not divisible by groups, an output of size < 1,
  /// output_padding on a plain convolution or not smaller than stride or dilation.
  void validate(const std::string& where = "Conv3dShape") const;

  /// "conv 16->32 in [1,16,64,64,64] k[2,2,2] s[2,2,2] p[0,0,0] d[1,1,1] g1"
  std::string to_string() const;

  friend bool operator==(const Conv3dShape&, const Conv3dShape&) = default;
};

/// What a forward convolution does to its result before storing it, fused into the same
/// pass over memory (oneDNN post-ops; cuDNN runtime fusion on the GPU):
///   y = activation(conv(x, w) + bias + (accumulate ? y : 0))
/// `accumulate` reads y's current contents: the residual sum of x + f(x) blocks. Fused
/// activations suit inference; training needs the pre-activation for most backward passes.
struct Conv3dEpilogue {
  enum class Activation : std::uint8_t { none, relu, leaky_relu, elu, gelu, sigmoid };
  Activation activation = Activation::none;
  float alpha = 0.0f;       // negative slope of leaky_relu, alpha of elu; unused otherwise
  bool accumulate = false;  // add y's current contents before the activation
  friend bool operator==(const Conv3dEpilogue&, const Conv3dEpilogue&) = default;
};

/// Hash for unordered containers keyed by the problem (primitive caches).
struct Conv3dShapeHash {
  std::size_t operator()(const Conv3dShape& s) const noexcept;
};

// ----------------------------------------------------------------------------------------
// Implementation

inline std::array<std::int64_t, 3> Conv3dShape::output() const {
  std::array<std::int64_t, 3> out{};
  for (std::size_t i = 0; i < 3; ++i) {
    const std::int64_t span = dilation[i] * (kernel[i] - 1);
    if (transposed)
      out[i] = (input[i] - 1) * stride[i] - 2 * padding[i] + span + output_padding[i] + 1;
    else {
      // Floor division of a possibly negative numerator: a too-small input yields <= 0.
      const std::int64_t num = input[i] + 2 * padding[i] - span - 1;
      out[i] = (num >= 0 ? num / stride[i] : -((-num + stride[i] - 1) / stride[i])) + 1;
    }
  }
  return out;
}

inline Shape Conv3dShape::input_shape() const { return Shape{batch, in_channels, input[0], input[1], input[2]}; }

inline Shape Conv3dShape::output_shape() const {
  const auto o = output();
  return Shape{batch, out_channels, o[0], o[1], o[2]};
}

inline Shape Conv3dShape::weight_shape() const {
  if (transposed) return Shape{in_channels, out_channels / groups, kernel[0], kernel[1], kernel[2]};
  return Shape{out_channels, in_channels / groups, kernel[0], kernel[1], kernel[2]};
}

inline std::int64_t Conv3dShape::multiply_adds() const {
  const auto o = output();
  const std::int64_t taps = kernel[0] * kernel[1] * kernel[2] * (in_channels / groups) * out_channels;
  // A transposed convolution scatters every input voxel through the kernel.
  return transposed ? batch * input[0] * input[1] * input[2] * taps : batch * o[0] * o[1] * o[2] * taps;
}

namespace detail {
inline std::string dhw_string(const std::array<std::int64_t, 3>& a) {
  return "[" + std::to_string(a[0]) + "," + std::to_string(a[1]) + "," + std::to_string(a[2]) + "]";
}
}  // namespace detail

inline void Conv3dShape::validate(const std::string& where) const {
  auto positive = [&](std::int64_t v, const char* field) {
    require(v >= 1, [&] {
      return ErrorInfo{.where = where, .field = field, .expected = ">= 1", .actual = std::to_string(v)};
    });
  };
  auto positive3 = [&](const std::array<std::int64_t, 3>& a, const char* field) {
    require(a[0] >= 1 && a[1] >= 1 && a[2] >= 1, [&] {
      return ErrorInfo{.where = where, .field = field, .expected = "every entry >= 1",
                       .actual = detail::dhw_string(a)};
    });
  };
  positive(batch, "batch");
  positive(in_channels, "in_channels");
  positive(out_channels, "out_channels");
  positive(groups, "groups");
  positive3(input, "input");
  positive3(kernel, "kernel");
  positive3(stride, "stride");
  positive3(dilation, "dilation");
  require(padding[0] >= 0 && padding[1] >= 0 && padding[2] >= 0, [&] {
    return ErrorInfo{.where = where, .field = "padding", .expected = "every entry >= 0",
                     .actual = detail::dhw_string(padding)};
  });
  require(in_channels % groups == 0 && out_channels % groups == 0, [&] {
    return ErrorInfo{.where = where, .field = "groups",
                     .expected = "a divisor of in_channels and out_channels",
                     .actual = str(groups, " with in_channels ", in_channels, ", out_channels ", out_channels)};
  });
  for (std::size_t i = 0; i < 3; ++i) {
    if (transposed)
      require(output_padding[i] >= 0 && (output_padding[i] < stride[i] || output_padding[i] < dilation[i]), [&] {
        return ErrorInfo{.where = where, .field = "output_padding",
                         .expected = "each entry >= 0 and smaller than stride " + detail::dhw_string(stride) +
                                     " or dilation " + detail::dhw_string(dilation),
                         .actual = detail::dhw_string(output_padding)};
      });
    else
      require(output_padding[i] == 0, [&] {
        return ErrorInfo{.where = where, .field = "output_padding", .expected = "[0,0,0] (a plain convolution)",
                         .actual = detail::dhw_string(output_padding),
                         .detail = "set transposed = true for a transposed convolution"};
      });
  }
  const auto out = output();
  require(out[0] >= 1 && out[1] >= 1 && out[2] >= 1, [&] {
    return ErrorInfo{.where = where, .field = "input", .expected = "an input large enough for the kernel",
                     .actual = detail::dhw_string(input) + " gives output " + detail::dhw_string(out),
                     .detail = to_string()};
  });
}

inline std::string Conv3dShape::to_string() const {
  std::string s = (transposed ? "conv_transpose " : "conv ") + std::to_string(in_channels) + "->" +
                  std::to_string(out_channels) + " in " + input_shape().to_string() + " k" +
                  detail::dhw_string(kernel) + " s" + detail::dhw_string(stride) + " p" +
                  detail::dhw_string(padding) + " d" + detail::dhw_string(dilation);
  if (transposed) s += " op" + detail::dhw_string(output_padding);
  return s + " g" + std::to_string(groups);
}

inline std::size_t Conv3dShapeHash::operator()(const Conv3dShape& s) const noexcept {
  // FNV-1a over every field: the caches hold a few dozen shapes, so quality beats speed.
  std::uint64_t h = 1469598103934665603ull;
  auto mix = [&h](std::int64_t v) {
    h ^= static_cast<std::uint64_t>(v);
    h *= 1099511628211ull;
  };
  mix(s.batch), mix(s.in_channels), mix(s.out_channels), mix(s.groups), mix(s.transposed);
  for (const auto* a : {&s.input, &s.kernel, &s.stride, &s.padding, &s.dilation, &s.output_padding})
    for (std::int64_t v : *a) mix(v);
  return static_cast<std::size_t>(h);
}

namespace detail {
/// The op's name and problem, for error messages: "conv3d_forward (Conv3dShape{...})".
inline std::string conv_where(const char* op, const Conv3dShape& s) {
  return std::string(op) + " (" + s.to_string() + ")";
}

/// Tensor `name` of a convolution is defined, of shape `expected` and contiguous.
template <class B>
void check_conv_tensor(const std::string& where, const char* name, const Tensor<float, B>& t, const Shape& expected) {
  require(t.defined(), [&] {
    return ErrorInfo{.where = where, .field = name, .expected = "a defined tensor of shape " + expected.to_string(),
                     .actual = "an undefined tensor"};
  });
  require(t.shape() == expected, [&] {
    return ErrorInfo{.where = where, .field = name, .expected = "shape " + expected.to_string(),
                     .actual = t.shape().to_string()};
  });
  require(t.is_contiguous(), [&] {
    return ErrorInfo{.where = where, .field = name, .expected = "a contiguous tensor",
                     .actual = t.layout().to_string(), .detail = "call contiguous() first"};
  });
}

/// The checks every backend's conv3d ops make before any work, in one order and wording: the
/// problem, then each tensor (optional ones when given). Each returns the op's `where`.
template <class B>
std::string check_conv_forward(const Conv3dShape& s, const Tensor<float, B>& x, const Tensor<float, B>& w,
                               const Tensor<float, B>* bias, const Tensor<float, B>& y) {
  const std::string where = conv_where("conv3d_forward", s);
  s.validate(where);
  check_conv_tensor(where, "x", x, s.input_shape());
  check_conv_tensor(where, "weight", w, s.weight_shape());
  if (bias) check_conv_tensor(where, "bias", *bias, s.bias_shape());
  check_conv_tensor(where, "y", y, s.output_shape());
  return where;
}
template <class B>
std::string check_conv_backward_data(const Conv3dShape& s, const Tensor<float, B>& dy, const Tensor<float, B>& w,
                                     const Tensor<float, B>& dx) {
  const std::string where = conv_where("conv3d_backward_data", s);
  s.validate(where);
  check_conv_tensor(where, "dy", dy, s.output_shape());
  check_conv_tensor(where, "weight", w, s.weight_shape());
  check_conv_tensor(where, "dx", dx, s.input_shape());
  return where;
}
template <class B>
std::string check_conv_backward_weights(const Conv3dShape& s, const Tensor<float, B>& x, const Tensor<float, B>& dy,
                                        const Tensor<float, B>& dw, const Tensor<float, B>* dbias) {
  const std::string where = conv_where("conv3d_backward_weights", s);
  s.validate(where);
  check_conv_tensor(where, "x", x, s.input_shape());
  check_conv_tensor(where, "dy", dy, s.output_shape());
  check_conv_tensor(where, "dweight", dw, s.weight_shape());
  if (dbias) check_conv_tensor(where, "dbias", *dbias, s.bias_shape());
  return where;
}
template <class B>
std::string check_conv_backward(const Conv3dShape& s, const Tensor<float, B>& x, const Tensor<float, B>& w,
                                const Tensor<float, B>& dy, const Tensor<float, B>* dx, const Tensor<float, B>& dw,
                                const Tensor<float, B>* dbias) {
  const std::string where = conv_where("conv3d_backward", s);
  s.validate(where);
  check_conv_tensor(where, "x", x, s.input_shape());
  check_conv_tensor(where, "weight", w, s.weight_shape());
  check_conv_tensor(where, "dy", dy, s.output_shape());
  if (dx) check_conv_tensor(where, "dx", *dx, s.input_shape());
  check_conv_tensor(where, "dweight", dw, s.weight_shape());
  if (dbias) check_conv_tensor(where, "dbias", *dbias, s.bias_shape());
  return where;
}
}  // namespace detail

}  // namespace medseg
