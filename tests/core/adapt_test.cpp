#include "medseg/core/adapt.hpp"

#include <catch2/catch.hpp>

#include <numeric>
#include <xtensor/xarray.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xview.hpp>

using namespace medseg;

TEST_CASE("as_xtensor views the tensor's memory strides included") {
  auto t = Tensor<float>::empty({2, 3, 4});
  std::iota(t.data(), t.data() + t.numel(), 0.0f);
  auto xa = as_xtensor(t);
  CHECK(xa.shape()[2] == 4);
  CHECK(xa(1, 2, 3) == 23.0f);
  xa(0, 1, 2) = -5.0f;  // writes through
  CHECK(t(0, 1, 2) == -5.0f);
  CHECK(xt::sum(xa)() == Approx(276.0 - 6.0 - 5.0));

  auto ch = t.slice(1, 1, 3);
  auto xc = as_xtensor(ch);
  CHECK(xc(1, 0, 0) == 16.0f);
  CHECK(xc(0, 1, 3) == 11.0f);
  xt::xarray<float> copy = xc;  // round trip through xtensor
  auto back = Tensor<float>::from(std::span<const float>(copy.data(), copy.size()), ch.shape());
  CHECK(back.to_vector() == ch.to_vector());

  auto xs = as_xtensor<3>(t);
  CHECK(xs(1, 0, 1) == 13.0f);
  CHECK_THROWS_WITH(as_xtensor<2>(t), Catch::Contains("rank 2"));
}

TEST_CASE("Eigen maps share storage for matrices vectors and tensors") {
  auto t = Tensor<double>::from({1, 2, 3, 4, 5, 6}, {2, 3});
  auto m = as_eigen_matrix(t);
  CHECK(m.rows() == 2);
  CHECK(m(1, 0) == 4.0);
  Eigen::MatrixXd product = m * m.transpose();
  CHECK(product(0, 1) == 32.0);
  m(0, 0) = 10;
  CHECK(t(0, 0) == 10.0);

  auto cols = Tensor<double>::from({1, 2, 3, 4, 5, 6}, {2, 3}).reshape({1, 2, 3})[0];
  CHECK(as_eigen_matrix(cols).sum() == 21.0);

  auto v = as_eigen_vector(t);
  CHECK(v.size() == 6);
  CHECK(v.sum() == 30.0);

  auto x = Tensor<float>::zeros({2, 2, 2});
  auto et = as_eigen_tensor<3>(x);
  et(1, 0, 1) = 7.0f;
  CHECK(x(1, 0, 1) == 7.0f);
  CHECK_THROWS_WITH(as_eigen_matrix(x), Catch::Contains("rank 2"));
  CHECK_THROWS_WITH(as_eigen_vector(Tensor<float>::zeros({2, 3, 2}).slice(1, 0, 1)), Catch::Contains("contiguous"));
}

TEST_CASE("xt::noalias assigns through a channel view's strides and leaves the other channel alone") {
  auto batch = Tensor<float>::full({2, 2, 3, 4, 5}, 1.0f);
  auto view = batch.slice(1, 0, 1);
  auto x = as_xtensor(view);
  xt::noalias(x) = x * 3.0f;
  for (std::int64_t n = 0; n < 2; ++n)
    for (std::int64_t i = 0; i < 60; ++i) {
      REQUIRE(batch.data()[n * 120 + i] == 3.0f);       // channel 0
      REQUIRE(batch.data()[n * 120 + 60 + i] == 1.0f);  // channel 1 untouched
    }
}
