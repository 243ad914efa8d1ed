// transforms/filter.hpp: the separable Gaussian against scipy.ndimage.gaussian_filter.
#include "support.hpp"

using namespace medseg;
using namespace medseg::transforms;
using namespace transforms_test;

TEST_CASE("gaussian_filter matches scipy gaussian_filter with reflect borders") {
  const std::vector<Case> cases = {
      {"iso", "gauss shape=2,9,10,11 sigma=1,1,1 seed=1"},
      {"aniso", "gauss shape=1,8,12,7 sigma=0.5,2.5,0 seed=2"},
      {"wide", "gauss shape=1,5,6,4 sigma=3,3,3 seed=3"},  // radius past the volume: reflect repeats
  };
  const std::array<double, 3> sigmas[] = {{1, 1, 1}, {0.5, 2.5, 0}, {3, 3, 3}};
  const Shape shapes[] = {{2, 9, 10, 11}, {1, 8, 12, 7}, {1, 5, 6, 4}};
  const auto dir = make_references(cases, "gauss");
  for (std::size_t k = 0; k < cases.size(); ++k) {
    INFO(cases[k].name);
    const auto in = read_raw<float>(dir / (cases[k].name + ".in.raw"), shapes[k]);
    const auto want = read_raw<float>(dir / (cases[k].name + ".out.raw"), shapes[k]);
    CHECK(max_abs_diff(gaussian_filter(in, sigmas[k]), want) < 2e-6);
  }
  fs::remove_all(dir);
}

TEST_CASE("gaussian_kernel is scipy's: 2 int(4 sigma + 0.5) + 1 taps summing to one") {
  const auto w = gaussian_kernel(1.3);
  CHECK(w.size() == 11);
  double sum = 0;
  for (float v : w) sum += v;
  CHECK(sum == Approx(1.0).epsilon(1e-6));
  CHECK(w[5] > w[4]);
  CHECK(w[4] == w[6]);
  CHECK_THROWS_WITH(gaussian_kernel(0.0), Catch::Contains("sigma") && Catch::Contains("> 0"));
}

TEST_CASE("gaussian_filter does not write its input") {
  auto x = Tensor<float>::full({1, 4, 4, 4}, 0.0f);
  x(0, 2, 2, 2) = 1.0f;
  const auto before = x.clone();
  const auto y = gaussian_filter(x, {1, 1, 1});
  CHECK(count_different(x, before) == 0);
  CHECK(y(0, 2, 2, 2) < 1.0f);
  const auto same = gaussian_filter(x, {0, 0, 0});
  CHECK(!same.shares_storage_with(x));
}
