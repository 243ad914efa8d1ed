// The optimizer kernels of the Cuda backend (declared in backends/cuda/optim.hpp). Each is
// one launch over the fused table: block b updates chunk b of its parameter, so every tensor
// of the network is updated by the same kernel. The element arithmetic uses the IEEE
// round-to-nearest intrinsics (__fmul_rn, __fadd_rn, ...), which nvcc never contracts into
// fused multiply-adds: each operation rounds as the CPU's does (medseg builds with
// -ffp-contract=off), so a step gives the CPU's floats. Norm partials are per chunk, in
// double, combined in a fixed tree order, so clipping gives the same number every run.
#include "medseg/backends/cuda/optim.hpp"

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "backends/cuda/launch.cuh"

namespace medseg::ops {
namespace {

using cuda::detail::block_threads;
using cuda::detail::check_launch;

cudaStream_t stream() { return cuda::current_stream(); }

/// Blocks for a launch over every chunk of `table` (one each); 0 means nothing to do.
unsigned chunk_blocks(const FusedTable<Cuda>& table) { return static_cast<unsigned>(table.chunk_count()); }

__global__ void sgd_kernel(const FusedTensor* tensors, const Chunk* chunks, SgdScalars k) {
  const Chunk c = chunks[blockIdx.x];
  const FusedTensor t = tensors[c.param];
  const float wd = t.decay ? k.weight_decay : 0.0f;
  float* buf = t.state[0];
  for (std::int64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x) {
    const float p = t.value[i];
    float d = __fadd_rn(t.grad[i], __fmul_rn(wd, p));
    if (k.use_momentum) {
      const float b = k.first ? d : __fadd_rn(__fmul_rn(buf[i], k.momentum), __fmul_rn(k.keep, d));
      buf[i] = b;
      d = k.nesterov ? __fadd_rn(d, __fmul_rn(k.momentum, b)) : b;
    }
    t.value[i] = __fadd_rn(p, __fmul_rn(-k.lr, d));
  }
}

/// The CPU's detail::adam_elements (backends/cpu/optim.hpp), operation for operation.
__global__ void adam_kernel(const FusedTensor* tensors, const Chunk* chunks, AdamStep step) {
  const Chunk c = chunks[blockIdx.x];
  const FusedTensor t = tensors[c.param];
  const AdamScalars k = t.decay ? step.decayed : step.undecayed;
  float* m = t.state[0];
  float* v = t.state[1];
  float* vmax = t.state[2];
  for (std::int64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x) {
    const float p = __fmul_rn(t.value[i], k.shrink);
    const float gi = __fadd_rn(t.grad[i], __fmul_rn(k.l2, p));
    const float mi = __fadd_rn(__fmul_rn(m[i], k.b1), __fmul_rn(k.one_b1, gi));
    const float vi = __fadd_rn(__fmul_rn(v[i], k.b2), __fmul_rn(__fmul_rn(k.one_b2, gi), gi));
    m[i] = mi;
    v[i] = vi;
    float second = vi;
    if (vmax) {
      second = vmax[i] > vi ? vmax[i] : vi;
      vmax[i] = second;
    }
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(second), k.bc2_sqrt), k.eps);
    t.value[i] = __fadd_rn(p, __fdiv_rn(__fmul_rn(k.neg_step, mi), denom));  // PyTorch's addcdiv order
  }
}

__global__ void scale_kernel(const FusedTensor* tensors, const Chunk* chunks, float factor) {
  const Chunk c = chunks[blockIdx.x];
  float* g = tensors[c.param].grad;
  for (std::int64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x) g[i] = __fmul_rn(g[i], factor);
}

// -- Gradient norms -------------------------------------------------------------------------

/// How a norm combines elements: a sum of squares, a sum of |g|^q, or a maximum of |g|.
enum class NormKind { squares, powers, maximum };

/// max that keeps NaN (fmax would drop it): a NaN gradient must make the norm NaN.
__device__ double max_keeping_nan(double a, double b) { return (isnan(a) || isnan(b)) ? NAN : fmax(a, b); }

__device__ double combine(NormKind kind, double a, double b) {
  return kind == NormKind::maximum ? max_keeping_nan(a, b) : a + b;
}

/// Combines v over the threads of the block in a fixed tree order; thread 0 gets the result.
/// All threads of the block must call it; blockDim.x must be block_threads.
__device__ double block_combine(NormKind kind, double v) {
  __shared__ double shared[block_threads];
  const unsigned t = threadIdx.x;
  shared[t] = v;
  __syncthreads();
  for (unsigned stride = block_threads / 2; stride > 0; stride /= 2) {
    if (t < stride) shared[t] = combine(kind, shared[t], shared[t + stride]);
    __syncthreads();
  }
  return shared[0];
}

/// partial[b] = the norm's combination over chunk b.
__global__ void norm_partials_kernel(const FusedTensor* tensors, const Chunk* chunks, NormKind kind, double q,
                                     double* partial) {
  const Chunk c = chunks[blockIdx.x];
  const float* g = tensors[c.param].grad;
  double acc = 0.0;
  for (std::int64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x) {
    const double a = fabs(static_cast<double>(g[i]));
    if (kind == NormKind::squares)
      acc += a * a;
    else if (kind == NormKind::powers)
      acc += pow(a, q);
    else
      acc = max_keeping_nan(acc, a);
  }
  acc = block_combine(kind, acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

/// total[0] = the combination of partial[0, count), by one block.
__global__ void norm_total_kernel(const double* partial, std::int64_t count, NormKind kind, double* total) {
  double acc = 0.0;
  for (std::int64_t i = threadIdx.x; i < count; i += blockDim.x) acc = combine(kind, acc, partial[i]);
  acc = block_combine(kind, acc);
  if (threadIdx.x == 0) total[0] = acc;
}

}  // namespace

void sgd_update(const FusedTable<Cuda>& table, const SgdScalars& k) {
  if (chunk_blocks(table) == 0) return;
  sgd_kernel<<<chunk_blocks(table), block_threads, 0, stream()>>>(table.tensors(), table.chunks(), k);
  check_launch("optim sgd_kernel");
}

void adam_update(const FusedTable<Cuda>& table, const AdamStep& step) {
  if (chunk_blocks(table) == 0) return;
  adam_kernel<<<chunk_blocks(table), block_threads, 0, stream()>>>(table.tensors(), table.chunks(), step);
  check_launch("optim adam_kernel");
}

double gradient_norm_total(const FusedTable<Cuda>& table, double norm_type) {
  const std::int64_t count = table.chunk_count();
  if (count == 0) return 0.0;
  const NormKind kind = std::isinf(norm_type) ? NormKind::maximum
                        : norm_type == 2.0    ? NormKind::squares
                                              : NormKind::powers;
  auto partial = Tensor<double, Cuda>::empty({count});
  auto total = Tensor<double, Cuda>::empty({1});
  norm_partials_kernel<<<static_cast<unsigned>(count), block_threads, 0, stream()>>>(table.tensors(), table.chunks(),
                                                                                    kind, norm_type, partial.data());
  check_launch("optim norm_partials_kernel");
  norm_total_kernel<<<1, block_threads, 0, stream()>>>(partial.data(), count, kind, total.data());
  check_launch("optim norm_total_kernel");
  return total.to_vector()[0];
}

void scale_gradients(const FusedTable<Cuda>& table, float factor) {
  if (chunk_blocks(table) == 0) return;
  scale_kernel<<<chunk_blocks(table), block_threads, 0, stream()>>>(table.tensors(), table.chunks(), factor);
  check_launch("optim scale_kernel");
}

}  // namespace medseg::ops
