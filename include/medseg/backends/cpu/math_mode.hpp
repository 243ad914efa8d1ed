// How the CPU backend's convolutions may trade precision for speed: bfloat16 autocast, the
// counterpart for convolutions of torch.autocast("cpu", dtype=torch.bfloat16), and the CPU's
// twin of backends/cuda/math_mode.hpp. One process-wide setting, read at each call and part of
// the convolution plan key (backends/cpu/conv3d.hpp), so a change applies from the next op on
// and float32 and bfloat16 plans live side by side.
//
// What changes under autocast: a convolution's (and transposed convolution's) inputs, weights
// and incoming gradient dy are rounded to bfloat16 (round to nearest even) while oneDNN
// reorders them into its blocked layouts, which it does for float32 anyway; the products are
// accumulated in float32 and the results (y, dx, dw, the bias gradient) are written as float32.
// Tensors at the op boundary stay float32 — master weights, activations, gradients — as
// PyTorch keeps float32 parameters under CPU autocast. Everything else (norms, activations,
// losses, optimizers, GEMM) runs in float32 as before.
//
// Unlike PyTorch's autocast state, which is per thread, this one is process-wide, like
// cuda::set_allow_tf32: the trainer switches it for its forward and backward passes, and medseg
// runs a model's ops from one thread (the data loader's workers run no convolutions).
#pragma once

#include <atomic>

#include <oneapi/dnnl/dnnl.hpp>

namespace medseg::cpu {

/// false (the default): convolutions compute in float32. true: bfloat16 operands with float32
/// accumulation and float32 results (about 3 significant digits, a relative error near 4e-3),
/// several times faster on CPUs with AMX-BF16 (Sapphire Rapids and later). See
/// bf16_convolutions() for what this CPU runs them on.
void set_autocast_bf16(bool enabled);
bool autocast_bf16();

/// Sets autocast_bf16 for a scope and restores the previous value when it ends:
///   { cpu::AutocastBf16Scope fast(true); net.forward(x); }
class AutocastBf16Scope {
 public:
  explicit AutocastBf16Scope(bool enabled) : previous_(autocast_bf16()) { set_autocast_bf16(enabled); }
  ~AutocastBf16Scope() { set_autocast_bf16(previous_); }
  AutocastBf16Scope(const AutocastBf16Scope&) = delete;
  AutocastBf16Scope& operator=(const AutocastBf16Scope&) = delete;

 private:
  bool previous_;
};

/// What oneDNN 2.6 runs bfloat16 convolutions on here (its effective ISA, so
/// ONEDNN_MAX_CPU_ISA counts). Measured on one core of a Xeon with AMX, 32->32 channels, k3,
/// 48^3, forward, against 39 ms in float32: amx 4.6 ms; avx512_bf16 (AVX512-BF16 dot products,
/// no AMX) 87 ms; emulated (AVX-512 without BF16) 261 ms. So autocast pays only with AMX.
/// none: AVX2 and older CPUs, where oneDNN has no bfloat16 convolution at all and a convolution
/// under autocast throws.
enum class Bf16Convolutions { none, emulated, avx512_bf16, amx };
Bf16Convolutions bf16_convolutions();
const char* to_string(Bf16Convolutions c);

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {
inline std::atomic<bool>& autocast_bf16_setting() {
  static std::atomic<bool> enabled{false};
  return enabled;
}
}  // namespace detail

inline void set_autocast_bf16(bool enabled) { detail::autocast_bf16_setting().store(enabled, std::memory_order_relaxed); }
inline bool autocast_bf16() { return detail::autocast_bf16_setting().load(std::memory_order_relaxed); }

inline Bf16Convolutions bf16_convolutions() {
  // cpu_isa values are bit sets, each ISA's bits a superset of those it extends.
  const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  auto has = [&](dnnl::cpu_isa wanted) { return (isa & static_cast<unsigned>(wanted)) == static_cast<unsigned>(wanted); };
  if (has(dnnl::cpu_isa::avx512_core_amx)) return Bf16Convolutions::amx;
  if (has(dnnl::cpu_isa::avx512_core_bf16)) return Bf16Convolutions::avx512_bf16;
  if (has(dnnl::cpu_isa::avx512_core)) return Bf16Convolutions::emulated;
  return Bf16Convolutions::none;
}

inline const char* to_string(Bf16Convolutions c) {
  switch (c) {
    case Bf16Convolutions::amx: return "amx";
    case Bf16Convolutions::avx512_bf16: return "avx512_bf16";
    case Bf16Convolutions::emulated: return "emulated";
    case Bf16Convolutions::none: break;
  }
  return "none";
}

}  // namespace medseg::cpu
