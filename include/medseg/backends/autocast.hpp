// Mixed precision for library code that does not know its backend: AutocastScope switches the
// low-precision math of every backend this build has for a scope, as `with torch.autocast(...)`
// does, so the trainer says "amp" once for whatever device its model is on.
//   CPU: bfloat16 convolutions (backends/cpu/math_mode.hpp, cpu::set_autocast_bf16).
//   CUDA: not yet — see the hook below; autocast_supported<Cuda>() is false, and the trainer
//   refuses amp on the GPU rather than run float32 under a flag that says otherwise.
#pragma once

#include <type_traits>

#include "../core/backend.hpp"
#include "cpu/math_mode.hpp"

namespace medseg {

/// Whether AutocastScope changes anything for models on backend B.
template <class B>
constexpr bool autocast_supported() {
  return std::is_same_v<B, Cpu>;
}

/// Mixed precision on (or off) for the lifetime of the scope; the previous settings come back
/// when it ends, so scopes nest. `enabled == false` forces full precision inside.
class AutocastScope {
 public:
  explicit AutocastScope(bool enabled) : cpu_(enabled) {
#if defined(MEDSEG_WITH_CUDA) && MEDSEG_WITH_CUDA
    // CUDA hook: GPU mixed precision (bfloat16 or float16 cuDNN convolutions, with a loss scaler
    // for float16) would be switched here, next to the CPU's, and autocast_supported<Cuda>()
    // turned true. Nothing is switched today.
#endif
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  cpu::AutocastBf16Scope cpu_;
};

}  // namespace medseg
