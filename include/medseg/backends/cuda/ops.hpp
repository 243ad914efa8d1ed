// The Cuda backend's kernels, declared with the same names and arguments as the CPU ones in
// backends/cpu/ (Tensor<float, Cuda> in place of Tensor<float, Cpu>); their definitions are
// compiled into medseg::cuda from src/backends/cuda/. Reached through backends/ops.hpp.
#pragma once

#include "backend.hpp"
#include "activation.hpp"
#include "augment.hpp"
#include "conv3d.hpp"
#include "elementwise.hpp"
#include "gemm.hpp"
#include "loss.hpp"
#include "optim.hpp"
#include "norm.hpp"
#include "pooling.hpp"
#include "preprocess.hpp"
#include "upsample.hpp"
