// BatchNorm3d, GroupNorm, InstanceNorm3d and LayerNorm: PyTorch parity (outputs, gradients and
// running statistics), finite-difference gradients, eval mode and errors.
#include <catch2/catch.hpp>

#include "medseg/nn/batch_norm.hpp"
#include "medseg/nn/group_norm.hpp"
#include "medseg/nn/instance_norm.hpp"
#include "medseg/nn/layer_norm.hpp"
#include "parity.hpp"

using namespace medseg;
using namespace medseg::nn;
using test::check_gradients;
using test::check_parity;
using test::randn;

TEST_CASE("BatchNorm3d matches torch.nn.BatchNorm3d with running statistics") {
  BatchNorm3d<Cpu> train{{.num_features = 3}};
  check_parity(train, "bn_train");
  BatchNorm3d<Cpu> plain{{.num_features = 2, .eps = 1e-3, .momentum = 0.3, .affine = false}};
  check_parity(plain, "bn_momentum_noaffine");
  BatchNorm3d<Cpu> eval{{.num_features = 3}};
  check_parity(eval, "bn_eval", {.train = false});
}

TEST_CASE("GroupNorm matches torch.nn.GroupNorm") {
  GroupNorm<Cpu> basic{{.num_groups = 2, .num_channels = 6}};
  check_parity(basic, "gn_basic");
  GroupNorm<Cpu> one{{.num_groups = 1, .num_channels = 4}};
  check_parity(one, "gn_one_group");
  GroupNorm<Cpu> plain{{.num_groups = 4, .num_channels = 4, .eps = 1e-3, .affine = false}};
  check_parity(plain, "gn_noaffine");
}

TEST_CASE("InstanceNorm3d matches torch.nn.InstanceNorm3d") {
  InstanceNorm3d<Cpu> affine{{.num_features = 3, .affine = true}};
  check_parity(affine, "in_affine");
  InstanceNorm3d<Cpu> plain{{.num_features = 2}};
  check_parity(plain, "in_plain");
  InstanceNorm3d<Cpu> running{{.num_features = 2, .affine = true, .track_running_stats = true}};
  check_parity(running, "in_running");
  InstanceNorm3d<Cpu> running_eval{{.num_features = 2, .affine = true, .track_running_stats = true}};
  check_parity(running_eval, "in_running_eval", {.train = false});
}

TEST_CASE("LayerNorm matches torch.nn.LayerNorm over the last axis and over channels") {
  LayerNorm<Cpu> last{{.normalized_shape = 6}};
  check_parity(last, "ln_last");
  LayerNorm<Cpu> plain{{.normalized_shape = 4, .elementwise_affine = false}};
  check_parity(plain, "ln_noaffine");
  LayerNorm<Cpu> channels{{.normalized_shape = 5, .axis = LayerNormAxis::channels}};
  check_parity(channels, "ln_channels");
}

namespace {
/// Affine weights away from 1 and 0, so the checks see them.
template <class L>
void perturb_affine(L& layer) {
  auto params = parameters(layer);
  for (std::size_t i = 0; i < params.size(); ++i) random::uniform(params[i].value, {77, i, 0}, 0.5f, 1.5f);
}
}  // namespace

TEST_CASE("Norm layers pass the finite-difference check") {
  BatchNorm3d<Cpu> bn{{.num_features = 3}};
  perturb_affine(bn);
  check_gradients(bn, randn({2, 3, 2, 3, 2}, 11, 2.0f));
  GroupNorm<Cpu> gn{{.num_groups = 2, .num_channels = 4}};
  perturb_affine(gn);
  check_gradients(gn, randn({2, 4, 2, 2, 3}, 12));
  InstanceNorm3d<Cpu> in{{.num_features = 2, .affine = true}};
  perturb_affine(in);
  check_gradients(in, randn({2, 2, 3, 2, 2}, 13));
  LayerNorm<Cpu> ln{{.normalized_shape = 5}};
  perturb_affine(ln);
  check_gradients(ln, randn({3, 5}, 14));
  LayerNorm<Cpu> lc{{.normalized_shape = 3, .axis = LayerNormAxis::channels}};
  perturb_affine(lc);
  check_gradients(lc, randn({2, 3, 2, 2, 2}, 15));
}

TEST_CASE("Norm layers reject channel mismatches naming the layer") {
  BatchNorm3d<Cpu> bn{{.num_features = 3}};
  bn.set_path("stage.1.norm");
  CHECK_THROWS_WITH(bn.forward(Tensor<float>::zeros({2, 4, 2, 2, 2})),
                    Catch::Contains("BatchNorm3d 'stage.1.norm'") && Catch::Contains("expected 3") &&
                        Catch::Contains("[2,4,2,2,2]"));
  CHECK_THROWS_WITH(bn.forward(Tensor<float>::zeros({1, 3, 1, 1, 1})), Catch::Contains("more than one value"));
  CHECK_THROWS_WITH((GroupNorm<Cpu>{{.num_groups = 3, .num_channels = 4}}), Catch::Contains("divisor"));
  GroupNorm<Cpu> gn{{.num_groups = 2, .num_channels = 4}};
  CHECK_THROWS_WITH(gn.forward(Tensor<float>::zeros({1, 6, 2, 2, 2})), Catch::Contains("input channels"));
  LayerNorm<Cpu> ln{{.normalized_shape = 8}};
  CHECK_THROWS_WITH(ln.forward(Tensor<float>::zeros({2, 7})), Catch::Contains("8 features") && Catch::Contains("[2,7]"));
}

TEST_CASE("BatchNorm3d in eval mode uses the running statistics and keeps nothing") {
  BatchNorm3d<Cpu> bn{{.num_features = 2}};
  bn.running_mean().value.copy_from(Tensor<float>::from({1.0f, -2.0f}, {2}));
  bn.running_var().value.copy_from(Tensor<float>::from({4.0f, 0.25f}, {2}));
  bn.eval();
  const auto y = bn.forward(Tensor<float>::full({1, 2, 1, 1, 2}, 3.0f));
  const auto v = y.to_vector();
  CHECK(v[0] == Approx((3.0 - 1.0) / std::sqrt(4.0 + 1e-5)));
  CHECK(v[2] == Approx((3.0 + 2.0) / std::sqrt(0.25 + 1e-5)));
  CHECK_THROWS_WITH(bn.backward(y), Catch::Contains("eval mode"));
}

TEST_CASE("Norm results do not depend on the thread count") {
  const auto x = randn({2, 8, 5, 6, 7}, 16, 3.0f);
  const auto dy = randn({2, 8, 5, 6, 7}, 17);
  auto run = [&] {
    GroupNorm<Cpu> gn{{.num_groups = 4, .num_channels = 8}};
    BatchNorm3d<Cpu> bn{{.num_features = 8}};
    auto y = bn.forward(gn.forward(x));
    auto dx = gn.backward(bn.backward(dy));
    return std::make_tuple(y.to_vector(), dx.to_vector(), gn.weight().grad.to_vector(), bn.bias().grad.to_vector());
  };
  const int threads = num_threads();
  set_num_threads(1);
  const auto one = run();
  set_num_threads(3);
  const auto three = run();
  set_num_threads(threads);
  CHECK(one == three);
}
