// What the optimizer kernels of every backend take (backends/cpu/optim.hpp,
// backends/cuda/optim.hpp): the fused multi-tensor table, with the parameters split into fixed
// chunks and one entry of pointers per tensor, which one pass walks chunk by chunk (a
// parallel_for on the CPU, one kernel launch on a GPU, one block per chunk), so a network of
// a hundred small tensors costs one dispatch per step; and the per-step scalars of each update
// rule: both backends' kernels take the same floats and apply them in the same order.
#pragma once

#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "../core/tensor.hpp"

namespace medseg::ops {

/// A piece of one parameter: elements [begin, end) of tensor `param`.
struct Chunk {
  std::size_t param;
  std::int64_t begin, end;
};

/// 32 Ki floats: 128 KiB of each state tensor, small enough to stay in L2 while a chunk's
/// value, gradient and moments are read and written.
inline constexpr std::int64_t chunk_elements = 1 << 15;

/// One parameter as the fused kernels see it: where its value, gradient and optimizer state
/// live (in the backend's memory), its size, and whether weight decay applies.
struct FusedTensor {
  float* value = nullptr;
  float* grad = nullptr;
  /// The optimizer's state tensors: SGD's momentum buffer; Adam's exp_avg, exp_avg_sq and
  /// max_exp_avg_sq (null without amsgrad). Unused slots are null.
  float* state[3] = {nullptr, nullptr, nullptr};
  std::int64_t numel = 0;
  bool decay = true;
};

/// The table a fused update reads: one FusedTensor per parameter and the chunk list, packed
/// into one buffer in B's memory (a host tensor on the CPU), so every backend's kernels read
/// it the same way. The optimizer rebuilds the host side every step (a few pointers per
/// parameter); the buffer is rewritten only when a pointer changed, so a step in steady state
/// copies nothing to a GPU.
template <class B>
class FusedTable {
 public:
  /// Makes the table describe `tensors`, split into `chunks` (whose `param` index `tensors`).
  void refresh(std::vector<FusedTensor> tensors, const std::vector<Chunk>& chunks);

  const std::vector<FusedTensor>& host_tensors() const { return tensors_; }
  const std::vector<Chunk>& host_chunks() const { return chunks_; }
  /// The same tables in B's memory: what the kernels read.
  const FusedTensor* tensors() const { return reinterpret_cast<const FusedTensor*>(packed_.data()); }
  const Chunk* chunks() const {
    return reinterpret_cast<const Chunk*>(packed_.data() + tensors_.size() * sizeof(FusedTensor));
  }
  std::int64_t chunk_count() const { return static_cast<std::int64_t>(chunks_.size()); }

 private:
  std::vector<FusedTensor> tensors_;
  std::vector<Chunk> chunks_;
  Tensor<std::uint8_t, B> packed_;  // [tensors][chunks], as bytes
  bool uploaded_ = false;
};

/// The scalars of one SGD step, rounded to float once as PyTorch rounds its Python floats.
struct SgdScalars {
  float lr = 0, momentum = 0;
  float keep = 1;  // 1 - dampening
  float weight_decay = 0;  // for tensors with decay; the others use 0
  bool use_momentum = false;
  bool first = false;  // the first step: the momentum buffer starts as the gradient
  bool nesterov = false;
};

/// The scalars of one Adam step, rounded to float as PyTorch rounds its Python floats.
struct AdamScalars {
  float b1, one_b1, b2, one_b2, eps, neg_step, bc2_sqrt;
  float l2;      // Adam's decay added to the gradient (0 for AdamW)
  float shrink;  // AdamW's factor 1 - lr * weight_decay (1 for Adam)
};

/// One Adam step: the scalars of tensors with weight decay and of those without.
struct AdamStep {
  AdamScalars decayed, undecayed;
};

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {
/// Whether two tables point at the same memory.
inline bool same_pointers(const std::vector<FusedTensor>& a, const std::vector<FusedTensor>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const FusedTensor &x = a[i], &y = b[i];
    if (x.value != y.value || x.grad != y.grad || x.numel != y.numel || x.decay != y.decay) return false;
    for (int k = 0; k < 3; ++k)
      if (x.state[k] != y.state[k]) return false;
  }
  return true;
}
}  // namespace detail

template <class B>
void FusedTable<B>::refresh(std::vector<FusedTensor> tensors, const std::vector<Chunk>& chunks) {
  const bool changed =
      !uploaded_ || !detail::same_pointers(tensors, tensors_) || chunks.size() != chunks_.size();
  if (!changed) return;
  tensors_ = std::move(tensors);
  chunks_ = chunks;
  // Both tables in one buffer; chunks start at a multiple of 8 bytes (sizeof(FusedTensor)).
  const std::size_t head = tensors_.size() * sizeof(FusedTensor);
  std::vector<std::uint8_t> bytes(head + chunks_.size() * sizeof(Chunk));
  if (!tensors_.empty()) std::memcpy(bytes.data(), tensors_.data(), head);
  if (!chunks_.empty()) std::memcpy(bytes.data() + head, chunks_.data(), chunks_.size() * sizeof(Chunk));
  const auto size = static_cast<std::int64_t>(bytes.size());
  if (size == 0) {
    packed_ = {};  // no parameters: nothing to point at (and an empty wrap is undefined)
  } else {
    // Same size: copy into the buffer the previous launches read (the copy is ordered after them).
    if (!packed_.defined() || packed_.numel() != size) packed_ = Tensor<std::uint8_t, B>::empty({size});
    packed_.copy_from(Tensor<std::uint8_t, Cpu>::wrap(bytes.data(), {size}));
  }
  uploaded_ = true;
}

static_assert(sizeof(FusedTensor) % 8 == 0 && alignof(Chunk) <= 8, "the packed table puts chunks after tensors");

}  // namespace medseg::ops
