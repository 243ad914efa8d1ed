// The one attribute macro medseg has: functions shared by host code and CUDA kernels
// (the RNG, float16 conversions) must be marked __host__ __device__ under nvcc and are
// plain inline functions elsewhere. CUTLASS does the same with CUTLASS_HOST_DEVICE.
#pragma once

#if defined(__CUDACC__)
#define MEDSEG_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define MEDSEG_HOST_DEVICE inline
#endif
