// The loss kernels of the Cuda backend (declared in backends/cuda/loss.hpp): the same
// arithmetic as the CPU kernels in backends/cpu/loss.hpp, sharing the per-element helpers of
// backends/loss.hpp, one thread per voxel or element. Sums are taken per (row, chunk of
// chunk_voxels voxels) with a fixed-order tree in shared memory, in double, then per row over
// the chunks the same way, so values do not change from run to run; only the per-row totals
// (and one non-finite flag) are copied back.
#include "medseg/backends/cuda/loss.hpp"

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "backends/cuda/launch.cuh"

namespace medseg::ops {
namespace {

using namespace cuda::detail;  // launch.cuh: block_threads, grid_for, grid-stride loops, check_launch
using namespace fast_math;     // backends/loss.hpp: select, exp_approx, log_approx, non_finite
using detail::class_id;
using detail::valid_label;

/// Voxels one block sums in the statistics kernels: 8 per thread.
constexpr std::int64_t chunk_voxels = 8 * block_threads;

std::int64_t chunk_count(std::int64_t s) { return (s + chunk_voxels - 1) / chunk_voxels; }

cudaStream_t stream() { return cuda::current_stream(); }

/// A small host vector on the device (class weights, coefficients); an undefined tensor when
/// empty, which the kernels read as "all 1".
Tensor<float, Cuda> upload(const std::vector<float>& values) {
  if (values.empty()) return {};
  return Tensor<float, Cuda>::from(std::span<const float>(values.data(), values.size()),
                                   {static_cast<std::int64_t>(values.size())});
}

/// Sums v[k] over the threads of the block, pairwise in a fixed tree order; every thread
/// gets the totals. All threads of the block must call it; blockDim.x must be block_threads.
template <int K>
__device__ void block_sum(double (&v)[K]) {
  __shared__ double shared[K][block_threads];
  const unsigned t = threadIdx.x;
  for (int k = 0; k < K; ++k) shared[k][t] = v[k];
  __syncthreads();
  for (unsigned stride = block_threads / 2; stride > 0; stride /= 2) {
    if (t < stride)
      for (int k = 0; k < K; ++k) shared[k][t] += shared[k][t + stride];
    __syncthreads();
  }
  for (int k = 0; k < K; ++k) v[k] = shared[k][0];
  __syncthreads();  // the next call may overwrite `shared` only after everyone has read it
}

/// out[r][k] = sum over chunks j of partial[r][j][k], one block per row r.
template <int K>
__global__ void sum_chunks_kernel(const double* partial, std::int64_t chunks, double* out) {
  const std::int64_t r = blockIdx.x;
  double v[K] = {};
  for (std::int64_t j = threadIdx.x; j < chunks; j += blockDim.x)
    for (int k = 0; k < K; ++k) v[k] += partial[(r * chunks + j) * K + k];
  block_sum(v);
  if (threadIdx.x == 0)
    for (int k = 0; k < K; ++k) out[r * K + k] = v[k];
}

/// Reduces partial [rows][chunks][K] into out[0, rows * K) (out holds one more slot: the flag).
template <int K>
void sum_chunks(const Tensor<double, Cuda>& partial, std::int64_t rows, std::int64_t chunks,
                const Tensor<double, Cuda>& out) {
  sum_chunks_kernel<K><<<static_cast<unsigned>(rows), block_threads, 0, stream()>>>(partial.data(), chunks, out.data());
  check_launch("loss sum_chunks_kernel");
}

/// The sums and the flag copied back: values [rows * K], finite when the flag slot is 0.
LossSums read_back(const Tensor<double, Cuda>& out) {
  std::vector<double> host = out.to_vector();
  const bool finite = host.back() == 0.0;
  host.pop_back();
  return {.values = std::move(host), .blocks = 1, .finite = finite};
}

// -- Labels ---------------------------------------------------------------------------------

constexpr unsigned long long none_found = ~0ull;

template <class L>
__global__ void first_invalid_label_kernel(const L* y, std::int64_t count, std::int64_t classes, bool has_ignore,
                                           std::int64_t ignore, unsigned long long* first) {
  for (std::int64_t i = first_index(); i < count; i += grid_stride())
    if (!valid_label(y[i], classes, has_ignore, ignore)) atomicMin(first, static_cast<unsigned long long>(i));
}

__global__ void first_outside_unit_interval_kernel(const float* g, std::int64_t count, unsigned long long* first) {
  for (std::int64_t i = first_index(); i < count; i += grid_stride())
    if (!(g[i] >= 0.0f && g[i] <= 1.0f)) atomicMin(first, static_cast<unsigned long long>(i));
}

/// The smallest index a kernel recorded with atomicMin (the minimum does not depend on the
/// order threads arrive in), or -1.
template <class Launch>
std::int64_t first_recorded(Launch&& launch) {
  auto first = Tensor<std::uint64_t, Cuda>::empty({1});
  MEDSEG_CUDA_CHECK(cudaMemsetAsync(first.data(), 0xff, sizeof(std::uint64_t), stream()));
  launch(reinterpret_cast<unsigned long long*>(first.data()));
  const std::uint64_t i = first.to_vector()[0];
  return i == none_found ? -1 : static_cast<std::int64_t>(i);
}

template <class L>
__global__ void labels_to_index_kernel(const L* y, std::int64_t count, bool has_ignore, std::int64_t ignore,
                                       std::int32_t* index) {
  for (std::int64_t i = first_index(); i < count; i += grid_stride()) index[i] = class_id(y[i], has_ignore, ignore);
}

template <class L>
__global__ void labels_to_one_hot_kernel(const L* y, LossExtents e, float* dense) {
  const std::int64_t total = e.n * e.c * e.s;
  for (std::int64_t i = first_index(); i < total; i += grid_stride()) {
    const std::int64_t nc = i / e.s, s = i % e.s;
    const std::int64_t n = nc / e.c, c = nc % e.c;
    const L v = y[n * e.s + s];
    dense[i] = e.c == 1 ? static_cast<float>(v) : (static_cast<std::int64_t>(v) == c ? 1.0f : 0.0f);
  }
}

// -- Activations ----------------------------------------------------------------------------

/// Softmax over channels, one thread per voxel, in the CPU's operation order; `lse` (when
/// given) receives the log-sum-exp. Any non-finite logit sets *flag to 1.
__global__ void softmax_kernel(const float* x, float* p, float* lse, LossExtents e, double* flag) {
  const std::int64_t voxels = e.n * e.s;
  for (std::int64_t v = first_index(); v < voxels; v += grid_stride()) {
    const std::int64_t n = v / e.s, s = v % e.s;
    const float* xv = x + n * e.c * e.s + s;
    float* pv = p + n * e.c * e.s + s;
    float mx = -INFINITY;
    std::uint32_t bad = 0;
    for (std::int64_t c = 0; c < e.c; ++c) {
      const float xc = xv[c * e.s];
      mx = select(xc > mx, xc, mx);
      bad |= non_finite(xc);
    }
    float sum = 0.0f;
    for (std::int64_t c = 0; c < e.c; ++c) {
      const float pc = exp_approx(xv[c * e.s] - mx);
      pv[c * e.s] = pc;
      sum += pc;
    }
    if (lse) lse[v] = mx + logf(sum);
    const float inv = 1.0f / sum;
    for (std::int64_t c = 0; c < e.c; ++c) pv[c * e.s] *= inv;
    if (bad) *flag = 1.0;
  }
}

__global__ void sigmoid_kernel(const float* x, float* p, std::int64_t count, double* flag) {
  for (std::int64_t i = first_index(); i < count; i += grid_stride()) {
    p[i] = 1.0f / (1.0f + exp_approx(-x[i]));
    if (non_finite(x[i])) *flag = 1.0;
  }
}

void launch_softmax(const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& p, float* lse, const LossExtents& e,
                    double* flag) {
  softmax_kernel<<<grid_for(e.n * e.s), block_threads, 0, stream()>>>(x.data(), p.data(), lse, e, flag);
  check_launch("loss softmax_kernel");
}

// -- Dice -----------------------------------------------------------------------------------

/// Block b sums row nc = b / chunks (sample n, class c) over chunk j = b % chunks:
/// partial[b] = [sum p g, sum p (or p^2), sum g (or g^2)].
__global__ void dice_sums_kernel(const float* p, const std::int32_t* index, const float* dense, LossExtents e,
                                 bool squared, std::int64_t chunks, double* partial) {
  const std::int64_t b = blockIdx.x;
  const std::int64_t nc = b / chunks, j = b % chunks;
  const std::int64_t n = nc / e.c, c = nc % e.c;
  const std::int64_t s0 = j * chunk_voxels, s1 = s0 + chunk_voxels < e.s ? s0 + chunk_voxels : e.s;
  const float* pc = p + nc * e.s;
  double v[3] = {0.0, 0.0, 0.0};
  for (std::int64_t s = s0 + threadIdx.x; s < s1; s += blockDim.x) {
    const double pv = pc[s];
    v[1] += squared ? pv * pv : pv;
    if (index) {
      if (index[n * e.s + s] == c) {  // a one-hot g is its own square
        v[0] += pv;
        v[2] += 1.0;
      }
    } else {
      const double g = dense[nc * e.s + s];
      v[0] += pv * g;
      v[2] += squared ? g * g : g;
    }
  }
  block_sum(v);
  if (threadIdx.x == 0)
    for (int k = 0; k < 3; ++k) partial[b * 3 + k] = v[k];
}

/// d loss / d p for class c at one voxel: a g + b (squared ? 2 p : 1), coef = [N*C][a, b].
__device__ float dice_dp(const float* coef, std::int64_t nc, float g, float p, bool squared) {
  return coef[2 * nc] * g + coef[2 * nc + 1] * (squared ? 2.0f * p : 1.0f);
}

/// Softmax's Jacobian, one thread per voxel: dx_c += scale p_c (dp_c - sum_k p_k dp_k).
__global__ void dice_softmax_backward_kernel(const float* p, const std::int32_t* index, const float* dense,
                                             const float* coef, LossExtents e, bool squared, float scale, float* grad) {
  const std::int64_t voxels = e.n * e.s;
  for (std::int64_t v = first_index(); v < voxels; v += grid_stride()) {
    const std::int64_t n = v / e.s, s = v % e.s;
    const std::int64_t base = n * e.c * e.s + s;
    auto g = [&](std::int64_t c) { return index ? (index[v] == c ? 1.0f : 0.0f) : dense[base + c * e.s]; };
    float dot = 0.0f;
    for (std::int64_t c = 0; c < e.c; ++c) {
      const float pc = p[base + c * e.s];
      dot += pc * dice_dp(coef, n * e.c + c, g(c), pc, squared);
    }
    for (std::int64_t c = 0; c < e.c; ++c) {
      const float pc = p[base + c * e.s];
      grad[base + c * e.s] += scale * pc * (dice_dp(coef, n * e.c + c, g(c), pc, squared) - dot);
    }
  }
}

/// Sigmoid (dx = dp p (1 - p)) or no activation (dx = dp), one thread per element.
__global__ void dice_elementwise_backward_kernel(const float* p, const std::int32_t* index, const float* dense,
                                                 const float* coef, LossExtents e, bool squared, bool is_sigmoid,
                                                 float scale, float* grad) {
  const std::int64_t total = e.n * e.c * e.s;
  for (std::int64_t i = first_index(); i < total; i += grid_stride()) {
    const std::int64_t nc = i / e.s, s = i % e.s;
    const std::int64_t n = nc / e.c, c = nc % e.c;
    const float g = index ? (index[n * e.s + s] == c ? 1.0f : 0.0f) : dense[i];
    const float dp = dice_dp(coef, nc, g, p[i], squared);
    if (is_sigmoid)
      grad[i] += scale * dp * p[i] * (1.0f - p[i]);
    else
      grad[i] += scale * dp;
  }
}

// -- Cross-entropy --------------------------------------------------------------------------

/// Block b sums row nc over chunk j (as dice_sums_kernel): index labels [sum over voxels
/// labelled c of (lse - x_c), their count]; probability labels [sum t_c (lse - x_c), 0].
/// Class weights are applied per row on the host.
__global__ void cross_entropy_sums_kernel(const float* x, const float* lse, const std::int32_t* index,
                                          const float* dense, LossExtents e, std::int64_t chunks, double* partial) {
  const std::int64_t b = blockIdx.x;
  const std::int64_t nc = b / chunks, j = b % chunks;
  const std::int64_t n = nc / e.c, c = nc % e.c;
  const std::int64_t s0 = j * chunk_voxels, s1 = s0 + chunk_voxels < e.s ? s0 + chunk_voxels : e.s;
  double v[2] = {0.0, 0.0};
  for (std::int64_t s = s0 + threadIdx.x; s < s1; s += blockDim.x) {
    const double nll = double(lse[n * e.s + s]) - x[nc * e.s + s];
    if (index) {
      if (index[n * e.s + s] == c) {
        v[0] += nll;
        v[1] += 1.0;
      }
    } else {
      v[0] += double(dense[nc * e.s + s]) * nll;
    }
  }
  block_sum(v);
  if (threadIdx.x == 0) {
    partial[b * 2] = v[0];
    partial[b * 2 + 1] = v[1];
  }
}

/// One thread per voxel: index labels dx_c += k w_y (p_c - [c == y]); probability labels
/// dx_c += k (p_c sum_j w_j t_j - w_c t_c). weights: [C] or null (all 1).
__global__ void cross_entropy_backward_kernel(const float* p, const std::int32_t* index, const float* dense,
                                              const float* weights, LossExtents e, float k, float* grad) {
  const std::int64_t voxels = e.n * e.s;
  for (std::int64_t v = first_index(); v < voxels; v += grid_stride()) {
    const std::int64_t n = v / e.s, s = v % e.s;
    const std::int64_t base = n * e.c * e.s + s;
    if (index) {
      const std::int32_t y = index[v];
      const float tw = y < 0 ? 0.0f : (weights ? weights[y] : 1.0f);
      for (std::int64_t c = 0; c < e.c; ++c)
        grad[base + c * e.s] += k * tw * (p[base + c * e.s] - (y == c ? 1.0f : 0.0f));
    } else {
      float tw = 0.0f;
      for (std::int64_t c = 0; c < e.c; ++c) tw += (weights ? weights[c] : 1.0f) * dense[base + c * e.s];
      for (std::int64_t c = 0; c < e.c; ++c) {
        const float wc = weights ? weights[c] : 1.0f;
        grad[base + c * e.s] += k * (p[base + c * e.s] * tw - wc * dense[base + c * e.s]);
      }
    }
  }
}

// -- Binary cross-entropy -------------------------------------------------------------------

/// Block b sums row nc over chunk j of the element losses pw_c y softplus(-x) + (1 - y)
/// softplus(x), each computed in float as on the CPU; writes sigmoid(x) into p.
__global__ void binary_cross_entropy_sums_kernel(const float* x, const float* y, const float* pos_weight, LossExtents e,
                                                 std::int64_t chunks, float* p, double* partial, double* flag) {
  const std::int64_t b = blockIdx.x;
  const std::int64_t nc = b / chunks, j = b % chunks;
  const std::int64_t c = nc % e.c;
  const std::int64_t s0 = j * chunk_voxels, s1 = s0 + chunk_voxels < e.s ? s0 + chunk_voxels : e.s;
  const float pw = pos_weight ? pos_weight[c] : 1.0f;
  double v[1] = {0.0};
  std::uint32_t bad = 0;
  for (std::int64_t s = s0 + threadIdx.x; s < s1; s += blockDim.x) {
    const std::int64_t i = nc * e.s + s;
    const float xv = x[i];
    // With q = exp(-|x|): sigmoid(x) is 1/(1+q) or q/(1+q), softplus(x) = max(x, 0) + log(1 + q).
    const float q = exp_approx(-fabsf(xv));
    const float inv = 1.0f / (1.0f + q);
    p[i] = select(xv >= 0.0f, inv, q * inv);
    const float softplus = select(xv > 0.0f, xv, 0.0f) + log_approx(1.0f + q);
    const float term = pw * y[i] * (softplus - xv) + (1.0f - y[i]) * softplus;
    v[0] += term;
    bad |= non_finite(xv);
  }
  if (bad) *flag = 1.0;
  block_sum(v);
  if (threadIdx.x == 0) partial[b] = v[0];
}

/// One thread per element: dx += k w_c (pw_c y (sigmoid - 1) + (1 - y) sigmoid).
__global__ void binary_cross_entropy_backward_kernel(const float* p, const float* y, const float* pos_weight,
                                                     const float* class_weights, LossExtents e, float k, float* grad) {
  const std::int64_t total = e.n * e.c * e.s;
  for (std::int64_t i = first_index(); i < total; i += grid_stride()) {
    const std::int64_t c = (i / e.s) % e.c;
    const float pw = pos_weight ? pos_weight[c] : 1.0f;
    const float kc = k * (class_weights ? class_weights[c] : 1.0f);
    grad[i] += kc * (pw * y[i] * (p[i] - 1.0f) + (1.0f - y[i]) * p[i]);
  }
}

}  // namespace

// -- Host entry points ----------------------------------------------------------------------

template <class L>
std::int64_t first_invalid_label(const Tensor<L, Cuda>& labels, std::int64_t classes, std::optional<std::int64_t> ignore) {
  const std::int64_t count = labels.numel();
  return first_recorded([&](unsigned long long* first) {
    first_invalid_label_kernel<L><<<grid_for(count), block_threads, 0, stream()>>>(
        labels.data(), count, classes, ignore.has_value(), ignore.value_or(0), first);
    check_launch("loss first_invalid_label_kernel");
  });
}

std::int64_t first_outside_unit_interval(const Tensor<float, Cuda>& labels) {
  const std::int64_t count = labels.numel();
  return first_recorded([&](unsigned long long* first) {
    first_outside_unit_interval_kernel<<<grid_for(count), block_threads, 0, stream()>>>(labels.data(), count, first);
    check_launch("loss first_outside_unit_interval_kernel");
  });
}

template <class L>
void labels_to_index(const Tensor<L, Cuda>& labels, std::optional<std::int64_t> ignore,
                     const Tensor<std::int32_t, Cuda>& index) {
  const std::int64_t count = index.numel();
  labels_to_index_kernel<L><<<grid_for(count), block_threads, 0, stream()>>>(labels.data(), count, ignore.has_value(),
                                                                             ignore.value_or(0), index.data());
  check_launch("loss labels_to_index_kernel");
}

template <class L>
void labels_to_one_hot(const Tensor<L, Cuda>& labels, const LossExtents& e, const Tensor<float, Cuda>& dense) {
  labels_to_one_hot_kernel<L><<<grid_for(e.n * e.c * e.s), block_threads, 0, stream()>>>(labels.data(), e, dense.data());
  check_launch("loss labels_to_one_hot_kernel");
}

#define MEDSEG_LABEL_KERNELS(L)                                                                                  \
  template std::int64_t first_invalid_label<L>(const Tensor<L, Cuda>&, std::int64_t, std::optional<std::int64_t>); \
  template void labels_to_index<L>(const Tensor<L, Cuda>&, std::optional<std::int64_t>,                          \
                                   const Tensor<std::int32_t, Cuda>&);                                           \
  template void labels_to_one_hot<L>(const Tensor<L, Cuda>&, const LossExtents&, const Tensor<float, Cuda>&);
MEDSEG_LABEL_KERNELS(std::int8_t)
MEDSEG_LABEL_KERNELS(std::int16_t)
MEDSEG_LABEL_KERNELS(std::int32_t)
MEDSEG_LABEL_KERNELS(std::int64_t)
MEDSEG_LABEL_KERNELS(std::uint8_t)
MEDSEG_LABEL_KERNELS(std::uint16_t)
MEDSEG_LABEL_KERNELS(std::uint32_t)
MEDSEG_LABEL_KERNELS(std::uint64_t)
#undef MEDSEG_LABEL_KERNELS

LossSums dice_sums(const Tensor<float, Cuda>& logits, const Tensor<float, Cuda>& probs,
                   const LossTarget<Cuda>& target, const LossExtents& e, LossActivation activation, bool squared) {
  const std::int64_t rows = e.n * e.c, chunks = chunk_count(e.s);
  auto out = Tensor<double, Cuda>::zeros({rows * 3 + 1});  // [N*C][I, P, G], then the flag
  double* flag = out.data() + rows * 3;
  if (activation == LossActivation::softmax) {
    launch_softmax(logits, probs, nullptr, e, flag);
  } else if (activation == LossActivation::sigmoid) {
    sigmoid_kernel<<<grid_for(logits.numel()), block_threads, 0, stream()>>>(logits.data(), probs.data(),
                                                                             logits.numel(), flag);
    check_launch("loss sigmoid_kernel");
  }
  if (chunks > 0) {
    auto partial = Tensor<double, Cuda>::empty({rows * chunks * 3});
    const std::int32_t* index = target.is_index() ? target.index.data() : nullptr;
    const float* dense = target.is_index() ? nullptr : target.dense.data();
    dice_sums_kernel<<<static_cast<unsigned>(rows * chunks), block_threads, 0, stream()>>>(
        probs.data(), index, dense, e, squared, chunks, partial.data());
    check_launch("loss dice_sums_kernel");
    sum_chunks<3>(partial, rows, chunks, out);
  }
  return read_back(out);
}

void dice_backward(const Tensor<float, Cuda>& probs, const LossTarget<Cuda>& target,
                   const std::vector<DiceCoefficients>& coef, const LossExtents& e, LossActivation activation,
                   bool squared, const Tensor<float, Cuda>& grad, float scale) {
  std::vector<float> flat;
  flat.reserve(coef.size() * 2);
  for (const DiceCoefficients& k : coef) {
    flat.push_back(k.a);
    flat.push_back(k.b);
  }
  const Tensor<float, Cuda> coef_device = upload(flat);
  const std::int32_t* index = target.is_index() ? target.index.data() : nullptr;
  const float* dense = target.is_index() ? nullptr : target.dense.data();
  if (activation == LossActivation::softmax) {
    dice_softmax_backward_kernel<<<grid_for(e.n * e.s), block_threads, 0, stream()>>>(
        probs.data(), index, dense, coef_device.data(), e, squared, scale, grad.data());
    check_launch("loss dice_softmax_backward_kernel");
  } else {
    dice_elementwise_backward_kernel<<<grid_for(e.n * e.c * e.s), block_threads, 0, stream()>>>(
        probs.data(), index, dense, coef_device.data(), e, squared, activation == LossActivation::sigmoid, scale,
        grad.data());
    check_launch("loss dice_elementwise_backward_kernel");
  }
}

LossSums cross_entropy_sums(const Tensor<float, Cuda>& logits, const Tensor<float, Cuda>& probs,
                            const LossTarget<Cuda>& target, const LossExtents& e,
                            const std::vector<float>& class_weights) {
  const std::int64_t rows = e.n * e.c, chunks = chunk_count(e.s);
  auto out = Tensor<double, Cuda>::zeros({rows * 2 + 1});  // [N*C][loss, count], then the flag
  auto lse = Tensor<float, Cuda>::empty({e.n * e.s});
  launch_softmax(logits, probs, lse.data(), e, out.data() + rows * 2);
  if (chunks > 0) {
    auto partial = Tensor<double, Cuda>::empty({rows * chunks * 2});
    const std::int32_t* index = target.is_index() ? target.index.data() : nullptr;
    const float* dense = target.is_index() ? nullptr : target.dense.data();
    cross_entropy_sums_kernel<<<static_cast<unsigned>(rows * chunks), block_threads, 0, stream()>>>(
        logits.data(), lse.data(), index, dense, e, chunks, partial.data());
    check_launch("loss cross_entropy_sums_kernel");
    sum_chunks<2>(partial, rows, chunks, out);
  }
  const LossSums per_row = read_back(out);
  // Class weights per row, rows in order: one part [sum w_c L_nc, sum w_c count_nc].
  double loss = 0, wsum = 0;
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::size_t c = static_cast<std::size_t>(r % e.c);
    const double w = class_weights.empty() ? 1.0 : double(class_weights[c]);
    loss += w * per_row.values[static_cast<std::size_t>(r * 2)];
    wsum += w * per_row.values[static_cast<std::size_t>(r * 2 + 1)];
  }
  return {.values = {loss, wsum}, .blocks = 1, .finite = per_row.finite};
}

void cross_entropy_backward(const Tensor<float, Cuda>& probs, const LossTarget<Cuda>& target,
                            const std::vector<float>& class_weights, const LossExtents& e, float k,
                            const Tensor<float, Cuda>& grad) {
  const Tensor<float, Cuda> weights = upload(class_weights);
  const std::int32_t* index = target.is_index() ? target.index.data() : nullptr;
  const float* dense = target.is_index() ? nullptr : target.dense.data();
  cross_entropy_backward_kernel<<<grid_for(e.n * e.s), block_threads, 0, stream()>>>(
      probs.data(), index, dense, weights.defined() ? weights.data() : nullptr, e, k, grad.data());
  check_launch("loss cross_entropy_backward_kernel");
}

LossSums binary_cross_entropy_sums(const Tensor<float, Cuda>& logits, const Tensor<float, Cuda>& probs,
                                   const Tensor<float, Cuda>& target, const LossExtents& e,
                                   const std::vector<float>& pos_weight) {
  const std::int64_t rows = e.n * e.c, chunks = chunk_count(e.s);
  auto out = Tensor<double, Cuda>::zeros({rows + 1});  // [N*C], then the flag
  if (chunks > 0) {
    const Tensor<float, Cuda> pw = upload(pos_weight);
    auto partial = Tensor<double, Cuda>::empty({rows * chunks});
    binary_cross_entropy_sums_kernel<<<static_cast<unsigned>(rows * chunks), block_threads, 0, stream()>>>(
        logits.data(), target.data(), pw.defined() ? pw.data() : nullptr, e, chunks, probs.data(), partial.data(),
        out.data() + rows);
    check_launch("loss binary_cross_entropy_sums_kernel");
    sum_chunks<1>(partial, rows, chunks, out);
  }
  return read_back(out);
}

void binary_cross_entropy_backward(const Tensor<float, Cuda>& probs, const Tensor<float, Cuda>& target,
                                   const std::vector<float>& pos_weight, const std::vector<float>& class_weights,
                                   const LossExtents& e, float k, const Tensor<float, Cuda>& grad) {
  const Tensor<float, Cuda> pw = upload(pos_weight);
  const Tensor<float, Cuda> cw = upload(class_weights);
  binary_cross_entropy_backward_kernel<<<grid_for(e.n * e.c * e.s), block_threads, 0, stream()>>>(
      probs.data(), target.data(), pw.defined() ? pw.data() : nullptr, cw.defined() ? cw.data() : nullptr, e, k,
      grad.data());
  check_launch("loss binary_cross_entropy_backward_kernel");
}

}  // namespace medseg::ops
