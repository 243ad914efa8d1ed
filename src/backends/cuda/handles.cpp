// The library handles of backends/cuda/cudnn.hpp and cublas.hpp, and the process-wide
// settings of backends/cuda/math_mode.hpp. A cuDNN or cuBLAS handle belongs to one device
// and must not be used by two threads at once, so each thread keeps one per device, made
// on first use (creating one costs milliseconds) and destroyed when the thread ends.
#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "medseg/backends/cuda/check.hpp"
#include "medseg/backends/cuda/cublas.hpp"
#include "medseg/backends/cuda/cudnn.hpp"
#include "medseg/backends/cuda/math_mode.hpp"
#include "medseg/backends/cuda/stream.hpp"

namespace medseg::cuda {

namespace {

std::atomic<bool>& tf32_setting() {
  static std::atomic<bool> allowed{false};
  return allowed;
}

std::atomic<bool>& benchmark_setting() {
  static std::atomic<bool> benchmark{[] {
    const char* v = std::getenv("MEDSEG_CUDNN_BENCHMARK");
    return v != nullptr && std::string_view(v) == "1";
  }()};
  return benchmark;
}

std::atomic<bool>& deterministic_setting() {
  static std::atomic<bool> deterministic{[] {
    const char* v = std::getenv("MEDSEG_CUDNN_DETERMINISTIC");
    return v != nullptr && std::string_view(v) == "1";
  }()};
  return deterministic;
}

/// One thread's handles, indexed by device ordinal.
struct ThreadHandles {
  std::vector<cudnnHandle_t> cudnn;
  std::vector<cublasHandle_t> cublas;

  ThreadHandles() = default;
  ThreadHandles(const ThreadHandles&) = delete;
  ThreadHandles& operator=(const ThreadHandles&) = delete;
  ~ThreadHandles() {
    // Statuses are dropped: a destructor must not throw. The main thread's thread_locals
    // are destroyed at exit() before the CUDA runtime's own exit handlers run, so the
    // context is still there.
    for (cudnnHandle_t h : cudnn)
      if (h) (void)cudnnDestroy(h);
    for (cublasHandle_t h : cublas)
      if (h) (void)cublasDestroy(h);
  }
};

ThreadHandles& thread_handles() {
  thread_local ThreadHandles handles;
  return handles;
}

template <class Handle>
Handle& slot_for_current_device(std::vector<Handle>& handles) {
  int device = 0;
  MEDSEG_CUDA_CHECK(cudaGetDevice(&device));
  const auto index = static_cast<std::size_t>(device);
  if (handles.size() <= index) handles.resize(index + 1, nullptr);
  return handles[index];
}

}  // namespace

void set_allow_tf32(bool allow) { tf32_setting().store(allow); }
bool allow_tf32() { return tf32_setting().load(); }

void set_cudnn_benchmark(bool benchmark) { benchmark_setting().store(benchmark); }
bool cudnn_benchmark() { return benchmark_setting().load(); }
void set_cudnn_deterministic(bool deterministic) { deterministic_setting().store(deterministic); }
bool cudnn_deterministic() { return deterministic_setting().load(); }

cudnnHandle_t cudnn_handle() {
  cudnnHandle_t& slot = slot_for_current_device(thread_handles().cudnn);
  if (!slot) {
    cudnnHandle_t created = nullptr;
    MEDSEG_CUDNN_CHECK(cudnnCreate(&created));
    slot = created;
  }
  MEDSEG_CUDNN_CHECK(cudnnSetStream(slot, current_stream()));
  return slot;
}

cublasHandle_t cublas_handle() {
  cublasHandle_t& slot = slot_for_current_device(thread_handles().cublas);
  if (!slot) {
    cublasHandle_t created = nullptr;
    MEDSEG_CUBLAS_CHECK(cublasCreate(&created));
    slot = created;
  }
  MEDSEG_CUBLAS_CHECK(cublasSetStream(slot, current_stream()));
  // CUBLAS_DEFAULT_MATH runs float32 GEMMs on FMA units; TF32 only when asked.
  MEDSEG_CUBLAS_CHECK(cublasSetMathMode(slot, allow_tf32() ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  return slot;
}

}  // namespace medseg::cuda
