// The op table: every backend op with its shapes and tolerance, one row each (op_table.hpp
// says what a row is). On the CPU (backends_tests) each row is checked against its reference:
// a plain loop in double for forward ops, central differences of the forward op for
// gradients. On a GPU (cuda_tests, which compiles this file too) each row runs on both
// backends and the GPU must match the CPU within the row's tolerance: 0 for ops that move or
// add values in the CPU's order (bit for bit), 1e-4 for forward ops that reduce in another
// order or use CUDA's expf/erff, 1e-3 for gradients. Adding an op is adding a row here.
#include "op_table.hpp"

#include <array>
#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

using namespace medseg;
using namespace medseg::op_table;

namespace {

const Shape volume{2, 3, 5, 6, 7};

// -- Point-wise activations -------------------------------------------------------------

struct ActivationCase {
  ops::Activation f;
  float alpha;
  const char* name;
  double (*reference)(double x, double alpha);
};

const ActivationCase activation_cases[] = {
    {ops::Activation::relu, 0.0f, "relu", [](double x, double) { return x > 0 ? x : 0.0; }},
    {ops::Activation::leaky_relu, 0.01f, "leaky_relu", [](double x, double a) { return x > 0 ? x : a * x; }},
    {ops::Activation::elu, 1.0f, "elu", [](double x, double a) { return x > 0 ? x : a * std::expm1(x); }},
    {ops::Activation::gelu, 0.0f, "gelu", [](double x, double) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }},
    {ops::Activation::sigmoid, 0.0f, "sigmoid", [](double x, double) { return 1.0 / (1.0 + std::exp(-x)); }},
};

Tensor<float> activation_on_cpu(const ActivationCase& a, const Tensor<float>& x) {
  auto y = Tensor<float>::empty(x.shape());
  ops::activation_forward(a.f, a.alpha, x, y);
  return y;
}

void add_activation_rows(std::vector<OpRow>& rows) {
  for (const ActivationCase& a : activation_cases) {
    rows.push_back(row(
        std::string("activation_forward ") + a.name, "x " + volume.to_string(), 1e-4,
        [a](auto b) {
          using B = decltype(b);
          const auto x = off_zero<B>(volume, 1);
          auto y = Tensor<float, B>::empty(volume);
          ops::activation_forward(a.f, a.alpha, x, y);
          return Outputs{host(y)};
        },
        [a](const Outputs& out) {
          const auto x = off_zero<Cpu>(volume, 1);
          auto expected = Tensor<float>::empty(volume);
          for (std::int64_t i = 0; i < x.numel(); ++i)
            expected.data()[i] = static_cast<float>(a.reference(x.data()[i], a.alpha));
          check_close("y", out[0], expected, 1e-5);
        }));
    rows.push_back(row(
        std::string("activation_backward ") + a.name, "x " + volume.to_string(), 1e-3,
        [a](auto b) {
          using B = decltype(b);
          const auto x = off_zero<B>(volume, 1);
          const auto dy = input<B>(volume, 2);
          auto dx = Tensor<float, B>::empty(volume);
          // Sigmoid's derivative is taken from its output.
          Tensor<float, B> at = x;
          if (a.f == ops::Activation::sigmoid) {
            at = Tensor<float, B>::empty(volume);
            ops::activation_forward(a.f, a.alpha, x, at);
          }
          ops::activation_backward(a.f, a.alpha, at, dy, dx);
          return Outputs{host(dx)};
        },
        [a](const Outputs& out) {
          check_gradients([a](const std::vector<Tensor<float>>& in) { return activation_on_cpu(a, in[0]); },
                          {off_zero<Cpu>(volume, 1)}, input<Cpu>(volume, 2), {out[0]});
        }));
  }
}

// -- PReLU and softmax --------------------------------------------------------------------

Tensor<float> prelu_on_cpu(const Tensor<float>& x, const Tensor<float>& slope) {
  auto y = Tensor<float>::empty(x.shape());
  ops::prelu_forward(x, slope, y);
  return y;
}

Tensor<float> softmax_on_cpu(const Tensor<float>& x) {
  auto y = Tensor<float>::empty(x.shape());
  ops::softmax_channels_forward(x, y);
  return y;
}

void add_channel_rows(std::vector<OpRow>& rows) {
  const Shape slopes{volume[1]};
  rows.push_back(row(
      "prelu_forward", "x " + volume.to_string() + ", 3 slopes", 0.0,
      [slopes](auto b) {
        using B = decltype(b);
        auto y = Tensor<float, B>::empty(volume);
        ops::prelu_forward(input<B>(volume, 3), input<B>(slopes, 4, 0.1f, 0.5f), y);
        return Outputs{host(y)};
      },
      [slopes](const Outputs& out) {
        const auto x = input<Cpu>(volume, 3), a = input<Cpu>(slopes, 4, 0.1f, 0.5f);
        auto expected = Tensor<float>::empty(volume);
        const std::int64_t inner = volume[2] * volume[3] * volume[4];
        for (std::int64_t i = 0; i < x.numel(); ++i) {
          const float v = x.data()[i], s = a.data()[(i / inner) % volume[1]];
          expected.data()[i] = v > 0 ? v : s * v;
        }
        check_close("y", out[0], expected, 0.0);
      }));
  // From the input, and from the output (positive slopes): the same gradients.
  for (const bool from_output : {false, true}) {
    rows.push_back(row(
        from_output ? "prelu_backward_from_output" : "prelu_backward", "x " + volume.to_string() + ", 3 slopes",
        1e-3,
        [slopes, from_output](auto b) {
          using B = decltype(b);
          const auto x = off_zero<B>(volume, 3), a = input<B>(slopes, 4, 0.1f, 0.5f), dy = input<B>(volume, 5);
          auto dx = Tensor<float, B>::empty(volume);
          auto da = Tensor<float, B>::zeros(slopes);
          if (from_output) {
            auto y = Tensor<float, B>::empty(volume);
            ops::prelu_forward(x, a, y);
            ops::prelu_backward_from_output(y, a, dy, dx, da);
          } else {
            ops::prelu_backward(x, a, dy, dx, da);
          }
          return Outputs{host(dx), host(da)};
        },
        [slopes](const Outputs& out) {
          check_gradients([](const std::vector<Tensor<float>>& in) { return prelu_on_cpu(in[0], in[1]); },
                          {off_zero<Cpu>(volume, 3), input<Cpu>(slopes, 4, 0.1f, 0.5f)}, input<Cpu>(volume, 5),
                          {out[0], out[1]});
        }));
  }
  rows.push_back(row(
      "softmax_channels_forward", "x " + volume.to_string(), 1e-4,
      [](auto b) {
        using B = decltype(b);
        auto y = Tensor<float, B>::empty(volume);
        ops::softmax_channels_forward(input<B>(volume, 6, -4.0f, 4.0f), y);
        return Outputs{host(y)};
      },
      [](const Outputs& out) {
        const auto x = input<Cpu>(volume, 6, -4.0f, 4.0f);
        auto expected = Tensor<float>::empty(volume);
        const std::int64_t c = volume[1], inner = volume[2] * volume[3] * volume[4];
        for (std::int64_t n = 0; n < volume[0]; ++n)
          for (std::int64_t v = 0; v < inner; ++v) {
            double sum = 0.0;
            for (std::int64_t k = 0; k < c; ++k) sum += std::exp(x.data()[(n * c + k) * inner + v]);
            for (std::int64_t k = 0; k < c; ++k)
              expected.data()[(n * c + k) * inner + v] = static_cast<float>(std::exp(x.data()[(n * c + k) * inner + v]) / sum);
          }
        check_close("y", out[0], expected, 1e-5);
      }));
  rows.push_back(row(
      "softmax_channels_backward", "x " + volume.to_string(), 1e-3,
      [](auto b) {
        using B = decltype(b);
        auto y = Tensor<float, B>::empty(volume), dx = Tensor<float, B>::empty(volume);
        ops::softmax_channels_forward(input<B>(volume, 6, -4.0f, 4.0f), y);
        ops::softmax_channels_backward(y, input<B>(volume, 7), dx);
        return Outputs{host(dx)};
      },
      [](const Outputs& out) {
        check_gradients([](const std::vector<Tensor<float>>& in) { return softmax_on_cpu(in[0]); },
                        {input<Cpu>(volume, 6, -4.0f, 4.0f)}, input<Cpu>(volume, 7), {out[0]});
      }));
}

// -- Matrix products and a Linear layer's bias ----------------------------------------------

/// op(A) op(B) in double, row-major, batched over a leading axis when 3-D.
Tensor<float> product(bool ta, bool tb, const Tensor<float>& a, const Tensor<float>& b, const Shape& c_shape) {
  const int r = a.rank() - 2;
  const std::int64_t batch = r ? a.size(0) : 1, m = c_shape[r], n = c_shape[r + 1];
  const std::int64_t k = ta ? a.size(r) : a.size(r + 1);
  auto c = Tensor<float>::empty(c_shape);
  for (std::int64_t p = 0; p < batch; ++p)
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        double s = 0.0;
        for (std::int64_t q = 0; q < k; ++q) {
          const float av = a.data()[p * m * k + (ta ? q * m + i : i * k + q)];
          const float bv = b.data()[p * k * n + (tb ? j * k + q : q * n + j)];
          s += static_cast<double>(av) * bv;
        }
        c.data()[(p * m + i) * n + j] = static_cast<float>(s);
      }
  return c;
}

void add_gemm_rows(std::vector<OpRow>& rows) {
  struct Case {
    bool ta, tb;
    Shape a, b, c;
  };
  const Case cases[] = {{false, false, {7, 5}, {5, 9}, {7, 9}},
                        {false, true, {7, 5}, {9, 5}, {7, 9}},
                        {true, false, {5, 7}, {5, 9}, {7, 9}},
                        {true, true, {3, 5, 7}, {3, 9, 5}, {3, 7, 9}}};
  for (const Case& g : cases) {
    const std::string name = std::string("gemm") + (g.ta ? " A^T" : " A") + (g.tb ? " B^T" : " B");
    rows.push_back(row(
        name, "A " + g.a.to_string() + ", B " + g.b.to_string(), 1e-4,
        [g](auto b) {
          using B = decltype(b);
          auto c = input<B>(g.c, 10);
          ops::gemm(g.ta, g.tb, 0.5f, input<B>(g.a, 8), input<B>(g.b, 9), 2.0f, c);
          return Outputs{host(c)};
        },
        [g](const Outputs& out) {
          const auto p = product(g.ta, g.tb, input<Cpu>(g.a, 8), input<Cpu>(g.b, 9), g.c);
          const auto c0 = input<Cpu>(g.c, 10);
          auto expected = Tensor<float>::empty(g.c);
          for (std::int64_t i = 0; i < p.numel(); ++i) expected.data()[i] = 0.5f * p.data()[i] + 2.0f * c0.data()[i];
          check_close("C", out[0], expected, 1e-5);
        }));
  }
  const Shape matrix{11, 6}, bias{6};
  rows.push_back(row(
      "fill_rows", "y " + matrix.to_string(), 0.0,
      [=](auto b) {
        using B = decltype(b);
        auto y = Tensor<float, B>::zeros(matrix);
        ops::fill_rows(input<B>(bias, 11), y);
        return Outputs{host(y)};
      },
      [=](const Outputs& out) {
        const auto v = input<Cpu>(bias, 11);
        auto expected = Tensor<float>::empty(matrix);
        for (std::int64_t i = 0; i < expected.numel(); ++i) expected.data()[i] = v.data()[i % bias[0]];
        check_close("y", out[0], expected, 0.0);
      }));
  rows.push_back(row(
      "accumulate_column_sums", "dy " + matrix.to_string(), 1e-5,
      [=](auto b) {
        using B = decltype(b);
        auto db = input<B>(bias, 12);
        ops::accumulate_column_sums(input<B>(matrix, 13), db);
        return Outputs{host(db)};
      },
      [=](const Outputs& out) {
        const auto g = input<Cpu>(matrix, 13), db0 = input<Cpu>(bias, 12);
        auto expected = Tensor<float>::empty(bias);
        for (std::int64_t j = 0; j < bias[0]; ++j) {
          double s = 0.0;
          for (std::int64_t r = 0; r < matrix[0]; ++r) s += g.data()[r * bias[0] + j];
          expected.data()[j] = static_cast<float>(db0.data()[j] + s);
        }
        check_close("dbias", out[0], expected, 1e-6);
      }));
}

// -- Convolutions -----------------------------------------------------------------------------

/// conv3d_forward's result in double loops, PyTorch's definitions (transposed: the adjoint).
Tensor<float> convolution(const Conv3dShape& s, const Tensor<float>& x, const Tensor<float>& w, const Tensor<float>& bias) {
  const auto o = s.output();
  auto y = Tensor<float>::zeros(s.output_shape());
  const std::int64_t cin_g = s.in_channels / s.groups, cout_g = s.out_channels / s.groups;
  const auto& in = s.input;
  std::vector<double> acc(static_cast<std::size_t>(y.numel()), 0.0);
  auto at_out = [&](std::int64_t n, std::int64_t c, std::int64_t z, std::int64_t yy, std::int64_t xx) -> double& {
    return acc[static_cast<std::size_t>((((n * s.out_channels + c) * o[0] + z) * o[1] + yy) * o[2] + xx)];
  };
  for (std::int64_t n = 0; n < s.batch; ++n)
    for (std::int64_t ci = 0; ci < s.in_channels; ++ci)
      for (std::int64_t iz = 0; iz < in[0]; ++iz)
        for (std::int64_t iy = 0; iy < in[1]; ++iy)
          for (std::int64_t ix = 0; ix < in[2]; ++ix) {
            const std::int64_t g = ci / cin_g;
            const double xv = x.data()[(((n * s.in_channels + ci) * in[0] + iz) * in[1] + iy) * in[2] + ix];
            for (std::int64_t co = g * cout_g; co < (g + 1) * cout_g; ++co)
              for (std::int64_t kz = 0; kz < s.kernel[0]; ++kz)
                for (std::int64_t ky = 0; ky < s.kernel[1]; ++ky)
                  for (std::int64_t kx = 0; kx < s.kernel[2]; ++kx) {
                    const std::int64_t k = (kz * s.kernel[1] + ky) * s.kernel[2] + kx;
                    const std::int64_t ks = s.kernel[0] * s.kernel[1] * s.kernel[2];
                    if (s.transposed) {
                      const std::int64_t oz = iz * s.stride[0] - s.padding[0] + kz * s.dilation[0];
                      const std::int64_t oy = iy * s.stride[1] - s.padding[1] + ky * s.dilation[1];
                      const std::int64_t ox = ix * s.stride[2] - s.padding[2] + kx * s.dilation[2];
                      if (oz < 0 || oy < 0 || ox < 0 || oz >= o[0] || oy >= o[1] || ox >= o[2]) continue;
                      at_out(n, co, oz, oy, ox) += xv * w.data()[(ci * cout_g + (co - g * cout_g)) * ks + k];
                    } else {
                      // Output voxels that read (iz, iy, ix) through tap k.
                      const std::int64_t pz = iz + s.padding[0] - kz * s.dilation[0];
                      const std::int64_t py = iy + s.padding[1] - ky * s.dilation[1];
                      const std::int64_t px = ix + s.padding[2] - kx * s.dilation[2];
                      if (pz < 0 || py < 0 || px < 0 || pz % s.stride[0] || py % s.stride[1] || px % s.stride[2]) continue;
                      const std::int64_t oz = pz / s.stride[0], oy = py / s.stride[1], ox = px / s.stride[2];
                      if (oz >= o[0] || oy >= o[1] || ox >= o[2]) continue;
                      at_out(n, co, oz, oy, ox) += xv * w.data()[(co * cin_g + (ci - g * cin_g)) * ks + k];
                    }
                  }
          }
  const std::int64_t plane = o[0] * o[1] * o[2];
  for (std::int64_t i = 0; i < y.numel(); ++i)
    y.data()[i] = static_cast<float>(acc[static_cast<std::size_t>(i)] + bias.data()[(i / plane) % s.out_channels]);
  return y;
}

void add_conv_rows(std::vector<OpRow>& rows) {
  const Conv3dShape cases[] = {
      {.batch = 2, .in_channels = 3, .out_channels = 4, .input = {5, 6, 7}, .padding = {1, 1, 1}},
      {.batch = 1, .in_channels = 4, .out_channels = 6, .input = {6, 6, 5}, .kernel = {2, 2, 2}, .stride = {2, 2, 2}},
      {.batch = 1, .in_channels = 4, .out_channels = 6, .input = {5, 4, 6}, .kernel = {1, 3, 3}, .padding = {0, 1, 1},
       .groups = 2},
      {.batch = 2, .in_channels = 4, .out_channels = 3, .input = {3, 4, 3}, .kernel = {2, 2, 2}, .stride = {2, 2, 2},
       .transposed = true},
  };
  for (const Conv3dShape& s : cases) {
    const std::string shapes = s.to_string();
    const std::string kind = s.transposed ? "transposed " : s.groups > 1 ? "grouped " : "";
    rows.push_back(row(
        "conv3d_forward " + kind, shapes, 1e-4,
        [s](auto b) {
          using B = decltype(b);
          const auto bias = input<B>(s.bias_shape(), 22);
          auto y = Tensor<float, B>::empty(s.output_shape());
          ops::conv3d_forward(s, input<B>(s.input_shape(), 20), input<B>(s.weight_shape(), 21), &bias, y);
          return Outputs{host(y)};
        },
        [s](const Outputs& out) {
          const auto expected = convolution(s, input<Cpu>(s.input_shape(), 20), input<Cpu>(s.weight_shape(), 21),
                                            input<Cpu>(s.bias_shape(), 22));
          check_close("y", out[0], expected, 1e-5);
        }));
    rows.push_back(row(
        "conv3d_backward " + kind, shapes, 1e-3,
        [s](auto b) {
          using B = decltype(b);
          auto dx = Tensor<float, B>::empty(s.input_shape()), dw = Tensor<float, B>::empty(s.weight_shape());
          auto db = Tensor<float, B>::empty(s.bias_shape());
          ops::conv3d_backward(s, input<B>(s.input_shape(), 20), input<B>(s.weight_shape(), 21),
                               input<B>(s.output_shape(), 23), &dx, dw, &db);
          return Outputs{host(dx), host(dw), host(db)};
        },
        [s](const Outputs& out) {
          check_gradients(
              [s](const std::vector<Tensor<float>>& in) {
                auto y = Tensor<float>::empty(s.output_shape());
                ops::conv3d_forward(s, in[0], in[1], &in[2], y);
                return y;
              },
              {input<Cpu>(s.input_shape(), 20), input<Cpu>(s.weight_shape(), 21), input<Cpu>(s.bias_shape(), 22)},
              input<Cpu>(s.output_shape(), 23), {out[0], out[1], out[2]});
        }));
  }
}

// -- Normalisation ---------------------------------------------------------------------------

struct NormCase {
  const char* name;
  ops::NormSets sets;
  Shape x;
  std::int64_t channels;  // affine entries
};

std::vector<NormCase> norm_cases() {
  return {{"group", ops::NormSets::group(2, 6, 30, 3), {2, 6, 2, 3, 5}, 6},
          {"instance", ops::NormSets::group(2, 3, 40, 3), {2, 3, 4, 2, 5}, 3},
          {"batch", ops::NormSets::batch(3, 4, 10), {3, 4, 2, 5, 1}, 4},
          {"last_axis", ops::NormSets::last_axis(12, 8), {12, 8}, 8},
          {"channels", ops::NormSets::channels(2, 5, 12), {2, 5, 3, 4, 1}, 5}};
}

/// normalize_forward in double over the elements of each set.
Tensor<float> normalized(const ops::NormSets& g, const Tensor<float>& x, const Tensor<float>& gamma,
                         const Tensor<float>& beta, double eps) {
  auto y = Tensor<float>::empty(x.shape());
  for (std::int64_t k = 0; k < g.sets; ++k) {
    double sum = 0.0, squares = 0.0;
    for (std::int64_t j = 0; j < g.segments; ++j)
      for (std::int64_t i = 0; i < g.length; ++i) sum += x.data()[g.base(k, j) + i];
    const double mean = sum / static_cast<double>(g.set_size());
    for (std::int64_t j = 0; j < g.segments; ++j)
      for (std::int64_t i = 0; i < g.length; ++i) squares += std::pow(x.data()[g.base(k, j) + i] - mean, 2);
    const double rstd = 1.0 / std::sqrt(squares / static_cast<double>(g.set_size()) + eps);
    for (std::int64_t j = 0; j < g.segments; ++j)
      for (std::int64_t i = 0; i < g.length; ++i) {
        const std::int64_t c = g.channel(k, j) + i * g.channel_element_step;
        y.data()[g.base(k, j) + i] =
            static_cast<float>((x.data()[g.base(k, j) + i] - mean) * rstd * gamma.data()[c] + beta.data()[c]);
      }
  }
  return y;
}

void add_norm_rows(std::vector<OpRow>& rows) {
  constexpr double eps = 1e-5;
  for (const NormCase& n : norm_cases()) {
    const Shape affine{n.channels};
    rows.push_back(row(
        std::string("normalize_forward ") + n.name, "x " + n.x.to_string(), 1e-4,
        [n, affine](auto b) {
          using B = decltype(b);
          const auto gamma = input<B>(affine, 31, 0.5f, 1.5f), beta = input<B>(affine, 32);
          auto y = Tensor<float, B>::empty(n.x);
          ops::normalize_forward(n.sets, input<B>(n.x, 30), y, gamma.data(), beta.data(), eps);
          return Outputs{host(y)};
        },
        [n, affine](const Outputs& out) {
          const auto expected = normalized(n.sets, input<Cpu>(n.x, 30), input<Cpu>(affine, 31, 0.5f, 1.5f),
                                           input<Cpu>(affine, 32), eps);
          check_close("y", out[0], expected, 1e-5);
        }));
    rows.push_back(row(
        std::string("normalize_backward ") + n.name, "x " + n.x.to_string(), 1e-3,
        [n, affine](auto b) {
          using B = decltype(b);
          const auto x = input<B>(n.x, 30), gamma = input<B>(affine, 31, 0.5f, 1.5f), beta = input<B>(affine, 32);
          auto y = Tensor<float, B>::empty(n.x), dx = Tensor<float, B>::empty(n.x);
          auto dgamma = Tensor<float, B>::zeros(affine), dbeta = Tensor<float, B>::zeros(affine);
          const auto stats = ops::normalize_forward(n.sets, x, y, gamma.data(), beta.data(), eps);
          ops::normalize_backward(n.sets, stats, eps, x, input<B>(n.x, 33), dx, gamma.data(), dgamma.data(),
                                  dbeta.data());
          return Outputs{host(dx), host(dgamma), host(dbeta)};
        },
        [n, affine](const Outputs& out) {
          check_gradients(
              [n](const std::vector<Tensor<float>>& in) { return normalized(n.sets, in[0], in[1], in[2], eps); },
              {input<Cpu>(n.x, 30), input<Cpu>(affine, 31, 0.5f, 1.5f), input<Cpu>(affine, 32)}, input<Cpu>(n.x, 33),
              {out[0], out[1], out[2]}, 1e-2, 2e-2);
        }));
  }
  const Shape x{2, 4, 3, 5, 2}, c{4};
  // BatchNorm's map fused into PReLU (models::NormActivation): the factors from batch or
  // running statistics, then PReLU of the mapped input in one pass, and its gradients.
  rows.push_back(row(
      "norm_factors running_norm_factors", "x " + x.to_string(), 1e-5,
      [=](auto b) {
        using B = decltype(b);
        const auto gamma = input<B>(c, 37, 0.5f, 1.5f), beta = input<B>(c, 38);
        auto scale = Tensor<float, B>::empty(c), shift = Tensor<float, B>::empty(c);
        const auto sets = ops::NormSets::batch(x[0], x[1], x[2] * x[3] * x[4]);
        const auto stats = ops::normalize_forward(sets, input<B>(x, 34), Tensor<float, B>(), gamma.data(), beta.data(), eps);
        ops::norm_factors(stats, gamma.data(), beta.data(), eps, scale, shift);
        auto running_scale = Tensor<float, B>::empty(c), running_shift = Tensor<float, B>::empty(c);
        ops::running_norm_factors(input<B>(c, 35), input<B>(c, 36, 0.5f, 2.0f), gamma.data(), beta.data(), eps,
                                  running_scale, running_shift);
        return Outputs{host(scale), host(shift), host(running_scale), host(running_shift)};
      },
      [=](const Outputs& out) {
        // Mapping x by the factors is normalising it (normalize_forward's reference).
        const auto v = input<Cpu>(x, 34), gamma = input<Cpu>(c, 37, 0.5f, 1.5f), beta = input<Cpu>(c, 38);
        const auto expected = normalized(ops::NormSets::batch(x[0], x[1], x[2] * x[3] * x[4]), v, gamma, beta, eps);
        auto mapped = Tensor<float>::empty(x);
        const std::int64_t inner = x[2] * x[3] * x[4];
        for (std::int64_t i = 0; i < v.numel(); ++i) {
          const std::int64_t k = (i / inner) % x[1];
          mapped.data()[i] = v.data()[i] * out[0].data()[k] + out[1].data()[k];
        }
        check_close("x * scale + shift", mapped, expected, 1e-5);
        const auto rm = input<Cpu>(c, 35), rv = input<Cpu>(c, 36, 0.5f, 2.0f);
        auto scale = Tensor<float>::empty(c), shift = Tensor<float>::empty(c);
        for (std::int64_t k = 0; k < c[0]; ++k) {
          const double a = gamma.data()[k] / std::sqrt(static_cast<double>(rv.data()[k]) + eps);
          scale.data()[k] = static_cast<float>(a);
          shift.data()[k] = static_cast<float>(beta.data()[k] - rm.data()[k] * a);
        }
        check_close("running scale", out[2], scale, 1e-6);
        check_close("running shift", out[3], shift, 1e-6);
      }));
  auto prelu_of_affine = [=](const std::vector<Tensor<float>>& in) {
    auto mapped = Tensor<float>::empty(x);
    ops::channel_affine(in[0], in[1].to_vector(), in[2].to_vector(), mapped);
    return prelu_on_cpu(mapped, in[3]);
  };
  rows.push_back(row(
      "prelu_affine_forward", "x " + x.to_string(), 1e-6,
      [=](auto b) {
        using B = decltype(b);
        auto y = Tensor<float, B>::empty(x);
        ops::prelu_affine_forward(input<B>(x, 34), input<B>(c, 35, 0.5f, 1.5f), input<B>(c, 36), input<B>(c, 39, 0.1f, 0.5f), y);
        return Outputs{host(y)};
      },
      [=](const Outputs& out) {
        // Bit for bit channel_affine then prelu_forward.
        check_close("y", out[0],
                    prelu_of_affine({input<Cpu>(x, 34), input<Cpu>(c, 35, 0.5f, 1.5f), input<Cpu>(c, 36),
                                     input<Cpu>(c, 39, 0.1f, 0.5f)}),
                    0.0);
      }));
  rows.push_back(row(
      "prelu_affine_backward", "x " + x.to_string(), 1e-3,
      [=](auto b) {
        using B = decltype(b);
        auto dx = Tensor<float, B>::empty(x);
        auto da = Tensor<float, B>::zeros(c);
        ops::prelu_affine_backward(input<B>(x, 34), input<B>(c, 35, 0.5f, 1.5f), input<B>(c, 36),
                                   input<B>(c, 39, 0.1f, 0.5f), input<B>(x, 40), dx, da);
        return Outputs{host(dx), host(da)};
      },
      [=](const Outputs& out) {
        // dx is the gradient with respect to the mapped input: d/dx of prelu(mapped(x)) / scale.
        const auto scale = input<Cpu>(c, 35, 0.5f, 1.5f);
        auto dx = out[0].clone();
        const std::int64_t inner = x[2] * x[3] * x[4];
        for (std::int64_t i = 0; i < dx.numel(); ++i) dx.data()[i] *= scale.data()[(i / inner) % x[1]];
        check_gradients(prelu_of_affine,
                        {input<Cpu>(x, 34), scale, input<Cpu>(c, 36), input<Cpu>(c, 39, 0.1f, 0.5f)},
                        input<Cpu>(x, 40), {dx, Tensor<float>(), Tensor<float>(), out[1]});
      }));
  rows.push_back(row(
      "channel_affine", "x " + x.to_string(), 1e-6,
      [=](auto b) {
        using B = decltype(b);
        auto y = Tensor<float, B>::empty(x);
        ops::channel_affine(input<B>(x, 34), input<Cpu>(c, 35).to_vector(), input<Cpu>(c, 36).to_vector(), y);
        return Outputs{host(y)};
      },
      [=](const Outputs& out) {
        const auto v = input<Cpu>(x, 34), a = input<Cpu>(c, 35), t = input<Cpu>(c, 36);
        auto expected = Tensor<float>::empty(x);
        const std::int64_t inner = x[2] * x[3] * x[4];
        for (std::int64_t i = 0; i < v.numel(); ++i) {
          const std::int64_t k = (i / inner) % x[1];
          expected.data()[i] = static_cast<float>(static_cast<double>(v.data()[i]) * a.data()[k] + t.data()[k]);
        }
        check_close("y", out[0], expected, 1e-6);
      }));
}

// -- Pooling and resizing --------------------------------------------------------------------

/// Max or average pooling in plain loops (PyTorch's floor mode and padding rules).
Tensor<float> pooled(const ops::Pool3dShape& s, const Tensor<float>& x, bool max, bool count_include_pad) {
  const auto o = s.output();
  auto y = Tensor<float>::empty(s.output_shape());
  const auto& in = s.input;
  std::int64_t out = 0;
  for (std::int64_t p = 0; p < s.batch * s.channels; ++p)
    for (std::int64_t z = 0; z < o[0]; ++z)
      for (std::int64_t yy = 0; yy < o[1]; ++yy)
        for (std::int64_t xx = 0; xx < o[2]; ++xx) {
          double best = -INFINITY, sum = 0.0;
          std::int64_t count = 0;
          for (std::int64_t kz = 0; kz < s.kernel[0]; ++kz)
            for (std::int64_t ky = 0; ky < s.kernel[1]; ++ky)
              for (std::int64_t kx = 0; kx < s.kernel[2]; ++kx) {
                const std::int64_t iz = z * s.stride[0] - s.padding[0] + kz, iy = yy * s.stride[1] - s.padding[1] + ky;
                const std::int64_t ix = xx * s.stride[2] - s.padding[2] + kx;
                ++count;
                if (iz < 0 || iy < 0 || ix < 0 || iz >= in[0] || iy >= in[1] || ix >= in[2]) continue;
                const double v = x.data()[((p * in[0] + iz) * in[1] + iy) * in[2] + ix];
                best = std::max(best, v);
                sum += v;
              }
          if (!count_include_pad) {
            count = 0;
            for (std::int64_t kz = 0; kz < s.kernel[0]; ++kz)
              for (std::int64_t ky = 0; ky < s.kernel[1]; ++ky)
                for (std::int64_t kx = 0; kx < s.kernel[2]; ++kx) {
                  const std::int64_t iz = z * s.stride[0] - s.padding[0] + kz, iy = yy * s.stride[1] - s.padding[1] + ky;
                  const std::int64_t ix = xx * s.stride[2] - s.padding[2] + kx;
                  count += iz >= 0 && iy >= 0 && ix >= 0 && iz < in[0] && iy < in[1] && ix < in[2];
                }
          }
          y.data()[out++] = static_cast<float>(max ? best : sum / static_cast<double>(count));
        }
  return y;
}

void add_pool_rows(std::vector<OpRow>& rows) {
  const ops::Pool3dShape cases[] = {
      {.batch = 2, .channels = 3, .input = {6, 5, 7}},
      {.batch = 1, .channels = 2, .input = {5, 6, 5}, .kernel = {3, 3, 3}, .stride = {2, 2, 2}, .padding = {1, 1, 1}},
  };
  for (const auto& s : cases) {
    const Shape x = {s.batch, s.channels, s.input[0], s.input[1], s.input[2]};
    const std::string shapes = "x " + x.to_string() + " kernel " + std::to_string(s.kernel[0]);
    rows.push_back(row(
        "max_pool3d_forward", shapes, 0.0,
        [s, x](auto b) {
          using B = decltype(b);
          auto y = Tensor<float, B>::empty(s.output_shape());
          auto argmax = Tensor<std::int32_t, B>::empty(s.output_shape());
          ops::max_pool3d_forward(s, input<B>(x, 40), y, argmax);
          return Outputs{host(y), host(argmax)};
        },
        [s, x](const Outputs& out) { check_close("y", out[0], pooled(s, input<Cpu>(x, 40), true, false), 0.0); }));
    rows.push_back(row(
        "max_pool3d_backward", shapes, 0.0,
        [s, x](auto b) {
          using B = decltype(b);
          auto y = Tensor<float, B>::empty(s.output_shape()), dx = Tensor<float, B>::empty(x);
          auto argmax = Tensor<std::int32_t, B>::empty(s.output_shape());
          ops::max_pool3d_forward(s, input<B>(x, 40), y, argmax);
          ops::max_pool3d_backward(s, argmax, input<B>(s.output_shape(), 41), dx);
          return Outputs{host(dx)};
        },
        [s, x](const Outputs& out) {
          // A small step: random values are rarely within 2e-3 of their window's runner-up.
          check_gradients([s](const std::vector<Tensor<float>>& in) { return pooled(s, in[0], true, false); },
                          {input<Cpu>(x, 40)}, input<Cpu>(s.output_shape(), 41), {out[0]}, 1e-3, 1e-2);
        }));
    for (const bool include_pad : {true, false}) {
      const std::string pad = include_pad ? " count_include_pad" : "";
      rows.push_back(row(
          "avg_pool3d_forward" + pad, shapes, 1e-6,
          [s, x, include_pad](auto b) {
            using B = decltype(b);
            auto y = Tensor<float, B>::empty(s.output_shape());
            ops::avg_pool3d_forward(s, include_pad, input<B>(x, 42), y);
            return Outputs{host(y)};
          },
          [s, x, include_pad](const Outputs& out) {
            check_close("y", out[0], pooled(s, input<Cpu>(x, 42), false, include_pad), 1e-6);
          }));
      rows.push_back(row(
          "avg_pool3d_backward" + pad, shapes, 1e-6,
          [s, x, include_pad](auto b) {
            using B = decltype(b);
            auto dx = Tensor<float, B>::empty(x);
            ops::avg_pool3d_backward(s, include_pad, input<B>(s.output_shape(), 43), dx);
            return Outputs{host(dx)};
          },
          [s, x, include_pad](const Outputs& out) {
            check_gradients(
                [s, include_pad](const std::vector<Tensor<float>>& in) { return pooled(s, in[0], false, include_pad); },
                {input<Cpu>(x, 42)}, input<Cpu>(s.output_shape(), 43), {out[0]});
          }));
    }
  }
}

/// Trilinear resizing with PyTorch's half-pixel rule (align_corners false), in double.
Tensor<float> trilinear(const ops::TrilinearShape& s, const Tensor<float>& x) {
  std::array<std::vector<std::array<double, 3>>, 3> axes;  // per output index: i0, i1, w1
  for (int a = 0; a < 3; ++a)
    for (std::int64_t o = 0; o < s.output[a]; ++o) {
      const double src = std::max(0.0, (static_cast<double>(o) + 0.5) * s.ratio[a] - 0.5);
      const double i0 = std::min(std::floor(src), static_cast<double>(s.input[a] - 1));
      axes[a].push_back({i0, std::min(i0 + 1, static_cast<double>(s.input[a] - 1)), src - i0});
    }
  auto y = Tensor<float>::empty({s.batch, s.channels, s.output[0], s.output[1], s.output[2]});
  const auto& in = s.input;
  std::int64_t out = 0;
  for (std::int64_t p = 0; p < s.batch * s.channels; ++p)
    for (const auto& d : axes[0])
      for (const auto& h : axes[1])
        for (const auto& w : axes[2]) {
          double v = 0.0;
          for (int a = 0; a < 2; ++a)
            for (int c = 0; c < 2; ++c)
              for (int e = 0; e < 2; ++e) {
                const auto iz = static_cast<std::int64_t>(d[a]), iy = static_cast<std::int64_t>(h[c]);
                const auto ix = static_cast<std::int64_t>(w[e]);
                const double weight = (a ? d[2] : 1 - d[2]) * (c ? h[2] : 1 - h[2]) * (e ? w[2] : 1 - w[2]);
                v += weight * x.data()[((p * in[0] + iz) * in[1] + iy) * in[2] + ix];
              }
          y.data()[out++] = static_cast<float>(v);
        }
  return y;
}

void add_resize_rows(std::vector<OpRow>& rows) {
  ops::TrilinearShape s{.batch = 2, .channels = 2, .input = {3, 4, 5}, .output = {6, 7, 9}};
  for (int a = 0; a < 3; ++a) s.ratio[a] = static_cast<double>(s.input[a]) / static_cast<double>(s.output[a]);
  const Shape x{2, 2, 3, 4, 5}, y{2, 2, 6, 7, 9};
  rows.push_back(row(
      "trilinear_forward", "x " + x.to_string() + " -> " + y.to_string(), 1e-4,
      [=](auto b) {
        using B = decltype(b);
        auto out = Tensor<float, B>::empty(y);
        ops::trilinear_forward(s, input<B>(x, 50), out);
        return Outputs{host(out)};
      },
      [=](const Outputs& out) { check_close("y", out[0], trilinear(s, input<Cpu>(x, 50)), 1e-5); }));
  rows.push_back(row(
      "trilinear_backward", "x " + x.to_string() + " -> " + y.to_string(), 1e-4,
      [=](auto b) {
        using B = decltype(b);
        auto dx = Tensor<float, B>::empty(x);
        ops::trilinear_backward(s, input<B>(y, 51), dx);
        return Outputs{host(dx)};
      },
      [=](const Outputs& out) {
        check_gradients([s](const std::vector<Tensor<float>>& in) { return trilinear(s, in[0]); },
                        {input<Cpu>(x, 50)}, input<Cpu>(y, 51), {out[0]});
      }));
  // Label maps of three element types, shrunk (deep supervision) and grown.
  const std::array<Shape, 2> sizes{Shape{2, 1, 3, 4, 2}, Shape{2, 1, 9, 11, 13}};
  for (const Shape& to : sizes) {
    const Shape from{2, 1, 6, 8, 5};
    auto labels = [from]<class T, class B>(T, B) {
      auto t = input<Cpu>(from, 52, 0.0f, 5.0f);
      auto l = Tensor<T>::empty(from);
      for (std::int64_t i = 0; i < t.numel(); ++i) l.data()[i] = static_cast<T>(std::floor(t.data()[i]));  // class ids
      return l.template to<B>();
    };
    auto run = [=](auto b) {
      using B = decltype(b);
      Outputs out;
      auto one = [&]<class T>(T tag) {
        auto y = Tensor<T, B>::empty(to);
        ops::resize_nearest_exact(labels(tag, b), y);
        out.push_back(host(y));
      };
      one(std::uint8_t{});
      one(std::int32_t{});
      one(float{});
      return out;
    };
    rows.push_back(row(
        "resize_nearest_exact uint8 int32 float", from.to_string() + " -> " + to.to_string(), 0.0, run,
        [=](const Outputs& out) {
          const auto x = labels(std::int32_t{}, Cpu{});
          auto expected = Tensor<float>::empty(to);
          std::int64_t i = 0;
          for (std::int64_t n = 0; n < to[0]; ++n)
            for (std::int64_t z = 0; z < to[2]; ++z)
              for (std::int64_t yy = 0; yy < to[3]; ++yy)
                for (std::int64_t xx = 0; xx < to[4]; ++xx) {
                  // PyTorch's nearest-exact: floor((i + 0.5) * in / out).
                  auto src = [](std::int64_t o, std::int64_t a, std::int64_t b) {
                    return std::min(a - 1, static_cast<std::int64_t>(std::floor((o + 0.5) * a / b)));
                  };
                  expected.data()[i++] = static_cast<float>(
                      x.data()[((n * from[2] + src(z, from[2], to[2])) * from[3] + src(yy, from[3], to[3])) * from[4] +
                               src(xx, from[4], to[4])]);
                }
          for (const auto& o : out) check_close("labels", o, expected, 0.0);
        }));
  }
}

// -- Element-wise -----------------------------------------------------------------------------

void add_elementwise_rows(std::vector<OpRow>& rows) {
  rows.push_back(row(
      "add accumulate scale", "x " + volume.to_string(), 0.0,
      [](auto b) {
        using B = decltype(b);
        const auto a = input<B>(volume, 60), c = input<B>(volume, 61);
        auto sum = Tensor<float, B>::empty(volume), acc = input<B>(volume, 62), scaled = Tensor<float, B>::empty(volume);
        ops::add(a, c, sum);
        ops::accumulate(acc, a, 0.75f);
        ops::scale(a, -1.5f, scaled);
        return Outputs{host(sum), host(acc), host(scaled)};
      },
      [](const Outputs& out) {
        const auto a = input<Cpu>(volume, 60), c = input<Cpu>(volume, 61), d = input<Cpu>(volume, 62);
        auto sum = Tensor<float>::empty(volume), acc = Tensor<float>::empty(volume), scaled = Tensor<float>::empty(volume);
        for (std::int64_t i = 0; i < a.numel(); ++i) {
          sum.data()[i] = a.data()[i] + c.data()[i];
          acc.data()[i] = d.data()[i] + 0.75f * a.data()[i];
          scaled.data()[i] = -1.5f * a.data()[i];
        }
        check_close("add", out[0], sum, 0.0);
        check_close("accumulate", out[1], acc, 0.0);
        check_close("scale", out[2], scaled, 0.0);
      }));
  const ops::DropoutMask mask{.p = 0.3f, .seed = 5, .stream = 9, .unit_size = volume[2] * volume[3] * volume[4]};
  rows.push_back(row(
      "apply_dropout (Dropout3d units)", "x " + volume.to_string(), 0.0,
      [mask](auto b) {
        using B = decltype(b);
        auto y = Tensor<float, B>::empty(volume);
        ops::apply_dropout(mask, input<B>(volume, 63), y);
        return Outputs{host(y)};
      },
      [mask](const Outputs& out) {
        const auto x = input<Cpu>(volume, 63);
        auto expected = Tensor<float>::empty(volume);
        for (std::int64_t i = 0; i < x.numel(); ++i)
          expected.data()[i] = mask.keeps(i) ? x.data()[i] * (1.0f / (1.0f - mask.p)) : 0.0f;
        check_close("y", out[0], expected, 1e-6);
      }));
}

// -- Loss kernels ------------------------------------------------------------------------------

const Shape logits_shape{2, 3, 10, 15, 16};  // S = 2400: two of the CPU's 2048-voxel blocks
const ops::LossExtents extents{.n = 2, .c = 3, .s = 2400};

/// Class ids in [0, 3) as an int32 index target; with `ignored`, some -1 (ignored) voxels too
/// (cross-entropy's ignore_index: Dice has none).
template <class B>
ops::LossTarget<B> index_target(bool ignored = false) {
  const auto u = input<Cpu>({extents.n * extents.s}, 70, 0.0f, ignored ? 3.2f : 2.999f);
  auto index = Tensor<std::int32_t>::empty({extents.n * extents.s});
  for (std::int64_t i = 0; i < u.numel(); ++i) index.data()[i] = u.data()[i] >= 3.0f ? -1 : static_cast<std::int32_t>(u.data()[i]);
  return {.index = index.template to<B>(), .dense = {}};
}
/// Soft labels: per voxel a distribution over the classes.
template <class B>
Tensor<float, B> soft_labels() {
  auto t = input<Cpu>(logits_shape, 71, 0.1f, 1.0f);
  const std::int64_t c = extents.c, sp = extents.s;
  for (std::int64_t n = 0; n < extents.n; ++n)
    for (std::int64_t v = 0; v < sp; ++v) {
      float sum = 0.0f;
      for (std::int64_t k = 0; k < c; ++k) sum += t.data()[(n * c + k) * sp + v];
      for (std::int64_t k = 0; k < c; ++k) t.data()[(n * c + k) * sp + v] /= sum;
    }
  return t.template to<B>();
}

/// A loss's partial sums [rows][blocks][K] added over the blocks: [rows * K].
Tensor<float> totals(const ops::LossSums& sums, std::int64_t rows, std::int64_t k) {
  REQUIRE(sums.finite);
  REQUIRE(static_cast<std::int64_t>(sums.values.size()) == rows * sums.blocks * k);
  std::vector<double> t(static_cast<std::size_t>(rows * k), 0.0);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t b = 0; b < sums.blocks; ++b)
      for (std::int64_t j = 0; j < k; ++j)
        t[static_cast<std::size_t>(r * k + j)] += sums.values[static_cast<std::size_t>((r * sums.blocks + b) * k + j)];
  auto out = Tensor<float>::empty({rows * k});
  for (std::int64_t i = 0; i < rows * k; ++i) out.data()[i] = static_cast<float>(t[static_cast<std::size_t>(i)]);
  return out;
}

/// Probabilities from logits in double: softmax over the classes or a sigmoid per element.
std::vector<double> activated(const Tensor<float>& x, bool softmax) {
  std::vector<double> p(static_cast<std::size_t>(x.numel()));
  const std::int64_t c = extents.c, sp = extents.s;
  for (std::int64_t n = 0; n < extents.n; ++n)
    for (std::int64_t v = 0; v < sp; ++v) {
      double sum = 0.0;
      for (std::int64_t k = 0; k < c; ++k) sum += softmax ? std::exp(x.data()[(n * c + k) * sp + v]) : 0.0;
      for (std::int64_t k = 0; k < c; ++k) {
        const double xv = x.data()[(n * c + k) * sp + v];
        p[static_cast<std::size_t>((n * c + k) * sp + v)] = softmax ? std::exp(xv) / sum : 1.0 / (1.0 + std::exp(-xv));
      }
    }
  return p;
}

/// The label of voxel (n, c, v) as a target value: one-hot of the index (0 where ignored) or the soft label.
double target_at(const ops::LossTarget<Cpu>& t, std::int64_t n, std::int64_t c, std::int64_t v) {
  if (t.is_index()) return t.index.data()[n * extents.s + v] == c ? 1.0 : 0.0;
  return t.dense.data()[(n * extents.c + c) * extents.s + v];
}

void add_loss_rows(std::vector<OpRow>& rows) {
  const Shape labels_shape{extents.n, 1, 10, 15, 16};
  rows.push_back(row(
      "labels_to_index labels_to_one_hot first_invalid_label first_outside_unit_interval",
      "labels " + labels_shape.to_string(), 0.0,
      [=](auto b) {
        using B = decltype(b);
        auto l = Tensor<std::uint8_t>::empty(labels_shape);
        const auto u = input<Cpu>(labels_shape, 72, 0.0f, 3.0f);
        for (std::int64_t i = 0; i < l.numel(); ++i) l.data()[i] = static_cast<std::uint8_t>(u.data()[i]);
        l.data()[777] = 255;  // the ignore label
        const auto labels = l.template to<B>();
        auto index = Tensor<std::int32_t, B>::empty({l.numel()});
        ops::labels_to_index(labels, std::optional<std::int64_t>(255), index);
        l.data()[777] = 2;
        auto dense = Tensor<float, B>::empty(logits_shape);
        ops::labels_to_one_hot(l.template to<B>(), extents, dense);
        auto soft = soft_labels<B>();
        const float found[] = {
            static_cast<float>(ops::first_invalid_label(labels, 3, std::nullopt)),   // 777
            static_cast<float>(ops::first_invalid_label(labels, 3, 255)),            // -1
            static_cast<float>(ops::first_outside_unit_interval(soft)),              // -1
            static_cast<float>(ops::first_outside_unit_interval(dense))};           // -1
        return Outputs{host(index), host(dense), Tensor<float>::from(std::span<const float>(found), {4})};
      },
      [=](const Outputs& out) {
        const auto u = input<Cpu>(labels_shape, 72, 0.0f, 3.0f);
        auto index = Tensor<float>::empty({u.numel()});
        auto dense = Tensor<float>::zeros(logits_shape);
        for (std::int64_t i = 0; i < u.numel(); ++i) {
          const auto c = static_cast<std::int64_t>(static_cast<std::uint8_t>(u.data()[i]));
          index.data()[i] = i == 777 ? -1.0f : static_cast<float>(c);
          const std::int64_t n = i / extents.s, v = i % extents.s;
          dense.data()[(n * extents.c + (i == 777 ? 2 : c)) * extents.s + v] = 1.0f;
        }
        check_close("index", out[0], index, 0.0);
        check_close("one-hot", out[1], dense, 0.0);
        check_close("first invalid", out[2], Tensor<float>::from({777.0f, -1.0f, -1.0f, -1.0f}, {4}), 0.0);
      }));

  for (const bool soft : {false, true})
    for (const auto activation : {ops::LossActivation::softmax, ops::LossActivation::sigmoid})
      for (const bool squared : {false, true}) {
        const bool softmax = activation == ops::LossActivation::softmax;
        const std::string variant = std::string(soft ? " soft labels" : " index labels") +
                                    (softmax ? " softmax" : " sigmoid") + (squared ? " squared" : "");
        auto target = [soft]<class B>(B) {
          return soft ? ops::LossTarget<B>{.index = {}, .dense = soft_labels<B>()} : index_target<B>();
        };
        rows.push_back(row(
            "dice_sums" + variant, "logits " + logits_shape.to_string(), 1e-5,
            [=](auto b) {
              using B = decltype(b);
              auto probs = Tensor<float, B>::empty(logits_shape);
              const auto sums = ops::dice_sums(input<B>(logits_shape, 73), probs, target(b), extents, activation, squared);
              return Outputs{totals(sums, extents.n, extents.c * 3), host(probs)};
            },
            [=](const Outputs& out) {
              const auto p = activated(input<Cpu>(logits_shape, 73), softmax);
              const auto t = target(Cpu{});
              auto expected = Tensor<float>::empty({extents.n * extents.c * 3});
              for (std::int64_t n = 0; n < extents.n; ++n)
                for (std::int64_t c = 0; c < extents.c; ++c) {
                  double i = 0, sp = 0, sg = 0;
                  for (std::int64_t v = 0; v < extents.s; ++v) {
                    const double pv = p[static_cast<std::size_t>((n * extents.c + c) * extents.s + v)];
                    const double g = target_at(t, n, c, v);
                    i += pv * g;
                    sp += squared ? pv * pv : pv;
                    sg += squared ? g * g : g;
                  }
                  const std::int64_t k = (n * extents.c + c) * 3;
                  expected.data()[k] = static_cast<float>(i);
                  expected.data()[k + 1] = static_cast<float>(sp);
                  expected.data()[k + 2] = static_cast<float>(sg);
                }
              check_close("sums [N][C][I, P, G]", out[0], expected, 1e-5);
            }));
        rows.push_back(row(
            "dice_backward" + variant, "logits " + logits_shape.to_string(), 1e-3,
            [=](auto b) {
              using B = decltype(b);
              auto probs = Tensor<float, B>::empty(logits_shape);
              const auto t = target(b);
              ops::dice_sums(input<B>(logits_shape, 73), probs, t, extents, activation, squared);
              auto grad = input<B>(logits_shape, 74);
              std::vector<ops::DiceCoefficients> coef;
              for (int k = 0; k < extents.n * extents.c; ++k) coef.push_back({.a = -0.5f - 0.1f * k, .b = 0.25f + 0.05f * k});
              ops::dice_backward(probs, t, coef, extents, activation, squared, grad, 0.5f);
              return Outputs{host(grad)};
            },
            [=](const Outputs& out) {
              // grad - grad0 = 0.5 d/dx sum_{n,c,v} a g p + b p^(1 or 2): the coefficients'
              // own potential, whose derivative in p is a g + b (2p or 1).
              const auto t = target(Cpu{});
              auto potential = [=, &t](const std::vector<Tensor<float>>& in) {
                const auto p = activated(in[0], softmax);
                auto f = Tensor<float>::empty(logits_shape);
                for (std::int64_t n = 0; n < extents.n; ++n)
                  for (std::int64_t c = 0; c < extents.c; ++c) {
                    const double a = -0.5 - 0.1 * static_cast<double>(n * extents.c + c);
                    const double bb = 0.25 + 0.05 * static_cast<double>(n * extents.c + c);
                    for (std::int64_t v = 0; v < extents.s; ++v) {
                      const std::int64_t i = (n * extents.c + c) * extents.s + v;
                      const double pv = p[static_cast<std::size_t>(i)];
                      f.data()[i] = static_cast<float>(0.5 * (a * target_at(t, n, c, v) * pv + bb * (squared ? pv * pv : pv)));
                    }
                  }
                return f;
              };
              auto delta = out[0].clone();
              const auto g0 = input<Cpu>(logits_shape, 74);
              for (std::int64_t i = 0; i < delta.numel(); ++i) delta.data()[i] -= g0.data()[i];
              check_gradients(potential, {input<Cpu>(logits_shape, 73)}, Tensor<float>::ones(logits_shape), {delta},
                              1e-2, 2e-2);
            }));
      }

  const std::vector<float> class_weights{0.5f, 1.0f, 2.0f}, pos_weight{1.5f, 1.0f, 0.5f};
  for (const bool soft : {false, true}) {
    const std::string variant = soft ? " soft labels" : " index labels, ignored voxels";
    auto target = [soft]<class B>(B) {
      return soft ? ops::LossTarget<B>{.index = {}, .dense = soft_labels<B>()} : index_target<B>(true);
    };
    /// k * the weighted cross-entropy of every voxel, in double: the potential of the backward.
    auto loss_per_voxel = [=](const Tensor<float>& x, const ops::LossTarget<Cpu>& t, double k) {
      auto f = Tensor<float>::zeros({extents.n * extents.s});
      for (std::int64_t n = 0; n < extents.n; ++n)
        for (std::int64_t v = 0; v < extents.s; ++v) {
          double sum = 0.0;
          for (std::int64_t c = 0; c < extents.c; ++c) sum += std::exp(x.data()[(n * extents.c + c) * extents.s + v]);
          const double lse = std::log(sum);
          double l = 0.0;
          for (std::int64_t c = 0; c < extents.c; ++c) {
            const bool ignored = t.is_index() && t.index.data()[n * extents.s + v] < 0;
            if (!ignored)
              l += class_weights[static_cast<std::size_t>(c)] * target_at(t, n, c, v) *
                   (lse - x.data()[(n * extents.c + c) * extents.s + v]);
          }
          f.data()[n * extents.s + v] = static_cast<float>(k * l);
        }
      return f;
    };
    rows.push_back(row(
        "cross_entropy_sums" + variant, "logits " + logits_shape.to_string(), 1e-5,
        [=](auto b) {
          using B = decltype(b);
          auto probs = Tensor<float, B>::empty(logits_shape);
          const auto sums = ops::cross_entropy_sums(input<B>(logits_shape, 75), probs, target(b), extents, class_weights);
          return Outputs{totals(sums, extents.n, 2), host(probs)};
        },
        [=](const Outputs& out) {
          const auto t = target(Cpu{});
          const auto f = loss_per_voxel(input<Cpu>(logits_shape, 75), t, 1.0);
          auto expected = Tensor<float>::empty({extents.n * 2});
          for (std::int64_t n = 0; n < extents.n; ++n) {
            double l = 0.0, w = 0.0;
            for (std::int64_t v = 0; v < extents.s; ++v) {
              l += f.data()[n * extents.s + v];
              const std::int32_t y = t.is_index() ? t.index.data()[n * extents.s + v] : -1;
              if (y >= 0) w += class_weights[static_cast<std::size_t>(y)];
            }
            expected.data()[2 * n] = static_cast<float>(l);
            expected.data()[2 * n + 1] = static_cast<float>(w);
          }
          check_close("sums [N][loss, weight]", out[0], expected, 1e-5);
          check_close("probs", out[1], softmax_on_cpu(input<Cpu>(logits_shape, 75)), 1e-6);
        }));
    rows.push_back(row(
        "cross_entropy_backward" + variant, "logits " + logits_shape.to_string(), 1e-3,
        [=](auto b) {
          using B = decltype(b);
          auto probs = Tensor<float, B>::empty(logits_shape);
          const auto t = target(b);
          ops::cross_entropy_sums(input<B>(logits_shape, 75), probs, t, extents, class_weights);
          auto grad = Tensor<float, B>::zeros(logits_shape);
          ops::cross_entropy_backward(probs, t, class_weights, extents, 0.75f, grad);
          return Outputs{host(grad)};
        },
        [=](const Outputs& out) {
          const auto t = target(Cpu{});
          check_gradients([=, &t](const std::vector<Tensor<float>>& in) { return loss_per_voxel(in[0], t, 0.75); },
                          {input<Cpu>(logits_shape, 75)}, Tensor<float>::ones({extents.n * extents.s}), {out[0]});
        }));
  }
  /// k * w_c * (pw_c y softplus(-x) + (1 - y) softplus(x)) per element, in double.
  auto bce = [=](const Tensor<float>& x, const Tensor<float>& y, double k, bool weighted) {
    auto f = Tensor<float>::empty(logits_shape);
    for (std::int64_t i = 0; i < x.numel(); ++i) {
      const auto c = static_cast<std::size_t>((i / extents.s) % extents.c);
      const double v = x.data()[i], softplus = std::max(v, 0.0) + std::log1p(std::exp(-std::abs(v)));
      const double w = weighted ? class_weights[c] : 1.0;
      f.data()[i] = static_cast<float>(k * w * (pos_weight[c] * y.data()[i] * (softplus - v) + (1.0 - y.data()[i]) * softplus));
    }
    return f;
  };
  rows.push_back(row(
      "binary_cross_entropy_sums", "logits " + logits_shape.to_string(), 1e-5,
      [=](auto b) {
        using B = decltype(b);
        auto probs = Tensor<float, B>::empty(logits_shape);
        const auto sums = ops::binary_cross_entropy_sums(input<B>(logits_shape, 76, -6.0f, 6.0f), probs,
                                                         input<B>(logits_shape, 77, 0.0f, 1.0f), extents, pos_weight);
        return Outputs{totals(sums, extents.n * extents.c, 1), host(probs)};
      },
      [=](const Outputs& out) {
        const auto f = bce(input<Cpu>(logits_shape, 76, -6.0f, 6.0f), input<Cpu>(logits_shape, 77, 0.0f, 1.0f), 1.0, false);
        auto expected = Tensor<float>::zeros({extents.n * extents.c});
        std::vector<double> sums(static_cast<std::size_t>(extents.n * extents.c), 0.0);
        for (std::int64_t i = 0; i < f.numel(); ++i) sums[static_cast<std::size_t>(i / extents.s)] += f.data()[i];
        for (std::size_t r = 0; r < sums.size(); ++r) expected.data()[r] = static_cast<float>(sums[r]);
        check_close("sums [N*C]", out[0], expected, 1e-5);
      }));
  rows.push_back(row(
      "binary_cross_entropy_backward", "logits " + logits_shape.to_string(), 1e-3,
      [=](auto b) {
        using B = decltype(b);
        auto probs = Tensor<float, B>::empty(logits_shape);
        const auto y = input<B>(logits_shape, 77, 0.0f, 1.0f);
        ops::binary_cross_entropy_sums(input<B>(logits_shape, 76, -6.0f, 6.0f), probs, y, extents, pos_weight);
        auto grad = Tensor<float, B>::zeros(logits_shape);
        ops::binary_cross_entropy_backward(probs, y, pos_weight, class_weights, extents, 0.75f, grad);
        return Outputs{host(grad)};
      },
      [=](const Outputs& out) {
        const auto y = input<Cpu>(logits_shape, 77, 0.0f, 1.0f);
        check_gradients([=](const std::vector<Tensor<float>>& in) { return bce(in[0], y, 0.75, true); },
                        {input<Cpu>(logits_shape, 76, -6.0f, 6.0f)}, Tensor<float>::ones(logits_shape), {out[0]});
      }));
}

// -- Optimizer updates ---------------------------------------------------------------------------

/// Two parameters as an optimizer hands them to its fused kernels: one larger than a chunk
/// (with weight decay), one small without; each with a gradient and three state tensors.
template <class B>
struct FusedParameters {
  static constexpr std::int64_t sizes[2] = {ops::chunk_elements + 1000, 37};
  std::vector<Tensor<float, B>> value, grad, state0, state1, state2;
  ops::FusedTable<B> table;

  explicit FusedParameters(bool amsgrad) {
    std::vector<ops::FusedTensor> tensors;
    std::vector<ops::Chunk> chunks;
    for (std::size_t i = 0; i < 2; ++i) {
      const Shape shape{sizes[i]};
      value.push_back(input<B>(shape, 80 + i));
      grad.push_back(input<B>(shape, 82 + i));
      state0.push_back(input<B>(shape, 84 + i));
      state1.push_back(input<B>(shape, 86 + i, 0.0f, 1.0f));
      state2.push_back(input<B>(shape, 88 + i, 0.0f, 1.0f));
      tensors.push_back({.value = value[i].data(), .grad = grad[i].data(),
                         .state = {state0[i].data(), state1[i].data(), amsgrad ? state2[i].data() : nullptr},
                         .numel = sizes[i], .decay = i == 0});
      for (std::int64_t b = 0; b < sizes[i]; b += ops::chunk_elements)
        chunks.push_back({i, b, std::min(sizes[i], b + ops::chunk_elements)});
    }
    table.refresh(tensors, chunks);
  }
  Outputs outputs() const {
    Outputs out;
    for (std::size_t i = 0; i < 2; ++i)
      for (const auto* t : {&value, &grad, &state0, &state1, &state2}) out.push_back(host((*t)[i]));
    return out;
  }
};

void add_optim_rows(std::vector<OpRow>& rows) {
  const ops::SgdScalars sgd_cases[] = {
      {.lr = 0.01f, .weight_decay = 3e-5f},
      {.lr = 0.01f, .momentum = 0.99f, .keep = 1.0f, .weight_decay = 3e-5f, .use_momentum = true, .first = true,
       .nesterov = true},
      {.lr = 0.01f, .momentum = 0.9f, .keep = 0.9f, .weight_decay = 1e-4f, .use_momentum = true},
  };
  for (const auto& k : sgd_cases) {
    const std::string variant = !k.use_momentum ? " plain" : k.nesterov ? " nesterov, first step" : " momentum, dampening";
    rows.push_back(row(
        "sgd_update" + variant, "parameters [33768], [37]", 0.0,
        [k](auto b) {
          FusedParameters<decltype(b)> p(false);
          ops::sgd_update(p.table, k);
          return p.outputs();
        },
        [k](const Outputs& out) {
          FusedParameters<Cpu> p(false);
          for (std::size_t i = 0; i < 2; ++i) {
            const float wd = i == 0 ? k.weight_decay : 0.0f;
            for (std::int64_t j = 0; j < p.sizes[i]; ++j) {
              // torch.optim.SGD: d = g + wd p; buf = first ? d : mu buf + (1 - dampening) d;
              // d = nesterov ? d + mu buf : buf; p -= lr d.
              float& v = p.value[i].data()[j];
              float& buf = p.state0[i].data()[j];
              float d = p.grad[i].data()[j] + wd * v;
              if (k.use_momentum) {
                buf = k.first ? d : buf * k.momentum + k.keep * d;
                d = k.nesterov ? d + k.momentum * buf : buf;
              }
              v = v - k.lr * d;
            }
          }
          const Outputs expected = p.outputs();
          for (std::size_t i = 0; i < out.size(); ++i) check_close("tensor " + std::to_string(i), out[i], expected[i], 1e-6);
        }));
  }
  for (const bool amsgrad : {false, true}) {
    // Step 3 of Adam (lr 1e-3) and AdamW (weight decay 1e-2): PyTorch's scalars for that step.
    const double b1 = 0.9, b2 = 0.999, lr = 1e-3, bc1 = 1 - std::pow(b1, 3), bc2 = 1 - std::pow(b2, 3);
    auto scalars = [&](float l2, float shrink) {
      return ops::AdamScalars{.b1 = 0.9f, .one_b1 = 0.1f, .b2 = 0.999f, .one_b2 = 0.001f, .eps = 1e-8f,
                              .neg_step = static_cast<float>(-(lr / bc1)),
                              .bc2_sqrt = static_cast<float>(std::sqrt(bc2)), .l2 = l2, .shrink = shrink};
    };
    const ops::AdamStep adam{.decayed = scalars(0.0f, static_cast<float>(1 - lr * 1e-2)), .undecayed = scalars(0.0f, 1.0f)};
    rows.push_back(row(
        std::string("adam_update AdamW") + (amsgrad ? " amsgrad" : ""), "parameters [33768], [37]", 0.0,
        [adam, amsgrad](auto b) {
          FusedParameters<decltype(b)> p(amsgrad);
          ops::adam_update(p.table, adam);
          return p.outputs();
        },
        [adam, amsgrad](const Outputs& out) {
          FusedParameters<Cpu> p(amsgrad);
          for (std::size_t i = 0; i < 2; ++i) {
            const ops::AdamScalars& k = i == 0 ? adam.decayed : adam.undecayed;
            for (std::int64_t j = 0; j < p.sizes[i]; ++j) {
              // torch.optim.AdamW: p *= 1 - lr wd; m, v moving averages; p += -lr/bc1 m / (sqrt(v')/sqrt(bc2) + eps).
              float& v = p.value[i].data()[j];
              float& m = p.state0[i].data()[j];
              float& s = p.state1[i].data()[j];
              float& smax = p.state2[i].data()[j];
              const double g = p.grad[i].data()[j];
              v = static_cast<float>(v * static_cast<double>(k.shrink));
              m = static_cast<float>(0.9 * m + 0.1 * g);
              s = static_cast<float>(0.999 * s + 0.001 * g * g);
              if (amsgrad) smax = std::max(smax, s);
              v = static_cast<float>(v + k.neg_step * m / (std::sqrt(amsgrad ? smax : s) / k.bc2_sqrt + k.eps));
            }
          }
          const Outputs expected = p.outputs();
          for (std::size_t i = 0; i < out.size(); ++i) check_close("tensor " + std::to_string(i), out[i], expected[i], 1e-5);
        }));
  }
  rows.push_back(row(
      "gradient_norm_total scale_gradients", "gradients [33768], [37]; norms 2, inf, 1.5", 1e-9,
      [](auto b) {
        FusedParameters<decltype(b)> p(false);
        const float norms[] = {static_cast<float>(ops::gradient_norm_total(p.table, 2.0)),
                               static_cast<float>(ops::gradient_norm_total(p.table, INFINITY)),
                               static_cast<float>(ops::gradient_norm_total(p.table, 1.5))};
        ops::scale_gradients(p.table, 0.25f);
        return Outputs{Tensor<float>::from(std::span<const float>(norms), {3}), host(p.grad[0]), host(p.grad[1])};
      },
      [](const Outputs& out) {
        FusedParameters<Cpu> p(false);
        double two = 0, inf = 0, q = 0;
        for (const auto& g : p.grad)
          for (std::int64_t j = 0; j < g.numel(); ++j) {
            const double v = std::abs(static_cast<double>(g.data()[j]));
            two += v * v, inf = std::max(inf, v), q += std::pow(v, 1.5);
          }
        check_close("sum |g|^2, max |g|, sum |g|^1.5", out[0],
                    Tensor<float>::from({static_cast<float>(two), static_cast<float>(inf), static_cast<float>(q)}, {3}), 1e-6);
        for (std::size_t i = 0; i < 2; ++i) {
          auto scaled = p.grad[i].clone();
          for (std::int64_t j = 0; j < scaled.numel(); ++j) scaled.data()[j] *= 0.25f;
          check_close("scaled gradient", out[1 + i], scaled, 0.0);
        }
      }));
}

}  // namespace

/// Every row of the table.
std::vector<OpRow> op_rows() {
  std::vector<OpRow> rows;
  add_activation_rows(rows);
  add_channel_rows(rows);
  add_gemm_rows(rows);
  add_conv_rows(rows);
  add_norm_rows(rows);
  add_pool_rows(rows);
  add_resize_rows(rows);
  add_elementwise_rows(rows);
  add_loss_rows(rows);
  add_optim_rows(rows);
  return rows;
}

#if defined(MEDSEG_WITH_CUDA) && MEDSEG_WITH_CUDA
TEST_CASE("Every op on the GPU equals the CPU within its row's tolerance") {
  for (const OpRow& r : op_rows()) {
    SECTION(r.op + " " + r.shapes) {
      const Outputs cpu = r.run_cpu(), gpu = r.run_cuda();
      REQUIRE(gpu.size() == cpu.size());
      for (std::size_t i = 0; i < cpu.size(); ++i)
        check_close(r.op + " output " + std::to_string(i), gpu[i], cpu[i], r.tolerance);
    }
  }
}
#else
TEST_CASE("Every op on the CPU matches its reference") {
  const auto rows = op_rows();
  CHECK(rows.size() == 90);  // the whole table: a row lost in an edit shows here
  for (const OpRow& r : rows) {
    SECTION(r.op + " " + r.shapes) {
      r.reference(r.run_cpu());
    }
  }
}
#endif
