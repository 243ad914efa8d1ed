// The Cuda normalisation, pooling and trilinear kernels (backends/cuda/norm.hpp, pooling.hpp,
// upsample.hpp) against their CPU twins on the same random inputs of odd sizes, batch 2, and the
// norm layers on both backends: every NormSets layout (GroupNorm, InstanceNorm, BatchNorm,
// LayerNorm over the last axis and over channels), each through both ways the kernels walk sets
// (long runs cut into pieces, short runs a thread per set), with and without affine. Forward
// results agree to 1e-4, gradients to 1e-3; pooling and trilinear backward gather in the CPU's
// order and match it exactly.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "medseg/cuda.hpp"
#include "medseg/nn/batch_norm.hpp"
#include "medseg/nn/group_norm.hpp"
#include "medseg/nn/instance_norm.hpp"
#include "medseg/nn/layer_norm.hpp"

using namespace medseg;

namespace {

/// Uniform in [low, high) on the host; `stream` tells the inputs of one test apart.
Tensor<float> random_tensor(const Shape& shape, std::uint64_t stream, float low = -1.0f, float high = 1.0f) {
  auto t = Tensor<float>::empty(shape);
  random::uniform(t, {.seed = 20240923, .stream = stream}, low, high);
  return t;
}

/// |gpu - cpu| <= tol * max(1, |cpu|) everywhere; reports the first element that is not.
void check_close(const std::vector<float>& a, const std::vector<float>& b, float tol, const std::string& what) {
  REQUIRE(a.size() == b.size());
  std::int64_t bad = 0, first = -1;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!(std::abs(a[i] - b[i]) <= tol * std::max(1.0f, std::abs(b[i])))) {
      if (bad++ == 0) first = static_cast<std::int64_t>(i);
    }
  INFO(what << ": " << bad << " of " << a.size() << " elements off by more than " << tol
            << (first >= 0 ? ", first at " + std::to_string(first) + ": gpu " +
                                 std::to_string(a[static_cast<std::size_t>(first)]) + ", cpu " +
                                 std::to_string(b[static_cast<std::size_t>(first)])
                           : std::string()));
  CHECK(bad == 0);
}
template <class G, class C>
void check_close(const G& gpu, const C& cpu, float tol, const std::string& what) {
  REQUIRE(gpu.shape() == cpu.shape());
  check_close(gpu.to_vector(), cpu.to_vector(), tol, what);
}

// ---------------------------------------------------------------------------------------------
// Normalisation ops

struct NormCase {
  const char* name;
  Shape shape;
  ops::NormSets sets;
  std::int64_t channels;  // affine entries
};

/// Every layout, each with long runs (pieces; some runs longer than one piece) and short runs
/// (a thread per set).
std::vector<NormCase> norm_cases() {
  return {
      // GroupNorm, 4 groups of 4 channels: runs of 315 and of 4845 (two pieces), and of 18.
      {"group 315", {2, 16, 5, 7, 9}, ops::NormSets::group(2, 16, 315, 4), 16},
      {"group 4845", {2, 16, 17, 19, 15}, ops::NormSets::group(2, 16, 4845, 4), 16},
      {"group 18", {2, 16, 2, 3, 3}, ops::NormSets::group(2, 16, 18, 4), 16},
      {"4 groups of 16 channels", {2, 64, 3, 5, 7}, ops::NormSets::group(2, 64, 105, 4), 64},
      // InstanceNorm: a group per channel.
      {"instance 1287", {2, 5, 9, 11, 13}, ops::NormSets::group(2, 5, 1287, 5), 5},
      {"instance 27", {2, 5, 3, 3, 3}, ops::NormSets::group(2, 5, 27, 5), 5},
      // BatchNorm: a set per channel spanning the batch.
      {"batch 4845", {2, 3, 17, 19, 15}, ops::NormSets::batch(2, 3, 4845), 3},
      {"batch 27", {2, 5, 3, 3, 3}, ops::NormSets::batch(2, 5, 27), 5},
      // LayerNorm over the last axis: an affine pair per element; 150 rows span three chunks.
      {"last axis 48", {2, 7, 48}, ops::NormSets::last_axis(14, 48), 48},
      {"last axis 40", {3, 50, 40}, ops::NormSets::last_axis(150, 40), 40},
      {"last axis 20", {2, 5, 7, 20}, ops::NormSets::last_axis(70, 20), 20},
      // LayerNorm over channels: runs of one element; 2 x 4845 sets span five chunks of sets.
      {"channels 315", {2, 6, 5, 7, 9}, ops::NormSets::channels(2, 6, 315), 6},
      {"channels 4845", {2, 6, 17, 19, 15}, ops::NormSets::channels(2, 6, 4845), 6},
  };
}

}  // namespace

TEST_CASE("normalize_forward and normalize_backward match the CPU on every layout") {
  std::uint64_t stream = 100;
  for (const auto& c : norm_cases()) {
    for (const bool affine : {true, false}) {
      INFO(c.name << (affine ? " with affine" : " without affine"));
      // Far from zero, so a one-pass variance would lose digits.
      const auto x = random_tensor(c.shape, ++stream, 2.0f, 5.0f);
      const auto dy = random_tensor(c.shape, ++stream);
      const auto gamma = random_tensor({c.channels}, ++stream, 0.5f, 1.5f);
      const auto beta = random_tensor({c.channels}, ++stream);
      // Affine gradients accumulate into what is there.
      const auto dgamma = random_tensor({c.channels}, ++stream);
      const auto dbeta = random_tensor({c.channels}, ++stream);
      const auto xg = x.to<Cuda>(), dyg = dy.to<Cuda>(), gammag = gamma.to<Cuda>(), betag = beta.to<Cuda>();
      const auto dgammag = dgamma.to<Cuda>(), dbetag = dbeta.to<Cuda>();
      const double eps = 1e-5;

      auto y = Tensor<float>::empty(c.shape);
      auto yg = Tensor<float, Cuda>::empty(c.shape);
      const auto st = ops::normalize_forward(c.sets, x, y, affine ? gamma.data() : nullptr,
                                             affine ? beta.data() : nullptr, eps);
      const auto stg = ops::normalize_forward(c.sets, xg, yg, affine ? gammag.data() : nullptr,
                                              affine ? betag.data() : nullptr, eps);
      check_close(yg, y, 1e-4f, "y");
      check_close(stg.mean.to_vector(), st.mean, 1e-4f, "mean");
      check_close(stg.var.to_vector(), st.var, 1e-4f, "var");

      auto dx = Tensor<float>::empty(c.shape);
      auto dxg = Tensor<float, Cuda>::empty(c.shape);
      ops::normalize_backward(c.sets, st, eps, x, dy, dx, affine ? gamma.data() : nullptr,
                              affine ? dgamma.data() : nullptr, affine ? dbeta.data() : nullptr);
      ops::normalize_backward(c.sets, stg, eps, xg, dyg, dxg, affine ? gammag.data() : nullptr,
                              affine ? dgammag.data() : nullptr, affine ? dbetag.data() : nullptr);
      check_close(dxg, dx, 1e-3f, "dx");
      check_close(dgammag, dgamma, 1e-3f, "dgamma");
      check_close(dbetag, dbeta, 1e-3f, "dbeta");
    }
  }
}

TEST_CASE("normalisation results repeat bit for bit") {
  const auto cases = norm_cases();
  const auto c = *std::find_if(cases.begin(), cases.end(),  // BatchNorm: few sets, many pieces
                               [](const NormCase& n) { return std::string(n.name) == "batch 4845"; });
  const auto xg = random_tensor(c.shape, 1, 2.0f, 5.0f).to<Cuda>();
  const auto dyg = random_tensor(c.shape, 2).to<Cuda>();
  const auto gammag = Tensor<float, Cuda>::ones({c.channels});
  std::vector<float> first;
  for (int run = 0; run < 3; ++run) {
    auto yg = Tensor<float, Cuda>::empty(c.shape);
    auto dxg = Tensor<float, Cuda>::empty(c.shape);
    auto dgammag = Tensor<float, Cuda>::zeros({c.channels});
    auto dbetag = Tensor<float, Cuda>::zeros({c.channels});
    const auto st = ops::normalize_forward(c.sets, xg, yg, gammag.data(), nullptr, 1e-5);
    ops::normalize_backward(c.sets, st, 1e-5, xg, dyg, dxg, gammag.data(), dgammag.data(), dbetag.data());
    std::vector<float> all = yg.to_vector();
    for (const auto& t : {dxg, dgammag, dbetag, st.mean, st.var}) {
      const auto v = t.to_vector();
      all.insert(all.end(), v.begin(), v.end());
    }
    if (run == 0)
      first = all;
    else
      CHECK(all == first);
  }
}

TEST_CASE("channel_affine, running-statistics normalisation and their updates match the CPU") {
  const Shape shape{2, 5, 7, 9, 11};
  const auto x = random_tensor(shape, 1, -2.0f, 3.0f);
  const auto xg = x.to<Cuda>();
  const auto scale = random_tensor({5}, 2).to_vector(), shift = random_tensor({5}, 3).to_vector();
  auto y = Tensor<float>::empty(shape);
  auto yg = Tensor<float, Cuda>::empty(shape);
  ops::channel_affine(x, scale, shift, y);
  ops::channel_affine(xg, scale, shift, yg);
  check_close(yg, y, 1e-4f, "channel_affine (host factors)");
  auto yg2 = Tensor<float, Cuda>::empty(shape);
  ops::channel_affine(xg, Tensor<float>::from(scale, {5}).to<Cuda>(), Tensor<float>::from(shift, {5}).to<Cuda>(), yg2);
  check_close(yg2, y, 1e-4f, "channel_affine (device factors)");

  const auto rm = random_tensor({5}, 4), rv = random_tensor({5}, 5, 0.2f, 2.0f);
  const auto gamma = random_tensor({5}, 6, 0.5f, 1.5f), beta = random_tensor({5}, 7);
  for (const bool affine : {true, false}) {
    INFO((affine ? "with" : "without") << " affine");
    ops::normalize_with_running_stats(x, rm, rv, affine ? gamma.data() : nullptr, affine ? beta.data() : nullptr,
                                      1e-5, y);
    const auto gammag = gamma.to<Cuda>(), betag = beta.to<Cuda>();
    ops::normalize_with_running_stats(xg, rm.to<Cuda>(), rv.to<Cuda>(), affine ? gammag.data() : nullptr,
                                      affine ? betag.data() : nullptr, 1e-5, yg);
    check_close(yg, y, 1e-4f, "normalize_with_running_stats");
  }

  // Statistics of InstanceNorm's layout: sets n C + c, averaged over n.
  const auto sets = ops::NormSets::group(2, 5, 693, 5);
  auto out = Tensor<float>::empty(shape);
  auto outg = Tensor<float, Cuda>::empty(shape);
  const auto st = ops::normalize_forward(sets, x, out, nullptr, nullptr, 1e-5);
  const auto stg = ops::normalize_forward(sets, xg, outg, nullptr, nullptr, 1e-5);
  const auto rmc = rm.clone(), rvc = rv.clone();
  const auto rmg = rm.to<Cuda>(), rvg = rv.to<Cuda>();
  auto counter = Tensor<float>::full({}, 3.0f);
  auto counterg = counter.to<Cuda>();
  ops::update_running_stats(st, 0.1, 693.0 / 692.0, rmc, rvc, &counter);
  ops::update_running_stats(stg, 0.1, 693.0 / 692.0, rmg, rvg, &counterg);
  check_close(rmg, rmc, 1e-4f, "running_mean");
  check_close(rvg, rvc, 1e-4f, "running_var");
  CHECK(counterg.to_vector() == std::vector<float>{4.0f});
  ops::update_running_stats(stg, 0.1, 1.0, rmg, rvg, nullptr);
  CHECK(counterg.to_vector() == std::vector<float>{4.0f});
}

TEST_CASE("normalisation ops reject wrong shapes and layouts") {
  const auto xg = Tensor<float, Cuda>::zeros({2, 4, 3, 3, 3});
  auto yg = Tensor<float, Cuda>::empty({2, 4, 3, 3, 2});
  CHECK_THROWS_WITH(ops::normalize_forward(ops::NormSets::group(2, 4, 27, 2), xg, yg, nullptr, nullptr, 1e-5),
                    Catch::Contains("normalize_forward") && Catch::Contains("shapes"));
  auto y = Tensor<float, Cuda>::empty(xg.shape());
  CHECK_THROWS_WITH(ops::normalize_forward(ops::NormSets::group(2, 4, 28, 2), xg, y, nullptr, nullptr, 1e-5),
                    Catch::Contains("sets"));
  const auto sets = ops::NormSets::group(2, 4, 27, 2);
  const auto st = ops::normalize_forward(sets, xg, y, nullptr, nullptr, 1e-5);
  auto dx = Tensor<float, Cuda>::empty(xg.shape());
  CHECK_THROWS_WITH(ops::normalize_backward(ops::NormSets::group(2, 4, 27, 4), st, 1e-5, xg, xg, dx, nullptr,
                                            nullptr, nullptr),
                    Catch::Contains("stats"));
  CHECK_THROWS_WITH(ops::normalize_backward(sets, st, 1e-5, xg, yg, dx, nullptr, nullptr, nullptr),
                    Catch::Contains("shapes"));
  auto rm = Tensor<float, Cuda>::zeros({3});
  CHECK_THROWS_WITH(ops::normalize_with_running_stats(xg, rm, rm, nullptr, nullptr, 1e-5, y),
                    Catch::Contains("running_mean"));
  CHECK_THROWS_WITH(ops::channel_affine(xg, std::vector<float>(3, 1.0f), std::vector<float>(3, 0.0f), y),
                    Catch::Contains("scale/shift"));
}

// ---------------------------------------------------------------------------------------------
// Norm layers on both backends

namespace {

/// Copies every parameter and buffer value of `cpu` into `gpu` (same layer type and options).
template <class LG, class LC>
void copy_state(LG& gpu, LC& cpu) {
  auto pg = nn::parameters(gpu);
  auto pc = nn::parameters(cpu);
  REQUIRE(pg.size() == pc.size());
  for (std::size_t i = 0; i < pg.size(); ++i) pg[i].value.copy_from(pc[i].value);
  auto bg = nn::buffers(gpu);
  auto bc = nn::buffers(cpu);
  REQUIRE(bg.size() == bc.size());
  for (std::size_t i = 0; i < bg.size(); ++i) bg[i].value.copy_from(bc[i].value);
}

/// Random parameters and buffers (running variances positive) for the CPU layer.
template <class L>
void randomise(L& layer, std::uint64_t stream) {
  for (auto& p : nn::parameters(layer)) random::uniform(p.value, {.seed = 7, .stream = stream++}, 0.5f, 1.5f);
  for (auto& b : nn::buffers(layer))
    if (b.value.rank() == 1) random::uniform(b.value, {.seed = 7, .stream = stream++}, 0.3f, 1.3f);
}

/// Forward, backward and every parameter gradient and buffer of the two layers agree.
template <class LG, class LC>
void check_layer(LG& gpu, LC& cpu, const Shape& shape, std::uint64_t stream, bool backward = true) {
  const auto x = random_tensor(shape, stream, -1.0f, 4.0f);
  const auto dy = random_tensor(shape, stream + 1);
  const auto y = cpu.forward(x);
  const auto yg = gpu.forward(x.to<Cuda>());
  check_close(yg, y, 1e-4f, "layer forward");
  if (backward) {
    const auto dx = cpu.backward(dy);
    const auto dxg = gpu.backward(dy.to<Cuda>());
    check_close(dxg, dx, 1e-3f, "layer backward");
    auto pg = nn::parameters(gpu);
    auto pc = nn::parameters(cpu);
    for (std::size_t i = 0; i < pc.size(); ++i) check_close(pg[i].grad, pc[i].grad, 1e-3f, pc[i].path + " grad");
  }
  auto bg = nn::buffers(gpu);
  auto bc = nn::buffers(cpu);
  for (std::size_t i = 0; i < bc.size(); ++i) check_close(bg[i].value, bc[i].value, 1e-4f, bc[i].path);
}

}  // namespace

TEST_CASE("GroupNorm and LayerNorm layers on the GPU match the CPU layers") {
  SECTION("GroupNorm, 4 groups of 16 channels") {
    nn::GroupNorm<Cpu> cpu{{.num_groups = 4, .num_channels = 16}};
    nn::GroupNorm<Cuda> gpu{{.num_groups = 4, .num_channels = 16}};
    randomise(cpu, 10);
    copy_state(gpu, cpu);
    check_layer(gpu, cpu, {2, 16, 5, 6, 7}, 20);
  }
  SECTION("GroupNorm without affine") {
    nn::GroupNorm<Cpu> cpu{{.num_groups = 4, .num_channels = 16, .affine = false}};
    nn::GroupNorm<Cuda> gpu{{.num_groups = 4, .num_channels = 16, .affine = false}};
    check_layer(gpu, cpu, {2, 16, 3, 5, 3}, 30);
  }
  for (const auto axis : {nn::LayerNormAxis::last, nn::LayerNormAxis::channels}) {
    for (const bool affine : {true, false}) {
      INFO("LayerNorm over " << (axis == nn::LayerNormAxis::last ? "the last axis" : "channels")
                             << (affine ? " with" : " without") << " affine");
      nn::LayerNorm<Cpu> cpu{{.normalized_shape = 24, .elementwise_affine = affine, .axis = axis}};
      nn::LayerNorm<Cuda> gpu{{.normalized_shape = 24, .elementwise_affine = affine, .axis = axis}};
      randomise(cpu, 40);
      copy_state(gpu, cpu);
      check_layer(gpu, cpu, axis == nn::LayerNormAxis::last ? Shape{2, 35, 24} : Shape{2, 24, 5, 3, 7}, 50);
    }
  }
}

TEST_CASE("BatchNorm3d and InstanceNorm3d layers on the GPU match the CPU layers, train and eval") {
  SECTION("BatchNorm3d") {
    nn::BatchNorm3d<Cpu> cpu{{.num_features = 6}};
    nn::BatchNorm3d<Cuda> gpu{{.num_features = 6}};
    randomise(cpu, 60);
    copy_state(gpu, cpu);
    check_layer(gpu, cpu, {2, 6, 9, 7, 5}, 70);  // also compares running statistics and the counter
    check_layer(gpu, cpu, {2, 6, 9, 7, 5}, 80);
    cpu.eval();
    gpu.eval();
    check_layer(gpu, cpu, {2, 6, 5, 4, 3}, 90, false);
  }
  SECTION("BatchNorm3d without affine or running statistics") {
    nn::BatchNorm3d<Cpu> cpu{{.num_features = 3, .affine = false, .track_running_stats = false}};
    nn::BatchNorm3d<Cuda> gpu{{.num_features = 3, .affine = false, .track_running_stats = false}};
    check_layer(gpu, cpu, {2, 3, 5, 5, 5}, 100);
    cpu.eval();
    gpu.eval();
    check_layer(gpu, cpu, {2, 3, 5, 5, 5}, 110, false);
  }
  SECTION("InstanceNorm3d with affine and running statistics") {
    const nn::InstanceNorm3dOptions o{.num_features = 5, .affine = true, .track_running_stats = true};
    nn::InstanceNorm3d<Cpu> cpu{o};
    nn::InstanceNorm3d<Cuda> gpu{o};
    randomise(cpu, 120);
    copy_state(gpu, cpu);
    check_layer(gpu, cpu, {2, 5, 7, 6, 5}, 130);
    cpu.eval();
    gpu.eval();
    check_layer(gpu, cpu, {2, 5, 7, 6, 5}, 140, false);
  }
  SECTION("InstanceNorm3d without affine") {
    nn::InstanceNorm3d<Cpu> cpu{{.num_features = 4}};
    nn::InstanceNorm3d<Cuda> gpu{{.num_features = 4}};
    check_layer(gpu, cpu, {2, 4, 3, 9, 5}, 150);
  }
}

// ---------------------------------------------------------------------------------------------
// Pooling

namespace {

struct PoolCase {
  const char* name;
  ops::Pool3dShape shape;
};
/// Windows that tile the input, that are disjoint with voxels left over, and that overlap
/// (the two ways backward runs).
const PoolCase pool_cases[] = {
    {"2^3 stride 2, tiling", {2, 3, {8, 6, 10}, {2, 2, 2}, {2, 2, 2}, {0, 0, 0}}},
    {"2^3 stride 2, odd sizes", {2, 3, {8, 7, 9}, {2, 2, 2}, {2, 2, 2}, {0, 0, 0}}},
    {"2^3 stride 3 padding 1", {2, 2, {7, 8, 9}, {2, 2, 2}, {3, 3, 3}, {1, 1, 1}}},
    {"3^3 stride 2 padding 1", {2, 3, {9, 10, 11}, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}}},
    {"anisotropic, overlapping", {2, 2, {5, 9, 8}, {1, 3, 2}, {1, 2, 1}, {0, 1, 1}}},
};

Shape pool_input(const ops::Pool3dShape& s) { return {s.batch, s.channels, s.input[0], s.input[1], s.input[2]}; }

}  // namespace

TEST_CASE("max pooling matches the CPU, argmax and ties included") {
  std::uint64_t stream = 200;
  for (const auto& c : pool_cases) {
    for (const bool ties : {false, true}) {
      INFO(c.name << (ties ? " on values with ties" : ""));
      auto x = random_tensor(pool_input(c.shape), ++stream, -2.0f, 2.0f);
      if (ties)
        for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] = std::floor(x.data()[i]);
      const auto dy = random_tensor(c.shape.output_shape(), ++stream);
      auto y = Tensor<float>::empty(c.shape.output_shape());
      auto arg = Tensor<std::int32_t>::empty(c.shape.output_shape());
      auto yg = Tensor<float, Cuda>::empty(c.shape.output_shape());
      auto argg = Tensor<std::int32_t, Cuda>::empty(c.shape.output_shape());
      ops::max_pool3d_forward(c.shape, x, y, arg);
      ops::max_pool3d_forward(c.shape, x.to<Cuda>(), yg, argg);
      CHECK(yg.to_vector() == y.to_vector());
      CHECK(argg.to_vector() == arg.to_vector());
      auto dx = Tensor<float>::empty(pool_input(c.shape));
      auto dxg = Tensor<float, Cuda>::empty(pool_input(c.shape));
      ops::max_pool3d_backward(c.shape, arg, dy, dx);
      ops::max_pool3d_backward(c.shape, argg, dy.to<Cuda>(), dxg);
      CHECK(dxg.to_vector() == dx.to_vector());  // the same additions in the same order
    }
  }
}

TEST_CASE("average pooling matches the CPU with and without count_include_pad") {
  std::uint64_t stream = 300;
  for (const auto& c : pool_cases) {
    for (const bool include_pad : {true, false}) {
      INFO(c.name << (include_pad ? ", padding counted" : ", padding not counted"));
      const auto x = random_tensor(pool_input(c.shape), ++stream, -2.0f, 2.0f);
      const auto dy = random_tensor(c.shape.output_shape(), ++stream);
      auto y = Tensor<float>::empty(c.shape.output_shape());
      auto yg = Tensor<float, Cuda>::empty(c.shape.output_shape());
      ops::avg_pool3d_forward(c.shape, include_pad, x, y);
      ops::avg_pool3d_forward(c.shape, include_pad, x.to<Cuda>(), yg);
      check_close(yg, y, 1e-4f, "avg_pool3d_forward");
      auto dx = Tensor<float>::empty(pool_input(c.shape));
      auto dxg = Tensor<float, Cuda>::empty(pool_input(c.shape));
      ops::avg_pool3d_backward(c.shape, include_pad, dy, dx);
      ops::avg_pool3d_backward(c.shape, include_pad, dy.to<Cuda>(), dxg);
      check_close(dxg, dx, 1e-3f, "avg_pool3d_backward");
    }
  }
}

TEST_CASE("pooling ops reject wrong shapes") {
  const auto s = pool_cases[3].shape;
  const auto x = Tensor<float, Cuda>::zeros(pool_input(s));
  auto y = Tensor<float, Cuda>::empty(s.output_shape());
  auto arg = Tensor<std::int32_t, Cuda>::empty(s.output_shape());
  auto wrong = Tensor<float, Cuda>::empty({2, 3, 4, 4, 4});
  CHECK_THROWS_WITH(ops::max_pool3d_forward(s, x, wrong, arg), Catch::Contains("max_pool3d_forward"));
  CHECK_THROWS_WITH(ops::max_pool3d_forward(s, wrong, y, arg), Catch::Contains("forward: x:"));
  CHECK_THROWS_WITH(ops::max_pool3d_forward(s, x, y, Tensor<std::int32_t, Cuda>::empty({2, 3, 5, 5, 5})),
                    Catch::Contains("forward: argmax:"));
  CHECK_THROWS_WITH(ops::max_pool3d_backward(s, arg, y, wrong), Catch::Contains("backward: dx:"));
  CHECK_THROWS_WITH(ops::avg_pool3d_forward(s, true, x, wrong), Catch::Contains("avg_pool3d_forward"));
  CHECK_THROWS_WITH(ops::avg_pool3d_backward(s, true, wrong, Tensor<float, Cuda>::empty(pool_input(s))),
                    Catch::Contains("backward: dy:"));
  auto bad = s;
  bad.stride = {0, 2, 2};
  CHECK_THROWS_WITH(ops::avg_pool3d_forward(bad, true, x, y), Catch::Contains("stride"));
}

// ---------------------------------------------------------------------------------------------
// Trilinear

namespace {

/// A resize of [2, 3, 5, 6, 7] by per-axis factors (ratio 1/factor, PyTorch's scale_factor) or
/// to a size (ratio in/out).
ops::TrilinearShape trilinear_case(std::array<double, 3> factor, std::array<std::int64_t, 3> size, bool align) {
  ops::TrilinearShape s{.batch = 2, .channels = 3, .input = {5, 6, 7}, .align_corners = align};
  for (std::size_t a = 0; a < 3; ++a) {
    const bool sized = size[a] > 0;
    s.output[a] = sized ? size[a] : static_cast<std::int64_t>(std::floor(static_cast<double>(s.input[a]) * factor[a]));
    s.ratio[a] = sized ? static_cast<double>(s.input[a]) / static_cast<double>(s.output[a]) : 1.0 / factor[a];
  }
  return s;
}

Shape trilinear_shape(const ops::TrilinearShape& s, const std::array<std::int64_t, 3>& dhw) {
  return {s.batch, s.channels, dhw[0], dhw[1], dhw[2]};
}

}  // namespace

TEST_CASE("trilinear resizing matches the CPU, align_corners both ways") {
  const std::array<std::int64_t, 3> none{0, 0, 0};
  std::uint64_t stream = 400;
  for (const bool align : {false, true}) {
    const ops::TrilinearShape cases[] = {
        trilinear_case({2.0, 2.0, 2.0}, none, align),          // the U-Net up-sampling
        trilinear_case({1.7, 2.3, 1.45}, none, align),         // non-integer factors
        trilinear_case({0.6, 0.5, 0.75}, none, align),         // down-sampling
        trilinear_case({1.0, 1.0, 1.0}, {4, 9, 1}, align),     // to a size, one axis to a single voxel
    };
    for (const auto& s : cases) {
      INFO("output " << s.output[0] << "x" << s.output[1] << "x" << s.output[2]
                     << (align ? ", align_corners" : ""));
      const auto x = random_tensor(trilinear_shape(s, s.input), ++stream, -2.0f, 2.0f);
      const auto dy = random_tensor(trilinear_shape(s, s.output), ++stream);
      auto y = Tensor<float>::empty(trilinear_shape(s, s.output));
      auto yg = Tensor<float, Cuda>::empty(trilinear_shape(s, s.output));
      ops::trilinear_forward(s, x, y);
      ops::trilinear_forward(s, x.to<Cuda>(), yg);
      check_close(yg, y, 1e-4f, "trilinear_forward");
      auto dx = Tensor<float>::empty(trilinear_shape(s, s.input));
      auto dxg = Tensor<float, Cuda>::empty(trilinear_shape(s, s.input));
      ops::trilinear_backward(s, dy, dx);
      ops::trilinear_backward(s, dy.to<Cuda>(), dxg);
      check_close(dxg, dx, 1e-3f, "trilinear_backward");
    }
  }
}

TEST_CASE("trilinear ops reject wrong shapes") {
  const auto s = trilinear_case({2.0, 2.0, 2.0}, {0, 0, 0}, false);
  const auto x = Tensor<float, Cuda>::zeros(trilinear_shape(s, s.input));
  auto y = Tensor<float, Cuda>::empty(trilinear_shape(s, s.output));
  auto wrong = Tensor<float, Cuda>::empty({2, 3, 10, 12, 13});
  CHECK_THROWS_WITH(ops::trilinear_forward(s, x, wrong), Catch::Contains("trilinear_forward: y:"));
  CHECK_THROWS_WITH(ops::trilinear_forward(s, wrong, y), Catch::Contains("trilinear_forward: x:"));
  CHECK_THROWS_WITH(ops::trilinear_backward(s, y, wrong), Catch::Contains("trilinear_backward: dx:"));
  auto bad = s;
  bad.ratio[1] = 0.0;
  CHECK_THROWS_WITH(ops::trilinear_forward(bad, x, y), Catch::Contains("ratio"));
}

// ---------------------------------------------------------------------------------------------
// Timings (hidden: run with "[.perf]")

TEST_CASE("normalisation, pooling and trilinear timings on training-sized volumes", "[.perf]") {
  // Milliseconds per call, averaged over 10 calls after a warm-up call.
  const auto time_ms = [](auto&& f) {
    f();
    Cuda::synchronize();
    cuda::Event start, stop;
    start.record(cuda::current_stream());
    for (int i = 0; i < 10; ++i) f();
    stop.record(cuda::current_stream());
    stop.synchronize();
    return stop.elapsed_ms_since(start) / 10.0f;
  };
  const auto report = [](const char* what, const Shape& shape, float ms, int passes) {
    const double gb = static_cast<double>(shape.product()) * 4.0 * passes / 1e9;
    std::printf("%-44s %-22s %8.3f ms  %7.1f GB/s (%d passes)\n", what, shape.to_string().c_str(), ms, gb / (ms / 1e3),
                passes);
  };
  struct Layout {
    const char* name;
    Shape shape;
    ops::NormSets sets;
    std::int64_t channels;
  };
  const Layout layouts[] = {
      {"BatchNorm, 16 sets", {2, 16, 64, 64, 64}, ops::NormSets::batch(2, 16, 64 * 64 * 64), 16},
      {"InstanceNorm", {2, 32, 128, 128, 128}, ops::NormSets::group(2, 32, 128 * 128 * 128, 32), 32},
      {"GroupNorm, 8 groups", {2, 32, 64, 64, 64}, ops::NormSets::group(2, 32, 64 * 64 * 64, 8), 32},
      {"LayerNorm over channels", {2, 32, 64, 64, 64}, ops::NormSets::channels(2, 32, 64 * 64 * 64), 32},
      {"LayerNorm over the last axis", {65536, 96}, ops::NormSets::last_axis(65536, 96), 96},
  };
  for (const auto& l : layouts) {
    auto x = Tensor<float, Cuda>::zeros(l.shape);
    auto y = Tensor<float, Cuda>::empty(l.shape);
    auto dx = Tensor<float, Cuda>::empty(l.shape);
    auto gamma = Tensor<float, Cuda>::ones({l.channels});
    auto dgamma = Tensor<float, Cuda>::zeros({l.channels});
    auto dbeta = Tensor<float, Cuda>::zeros({l.channels});
    ops::CudaNormStats st;
    report((std::string(l.name) + " forward").c_str(), l.shape,
           time_ms([&] { st = ops::normalize_forward(l.sets, x, y, gamma.data(), dbeta.data(), 1e-5); }), 4);
    report((std::string(l.name) + " backward").c_str(), l.shape, time_ms([&] {
             ops::normalize_backward(l.sets, st, 1e-5, x, y, dx, gamma.data(), dgamma.data(), dbeta.data());
           }),
           l.shape.rank() == 2 ? 8 : 5);
  }
  const Shape big{2, 32, 128, 128, 128};
  const ops::Pool3dShape pool{2, 32, {128, 128, 128}};
  auto x = Tensor<float, Cuda>::zeros(big);
  auto dx = Tensor<float, Cuda>::empty(big);
  auto y = Tensor<float, Cuda>::zeros(pool.output_shape());
  auto arg = Tensor<std::int32_t, Cuda>::zeros(pool.output_shape());
  report("max_pool3d_forward 2^3", big, time_ms([&] { ops::max_pool3d_forward(pool, x, y, arg); }), 1);
  report("max_pool3d_backward 2^3", big, time_ms([&] { ops::max_pool3d_backward(pool, arg, y, dx); }), 1);
  report("avg_pool3d_forward 2^3", big, time_ms([&] { ops::avg_pool3d_forward(pool, true, x, y); }), 1);
  report("avg_pool3d_backward 2^3", big, time_ms([&] { ops::avg_pool3d_backward(pool, true, y, dx); }), 1);
  const ops::TrilinearShape up{.batch = 2, .channels = 32, .input = {64, 64, 64}, .output = {128, 128, 128},
                               .ratio = {0.5, 0.5, 0.5}};
  auto small = Tensor<float, Cuda>::zeros({2, 32, 64, 64, 64});
  auto dsmall = Tensor<float, Cuda>::empty({2, 32, 64, 64, 64});
  report("trilinear_forward x2", big, time_ms([&] { ops::trilinear_forward(up, small, x); }), 1);
  report("trilinear_backward x2", big, time_ms([&] { ops::trilinear_backward(up, x, dsmall); }), 1);
}
