// Forward declarations of medseg's core vocabulary, so headers can name each other's types
// without including each other (xtensor's xtensor_forward.hpp plays the same role).
#pragma once

#include <cstdint>

namespace medseg {

struct Cpu;   // host memory, kernels on the thread pool (backends/cpu/backend.hpp)
struct Cuda;  // device memory on an NVIDIA GPU (backends/cuda/backend.hpp)

class Dims;
using Shape = Dims;
using Strides = Dims;
struct Layout;

template <class T, class B = Cpu>
class Tensor;

struct float16;
struct bfloat16;
enum class DType : std::uint8_t;

class Error;
class ThreadPool;
class RandomStream;

}  // namespace medseg
