// cuDNN for medseg::cuda: MEDSEG_CUDNN_CHECK, which turns a cuDNN status into medseg::Error
// with the call's text, the status name and cuDNN's own account of what went wrong, and the
// calling thread's cuDNN handle. A handle is not safe to use from two threads at once and
// is bound to one device, so each (thread, device) pair gets its own, made on first use.
#pragma once

#include <cudnn.h>

#include <string>

#include "../../core/error.hpp"

namespace medseg::cuda {

/// This thread's cuDNN handle for the current device, its stream set to current_stream()
/// (backends/cuda/stream.hpp). Ask again before each use rather than keeping it: the stream
/// is set at each request, so work follows a StreamGuard. Defined in src/backends/cuda/handles.cpp.
cudnnHandle_t cudnn_handle();

[[noreturn]] inline void throw_cudnn_error(cudnnStatus_t status, const char* call, const char* file, int line) {
  // cuDNN 9 keeps a per-thread message for its last failure, which names the bad argument.
  char message[512] = {};
  cudnnGetLastErrorString(message, sizeof message);
  throw Error{{.where = std::string(call) + " at " + file + ":" + std::to_string(line), .field = "cuDNN status",
               .expected = "CUDNN_STATUS_SUCCESS", .actual = cudnnGetErrorString(status), .detail = message}};
}

}  // namespace medseg::cuda

#define MEDSEG_CUDNN_CHECK(call)                                                             \
  do {                                                                                       \
    const cudnnStatus_t medseg_cudnn_status_ = (call);                                       \
    if (medseg_cudnn_status_ != CUDNN_STATUS_SUCCESS)                                        \
      ::medseg::cuda::throw_cudnn_error(medseg_cudnn_status_, #call, __FILE__, __LINE__);    \
  } while (0)
