// ops::gemm against a naive triple loop in double: every transpose combination, alpha and
// beta, batches, beta == 0 ignoring C, and shape errors.
#include <catch2/catch.hpp>

#include <atomic>
#include <cmath>
#include <dlfcn.h>
#include <vector>

#include "medseg/backends/cpu/gemm.hpp"
#include "medseg/core/parallel.hpp"
#include "medseg/core/random.hpp"

using namespace medseg;

namespace {
Tensor<float> random_tensor(const Shape& shape, std::uint64_t seed) {
  auto t = Tensor<float>::empty(shape);
  random::normal(t, {.seed = seed});
  return t;
}

/// C = alpha op(A) op(B) + beta C for one 2-D product, in double.
void naive_gemm(bool ta, bool tb, float alpha, const float* a, const float* b, float beta, float* c, std::int64_t m,
                std::int64_t n, std::int64_t k) {
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      double sum = 0;
      for (std::int64_t p = 0; p < k; ++p)
        sum += static_cast<double>(ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]);
      c[i * n + j] = static_cast<float>(alpha * sum + (beta == 0.0f ? 0.0 : static_cast<double>(beta) * c[i * n + j]));
    }
}

double max_difference(const Tensor<float>& a, const Tensor<float>& b) {
  double d = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) d = std::max(d, std::abs(static_cast<double>(a.data()[i]) - b.data()[i]));
  return d;
}
}  // namespace

TEST_CASE("gemm matches a naive product for every transpose combination") {
  const std::int64_t m = 37, n = 29, k = 53;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      INFO("transpose_a " << ta << " transpose_b " << tb);
      const auto a = random_tensor(ta ? Shape{k, m} : Shape{m, k}, 1);
      const auto b = random_tensor(tb ? Shape{n, k} : Shape{k, n}, 2);
      auto c = random_tensor({m, n}, 3);
      auto expected = c.clone();
      ops::gemm(ta, tb, 0.75f, a, b, 0.5f, c);
      naive_gemm(ta, tb, 0.75f, a.data(), b.data(), 0.5f, expected.data(), m, n, k);
      CHECK(max_difference(c, expected) < 1e-4);
    }
}

TEST_CASE("gemm runs batches and ignores C when beta is zero") {
  const std::int64_t batch = 3, m = 8, n = 16, k = 12;
  const auto a = random_tensor({batch, m, k}, 4);
  const auto b = random_tensor({batch, n, k}, 5);
  auto c = Tensor<float>::full({batch, m, n}, NAN);
  ops::gemm(false, true, 1.0f, a, b, 0.0f, c);
  auto expected = Tensor<float>::zeros({batch, m, n});
  for (std::int64_t i = 0; i < batch; ++i)
    naive_gemm(false, true, 1.0f, a.data() + i * m * k, b.data() + i * n * k, 0.0f, expected.data() + i * m * n, m,
               n, k);
  CHECK(max_difference(c, expected) < 1e-4);
  // A larger product, so that oneDNN splits it across threads.
  const auto big_a = random_tensor({130, 300}, 6);
  const auto big_b = random_tensor({300, 170}, 7);
  auto big_c = Tensor<float>::empty({130, 170});
  auto big_expected = Tensor<float>::zeros({130, 170});
  ops::gemm(false, false, 1.0f, big_a, big_b, 0.0f, big_c);
  naive_gemm(false, false, 1.0f, big_a.data(), big_b.data(), 0.0f, big_expected.data(), 130, 170, 300);
  CHECK(max_difference(big_c, big_expected) < 1e-3);
}

TEST_CASE("gemm errors name the operand and the shapes") {
  const auto a = Tensor<float>::zeros({4, 5});
  const auto b = Tensor<float>::zeros({6, 3});
  auto c = Tensor<float>::zeros({4, 3});
  CHECK_THROWS_WITH(ops::gemm(false, false, 1.0f, a, b, 0.0f, c),
                    Catch::Contains("gemm") && Catch::Contains("inner dimension") && Catch::Contains("5 vs 6") &&
                        Catch::Contains("A [4,5]") && Catch::Contains("B [6,3]"));
  CHECK_THROWS_WITH(ops::gemm(true, false, 1.0f, Tensor<float>::zeros({6, 4}), b, 0.0f, Tensor<float>::zeros({4, 4})),
                    Catch::Contains("C") && Catch::Contains("[4,3] per product"));
  CHECK_THROWS_WITH(ops::gemm(false, false, 1.0f, Tensor<float>::zeros({2, 4, 5}), b, 0.0f, c),
                    Catch::Contains("ranks"));
  CHECK_THROWS_WITH(ops::gemm(false, false, 1.0f, Tensor<float>::zeros({4, 10}).reshape({4, 10}).slice(1, 0, 5), b,
                              0.0f, c),
                    Catch::Contains("contiguous"));
}

// core/parallel.hpp: with oneDNN linked, libgomp is in the process and parallel_for runs on
// OpenMP's team (the one oneDNN's GEMM and convolutions use) instead of threads of its own.
TEST_CASE("parallel_for shares oneDNN's OpenMP team") {
  REQUIRE(detail::gomp_parallel() != nullptr);
  using ThreadNum = int (*)();
  const auto omp_thread_num = reinterpret_cast<ThreadNum>(dlsym(RTLD_DEFAULT, "omp_get_thread_num"));
  REQUIRE(omp_thread_num != nullptr);
  set_num_threads(2);
  CHECK(thread_pool().uses() == PoolThreads::openmp);
  for (int round = 0; round < 2; ++round) {  // before and after a oneDNN GEMM used the team
    std::vector<std::atomic<int>> hits(4096);
    std::atomic<int> outside_team{0};
    parallel_for(0, 4096, 64, [&](std::int64_t b, std::int64_t e) {
      const int id = omp_thread_num();
      if (id < 0 || id >= 2) ++outside_team;
      for (auto i = b; i < e; ++i) hits[static_cast<std::size_t>(i)]++;
    });
    CHECK(outside_team == 0);
    for (const auto& h : hits) REQUIRE(h == 1);
    const auto a = random_tensor({64, 64}, 1), bm = random_tensor({64, 64}, 2);
    auto c = Tensor<float>::zeros({64, 64});
    ops::gemm(false, false, 1.0f, a, bm, 0.0f, c);
  }
  set_num_threads(default_thread_count());
}
