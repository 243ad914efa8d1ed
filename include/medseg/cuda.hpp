// The Cuda backend: `Tensor<float, Cuda>`, streams, device queries. Include in programs that
// link medseg::cuda.
#pragma once

#include "backends/cuda/backend.hpp"
#include "backends/cuda/check.hpp"
#include "backends/cuda/device.hpp"
#include "backends/cuda/stream.hpp"
#include "core.hpp"
