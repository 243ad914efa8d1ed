// The CPU thread pool every CPU kernel runs on. One pool per process, sized by
// MEDSEG_NUM_THREADS (default: all cores); the calling thread works too. A parallel_for
// inside a parallel_for runs serially on the thread that reached it, which keeps nested
// library calls from deadlocking or oversubscribing.
//
// Where the process has OpenMP's runtime (libgomp, which Debian's oneDNN brings), the pool
// runs its jobs on OpenMP's own thread team instead of threads of its own, so the cores are
// not shared by two sets of threads: after each parallel region libgomp's threads spin-wait
// for the next one, holding cores another team's workers need. One team serves both (VNet
// forward, 2 cores, quiet machine: 650 ms, 684 ms with two teams). MEDSEG_THREAD_POOL=own
// keeps the pool's own threads. On a machine other work shares, that spinning costs far more
// (the same forward beside one low-priority compile: 2.2 s; OMP_WAIT_POLICY=passive 1.34 s).
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <dlfcn.h>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "error.hpp"

namespace medseg {

/// Who runs a pool's chunks.
enum class PoolThreads {
  own,     // threads the pool starts and keeps
  openmp,  // OpenMP's thread team (GOMP_parallel), shared with oneDNN
};

namespace detail {
/// libgomp's entry point for `#pragma omp parallel`: runs fn(data) on a team of `threads`,
/// the caller included, and returns when all are done. Looked up at run time, as
/// cpu::match_dnnl_threads looks up omp_set_num_threads, so OpenMP stays off our link line
/// and users' compile flags.
using GompParallel = void (*)(void (*fn)(void*), void* data, unsigned threads, unsigned flags);
inline GompParallel gomp_parallel() {
  static const GompParallel f = reinterpret_cast<GompParallel>(dlsym(RTLD_DEFAULT, "GOMP_parallel"));
  return f;
}
}  // namespace detail

/// OpenMP's team when the process has libgomp, unless MEDSEG_THREAD_POOL=own; throws on
/// another value of MEDSEG_THREAD_POOL.
PoolThreads default_pool_threads();

class ThreadPool {
 public:
  /// A pool of `threads` threads in all, the caller included (at least 1). PoolThreads::openmp
  /// where the process has no libgomp falls back to own threads (see uses()).
  explicit ThreadPool(int threads, PoolThreads kind = default_pool_threads());
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return threads_; }
  /// Which threads run the chunks.
  PoolThreads uses() const { return openmp_ ? PoolThreads::openmp : PoolThreads::own; }

  /// Calls body(b, e) on disjoint chunks that cover [begin, end), each at least `grain`
  /// long (but the last), on all threads, and returns when all are done. The first
  /// exception a chunk throws is rethrown here after the others finish.
  /// Results must not depend on how the range was chunked: reproducible kernels index
  /// their random numbers and reductions by element, never by chunk or thread.
  void parallel_for(std::int64_t begin, std::int64_t end, std::int64_t grain,
                    const std::function<void(std::int64_t, std::int64_t)>& body);

 private:
  struct Job {
    const std::function<void(std::int64_t, std::int64_t)>* body = nullptr;
    std::int64_t begin = 0, end = 0, chunk = 1, chunks = 0;
    std::atomic<std::int64_t> next{0};
    std::atomic<std::int64_t> done{0};
    std::exception_ptr error;
    std::mutex error_mutex;
  };

  void worker_loop();
  static void run_chunks(Job& job);
  static void run_as_team_member(void* job);
  static bool& inside_pool() {
    thread_local bool inside = false;
    return inside;
  }

  int threads_ = 1;
  detail::GompParallel openmp_ = nullptr;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable finished_;
  std::shared_ptr<Job> job_;
  std::uint64_t generation_ = 0;
  int active_workers_ = 0;
  bool stopping_ = false;
  std::mutex submit_mutex_;  // one parallel_for at a time from outside the pool
};

/// Thread count from MEDSEG_NUM_THREADS, else the hardware's; throws on a malformed value.
int default_thread_count();
/// The process-wide pool.
ThreadPool& thread_pool();
/// Rebuilds the process-wide pool with n threads. Not to be called while it is busy.
void set_num_threads(int n);
inline int num_threads() { return thread_pool().size(); }

/// parallel_for on the process-wide pool. Ranges shorter than 2 * grain run inline.
template <class Body>
void parallel_for(std::int64_t begin, std::int64_t end, std::int64_t grain, Body&& body) {
  if (end <= begin) return;
  grain = std::max<std::int64_t>(grain, 1);
  if (end - begin < 2 * grain) {
    body(begin, end);
    return;
  }
  const std::function<void(std::int64_t, std::int64_t)> f = std::ref(body);
  thread_pool().parallel_for(begin, end, grain, f);
}

// ----------------------------------------------------------------------------------------
// Implementation

inline PoolThreads default_pool_threads() {
  const char* env = std::getenv("MEDSEG_THREAD_POOL");
  const std::string_view value = env ? env : "";
  require(value.empty() || value == "own" || value == "openmp", [&] {
    return ErrorInfo{.where = "environment", .field = "MEDSEG_THREAD_POOL", .expected = "own or openmp",
                     .actual = "\"" + std::string(value) + "\""};
  });
  return value == "own" || !detail::gomp_parallel() ? PoolThreads::own : PoolThreads::openmp;
}

inline ThreadPool::ThreadPool(int threads, PoolThreads kind) : threads_(threads) {
  require(threads >= 1, [&] {
    return ErrorInfo{.where = "ThreadPool", .field = "threads", .expected = ">= 1", .actual = std::to_string(threads)};
  });
  if (kind == PoolThreads::openmp) openmp_ = detail::gomp_parallel();
  if (openmp_) return;
  workers_.reserve(static_cast<std::size_t>(threads - 1));
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

inline ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

inline void ThreadPool::run_chunks(Job& job) {
  for (;;) {
    const std::int64_t c = job.next.fetch_add(1, std::memory_order_relaxed);
    if (c >= job.chunks) return;
    const std::int64_t b = job.begin + c * job.chunk;
    const std::int64_t e = std::min(job.end, b + job.chunk);
    try {
      (*job.body)(b, e);
    } catch (...) {
      std::lock_guard lock(job.error_mutex);
      if (!job.error) job.error = std::current_exception();
    }
    job.done.fetch_add(1, std::memory_order_acq_rel);
  }
}

inline void ThreadPool::run_as_team_member(void* job) {
  // libgomp keeps its threads between regions: the flag is set for this job only.
  inside_pool() = true;
  run_chunks(*static_cast<Job*>(job));
  inside_pool() = false;
}

inline void ThreadPool::worker_loop() {
  inside_pool() = true;
  std::uint64_t seen = 0;
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
      job = job_;
      ++active_workers_;
    }
    if (job) run_chunks(*job);
    {
      std::lock_guard lock(mutex_);
      --active_workers_;
    }
    finished_.notify_all();
  }
}

inline void ThreadPool::parallel_for(std::int64_t begin, std::int64_t end, std::int64_t grain,
                                     const std::function<void(std::int64_t, std::int64_t)>& body) {
  if (end <= begin) return;
  grain = std::max<std::int64_t>(grain, 1);
  if (threads_ == 1 && !inside_pool()) {
    // A one-thread pool's caller is its only member: parallel_for calls the body makes run
    // inline too, not on another pool (a loader's one worker augments on its own thread).
    struct Inside {
      Inside() { inside_pool() = true; }
      ~Inside() { inside_pool() = false; }
    } inside;
    body(begin, end);
    return;
  }
  if (threads_ == 1 || inside_pool() || end - begin <= grain) {
    body(begin, end);
    return;
  }
  std::lock_guard submit(submit_mutex_);
  auto job = std::make_shared<Job>();
  job->body = &body;
  job->begin = begin;
  job->end = end;
  // About four chunks per thread balances uneven chunks without much scheduling overhead.
  const std::int64_t n = end - begin;
  const std::int64_t target = static_cast<std::int64_t>(size()) * 4;
  job->chunk = std::max(grain, (n + target - 1) / target);
  job->chunks = (n + job->chunk - 1) / job->chunk;
  if (openmp_) {
    // run_chunks catches what a chunk throws: no exception crosses the OpenMP region.
    openmp_(&ThreadPool::run_as_team_member, job.get(), static_cast<unsigned>(std::min<std::int64_t>(threads_, job->chunks)), 0);
    if (job->error) std::rethrow_exception(job->error);
    return;
  }
  {
    std::lock_guard lock(mutex_);
    job_ = job;
    ++generation_;
  }
  wake_.notify_all();
  inside_pool() = true;
  run_chunks(*job);
  inside_pool() = false;
  {
    std::unique_lock lock(mutex_);
    finished_.wait(lock, [&] { return job->done.load(std::memory_order_acquire) == job->chunks && active_workers_ == 0; });
    job_.reset();
  }
  if (job->error) std::rethrow_exception(job->error);
}

inline int default_thread_count() {
  if (const char* env = std::getenv("MEDSEG_NUM_THREADS"); env && *env) {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    require(*end == '\0' && n >= 1 && n <= 4096, [&] {
      return ErrorInfo{.where = "environment", .field = "MEDSEG_NUM_THREADS",
                       .expected = "a thread count from 1 to 4096", .actual = "\"" + std::string(env) + "\""};
    });
    return static_cast<int>(n);
  }
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

namespace detail {
inline std::unique_ptr<ThreadPool>& pool_slot() {
  static std::unique_ptr<ThreadPool> pool;
  return pool;
}
inline std::mutex& pool_mutex() {
  static std::mutex m;
  return m;
}
}  // namespace detail

inline ThreadPool& thread_pool() {
  std::lock_guard lock(detail::pool_mutex());
  auto& p = detail::pool_slot();
  if (!p) p = std::make_unique<ThreadPool>(default_thread_count());
  return *p;
}

inline void set_num_threads(int n) {
  std::lock_guard lock(detail::pool_mutex());
  auto& p = detail::pool_slot();
  p.reset();
  p = std::make_unique<ThreadPool>(n);
}

}  // namespace medseg
