// The Cuda backend: `Tensor<float, Cuda>`, streams, device queries. Include in programs that
// link medseg::cuda. The kernels of both backends come with it (backends/ops.hpp).
#pragma once

#include "backends/cuda/backend.hpp"
#include "backends/cuda/check.hpp"
#include "backends/cuda/device.hpp"
#include "backends/cuda/stream.hpp"
#include "backends/ops.hpp"
#include "core.hpp"
