// The point-wise Cuda kernels (backends/cuda/activation.hpp, elementwise.hpp) against their
// CPU twins on the same random inputs of odd sizes, batch 2: activations, PReLU, Softmax,
// sums, concatenation and dropout. Forward results agree to 1e-4 (bit for bit where no exp or
// erf is involved), gradients to 1e-3; dropout keeps exactly the CPU's elements.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "medseg/cuda.hpp"

using namespace medseg;

namespace {

/// Uniform in [low, high) on the host; `stream` tells the inputs of one test apart.
Tensor<float> random_tensor(const Shape& shape, std::uint64_t stream, float low = -3.0f, float high = 3.0f) {
  auto t = Tensor<float>::empty(shape);
  random::uniform(t, {.seed = 20240917, .stream = stream}, low, high);
  return t;
}

/// |gpu - cpu| <= tol * max(1, |cpu|) everywhere; reports the first element that is not.
void check_close(const Tensor<float, Cuda>& gpu, const Tensor<float>& cpu, float tol) {
  REQUIRE(gpu.shape() == cpu.shape());
  const auto a = gpu.to_vector();
  const auto b = cpu.to_vector();
  std::int64_t bad = 0, first = -1;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!(std::abs(a[i] - b[i]) <= tol * std::max(1.0f, std::abs(b[i])))) {
      if (bad++ == 0) first = static_cast<std::int64_t>(i);
    }
  INFO("shape " << cpu.shape().to_string() << ": " << bad << " elements off by more than " << tol
                << (first >= 0 ? ", first at " + std::to_string(first) + ": gpu " +
                                     std::to_string(a[static_cast<std::size_t>(first)]) + ", cpu " +
                                     std::to_string(b[static_cast<std::size_t>(first)])
                               : std::string()));
  CHECK(bad == 0);
}

/// Bit-for-bit equal values (the inputs hold no NaN).
void check_equal(const Tensor<float, Cuda>& gpu, const Tensor<float>& cpu) {
  REQUIRE(gpu.shape() == cpu.shape());
  CHECK(gpu.to_vector() == cpu.to_vector());
}

/// Places the edge cases of the activations among random values: both zeros, and values far
/// out where exp and erf saturate.
void plant_edge_values(const Tensor<float>& t) {
  const float edges[] = {0.0f, -0.0f, 1e-7f, -1e-7f, 30.0f, -30.0f, 100.0f, -100.0f, 88.0f, -88.0f};
  const std::int64_t n = t.numel();
  for (std::size_t k = 0; k < std::size(edges); ++k) t.data()[(static_cast<std::int64_t>(k) * 7919) % n] = edges[k];
}

struct ActivationCase {
  ops::Activation f;
  float alpha;
  const char* name;
};
const ActivationCase activation_cases[] = {
    {ops::Activation::relu, 0.0f, "relu"},        {ops::Activation::leaky_relu, 0.1f, "leaky_relu"},
    {ops::Activation::elu, 1.3f, "elu"},          {ops::Activation::gelu, 0.0f, "gelu"},
    {ops::Activation::sigmoid, 0.0f, "sigmoid"},
};

}  // namespace

TEST_CASE("point-wise activations match the CPU, forward and backward") {
  const Shape shapes[] = {{2, 3, 5, 7, 9}, {2, 4, 33, 35, 37}, {1001}};
  for (const auto& c : activation_cases) {
    for (const auto& shape : shapes) {
      INFO(c.name << " on " << shape.to_string());
      auto x = random_tensor(shape, 1, -5.0f, 5.0f);
      plant_edge_values(x);
      auto dy = random_tensor(shape, 2, -1.0f, 1.0f);
      const auto xg = x.to<Cuda>();
      const auto dyg = dy.to<Cuda>();

      auto y = Tensor<float>::empty(shape);
      auto yg = Tensor<float, Cuda>::empty(shape);
      ops::activation_forward(c.f, c.alpha, x, y);
      ops::activation_forward(c.f, c.alpha, xg, yg);
      check_close(yg, y, 1e-4f);

      // Sigmoid's derivative reads the forward output, the others the input.
      const bool from_output = c.f == ops::Activation::sigmoid;
      auto dx = Tensor<float>::empty(shape);
      auto dxg = Tensor<float, Cuda>::empty(shape);
      ops::activation_backward(c.f, c.alpha, from_output ? y : x, dy, dx);
      ops::activation_backward(c.f, c.alpha, from_output ? yg : xg, dyg, dxg);
      check_close(dxg, dx, 1e-3f);
    }
  }
}

TEST_CASE("activations work in place on the GPU") {
  auto x = random_tensor({2, 3, 5, 7, 9}, 3);
  auto dy = random_tensor(x.shape(), 4);
  for (const auto& c : activation_cases) {
    INFO(c.name);
    auto y = Tensor<float>::empty(x.shape());
    ops::activation_forward(c.f, c.alpha, x, y);
    auto inplace = x.to<Cuda>();
    ops::activation_forward(c.f, c.alpha, inplace, inplace);
    check_close(inplace, y, 1e-4f);

    auto dx = Tensor<float>::empty(x.shape());
    ops::activation_backward(c.f, c.alpha, x, dy, dx);
    auto grad = dy.to<Cuda>();
    ops::activation_backward(c.f, c.alpha, x.to<Cuda>(), grad, grad);
    check_close(grad, dx, 1e-3f);
  }
}

TEST_CASE("activations refuse mismatched or non-contiguous tensors") {
  auto x = Tensor<float, Cuda>::zeros({2, 3, 5});
  auto wrong = Tensor<float, Cuda>::zeros({2, 3, 6});
  CHECK_THROWS_WITH(ops::activation_forward(ops::Activation::relu, 0.0f, x, wrong),
                    Catch::Contains("ops::activation_forward") && Catch::Contains("[2,3,6]"));
  CHECK_THROWS_WITH(ops::activation_backward(ops::Activation::gelu, 0.0f, x, x, wrong),
                    Catch::Contains("ops::activation_backward"));
  auto wide = Tensor<float, Cuda>::zeros({2, 6, 5});
  CHECK_THROWS_WITH(ops::activation_forward(ops::Activation::elu, 1.0f, wide.slice(1, 0, 3), x),
                    Catch::Contains("ops::activation_forward") && Catch::Contains("contiguous"));
}

TEST_CASE("PReLU matches the CPU with per-channel and shared slopes") {
  struct Case {
    Shape shape;
    std::int64_t slopes;
  };
  // {2, 3, 17, 19, 23}: rows of 7429 voxels span two of the GPU's chunks; {2, 3, 41, 43, 47}
  // spans 21; {1001} is a rank-1 input with one slope.
  const Case cases[] = {{{2, 3, 5, 7, 9}, 3},   {{2, 3, 5, 7, 9}, 1},   {{2, 3, 17, 19, 23}, 3},
                        {{2, 3, 41, 43, 47}, 3}, {{2, 3, 41, 43, 47}, 1}, {{1001}, 1}};
  for (const auto& c : cases) {
    INFO(c.shape.to_string() << " with " << c.slopes << " slope(s)");
    auto x = random_tensor(c.shape, 5);
    plant_edge_values(x);
    auto dy = random_tensor(c.shape, 6, -1.0f, 1.0f);
    auto slope = random_tensor({c.slopes}, 7, -0.2f, 0.6f);
    const auto xg = x.to<Cuda>();
    const auto slopeg = slope.to<Cuda>();

    auto y = Tensor<float>::empty(c.shape);
    auto yg = Tensor<float, Cuda>::empty(c.shape);
    ops::prelu_forward(x, slope, y);
    ops::prelu_forward(xg, slopeg, yg);
    check_close(yg, y, 1e-4f);

    // The slope gradient is added to what is there, as on the CPU.
    auto dslope = random_tensor({c.slopes}, 8);
    auto dslopeg = dslope.to<Cuda>();
    const auto dslope_before = dslopeg.clone();
    auto dx = Tensor<float>::empty(c.shape);
    auto dxg = Tensor<float, Cuda>::empty(c.shape);
    ops::prelu_backward(x, slope, dy, dx, dslope);
    ops::prelu_backward(xg, slopeg, dy.to<Cuda>(), dxg, dslopeg);
    check_close(dxg, dx, 1e-3f);
    check_close(dslopeg, dslope, 1e-3f);

    // The reduction has a fixed order: a second run gives the same bits.
    auto again = dslope_before.clone();
    auto dx_again = Tensor<float, Cuda>::empty(c.shape);
    ops::prelu_backward(xg, slopeg, dy.to<Cuda>(), dx_again, again);
    CHECK(again.to_vector() == dslopeg.to_vector());
    CHECK(dx_again.to_vector() == dxg.to_vector());
  }
}

TEST_CASE("PReLU refuses a slope count that fits neither one nor every channel") {
  auto x = Tensor<float, Cuda>::zeros({2, 3, 4, 5});
  auto y = Tensor<float, Cuda>::zeros({2, 3, 4, 5});
  auto two = Tensor<float, Cuda>::zeros({2});
  auto three = Tensor<float, Cuda>::zeros({3});
  CHECK_THROWS_WITH(ops::prelu_forward(x, two, y), Catch::Contains("ops::prelu_forward") && Catch::Contains("slope") &&
                                                       Catch::Contains("1 or 3"));
  CHECK_THROWS_WITH(ops::prelu_backward(x, two, y, y, two), Catch::Contains("ops::prelu_backward"));
  CHECK_THROWS_WITH(ops::prelu_backward(x, three, y, y, Tensor<float, Cuda>::zeros({1})),
                    Catch::Contains("ops::prelu_backward") && Catch::Contains("dslope"));
  CHECK_THROWS_WITH(ops::prelu_forward(x, three, Tensor<float, Cuda>::zeros({2, 3, 4, 6})),
                    Catch::Contains("ops::prelu_forward") && Catch::Contains("shapes"));
}

TEST_CASE("softmax over channels matches the CPU and sums to one") {
  const Shape shapes[] = {{2, 5, 7, 9, 11}, {2, 17, 5, 7, 3}, {2, 1, 3, 5, 7}, {2, 3, 41, 43, 47}, {37}};
  for (const auto& shape : shapes) {
    INFO(shape.to_string());
    // Wide logits: exp of them unshifted would overflow, so the max must be subtracted.
    auto x = random_tensor(shape, 9, -60.0f, 120.0f);
    auto dy = random_tensor(shape, 10, -1.0f, 1.0f);
    auto y = Tensor<float>::empty(shape);
    auto yg = Tensor<float, Cuda>::empty(shape);
    ops::softmax_channels_forward(x, y);
    ops::softmax_channels_forward(x.to<Cuda>(), yg);
    check_close(yg, y, 1e-4f);

    const auto v = yg.to_vector();
    const std::int64_t outer = shape.rank() < 2 ? 1 : shape[0];
    const std::int64_t channels = shape.rank() < 2 ? 1 : shape[1];
    const std::int64_t inner = shape.product() / (outer * channels);
    float worst = 0.0f;
    for (std::int64_t n = 0; n < outer; ++n)
      for (std::int64_t i = 0; i < inner; ++i) {
        float sum = 0.0f;
        for (std::int64_t c = 0; c < channels; ++c) sum += v[static_cast<std::size_t>((n * channels + c) * inner + i)];
        worst = std::max(worst, std::abs(sum - 1.0f));
      }
    CHECK(worst <= 1e-5f);

    auto dx = Tensor<float>::empty(shape);
    auto dxg = Tensor<float, Cuda>::empty(shape);
    ops::softmax_channels_backward(y, dy, dx);
    ops::softmax_channels_backward(y.to<Cuda>(), dy.to<Cuda>(), dxg);
    check_close(dxg, dx, 1e-3f);
  }
}

TEST_CASE("softmax works in place and refuses mismatched shapes") {
  auto x = random_tensor({2, 4, 3, 5, 7}, 11);
  auto y = Tensor<float>::empty(x.shape());
  ops::softmax_channels_forward(x, y);
  auto inplace = x.to<Cuda>();
  ops::softmax_channels_forward(inplace, inplace);
  check_close(inplace, y, 1e-4f);

  auto dy = random_tensor(x.shape(), 12);
  auto dx = Tensor<float>::empty(x.shape());
  ops::softmax_channels_backward(y, dy, dx);
  auto grad = dy.to<Cuda>();
  ops::softmax_channels_backward(y.to<Cuda>(), grad, grad);
  check_close(grad, dx, 1e-3f);

  auto wrong = Tensor<float, Cuda>::zeros({2, 4, 3, 5, 6});
  CHECK_THROWS_WITH(ops::softmax_channels_forward(inplace, wrong), Catch::Contains("ops::softmax_channels_forward"));
  CHECK_THROWS_WITH(ops::softmax_channels_backward(inplace, inplace, wrong),
                    Catch::Contains("ops::softmax_channels_backward"));
}

TEST_CASE("add, accumulate and scale equal the CPU bit for bit") {
  const Shape shapes[] = {{2, 3, 5, 7, 9}, {2, 4, 33, 35, 37}, {1}};
  for (const auto& shape : shapes) {
    INFO(shape.to_string());
    auto a = random_tensor(shape, 13);
    auto b = random_tensor(shape, 14);
    const auto ag = a.to<Cuda>();
    const auto bg = b.to<Cuda>();

    auto sum = Tensor<float>::empty(shape);
    auto sumg = Tensor<float, Cuda>::empty(shape);
    ops::add(a, b, sum);
    ops::add(ag, bg, sumg);
    check_equal(sumg, sum);
    auto into_b = bg.clone();  // out may be an input
    ops::add(ag, into_b, into_b);
    check_equal(into_b, sum);

    auto dst = a.clone();
    auto dstg = ag.clone();
    ops::accumulate(dst, b, 0.37f);
    ops::accumulate(dstg, bg, 0.37f);
    check_equal(dstg, dst);
    ops::accumulate(dst, b);  // alpha defaults to 1
    ops::accumulate(dstg, bg);
    check_equal(dstg, dst);

    auto scaled = Tensor<float>::empty(shape);
    auto scaledg = Tensor<float, Cuda>::empty(shape);
    ops::scale(a, -1.7f, scaled);
    ops::scale(ag, -1.7f, scaledg);
    check_equal(scaledg, scaled);
  }

  auto x = Tensor<float, Cuda>::zeros({2, 3, 5});
  auto wrong = Tensor<float, Cuda>::zeros({2, 5, 3});
  CHECK_THROWS_WITH(ops::add(x, wrong, x), Catch::Contains("ops::add") && Catch::Contains("[2,5,3]"));
  CHECK_THROWS_WITH(ops::add(x, x, wrong), Catch::Contains("ops::add"));
  CHECK_THROWS_WITH(ops::accumulate(x, wrong), Catch::Contains("ops::accumulate"));
  CHECK_THROWS_WITH(ops::scale(x, 2.0f, wrong), Catch::Contains("ops::scale"));
  auto wide = Tensor<float, Cuda>::zeros({2, 6, 5});
  CHECK_THROWS_WITH(ops::add(wide.slice(1, 0, 3), x, x), Catch::Contains("ops::add") && Catch::Contains("contiguous"));
}

TEST_CASE("concat_channels and channel_range equal the CPU, channel-slice views included") {
  auto big_a = random_tensor({2, 7, 5, 3, 9}, 15);
  auto big_b = random_tensor({2, 4, 5, 3, 9}, 16);
  const auto big_ag = big_a.to<Cuda>();
  const auto big_bg = big_b.to<Cuda>();

  // Contiguous inputs.
  check_equal(ops::concat_channels(big_ag, big_bg), ops::concat_channels(big_a, big_b));
  // Pitched views: channels 1..3 of one and 2..3 of the other.
  const auto cat = ops::concat_channels(big_ag.slice(1, 1, 4), big_bg.slice(1, 2, 4));
  CHECK(cat.shape() == Shape{2, 5, 5, 3, 9});
  CHECK(cat.is_contiguous());
  check_equal(cat, ops::concat_channels(big_a.slice(1, 1, 4), big_b.slice(1, 2, 4)));
  // A view of a view's batch: one sample.
  check_equal(ops::concat_channels(big_ag.slice(0, 1, 2).slice(1, 0, 5), big_bg.slice(0, 1, 2)),
              ops::concat_channels(big_a.slice(0, 1, 2).slice(1, 0, 5), big_b.slice(0, 1, 2)));

  const auto range = ops::channel_range(big_ag, 2, 5);
  CHECK(range.is_contiguous());
  CHECK_FALSE(range.shares_storage_with(big_ag));
  check_equal(range, ops::channel_range(big_a, 2, 5));
  check_equal(ops::channel_range(cat, 3, 5), ops::channel_range(big_b, 2, 4));

  CHECK_THROWS_WITH(ops::concat_channels(big_ag, Tensor<float, Cuda>::zeros({2, 4, 5, 3, 8})),
                    Catch::Contains("ops::concat_channels") && Catch::Contains("[2,4,5,3,8]"));
  CHECK_THROWS_WITH(ops::concat_channels(big_ag, Tensor<float, Cuda>::zeros({3, 4, 5, 3, 9})),
                    Catch::Contains("ops::concat_channels"));
  CHECK_THROWS_WITH(ops::concat_channels(big_ag, Tensor<float, Cuda>::zeros({2, 4, 135})),
                    Catch::Contains("ops::concat_channels") && Catch::Contains("ranks"));
  CHECK_THROWS_WITH(ops::concat_channels(Tensor<float, Cuda>::zeros({7}), Tensor<float, Cuda>::zeros({7})),
                    Catch::Contains("ops::concat_channels"));
  CHECK_THROWS_AS(ops::channel_range(big_ag, 5, 9), Error);
}

TEST_CASE("dropout keeps exactly the CPU's elements") {
  const Shape shape{2, 3, 5, 7, 9};
  auto x = random_tensor(shape, 17);
  const auto xg = x.to<Cuda>();
  struct Case {
    float p;
    std::int64_t unit_size;
    const char* name;
  };
  const Case cases[] = {{0.3f, 1, "Dropout"},           {0.5f, 5 * 7 * 9, "Dropout3d"}, {0.4f, 3 * 5 * 7 * 9, "DropPath"},
                        {0.0f, 1, "p = 0 keeps all"},   {1.0f, 1, "p = 1 drops all"}, {0.7f, 4, "units across rows"}};
  for (const auto& c : cases) {
    INFO(c.name);
    const ops::DropoutMask mask{.p = c.p, .seed = 99, .stream = 5, .unit_size = c.unit_size};
    auto y = Tensor<float>::empty(shape);
    auto yg = Tensor<float, Cuda>::empty(shape);
    ops::apply_dropout(mask, x, y);
    ops::apply_dropout(mask, xg, yg);
    check_equal(yg, y);
    auto inplace = xg.clone();  // out may be x (the backward runs on dy in place)
    ops::apply_dropout(mask, inplace, inplace);
    check_equal(inplace, y);
  }
  CHECK_THROWS_WITH(ops::apply_dropout({}, xg, Tensor<float, Cuda>::empty({2, 3, 5, 7, 8})),
                    Catch::Contains("ops::apply_dropout"));
}

TEST_CASE("empty tensors are no work") {
  auto e = Tensor<float, Cuda>::empty({2, 0, 5});
  CHECK_NOTHROW(ops::activation_forward(ops::Activation::gelu, 0.0f, e, e));
  CHECK_NOTHROW(ops::softmax_channels_forward(e, e));
  CHECK_NOTHROW(ops::add(e, e, e));
  CHECK_NOTHROW(ops::apply_dropout({}, e, e));
  auto slope = Tensor<float, Cuda>::zeros({1});
  CHECK_NOTHROW(ops::prelu_backward(e, slope, e, e, slope));
  CHECK(slope.to_vector() == std::vector<float>{0.0f});
}
