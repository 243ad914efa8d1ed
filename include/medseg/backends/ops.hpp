// The kernels of every backend this build has, as one overload set: `ops::f(Tensor<float, Cpu>
// ...)` from backends/cpu/ (header-only), and, in programs that link medseg::cuda (which
// defines MEDSEG_WITH_CUDA=1), `ops::f(Tensor<float, Cuda> ...)` declared in backends/cuda/ and
// compiled into that library. Layers, losses and optimizers include this header and call
// `ops::f` on their backend's tensors; overload resolution picks the device.
#pragma once

#include "cpu/activation.hpp"
#include "cpu/augment.hpp"
#include "cpu/conv3d.hpp"
#include "cpu/elementwise.hpp"
#include "cpu/gemm.hpp"
#include "cpu/loss.hpp"
#include "cpu/norm.hpp"
#include "cpu/optim.hpp"
#include "cpu/pooling.hpp"
#include "cpu/preprocess.hpp"
#include "cpu/upsample.hpp"

#if defined(MEDSEG_WITH_CUDA) && MEDSEG_WITH_CUDA
#include "cuda/ops.hpp"
#endif
