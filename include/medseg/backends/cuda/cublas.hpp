// cuBLAS for medseg::cuda: MEDSEG_CUBLAS_CHECK, which turns a cuBLAS status into
// medseg::Error with the call's text and the status name, and the calling thread's cuBLAS
// handle. As with cuDNN, each (thread, device) pair gets its own handle, made on first use.
#pragma once

#include <cublas_v2.h>

#include <string>

#include "../../core/error.hpp"

namespace medseg::cuda {

/// This thread's cuBLAS handle for the current device, with its stream set to
/// current_stream() and its math mode to allow_tf32()'s (backends/cuda/math_mode.hpp) at
/// each request. Defined in src/backends/cuda/handles.cpp.
cublasHandle_t cublas_handle();

[[noreturn]] inline void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  throw Error{{.where = std::string(call) + " at " + file + ":" + std::to_string(line), .field = "cuBLAS status",
               .expected = "CUBLAS_STATUS_SUCCESS",
               .actual = std::string(cublasGetStatusName(status)) + ": " + cublasGetStatusString(status)}};
}

}  // namespace medseg::cuda

#define MEDSEG_CUBLAS_CHECK(call)                                                            \
  do {                                                                                       \
    const cublasStatus_t medseg_cublas_status_ = (call);                                     \
    if (medseg_cublas_status_ != CUBLAS_STATUS_SUCCESS)                                      \
      ::medseg::cuda::throw_cublas_error(medseg_cublas_status_, #call, __FILE__, __LINE__);  \
  } while (0)
