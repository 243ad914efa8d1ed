// Normalisation kernels of the Cuda backend (declared in backends/cuda/norm.hpp; the NormSets
// layouts and the CPU kernels they mirror are in backends/cpu/norm.hpp).
//
// A NormSets is walked one of two ways, picked from its run length:
//  - runs of a warp or more (GroupNorm, InstanceNorm, BatchNorm, LayerNorm over a long last
//    axis): every run is cut into pieces of at most piece_elements; a block reduces a piece to
//    partial sums, and a warp per set adds the set's pieces. Few huge sets (BatchNorm: C sets of
//    N x 64^3 values) therefore still spread over the whole GPU.
//  - shorter runs (LayerNorm over channels: C runs of one value per voxel): a thread per set, so
//    neighbouring threads read neighbouring voxels.
// Sums are accumulated in double. Every reduction has a fixed shape and order and nothing uses
// atomics, so results repeat bit for bit. The formulas are the CPU kernel's, term for term.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "backends/cuda/launch.cuh"
#include "medseg/backends/cuda/norm.hpp"

namespace medseg::ops {
namespace {

using namespace cuda::detail;  // launch.cuh: block_threads, grid_for, grid-stride loops, check_launch

constexpr std::int64_t warp_size = 32;
constexpr std::int64_t piece_elements = 4096;  // elements of a run that one block reduces
constexpr std::int64_t runs_per_block = 2048;  // short runs per block in the affine-gradient sums
constexpr std::int64_t rows_per_chunk = 64;    // rows per thread in per-element affine gradients
constexpr std::int64_t max_blocks = INT_MAX;   // gridDim.x limit; kernels loop over blocks beyond it

// ---------------------------------------------------------------------------------------------
// Index arithmetic and reductions

/// NormSets' index arithmetic, callable in kernels (NormSets' own members are host functions).
struct DeviceSets {
  std::int64_t sets, segments, length, stride, inner_sets, outer_step, inner_step;
  std::int64_t channel_sets, channel_set_step, channel_segment_step, channel_element_step;

  explicit DeviceSets(const NormSets& g)
      : sets(g.sets), segments(g.segments), length(g.length), stride(g.stride), inner_sets(g.inner_sets),
        outer_step(g.outer_step), inner_step(g.inner_step), channel_sets(g.channel_sets),
        channel_set_step(g.channel_set_step), channel_segment_step(g.channel_segment_step),
        channel_element_step(g.channel_element_step) {}

  __device__ std::int64_t base(std::int64_t k, std::int64_t j) const {
    return (k / inner_sets) * outer_step + (k % inner_sets) * inner_step + j * stride;
  }
  __device__ std::int64_t channel(std::int64_t k, std::int64_t j) const {
    return (k % channel_sets) * channel_set_step + j * channel_segment_step;
  }
};

/// How runs are cut for block reductions. Piece b = (k * segments + j) * per_run + c covers
/// elements [c * piece_elements, min(length, (c + 1) * piece_elements)) of run j of set k.
struct Pieces {
  std::int64_t per_run = 0, per_set = 0, count = 0;
  int threads = 32;  // a multiple of 32 no larger than a piece needs
};

Pieces pieces_of(const NormSets& g) {
  Pieces p;
  p.per_run = (g.length + piece_elements - 1) / piece_elements;
  p.per_set = g.segments * p.per_run;
  p.count = g.sets * p.per_set;
  const std::int64_t longest = std::min(g.length, piece_elements);
  p.threads = static_cast<int>(std::clamp<std::int64_t>((longest + 31) / 32 * 32, 32, block_threads));
  return p;
}

struct PieceAt {
  std::int64_t set, run, begin, end;
};
__device__ PieceAt piece_at(const DeviceSets& g, const Pieces& pc, std::int64_t b) {
  const std::int64_t k = b / pc.per_set, r = b % pc.per_set, j = r / pc.per_run, c = r % pc.per_run;
  const std::int64_t begin = c * piece_elements;
  return {k, j, begin, begin + piece_elements < g.length ? begin + piece_elements : g.length};
}

unsigned blocks_for(std::int64_t work_items) {
  return static_cast<unsigned>(std::clamp<std::int64_t>(work_items, 1, max_blocks));
}
/// Blocks of block_threads threads for a warp per item.
unsigned warp_blocks_for(std::int64_t items) { return grid_for(items * warp_size); }

__device__ double warp_sum(double v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;  // complete in lane 0
}

/// Sums a and b over the block (blockDim.x a multiple of 32) into thread 0, by a fixed tree:
/// within each warp, then over the warps' sums in warp 0.
__device__ void block_sum(double& a, double& b) {
  __shared__ double warp_a[32], warp_b[32];
  const unsigned lane = threadIdx.x & 31u, w = threadIdx.x >> 5;
  a = warp_sum(a);
  b = warp_sum(b);
  if (lane == 0) {
    warp_a[w] = a;
    warp_b[w] = b;
  }
  __syncthreads();
  if (w == 0) {
    const unsigned warps = blockDim.x >> 5;
    a = warp_sum(lane < warps ? warp_a[lane] : 0.0);
    b = warp_sum(lane < warps ? warp_b[lane] : 0.0);
  }
  __syncthreads();  // the slots are free again for the block's next piece
}

__device__ double inverse_std(float var, double eps) { return 1.0 / sqrt(static_cast<double>(var) + eps); }

// ---------------------------------------------------------------------------------------------
// Element-wise parts shared by both ways through the sets

/// y over elements [begin, end) (step apart) of one run: a scale and shift per run, or an affine
/// pair per element.
__device__ void normalize_run(const float* r, float* o, std::int64_t begin, std::int64_t end, std::int64_t step,
                              const DeviceSets& g, std::int64_t c0, float mean, float rstd, const float* gamma,
                              const float* beta) {
  if (g.channel_element_step == 0) {
    const float scale = rstd * (gamma ? gamma[c0] : 1.0f);
    const float shift = (beta ? beta[c0] : 0.0f) - mean * scale;
    for (std::int64_t i = begin; i < end; i += step) o[i] = r[i] * scale + shift;
  } else {
    for (std::int64_t i = begin; i < end; i += step) {
      const std::int64_t c = c0 + i * g.channel_element_step;
      const float v = (r[i] - mean) * rstd;
      o[i] = gamma ? v * gamma[c] + (beta ? beta[c] : 0.0f) : v;
    }
  }
}

/// dx over elements [begin, end) of one run, given the set's a = mean(dy g) and
/// b = mean(dy g xhat): dx = rstd (dy g - a - xhat b).
__device__ void grad_run(const float* r, const float* d, float* o, std::int64_t begin, std::int64_t end,
                         std::int64_t step, const DeviceSets& g, std::int64_t c0, float mean, double rstd, double a,
                         double b, const float* gamma) {
  if (g.channel_element_step == 0) {  // dx = A dy + B x + C per run, as the CPU kernel
    const double gm = gamma ? gamma[c0] : 1.0;
    const auto ca = static_cast<float>(rstd * gm);
    const auto cb = static_cast<float>(-rstd * rstd * b);
    const auto cc = static_cast<float>(-rstd * a + rstd * rstd * b * mean);
    for (std::int64_t i = begin; i < end; i += step) o[i] = ca * d[i] + cb * r[i] + cc;
  } else {
    for (std::int64_t i = begin; i < end; i += step) {
      const double xhat = (r[i] - mean) * rstd;
      const double gm = gamma ? gamma[c0 + i * g.channel_element_step] : 1.0;
      o[i] = static_cast<float>(rstd * (d[i] * gm - a - xhat * b));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Forward

/// Pass 1 (mean null): sum of x over each piece. Pass 2: sum of (x - mean[set])^2, the deviation
/// squared in float as on the CPU.
__global__ void piece_moments_kernel(const float* x, DeviceSets g, Pieces pc, const float* mean, double* part) {
  for (std::int64_t b = blockIdx.x; b < pc.count; b += gridDim.x) {
    const PieceAt p = piece_at(g, pc, b);
    const float* run = x + g.base(p.set, p.run);
    double acc = 0.0, unused = 0.0;
    if (mean == nullptr) {
      for (std::int64_t i = p.begin + threadIdx.x; i < p.end; i += blockDim.x) acc += run[i];
    } else {
      const float mu = mean[p.set];
      for (std::int64_t i = p.begin + threadIdx.x; i < p.end; i += blockDim.x) {
        const float dev = run[i] - mu;
        acc += dev * dev;
      }
    }
    block_sum(acc, unused);
    if (threadIdx.x == 0) part[b] = acc;
  }
}

/// A warp per set adds its piece sums in a fixed order: pass 1 writes the mean; pass 2 the
/// biased variance and 1 / sqrt(var + eps).
__global__ void finalize_moments_kernel(const double* part, std::int64_t sets, std::int64_t per_set, double m,
                                        double eps, bool second_pass, float* mean, float* var, float* rstd) {
  const std::int64_t lane = threadIdx.x & 31;
  for (std::int64_t k = first_index() / warp_size; k < sets; k += grid_stride() / warp_size) {
    double s = 0.0;
    for (std::int64_t p = lane; p < per_set; p += warp_size) s += part[k * per_set + p];
    s = warp_sum(s);
    if (lane != 0) continue;
    if (!second_pass) {
      mean[k] = static_cast<float>(s / m);
    } else {
      const double v = s / m;
      var[k] = static_cast<float>(v);
      rstd[k] = static_cast<float>(1.0 / sqrt(v + eps));
    }
  }
}

__global__ void normalize_pieces_kernel(const float* x, float* y, DeviceSets g, Pieces pc, const float* mean,
                                        const float* rstd, const float* gamma, const float* beta) {
  for (std::int64_t b = blockIdx.x; b < pc.count; b += gridDim.x) {
    const PieceAt p = piece_at(g, pc, b);
    const std::int64_t off = g.base(p.set, p.run);
    normalize_run(x + off, y + off, p.begin + threadIdx.x, p.end, blockDim.x, g, g.channel(p.set, p.run),
                  mean[p.set], rstd[p.set], gamma, beta);
  }
}

/// Short runs: a thread per set does the CPU kernel's two passes and the normalisation.
__global__ void normalize_sets_kernel(const float* x, float* y, DeviceSets g, double m, double eps,
                                      const float* gamma, const float* beta, float* mean_out, float* var_out) {
  for (std::int64_t k = first_index(); k < g.sets; k += grid_stride()) {
    double sum = 0.0;
    for (std::int64_t j = 0; j < g.segments; ++j) {
      const float* r = x + g.base(k, j);
      for (std::int64_t i = 0; i < g.length; ++i) sum += r[i];
    }
    const auto mean = static_cast<float>(sum / m);
    double sq = 0.0;
    for (std::int64_t j = 0; j < g.segments; ++j) {
      const float* r = x + g.base(k, j);
      for (std::int64_t i = 0; i < g.length; ++i) {
        const float dev = r[i] - mean;
        sq += dev * dev;
      }
    }
    const double var = sq / m;
    const auto rstd = static_cast<float>(1.0 / sqrt(var + eps));
    mean_out[k] = mean;
    var_out[k] = static_cast<float>(var);
    for (std::int64_t j = 0; y != nullptr && j < g.segments; ++j) {  // null y: statistics alone
      const std::int64_t off = g.base(k, j);
      normalize_run(x + off, y + off, 0, g.length, 1, g, g.channel(k, j), mean, rstd, gamma, beta);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backward: dx

/// Per piece, with an affine pair per run: sum(dy) and sum(dy (x - mean)) (gamma is applied per
/// run when the set is finished, and the raw sums also give dgamma/dbeta); with a pair per
/// element: sum(dy gamma) and sum(dy gamma xhat).
__global__ void piece_grad_sums_kernel(const float* x, const float* dy, DeviceSets g, Pieces pc, const float* mean,
                                       const float* var, double eps, const float* gamma, double* part_dy,
                                       double* part_dyx) {
  for (std::int64_t b = blockIdx.x; b < pc.count; b += gridDim.x) {
    const PieceAt p = piece_at(g, pc, b);
    const std::int64_t off = g.base(p.set, p.run);
    const float* r = x + off;
    const float* d = dy + off;
    const float mu = mean[p.set];
    double s0 = 0.0, s1 = 0.0;
    if (g.channel_element_step == 0) {
      for (std::int64_t i = p.begin + threadIdx.x; i < p.end; i += blockDim.x) {
        s0 += d[i];
        s1 += d[i] * (r[i] - mu);
      }
    } else {
      const double rstd = inverse_std(var[p.set], eps);
      const std::int64_t c0 = g.channel(p.set, p.run);
      for (std::int64_t i = p.begin + threadIdx.x; i < p.end; i += blockDim.x) {
        const double xhat = (r[i] - mu) * rstd;
        const double gm = gamma ? gamma[c0 + i * g.channel_element_step] : 1.0;
        s0 += d[i] * gm;
        s1 += d[i] * gm * xhat;
      }
    }
    block_sum(s0, s1);
    if (threadIdx.x == 0) {
      part_dy[b] = s0;
      part_dyx[b] = s1;
    }
  }
}

/// A warp per set adds its piece sums: a = sum(dy g) / M and b = sum(dy g xhat) / M.
__global__ void finalize_grad_kernel(const double* part_dy, const double* part_dyx, DeviceSets g, Pieces pc,
                                     const float* var, double eps, const float* gamma, double m, double* coef_a,
                                     double* coef_b) {
  const std::int64_t lane = threadIdx.x & 31;
  for (std::int64_t k = first_index() / warp_size; k < g.sets; k += grid_stride() / warp_size) {
    const double rstd = inverse_std(var[k], eps);
    double sg = 0.0, sgx = 0.0;
    for (std::int64_t p = lane; p < pc.per_set; p += warp_size) {
      const double s0 = part_dy[k * pc.per_set + p], s1 = part_dyx[k * pc.per_set + p];
      if (g.channel_element_step == 0) {
        const double gm = gamma ? gamma[g.channel(k, p / pc.per_run)] : 1.0;
        sg += gm * s0;
        sgx += gm * rstd * s1;
      } else {
        sg += s0;
        sgx += s1;
      }
    }
    sg = warp_sum(sg);
    sgx = warp_sum(sgx);
    if (lane == 0) {
      coef_a[k] = sg / m;
      coef_b[k] = sgx / m;
    }
  }
}

__global__ void grad_pieces_kernel(const float* x, const float* dy, float* dx, DeviceSets g, Pieces pc,
                                   const float* mean, const float* var, double eps, const double* coef_a,
                                   const double* coef_b, const float* gamma) {
  for (std::int64_t b = blockIdx.x; b < pc.count; b += gridDim.x) {
    const PieceAt p = piece_at(g, pc, b);
    const std::int64_t off = g.base(p.set, p.run);
    grad_run(x + off, dy + off, dx + off, p.begin + threadIdx.x, p.end, blockDim.x, g, g.channel(p.set, p.run),
             mean[p.set], inverse_std(var[p.set], eps), coef_a[p.set], coef_b[p.set], gamma);
  }
}

/// Short runs: a thread per set, the CPU kernel's body.
__global__ void grad_sets_kernel(const float* x, const float* dy, float* dx, DeviceSets g, const float* mean_in,
                                 const float* var, double eps, const float* gamma, double m) {
  for (std::int64_t k = first_index(); k < g.sets; k += grid_stride()) {
    const float mean = mean_in[k];
    const double rstd = inverse_std(var[k], eps);
    double sum_g = 0.0, sum_gx = 0.0;
    for (std::int64_t j = 0; j < g.segments; ++j) {
      const std::int64_t off = g.base(k, j), c0 = g.channel(k, j);
      const float* r = x + off;
      const float* d = dy + off;
      if (g.channel_element_step == 0) {
        double sdy = 0.0, sdyx = 0.0;
        for (std::int64_t i = 0; i < g.length; ++i) {
          sdy += d[i];
          sdyx += d[i] * (r[i] - mean);
        }
        const double gm = gamma ? gamma[c0] : 1.0;
        sum_g += gm * sdy;
        sum_gx += gm * rstd * sdyx;
      } else {
        for (std::int64_t i = 0; i < g.length; ++i) {
          const double xhat = (r[i] - mean) * rstd;
          const double gm = gamma ? gamma[c0 + i * g.channel_element_step] : 1.0;
          sum_g += d[i] * gm;
          sum_gx += d[i] * gm * xhat;
        }
      }
    }
    const double a = sum_g / m, b = sum_gx / m;
    for (std::int64_t j = 0; j < g.segments; ++j) {
      const std::int64_t off = g.base(k, j);
      grad_run(x + off, dy + off, dx + off, 0, g.length, 1, g, g.channel(k, j), mean, rstd, a, b, gamma);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backward: dgamma, dbeta. Channel c of an affine pair per run collects runs (k, j) with
// (k % channel_sets) * channel_set_step + j * channel_segment_step == c; each pattern (q, j)
// that solves it contributes the sets k = q + t * channel_sets. A block per channel walks its
// patterns in order, so every channel sum has a fixed order.

/// Channels an affine pair per run can address.
std::int64_t run_channels(const NormSets& g) {
  return (g.channel_sets - 1) * g.channel_set_step + (g.segments - 1) * g.channel_segment_step + 1;
}

/// Long runs: from the piece sums of piece_grad_sums_kernel (sum(dy), sum(dy (x - mean))).
__global__ void affine_from_pieces_kernel(const double* part_dy, const double* part_dyx, DeviceSets g, Pieces pc,
                                          const float* var, double eps, std::int64_t channels, float* dgamma,
                                          float* dbeta) {
  const std::int64_t per_q = (g.sets + g.channel_sets - 1) / g.channel_sets;  // sets of one residue q
  const std::int64_t items = per_q * pc.per_run;                             // pieces of one pattern
  for (std::int64_t c = blockIdx.x; c < channels; c += gridDim.x) {
    double sg = 0.0, sb = 0.0;
    for (std::int64_t q = 0; q < g.channel_sets; ++q)
      for (std::int64_t j = 0; j < g.segments; ++j) {
        if (q * g.channel_set_step + j * g.channel_segment_step != c) continue;
        for (std::int64_t u = threadIdx.x; u < items; u += blockDim.x) {
          const std::int64_t k = q + (u / pc.per_run) * g.channel_sets;
          if (k >= g.sets) continue;
          const std::int64_t piece = (k * g.segments + j) * pc.per_run + u % pc.per_run;
          sg += inverse_std(var[k], eps) * part_dyx[piece];
          sb += part_dy[piece];
        }
      }
    block_sum(sg, sb);
    if (threadIdx.x == 0) {
      if (dgamma) dgamma[c] += static_cast<float>(sg);
      if (dbeta) dbeta[c] += static_cast<float>(sb);
    }
  }
}

/// Short runs, pass 1: per pattern (q, j) and chunk of runs_per_block sets of it, the sums of
/// rstd sum(dy (x - mean)) and sum(dy) over its runs. Block b = pattern * chunks + chunk.
__global__ void affine_partials_kernel(const float* x, const float* dy, DeviceSets g, const float* mean,
                                       const float* var, double eps, std::int64_t chunks, double* part_g,
                                       double* part_b) {
  const std::int64_t per_q = (g.sets + g.channel_sets - 1) / g.channel_sets;
  const std::int64_t total = g.channel_sets * g.segments * chunks;
  for (std::int64_t b = blockIdx.x; b < total; b += gridDim.x) {
    const std::int64_t pattern = b / chunks, chunk = b % chunks;
    const std::int64_t q = pattern / g.segments, j = pattern % g.segments;
    const std::int64_t t_end = std::min(per_q, (chunk + 1) * runs_per_block);
    double sg = 0.0, sb = 0.0;
    for (std::int64_t t = chunk * runs_per_block + threadIdx.x; t < t_end; t += blockDim.x) {
      const std::int64_t k = q + t * g.channel_sets;
      if (k >= g.sets) continue;
      const std::int64_t off = g.base(k, j);
      const float* r = x + off;
      const float* d = dy + off;
      const float mu = mean[k];
      double sdy = 0.0, sdyx = 0.0;
      for (std::int64_t i = 0; i < g.length; ++i) {
        sdy += d[i];
        sdyx += d[i] * (r[i] - mu);
      }
      sg += inverse_std(var[k], eps) * sdyx;
      sb += sdy;
    }
    block_sum(sg, sb);
    if (threadIdx.x == 0) {
      part_g[b] = sg;
      part_b[b] = sb;
    }
  }
}

/// Short runs, pass 2: a block per channel adds the partials of its patterns in order.
__global__ void affine_from_partials_kernel(const double* part_g, const double* part_b, DeviceSets g,
                                            std::int64_t chunks, std::int64_t channels, float* dgamma, float* dbeta) {
  for (std::int64_t c = blockIdx.x; c < channels; c += gridDim.x) {
    double sg = 0.0, sb = 0.0;
    for (std::int64_t q = 0; q < g.channel_sets; ++q)
      for (std::int64_t j = 0; j < g.segments; ++j) {
        if (q * g.channel_set_step + j * g.channel_segment_step != c) continue;
        const std::int64_t first = (q * g.segments + j) * chunks;
        for (std::int64_t u = threadIdx.x; u < chunks; u += blockDim.x) {
          sg += part_g[first + u];
          sb += part_b[first + u];
        }
      }
    block_sum(sg, sb);
    if (threadIdx.x == 0) {
      if (dgamma) dgamma[c] += static_cast<float>(sg);
      if (dbeta) dbeta[c] += static_cast<float>(sb);
    }
  }
}

/// An affine pair per element (one run per set: LayerNorm over the last axis), pass 1: a thread
/// per (chunk of rows_per_chunk sets, column i) sums dy xhat and dy down its rows.
/// Partial e = chunk * length + i.
__global__ void column_partials_kernel(const float* x, const float* dy, DeviceSets g, const float* mean,
                                       const float* var, double eps, std::int64_t chunks, double* part_g,
                                       double* part_b) {
  for (std::int64_t e = first_index(); e < chunks * g.length; e += grid_stride()) {
    const std::int64_t chunk = e / g.length, i = e % g.length;
    const std::int64_t k_end = std::min(g.sets, (chunk + 1) * rows_per_chunk);
    double sg = 0.0, sb = 0.0;
    for (std::int64_t k = chunk * rows_per_chunk; k < k_end; ++k) {
      const std::int64_t off = g.base(k, 0) + i;
      const double xhat = (x[off] - mean[k]) * inverse_std(var[k], eps);
      sg += dy[off] * xhat;
      sb += dy[off];
    }
    part_g[e] = sg;
    part_b[e] = sb;
  }
}

/// Pass 2: a block per column adds its chunks in order into the column's channel.
__global__ void column_affine_kernel(const double* part_g, const double* part_b, DeviceSets g, std::int64_t chunks,
                                     float* dgamma, float* dbeta) {
  for (std::int64_t i = blockIdx.x; i < g.length; i += gridDim.x) {
    double sg = 0.0, sb = 0.0;
    for (std::int64_t chunk = threadIdx.x; chunk < chunks; chunk += blockDim.x) {
      sg += part_g[chunk * g.length + i];
      sb += part_b[chunk * g.length + i];
    }
    block_sum(sg, sb);
    if (threadIdx.x == 0) {
      const std::int64_t c = i * g.channel_element_step;
      if (dgamma) dgamma[c] += static_cast<float>(sg);
      if (dbeta) dbeta[c] += static_cast<float>(sb);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Channel affine and running statistics

__global__ void channel_affine_kernel(const float* x, float* y, std::int64_t rows, std::int64_t channels,
                                      std::int64_t s, const float* scale, const float* shift) {
  for (std::int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const float a = scale[row % channels], t = shift[row % channels];
    const float* xr = x + row * s;
    float* yr = y + row * s;
    for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < s;
         i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
      yr[i] = xr[i] * a + t;
  }
}

/// normalize_forward's map per set from its statistics: scale = rstd * gamma, shift = beta -
/// mean * scale, rstd = 1 / sqrt(var + eps) as finalize_moments_kernel computes it.
__global__ void norm_factors_kernel(const float* mean, const float* var, const float* gamma, const float* beta,
                                    double eps, std::int64_t sets, float* scale, float* shift) {
  for (std::int64_t k = first_index(); k < sets; k += grid_stride()) {
    const auto rstd = static_cast<float>(1.0 / sqrt(static_cast<double>(var[k]) + eps));
    const float a = __fmul_rn(rstd, gamma ? gamma[k] : 1.0f);
    scale[k] = a;
    shift[k] = __fsub_rn(beta ? beta[k] : 0.0f, __fmul_rn(mean[k], a));
  }
}

__global__ void running_affine_kernel(const float* rm, const float* rv, const float* gamma, const float* beta,
                                      double eps, std::int64_t channels, float* scale, float* shift) {
  for (std::int64_t k = first_index(); k < channels; k += grid_stride()) {
    const double a = (gamma ? gamma[k] : 1.0f) / sqrt(static_cast<double>(rv[k]) + eps);
    scale[k] = static_cast<float>(a);
    shift[k] = static_cast<float>((beta ? beta[k] : 0.0f) - rm[k] * a);
  }
}

__global__ void update_running_kernel(const float* mean, const float* var, std::int64_t channels, std::int64_t n,
                                      double momentum, double unbias, float* rm, float* rv, float* counter) {
  for (std::int64_t k = first_index(); k < channels; k += grid_stride()) {
    double m = 0.0, v = 0.0;
    for (std::int64_t i = 0; i < n; ++i) {
      m += mean[i * channels + k];
      v += var[i * channels + k] * unbias;
    }
    rm[k] = static_cast<float>((1.0 - momentum) * rm[k] + momentum * m / static_cast<double>(n));
    rv[k] = static_cast<float>((1.0 - momentum) * rv[k] + momentum * v / static_cast<double>(n));
  }
  if (counter != nullptr && first_index() == 0) counter[0] += 1.0f;
}

// ---------------------------------------------------------------------------------------------
// Host-side checks

void require_same_shape(const char* op, const Tensor<float, Cuda>& a, const Tensor<float, Cuda>& b) {
  require(a.defined() && b.defined() && a.shape() == b.shape(), [&] {
    return ErrorInfo{.where = op, .field = "shapes", .expected = "equal shapes",
                     .actual = (a.defined() ? a.shape().to_string() : std::string("undefined")) + " and " +
                               (b.defined() ? b.shape().to_string() : std::string("undefined"))};
  });
  require(a.is_contiguous() && b.is_contiguous(), [&] {
    return ErrorInfo{.where = op, .field = "layout", .expected = "contiguous tensors",
                     .actual = a.layout().to_string() + " and " + b.layout().to_string()};
  });
}

/// The sets' elements must lie inside x: non-negative counts and steps, and the furthest run
/// ending by x.numel().
void require_sets_inside(const char* op, const NormSets& g, const Tensor<float, Cuda>& x) {
  bool ok = g.sets >= 0 && g.segments >= 0 && g.length >= 0 && g.stride >= 0 && g.inner_sets >= 1 &&
            g.outer_step >= 0 && g.inner_step >= 0 && g.channel_sets >= 1 && g.channel_set_step >= 0 &&
            g.channel_segment_step >= 0 && g.channel_element_step >= 0;
  if (ok && g.sets > 0 && g.segments > 0 && g.length > 0) {
    const std::int64_t end = ((g.sets - 1) / g.inner_sets) * g.outer_step +
                             (std::min(g.sets, g.inner_sets) - 1) * g.inner_step + (g.segments - 1) * g.stride +
                             g.length;
    ok = end <= x.numel();
  }
  require(ok, [&] {
    return ErrorInfo{.where = op, .field = "sets",
                     .expected = "a layout inside x (non-negative counts and steps)",
                     .actual = std::to_string(g.sets) + " sets of " + std::to_string(g.segments) + " runs of " +
                               std::to_string(g.length) + " over " + x.shape().to_string()};
  });
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Ops

CudaNormStats normalize_forward(const NormSets& g, const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& y,
                                const float* gamma, const float* beta, double eps) {
  const char* op = "ops::normalize_forward";
  const bool write = y.defined();  // undefined: the statistics alone, for a caller that fuses the map
  if (write) require_same_shape(op, x, y);
  require_sets_inside(op, g, x);
  CudaNormStats st{Tensor<float, Cuda>::empty({g.sets}), Tensor<float, Cuda>::empty({g.sets})};
  if (g.sets == 0) return st;
  const double m = static_cast<double>(g.set_size());
  const DeviceSets dg(g);
  const cudaStream_t stream = cuda::current_stream();
  if (g.length < warp_size) {
    normalize_sets_kernel<<<grid_for(g.sets), block_threads, 0, stream>>>(x.data(), write ? y.data() : nullptr, dg, m,
                                                                          eps, gamma, beta, st.mean.data(),
                                                                          st.var.data());
    check_launch("normalize_sets_kernel");
    return st;
  }
  const Pieces pc = pieces_of(g);
  auto part = Tensor<double, Cuda>::empty({pc.count});
  auto rstd = Tensor<float, Cuda>::empty({g.sets});
  const unsigned blocks = blocks_for(pc.count), set_blocks = warp_blocks_for(g.sets);
  if (pc.count > 0) {
    piece_moments_kernel<<<blocks, pc.threads, 0, stream>>>(x.data(), dg, pc, nullptr, part.data());
    check_launch("piece_moments_kernel");
  }
  finalize_moments_kernel<<<set_blocks, block_threads, 0, stream>>>(part.data(), g.sets, pc.per_set, m, eps, false,
                                                                    st.mean.data(), nullptr, nullptr);
  check_launch("finalize_moments_kernel");
  if (pc.count > 0) {
    piece_moments_kernel<<<blocks, pc.threads, 0, stream>>>(x.data(), dg, pc, st.mean.data(), part.data());
    check_launch("piece_moments_kernel");
  }
  finalize_moments_kernel<<<set_blocks, block_threads, 0, stream>>>(part.data(), g.sets, pc.per_set, m, eps, true,
                                                                    nullptr, st.var.data(), rstd.data());
  check_launch("finalize_moments_kernel");
  if (pc.count > 0 && write) {
    normalize_pieces_kernel<<<blocks, pc.threads, 0, stream>>>(x.data(), y.data(), dg, pc, st.mean.data(),
                                                               rstd.data(), gamma, beta);
    check_launch("normalize_pieces_kernel");
  }
  return st;
}

void normalize_backward(const NormSets& g, const CudaNormStats& st, double eps, const Tensor<float, Cuda>& x,
                        const Tensor<float, Cuda>& dy, const Tensor<float, Cuda>& dx, const float* gamma,
                        float* dgamma, float* dbeta) {
  const char* op = "ops::normalize_backward";
  require_same_shape(op, x, dy);
  require_same_shape(op, x, dx);
  require_sets_inside(op, g, x);
  require(st.mean.defined() && st.var.defined() && st.mean.numel() == g.sets && st.var.numel() == g.sets, [&] {
    return ErrorInfo{.where = op, .field = "stats", .expected = std::to_string(g.sets) + " means and variances",
                     .actual = st.mean.defined() && st.var.defined()
                                   ? std::to_string(st.mean.numel()) + " and " + std::to_string(st.var.numel())
                                   : std::string("undefined tensors")};
  });
  const bool per_element = g.channel_element_step != 0;
  const bool want_affine = (dgamma != nullptr || dbeta != nullptr) && g.segments > 0 && g.length > 0;
  require(!(want_affine && per_element) || (g.channel_sets == 1 && g.segments == 1), [&] {
    return ErrorInfo{.where = op, .field = "sets",
                     .expected = "one run per set when the affine pair is per element (LayerNorm over the last axis)",
                     .actual = std::to_string(g.channel_sets) + " channel sets, " + std::to_string(g.segments) +
                               " runs per set"};
  });
  if (g.sets == 0) return;
  const double m = static_cast<double>(g.set_size());
  const DeviceSets dg(g);
  const cudaStream_t stream = cuda::current_stream();
  const float* px = x.data();
  const float* pdy = dy.data();
  const float* mean = st.mean.data();
  const float* var = st.var.data();

  if (g.length >= warp_size) {
    const Pieces pc = pieces_of(g);
    const unsigned blocks = blocks_for(pc.count);
    auto part = Tensor<double, Cuda>::empty({2, pc.count});
    auto coef = Tensor<double, Cuda>::empty({2, g.sets});
    double* part_dy = part.data();
    double* part_dyx = part.data() + pc.count;
    piece_grad_sums_kernel<<<blocks, pc.threads, 0, stream>>>(px, pdy, dg, pc, mean, var, eps, gamma, part_dy,
                                                              part_dyx);
    check_launch("piece_grad_sums_kernel");
    finalize_grad_kernel<<<warp_blocks_for(g.sets), block_threads, 0, stream>>>(
        part_dy, part_dyx, dg, pc, var, eps, gamma, m, coef.data(), coef.data() + g.sets);
    check_launch("finalize_grad_kernel");
    grad_pieces_kernel<<<blocks, pc.threads, 0, stream>>>(px, pdy, dx.data(), dg, pc, mean, var, eps, coef.data(),
                                                          coef.data() + g.sets, gamma);
    check_launch("grad_pieces_kernel");
    if (want_affine && !per_element) {
      const std::int64_t channels = run_channels(g);
      affine_from_pieces_kernel<<<blocks_for(channels), block_threads, 0, stream>>>(part_dy, part_dyx, dg, pc, var,
                                                                                    eps, channels, dgamma, dbeta);
      check_launch("affine_from_pieces_kernel");
      return;
    }
  } else {
    grad_sets_kernel<<<grid_for(g.sets), block_threads, 0, stream>>>(px, pdy, dx.data(), dg, mean, var, eps, gamma,
                                                                     m);
    check_launch("grad_sets_kernel");
  }
  if (!want_affine) return;

  if (per_element) {
    const std::int64_t chunks = (g.sets + rows_per_chunk - 1) / rows_per_chunk;
    auto part = Tensor<double, Cuda>::empty({2, chunks * g.length});
    column_partials_kernel<<<grid_for(chunks * g.length), block_threads, 0, stream>>>(
        px, pdy, dg, mean, var, eps, chunks, part.data(), part.data() + chunks * g.length);
    check_launch("column_partials_kernel");
    column_affine_kernel<<<blocks_for(g.length), block_threads, 0, stream>>>(
        part.data(), part.data() + chunks * g.length, dg, chunks, dgamma, dbeta);
    check_launch("column_affine_kernel");
    return;
  }
  const std::int64_t per_q = (g.sets + g.channel_sets - 1) / g.channel_sets;
  const std::int64_t chunks = (per_q + runs_per_block - 1) / runs_per_block;
  const std::int64_t partials = g.channel_sets * g.segments * chunks, channels = run_channels(g);
  auto part = Tensor<double, Cuda>::empty({2, partials});
  affine_partials_kernel<<<blocks_for(partials), block_threads, 0, stream>>>(px, pdy, dg, mean, var, eps, chunks,
                                                                             part.data(), part.data() + partials);
  check_launch("affine_partials_kernel");
  affine_from_partials_kernel<<<blocks_for(channels), block_threads, 0, stream>>>(
      part.data(), part.data() + partials, dg, chunks, channels, dgamma, dbeta);
  check_launch("affine_from_partials_kernel");
}

void channel_affine(const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& scale, const Tensor<float, Cuda>& shift,
                    const Tensor<float, Cuda>& y) {
  const char* op = "ops::channel_affine";
  require_same_shape(op, x, y);
  require(x.rank() >= 2, [&] {
    return ErrorInfo{.where = op, .field = "x", .expected = "[N, C, ...]", .actual = x.shape().to_string()};
  });
  const std::int64_t c = x.size(1);
  require(scale.defined() && shift.defined() && scale.numel() == c && shift.numel() == c && scale.is_contiguous() &&
              shift.is_contiguous(),
          [&] {
            return ErrorInfo{.where = op, .field = "scale/shift", .expected = std::to_string(c) + " values each",
                             .actual = scale.defined() && shift.defined()
                                           ? scale.shape().to_string() + " and " + shift.shape().to_string()
                                           : std::string("undefined tensors")};
          });
  if (x.numel() == 0) return;
  const std::int64_t rows = x.size(0) * c, s = x.numel() / rows;
  const std::int64_t grid_y = std::min<std::int64_t>(rows, 65535);
  const std::int64_t max_x = std::max<std::int64_t>(1, (1 << 20) / grid_y);  // about a million blocks at most
  const std::int64_t grid_x = std::clamp<std::int64_t>((s + block_threads - 1) / block_threads, 1, max_x);
  channel_affine_kernel<<<dim3(static_cast<unsigned>(grid_x), static_cast<unsigned>(grid_y)), block_threads, 0,
                          cuda::current_stream()>>>(x.data(), y.data(), rows, c, s, scale.data(), shift.data());
  check_launch("channel_affine_kernel");
}

void channel_affine(const Tensor<float, Cuda>& x, const std::vector<float>& scale, const std::vector<float>& shift,
                    const Tensor<float, Cuda>& y) {
  const auto c = static_cast<std::int64_t>(scale.size());
  require(shift.size() == scale.size(), [&] {
    return ErrorInfo{.where = "ops::channel_affine", .field = "scale/shift", .expected = "equal lengths",
                     .actual = std::to_string(scale.size()) + " and " + std::to_string(shift.size())};
  });
  // C values each way: a copy through the host is cheaper than any alternative.
  channel_affine(x, Tensor<float, Cuda>::from(std::span<const float>(scale), {c}),
                 Tensor<float, Cuda>::from(std::span<const float>(shift), {c}), y);
}

void norm_factors(const CudaNormStats& stats, const float* gamma, const float* beta, double eps,
                  const Tensor<float, Cuda>& scale, const Tensor<float, Cuda>& shift) {
  const char* op = "ops::norm_factors";
  const std::int64_t sets = stats.mean.defined() ? stats.mean.numel() : 0;
  detail::require_running_shape(op, scale, shift, sets, "scale/shift");
  if (sets == 0) return;
  norm_factors_kernel<<<grid_for(sets), block_threads, 0, cuda::current_stream()>>>(
      stats.mean.data(), stats.var.data(), gamma, beta, eps, sets, scale.data(), shift.data());
  check_launch("norm_factors_kernel");
}

void running_norm_factors(const Tensor<float, Cuda>& running_mean, const Tensor<float, Cuda>& running_var,
                          const float* gamma, const float* beta, double eps, const Tensor<float, Cuda>& scale,
                          const Tensor<float, Cuda>& shift) {
  const char* op = "ops::running_norm_factors";
  const std::int64_t c = running_mean.numel();
  detail::require_running_shape(op, running_mean, running_var, c);
  detail::require_running_shape(op, scale, shift, c, "scale/shift");
  if (c == 0) return;
  running_affine_kernel<<<grid_for(c), block_threads, 0, cuda::current_stream()>>>(
      running_mean.data(), running_var.data(), gamma, beta, eps, c, scale.data(), shift.data());
  check_launch("running_affine_kernel");
}

void normalize_with_running_stats(const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& running_mean,
                                  const Tensor<float, Cuda>& running_var, const float* gamma, const float* beta,
                                  double eps, const Tensor<float, Cuda>& y) {
  const char* op = "ops::normalize_with_running_stats";
  require_same_shape(op, x, y);
  const std::int64_t c = x.rank() >= 2 ? x.size(1) : 0;
  detail::require_running_shape(op, running_mean, running_var, c);
  auto factors = Tensor<float, Cuda>::empty({2, c});
  running_norm_factors(running_mean, running_var, gamma, beta, eps, factors[0], factors[1]);
  channel_affine(x, factors[0], factors[1], y);
}

void update_running_stats(const CudaNormStats& st, double momentum, double unbias,
                          const Tensor<float, Cuda>& running_mean, const Tensor<float, Cuda>& running_var,
                          const Tensor<float, Cuda>* num_batches_tracked) {
  const char* op = "ops::update_running_stats";
  const std::int64_t c = running_mean.numel(), sets = st.mean.defined() ? st.mean.numel() : -1;
  detail::require_running_shape(op, running_mean, running_var, c);
  require(c > 0 && sets >= 0 && sets % c == 0 && st.var.defined() && st.var.numel() == sets, [&] {
    return ErrorInfo{.where = op, .field = "stats", .expected = "a multiple of " + std::to_string(c) + " sets",
                     .actual = std::to_string(sets) + " means, " +
                               std::to_string(st.var.defined() ? st.var.numel() : -1) + " variances"};
  });
  require(num_batches_tracked == nullptr || num_batches_tracked->numel() == 1, [&] {
    return ErrorInfo{.where = op, .field = "num_batches_tracked", .expected = "a scalar",
                     .actual = num_batches_tracked->shape().to_string()};
  });
  update_running_kernel<<<grid_for(c), block_threads, 0, cuda::current_stream()>>>(
      st.mean.data(), st.var.data(), c, sets / c, momentum, unbias, running_mean.data(), running_var.data(),
      num_batches_tracked ? num_batches_tracked->data() : nullptr);
  check_launch("update_running_kernel");
}

}  // namespace medseg::ops
