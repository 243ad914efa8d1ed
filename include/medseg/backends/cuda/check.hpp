// Turning CUDA runtime errors into medseg::Error. The macro is one of the few medseg has:
// it must capture the call's text, file and line where the call is written.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "../../core/error.hpp"

namespace medseg::cuda {

[[noreturn]] inline void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line) {
  // Reset the thread's last-error slot: a reported, recoverable error (a bad argument) must not
  // resurface from the next unrelated cudaGetLastError.
  (void)cudaGetLastError();
  throw Error{{.where = std::string(call) + " at " + file + ":" + std::to_string(line), .field = "CUDA status",
               .expected = "cudaSuccess",
               .actual = std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status)}};
}

}  // namespace medseg::cuda

#define MEDSEG_CUDA_CHECK(call)                                                              \
  do {                                                                                       \
    const cudaError_t medseg_cuda_status_ = (call);                                          \
    if (medseg_cuda_status_ != cudaSuccess)                                                  \
      ::medseg::cuda::throw_cuda_error(medseg_cuda_status_, #call, __FILE__, __LINE__);      \
  } while (0)
