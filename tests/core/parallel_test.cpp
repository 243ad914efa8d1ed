#include "medseg/core/parallel.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <thread>
#include <vector>

using namespace medseg;

// Both kinds of pool: OpenMP's team needs libgomp in the process (the backends' tests, which
// link oneDNN, check that it is used there); without it the pool falls back to own threads.
TEST_CASE("parallel_for covers the range exactly once") {
  for (const PoolThreads kind : {PoolThreads::own, PoolThreads::openmp})
  for (int threads : {1, 2, 5}) {
    ThreadPool pool(threads, kind);
    CHECK(pool.size() == threads);
    if (kind == PoolThreads::own) CHECK(pool.uses() == PoolThreads::own);
    std::vector<std::atomic<int>> hits(10007);
    pool.parallel_for(3, 10007, 10, [&](std::int64_t b, std::int64_t e) {
      for (auto i = b; i < e; ++i) hits[static_cast<std::size_t>(i)]++;
    });
    for (std::size_t i = 0; i < hits.size(); ++i) REQUIRE(hits[i] == (i >= 3 ? 1 : 0));
  }
}

TEST_CASE("chunks respect the grain") {
  for (const PoolThreads kind : {PoolThreads::own, PoolThreads::openmp}) {
  ThreadPool pool(4, kind);
  std::atomic<std::int64_t> smallest{1 << 30};
  pool.parallel_for(0, 1000, 100, [&](std::int64_t b, std::int64_t e) {
    if (e != 1000) smallest = std::min<std::int64_t>(smallest, e - b);
  });
  CHECK(smallest >= 100);
  }
}

TEST_CASE("an exception in a chunk reaches the caller and the pool still works") {
  for (const PoolThreads kind : {PoolThreads::own, PoolThreads::openmp}) {
  ThreadPool pool(3, kind);
  CHECK_THROWS_WITH(pool.parallel_for(0, 100, 1,
                                      [](std::int64_t b, std::int64_t e) {
                                        if (b <= 50 && 50 < e) throw Error("chunk 50 failed");
                                      }),
                    Catch::Contains("chunk 50 failed"));
  std::atomic<int> sum{0};
  pool.parallel_for(0, 100, 1, [&](std::int64_t b, std::int64_t e) { sum += static_cast<int>(e - b); });
  CHECK(sum == 100);
  }
}

TEST_CASE("nested parallel_for runs inline instead of deadlocking") {
  set_num_threads(3);
  std::atomic<int> inner{0};
  parallel_for(0, 8, 1, [&](std::int64_t b, std::int64_t e) {
    for (auto i = b; i < e; ++i)
      parallel_for(0, 100, 1, [&](std::int64_t ib, std::int64_t ie) { inner += static_cast<int>(ie - ib); });
  });
  CHECK(inner == 800);
  set_num_threads(default_thread_count());
}

TEST_CASE("MEDSEG_NUM_THREADS sets the default thread count and is validated") {
  ::setenv("MEDSEG_NUM_THREADS", "3", 1);
  CHECK(default_thread_count() == 3);
  ::setenv("MEDSEG_NUM_THREADS", "two", 1);
  CHECK_THROWS_WITH(default_thread_count(), Catch::Contains("MEDSEG_NUM_THREADS") && Catch::Contains("\"two\""));
  ::setenv("MEDSEG_NUM_THREADS", "0", 1);
  CHECK_THROWS(default_thread_count());
  ::unsetenv("MEDSEG_NUM_THREADS");
  CHECK(default_thread_count() >= 1);
  CHECK_THROWS_WITH(ThreadPool(0), Catch::Contains(">= 1"));
}

TEST_CASE("MEDSEG_THREAD_POOL chooses the pool's threads and is validated") {
  ::setenv("MEDSEG_THREAD_POOL", "own", 1);
  CHECK(default_pool_threads() == PoolThreads::own);
  ::setenv("MEDSEG_THREAD_POOL", "openmp", 1);
  CHECK(default_pool_threads() == (detail::gomp_parallel() ? PoolThreads::openmp : PoolThreads::own));
  ::setenv("MEDSEG_THREAD_POOL", "tbb", 1);
  CHECK_THROWS_WITH(default_pool_threads(), Catch::Contains("MEDSEG_THREAD_POOL") && Catch::Contains("\"tbb\""));
  ::unsetenv("MEDSEG_THREAD_POOL");
}

TEST_CASE("a one-thread pool keeps the parallel_for calls its body makes on its own thread") {
  set_num_threads(3);
  ThreadPool single(1);
  std::atomic<int> elsewhere{0}, covered{0};
  const auto caller = std::this_thread::get_id();
  single.parallel_for(0, 4, 1, [&](std::int64_t, std::int64_t) {
    parallel_for(0, 1000, 1, [&](std::int64_t b, std::int64_t e) {
      if (std::this_thread::get_id() != caller) ++elsewhere;
      covered += static_cast<int>(e - b);
    });
  });
  CHECK(elsewhere == 0);
  CHECK(covered == 1000);
  set_num_threads(default_thread_count());
}
