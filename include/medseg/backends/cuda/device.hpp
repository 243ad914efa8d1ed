// Which GPUs there are. Asking never throws: on a machine without a driver or a GPU,
// device_count() is 0, and GPU tests use that to skip.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "check.hpp"

namespace medseg::cuda {

/// Number of visible CUDA devices; 0 when there is no driver or no device.
inline int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

inline bool available() noexcept { return device_count() > 0; }

struct DeviceInfo {
  std::string name;
  int major = 0, minor = 0;  // compute capability
  std::size_t total_bytes = 0, free_bytes = 0;
  int multiprocessors = 0;
};

inline DeviceInfo device_info(int device = 0) {
  cudaDeviceProp p{};
  MEDSEG_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  DeviceInfo d{p.name, p.major, p.minor, 0, 0, p.multiProcessorCount};
  int current = 0;
  MEDSEG_CUDA_CHECK(cudaGetDevice(&current));
  MEDSEG_CUDA_CHECK(cudaSetDevice(device));
  MEDSEG_CUDA_CHECK(cudaMemGetInfo(&d.free_bytes, &d.total_bytes));
  MEDSEG_CUDA_CHECK(cudaSetDevice(current));
  return d;
}

}  // namespace medseg::cuda
