// How the GPU's library kernels may trade exactness or determinism for speed: TF32 tensor cores
// for float32 convolutions and GEMMs, and timed rather than heuristic choice of cuDNN's
// convolution algorithms, and deterministic backward passes. Process-wide settings, the
// counterparts of PyTorch's torch.backends.cudnn.allow_tf32, .benchmark and .deterministic.
// All are read at each call and are part of the convolution plan key, so a change applies from
// the next op on.
#pragma once

namespace medseg::cuda {

/// false (the default): float32 products are float32 FMAs, which is what comparing the GPU
/// with the CPU needs. true: cuDNN and cuBLAS may use TF32 tensor cores (inputs rounded to
/// 10 mantissa bits, float32 accumulation; about 1e-3 relative error), PyTorch's default
/// for convolutions and several times faster on Ampere and Hopper.
void set_allow_tf32(bool allow);
bool allow_tf32();

/// false: convolution algorithms come from cuDNN's heuristics, chosen in microseconds. true:
/// each new problem times every algorithm on the real tensors once (cudnnFind*AlgorithmEx) and
/// keeps the fastest. Starts as the environment says: MEDSEG_CUDNN_BENCHMARK=1.
void set_cudnn_benchmark(bool benchmark);
bool cudnn_benchmark();

/// false (the default, as PyTorch's): the fastest backward algorithms, some of which add with
/// atomics, so gradients can differ in the last bits from run to run. true: deterministic
/// backward-data and backward-filter algorithms only, so a GPU run repeats bit for bit (on an
/// H100, a 128^3 float32 training step took about 1.2x as long with them). Starts as the
/// environment says: MEDSEG_CUDNN_DETERMINISTIC=1.
void set_cudnn_deterministic(bool deterministic);
bool cudnn_deterministic();

/// Sets allow_tf32 for a scope and restores the previous value when it ends:
///   { cuda::AllowTf32Scope fast(true); net.forward(x); }
class AllowTf32Scope {
 public:
  explicit AllowTf32Scope(bool allow) : previous_(allow_tf32()) { set_allow_tf32(allow); }
  ~AllowTf32Scope() { set_allow_tf32(previous_); }
  AllowTf32Scope(const AllowTf32Scope&) = delete;
  AllowTf32Scope& operator=(const AllowTf32Scope&) = delete;

 private:
  bool previous_;
};

}  // namespace medseg::cuda
