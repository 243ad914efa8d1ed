// 3-D convolution and transposed convolution on the CPU through oneDNN: forward (bias and an
// optional activation / residual sum fused), backward-data and backward-weights (bias
// gradient fused). Tensors are PyTorch's plain NCDHW and weight layouts; oneDNN picks its own
// (blocked) formats and we reorder only where they differ, into memory from the host cache.
// Primitives and their reorders are built once per Conv3dShape, thread count and precision,
// and cached. Under bfloat16 autocast (math_mode.hpp) the primitives take bfloat16 operands,
// and the same reorders that change the layout convert float32 <-> bfloat16 on the way.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../../core/error.hpp"
#include "../../core/tensor.hpp"
#include "../conv3d.hpp"
#include "dnnl.hpp"
#include "math_mode.hpp"

namespace medseg::ops {

/// y = epilogue(conv(x, w) + bias), the transposed convolution when shape.transposed.
///   x [N, Cin, D, H, W] = shape.input_shape(), w = shape.weight_shape(),
///   bias [Cout] or nullptr, y = shape.output_shape(): overwritten, or added to when
///   epilogue.accumulate. All contiguous float32; y must not overlap x or w.
/// Throws Error naming the op, the tensor and both shapes. The ops here are safe to call from
/// several threads at once; each call runs on num_threads() oneDNN (OpenMP) threads of its
/// own, so calling them from inside a parallel_for oversubscribes the cores.
void conv3d_forward(const Conv3dShape& shape, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& w,
                    const Tensor<float, Cpu>* bias, const Tensor<float, Cpu>& y, const Conv3dEpilogue& epilogue = {});

/// conv3d_forward (no epilogue) that allocates y itself, once oneDNN's copy of x is gone: x,
/// that copy, oneDNN's output and y are never live all at once (three activation-sized
/// blocks at most, where a y allocated beforehand makes four). Same result as conv3d_forward.
Tensor<float, Cpu> conv3d_forward_alloc(const Conv3dShape& shape, const Tensor<float, Cpu>& x,
                                        const Tensor<float, Cpu>& w, const Tensor<float, Cpu>* bias);

/// dx = the gradient of the (epilogue-free) forward pass with respect to x, given dy
/// (output_shape()). dx (input_shape()) is overwritten.
void conv3d_backward_data(const Conv3dShape& shape, const Tensor<float, Cpu>& dy, const Tensor<float, Cpu>& w,
                          const Tensor<float, Cpu>& dx);

/// dw (weight_shape()) and, when not null, dbias ([Cout]) are overwritten (not accumulated)
/// with the gradients of the forward pass, given its input x and dy.
void conv3d_backward_weights(const Conv3dShape& shape, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& dy,
                             const Tensor<float, Cpu>& dw, const Tensor<float, Cpu>* dbias);

/// Both backward passes in one call, the same results as the two above; dy is reordered
/// into oneDNN's layout once for both. dx may be nullptr (a first layer needs no input
/// gradient), as may dbias.
void conv3d_backward(const Conv3dShape& shape, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& w,
                     const Tensor<float, Cpu>& dy, const Tensor<float, Cpu>* dx, const Tensor<float, Cpu>& dw,
                     const Tensor<float, Cpu>* dbias);

/// conv3d_backward for a caller that hands x and dy over and lets the op allocate dx, for
/// the least memory at once: oneDNN's blocked copy of dy replaces dy, the weight gradients
/// come first and x goes after them (each released here, so freed when the caller kept no
/// other handle), and dx is allocated only once the copy of dy is gone: at most two
/// activation-sized blocks are live besides what the caller holds (five with
/// conv3d_backward: x, dy, its copy, oneDNN's dx and dx). Returns dx, or an undefined tensor
/// when !input_gradient. Same results as conv3d_backward.
Tensor<float, Cpu> conv3d_backward_owned(const Conv3dShape& shape, Tensor<float, Cpu> x,
                                         const Tensor<float, Cpu>& w, Tensor<float, Cpu> dy, bool input_gradient,
                                         const Tensor<float, Cpu>& dw, const Tensor<float, Cpu>* dbias);

/// Number of distinct problems (shape and thread count) whose primitives are cached.
std::size_t conv3d_cached_problems();

}  // namespace medseg::ops

namespace medseg::cpu::detail {
// Few output channels: the ops run a folded problem instead (conv3d_narrow.hpp).
inline bool narrow_applies(const Conv3dShape& s, const Conv3dEpilogue& epilogue);
inline void narrow_forward(const Conv3dShape& s, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& w,
                           const Tensor<float, Cpu>* bias, const Tensor<float, Cpu>& y);
inline void narrow_backward(const Conv3dShape& s, const Tensor<float, Cpu>* x, const Tensor<float, Cpu>* w,
                            const Tensor<float, Cpu>& dy, const Tensor<float, Cpu>* dx, const Tensor<float, Cpu>* dw,
                            const Tensor<float, Cpu>* dbias);
inline Tensor<float, Cpu> narrow_backward_owned(const Conv3dShape& s, Tensor<float, Cpu> x, const Tensor<float, Cpu>& w,
                                                Tensor<float, Cpu> dy, bool input_gradient, const Tensor<float, Cpu>& dw,
                                                const Tensor<float, Cpu>* dbias);
}  // namespace medseg::cpu::detail

// ----------------------------------------------------------------------------------------
// Implementation

namespace medseg::cpu::detail {

using dnnl::memory;
using medseg::cpu::HostScratch;
using tag = dnnl::memory::format_tag;

/// One operand of a primitive: its layout in our tensor and the layout the primitive wants,
/// with the reorders between them when they differ.
class ConvOperand {
 public:
  enum Direction { read = 1, written = 2, read_and_written = 3 };
  ConvOperand(const memory::desc& user_desc, const memory::desc& want_desc, Direction direction)
      : user_(user_desc), want_(want_desc) {
    if (user_ == want_) return;
    const auto& e = dnnl_engine();
    if (direction & read) to_primitive_.emplace(dnnl::reorder::primitive_desc(e, user_, e, want_));
    if (direction & written) from_primitive_.emplace(dnnl::reorder::primitive_desc(e, want_, e, user_));
  }

  const memory::desc& want() const { return want_; }
  bool reordered() const { return !(user_ == want_); }

  /// Memory to hand the primitive: the tensor itself, or a scratch block (from the host
  /// cache) in the wanted layout, filled from the tensor when `copy_in`.
  memory bind(void* data, HostScratch& scratch, bool copy_in) const {
    memory mine(user_, dnnl_engine(), data);
    if (!reordered()) return mine;
    scratch = HostScratch(want_.get_size());
    memory theirs(want_, dnnl_engine(), scratch.data());
    if (copy_in) to_primitive_->execute(dnnl_stream(), mine, theirs);
    return theirs;
  }
  /// Copies a written operand back into the tensor when it was computed elsewhere.
  void finish(memory used, void* data) const {
    if (!reordered()) return;
    memory mine(user_, dnnl_engine(), data);
    from_primitive_->execute(dnnl_stream(), used, mine);
  }

 private:
  memory::desc user_, want_;
  std::optional<dnnl::reorder> to_primitive_, from_primitive_;
};

struct ConvForward {
  bool bias;
  Conv3dEpilogue epilogue;
  // Kept typed: the backward primitives need the plain forward as their hint.
  std::optional<dnnl::convolution_forward::primitive_desc> conv_pd;
  std::optional<dnnl::deconvolution_forward::primitive_desc> deconv_pd;
  dnnl::primitive primitive;
  memory::desc scratchpad;
  ConvOperand src, weights, dst;
  std::optional<ConvOperand> bias_operand;
};
struct ConvBackwardData {
  dnnl::primitive primitive;
  memory::desc scratchpad;
  ConvOperand diff_dst, weights, diff_src;
};
struct ConvBackwardWeights {
  dnnl::primitive primitive;
  memory::desc scratchpad;
  ConvOperand src, diff_dst, diff_weights;
  std::optional<ConvOperand> diff_bias;
};

/// The arithmetic of a plan's primitives. bf16 (autocast): x, w and dy enter the primitives
/// as bfloat16 (the reorders round them); products accumulate in float32; y, dx, dw, the bias
/// and its gradient are float32. Why float32 results: measured on AMX, bfloat16 y and dx made
/// no difference to the time beyond noise (the reorder into our NCDHW float32 tensors happens
/// either way), float32 keeps the fused residual sum exact, and it is more accurate than
/// PyTorch's autocast, which rounds y and dx to bfloat16 too.
/// One exception: a transposed convolution's backward-weights stays float32 under autocast,
/// because oneDNN 2.6's bfloat16 kernels for it (AMX, AVX512-BF16 or GEMM) all took 3-4x as long
/// as its float32 one (k2 s2, 16 to 128 channels, 8^3 to 64^3, measured).
enum class ConvPrecision : std::uint8_t { f32, bf16 };

/// Every primitive of one Conv3dShape at one precision, each built on first use. Built entries
/// never move or change, so references to them stay valid without the lock.
class ConvPlan {
 public:
  ConvPlan(const Conv3dShape& s, ConvPrecision precision);

  const ConvForward& forward(bool with_bias, const Conv3dEpilogue& epilogue);
  const ConvBackwardData& backward_data();
  const ConvBackwardWeights& backward_weights(bool with_bias);

 private:
  /// A layout-free descriptor: oneDNN picks the layout.
  static memory::desc any(const memory::dims& d, memory::data_type t) { return memory::desc(d, t, tag::any); }
  static memory::desc f32(const memory::dims& d) { return any(d, memory::data_type::f32); }
  /// x, w or dy as the plan's precision has them enter a primitive: bfloat16 or float32.
  memory::desc operand(const memory::dims& d) const { return any(d, operand_type_); }
  const ConvForward& forward_locked(bool with_bias, const Conv3dEpilogue& epilogue);
  std::unique_ptr<ConvForward> make_forward(bool with_bias, const Conv3dEpilogue& epilogue) const;
  /// The plain forward at float32, the hint of a float32 primitive in a bfloat16 plan.
  template <class Op>
  typename Op::primitive_desc f32_forward_hint(bool with_bias) const;

  Conv3dShape s_;
  memory::data_type operand_type_;
  memory::dims src_dims_, dst_dims_, weight_dims_, bias_dims_, strides_, dilates_, pad_l_, pad_r_;
  memory::desc src_user_, dst_user_, weight_user_, bias_user_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<ConvForward>> forwards_;  // a handful: bias or not, per epilogue
  std::unique_ptr<ConvBackwardData> backward_data_;
  std::unique_ptr<ConvBackwardWeights> backward_weights_[2];
};

inline ConvPlan::ConvPlan(const Conv3dShape& s, ConvPrecision precision)
    : s_(s), operand_type_(precision == ConvPrecision::bf16 ? memory::data_type::bf16 : memory::data_type::f32) {
  const auto out = s.output();
  src_dims_ = {s.batch, s.in_channels, s.input[0], s.input[1], s.input[2]};
  dst_dims_ = {s.batch, s.out_channels, out[0], out[1], out[2]};
  const std::int64_t g = s.groups;
  // oneDNN orders weights (g, O, I, k) in both directions; PyTorch stores a transposed
  // convolution's as (I, O/g, k), which is oneDNN's iodhw / giodhw.
  if (g == 1) {
    weight_dims_ = {s.out_channels, s.in_channels, s.kernel[0], s.kernel[1], s.kernel[2]};
    weight_user_ = plain_desc(weight_dims_, s.transposed ? tag::iodhw : tag::oidhw);
  } else {
    weight_dims_ = {g, s.out_channels / g, s.in_channels / g, s.kernel[0], s.kernel[1], s.kernel[2]};
    weight_user_ = plain_desc(weight_dims_, s.transposed ? tag::giodhw : tag::goidhw);
  }
  bias_dims_ = {s.out_channels};
  src_user_ = plain_desc(src_dims_, tag::ncdhw);
  dst_user_ = plain_desc(dst_dims_, tag::ncdhw);
  bias_user_ = plain_desc(bias_dims_, tag::x);
  for (std::size_t i = 0; i < 3; ++i) {
    strides_.push_back(s.stride[i]);
    dilates_.push_back(s.dilation[i] - 1);  // oneDNN counts the gaps, PyTorch the step
    pad_l_.push_back(s.padding[i]);
    // The right padding that makes oneDNN's size formula give PyTorch's output size: smaller
    // than the left one (even negative) when a stride leaves trailing input voxels unused.
    const std::int64_t span = s.dilation[i] * (s.kernel[i] - 1) + 1;
    pad_r_.push_back(s.transposed ? s.padding[i] - s.output_padding[i]
                                  : (out[i] - 1) * s.stride[i] + span - s.input[i] - s.padding[i]);
  }
}

inline dnnl::algorithm eltwise_algorithm(Conv3dEpilogue::Activation a) {
  using A = Conv3dEpilogue::Activation;
  switch (a) {
    case A::relu:
    case A::leaky_relu: return dnnl::algorithm::eltwise_relu;  // alpha is the negative slope
    case A::elu: return dnnl::algorithm::eltwise_elu;
    case A::gelu: return dnnl::algorithm::eltwise_gelu_erf;  // exact GELU, as torch's default
    case A::sigmoid: return dnnl::algorithm::eltwise_logistic;
    case A::none: break;
  }
  return dnnl::algorithm::undef;
}

inline std::unique_ptr<ConvForward> ConvPlan::make_forward(bool with_bias, const Conv3dEpilogue& epilogue) const {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // from our cache, and thread-safe
  dnnl::post_ops post;
  if (epilogue.accumulate) post.append_sum(1.0f);  // before the activation: act(conv + y)
  if (epilogue.activation != Conv3dEpilogue::Activation::none) {
    const bool has_alpha = epilogue.activation == Conv3dEpilogue::Activation::leaky_relu ||
                           epilogue.activation == Conv3dEpilogue::Activation::elu;
    post.append_eltwise(1.0f, eltwise_algorithm(epilogue.activation), has_alpha ? epilogue.alpha : 0.0f, 0.0f);
  }
  attr.set_post_ops(post);
  const auto kind = dnnl::prop_kind::forward_training;
  const memory::desc no_bias;
  const memory::desc bias_md = with_bias ? f32(bias_dims_) : no_bias;
  const auto& e = dnnl_engine();
  const auto dst_direction = epilogue.accumulate ? ConvOperand::read_and_written : ConvOperand::written;
  auto build = [&](const auto& pd, dnnl::primitive primitive) {
    std::optional<ConvOperand> bias;
    if (with_bias) bias.emplace(bias_user_, pd.bias_desc(), ConvOperand::read);
    return std::make_unique<ConvForward>(ConvForward{
        with_bias, epilogue, std::nullopt, std::nullopt, std::move(primitive), pd.scratchpad_desc(),
        ConvOperand(src_user_, pd.src_desc(), ConvOperand::read),
        ConvOperand(weight_user_, pd.weights_desc(), ConvOperand::read),
        ConvOperand(dst_user_, pd.dst_desc(), dst_direction), std::move(bias)});
  };
  if (s_.transposed) {
    using Op = dnnl::deconvolution_forward;
    const Op::desc d(kind, dnnl::algorithm::deconvolution_direct, operand(src_dims_), operand(weight_dims_), bias_md,
                     f32(dst_dims_), strides_, dilates_, pad_l_, pad_r_);
    const Op::primitive_desc pd(d, attr, e);
    auto f = build(pd, Op(pd));
    f->deconv_pd = pd;
    return f;
  }
  using Op = dnnl::convolution_forward;
  const Op::desc d(kind, dnnl::algorithm::convolution_direct, operand(src_dims_), operand(weight_dims_), bias_md,
                   f32(dst_dims_), strides_, dilates_, pad_l_, pad_r_);
  const Op::primitive_desc pd(d, attr, e);
  auto f = build(pd, Op(pd));
  f->conv_pd = pd;
  return f;
}

template <class Op>
typename Op::primitive_desc ConvPlan::f32_forward_hint(bool with_bias) const {
  constexpr bool transposed = std::is_same_v<Op, dnnl::deconvolution_forward>;
  const auto algorithm = transposed ? dnnl::algorithm::deconvolution_direct : dnnl::algorithm::convolution_direct;
  const memory::desc bias_md = with_bias ? f32(bias_dims_) : memory::desc();
  const typename Op::desc d(dnnl::prop_kind::forward_training, algorithm, f32(src_dims_), f32(weight_dims_), bias_md,
                            f32(dst_dims_), strides_, dilates_, pad_l_, pad_r_);
  return typename Op::primitive_desc(d, dnnl_engine());
}

inline const ConvForward& ConvPlan::forward_locked(bool with_bias, const Conv3dEpilogue& epilogue) {
  for (const auto& f : forwards_)
    if (f->bias == with_bias && f->epilogue == epilogue) return *f;
  forwards_.push_back(make_forward(with_bias, epilogue));
  return *forwards_.back();
}

inline const ConvForward& ConvPlan::forward(bool with_bias, const Conv3dEpilogue& epilogue) {
  std::lock_guard lock(mutex_);
  return forward_locked(with_bias, epilogue);
}

inline const ConvBackwardData& ConvPlan::backward_data() {
  std::lock_guard lock(mutex_);
  if (backward_data_) return *backward_data_;
  const ConvForward& hint = forward_locked(false, {});
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  const auto& e = dnnl_engine();
  auto build = [&](const auto& pd, dnnl::primitive primitive) {
    backward_data_ = std::make_unique<ConvBackwardData>(ConvBackwardData{
        std::move(primitive), pd.scratchpad_desc(), ConvOperand(dst_user_, pd.diff_dst_desc(), ConvOperand::read),
        ConvOperand(weight_user_, pd.weights_desc(), ConvOperand::read),
        ConvOperand(src_user_, pd.diff_src_desc(), ConvOperand::written)});
  };
  if (s_.transposed) {
    using Op = dnnl::deconvolution_backward_data;
    const Op::desc d(dnnl::algorithm::deconvolution_direct, f32(src_dims_), operand(weight_dims_), operand(dst_dims_),
                     strides_, dilates_, pad_l_, pad_r_);
    const Op::primitive_desc pd(d, attr, e, *hint.deconv_pd);
    build(pd, Op(pd));
  } else {
    using Op = dnnl::convolution_backward_data;
    const Op::desc d(dnnl::algorithm::convolution_direct, f32(src_dims_), operand(weight_dims_), operand(dst_dims_),
                     strides_, dilates_, pad_l_, pad_r_);
    const Op::primitive_desc pd(d, attr, e, *hint.conv_pd);
    build(pd, Op(pd));
  }
  return *backward_data_;
}

inline const ConvBackwardWeights& ConvPlan::backward_weights(bool with_bias) {
  std::lock_guard lock(mutex_);
  auto& slot = backward_weights_[with_bias ? 1 : 0];
  if (slot) return *slot;
  const ConvForward& hint = forward_locked(with_bias, {});
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  const memory::desc no_bias;
  const memory::desc bias_md = with_bias ? f32(bias_dims_) : no_bias;
  const auto& e = dnnl_engine();
  auto build = [&](const auto& pd, dnnl::primitive primitive) {
    std::optional<ConvOperand> diff_bias;
    if (with_bias) diff_bias.emplace(bias_user_, pd.diff_bias_desc(), ConvOperand::written);
    slot = std::make_unique<ConvBackwardWeights>(ConvBackwardWeights{
        std::move(primitive), pd.scratchpad_desc(), ConvOperand(src_user_, pd.src_desc(), ConvOperand::read),
        ConvOperand(dst_user_, pd.diff_dst_desc(), ConvOperand::read),
        ConvOperand(weight_user_, pd.diff_weights_desc(), ConvOperand::written), std::move(diff_bias)});
  };
  if (s_.transposed) {
    // float32 even under autocast (see ConvPrecision), with a float32 forward as its hint.
    using Op = dnnl::deconvolution_backward_weights;
    const Op::desc d(dnnl::algorithm::deconvolution_direct, f32(src_dims_), f32(weight_dims_), bias_md,
                     f32(dst_dims_), strides_, dilates_, pad_l_, pad_r_);
    if (operand_type_ == memory::data_type::f32) {
      const Op::primitive_desc pd(d, attr, e, *hint.deconv_pd);
      build(pd, Op(pd));
    } else {
      const Op::primitive_desc pd(d, attr, e, f32_forward_hint<dnnl::deconvolution_forward>(with_bias));
      build(pd, Op(pd));
    }
  } else {
    using Op = dnnl::convolution_backward_weights;
    const Op::desc d(dnnl::algorithm::convolution_direct, operand(src_dims_), f32(weight_dims_), bias_md,
                     operand(dst_dims_), strides_, dilates_, pad_l_, pad_r_);
    const Op::primitive_desc pd(d, attr, e, *hint.conv_pd);
    build(pd, Op(pd));
  }
  return *slot;
}

/// Plans are per thread count too: oneDNN fixes a primitive's work split (and, on OpenMP, its
/// team size) when the primitive is created, so a change of MEDSEG_NUM_THREADS or
/// set_num_threads() needs new primitives. And per precision, so that switching autocast
/// off finds the float32 primitives it left, and their results bit for bit.
struct ConvPlanKey {
  Conv3dShape shape;
  int threads = 1;
  ConvPrecision precision = ConvPrecision::f32;
  friend bool operator==(const ConvPlanKey&, const ConvPlanKey&) = default;
};
struct ConvPlanKeyHash {
  std::size_t operator()(const ConvPlanKey& k) const noexcept {
    return (Conv3dShapeHash{}(k.shape) * 31u + static_cast<std::size_t>(k.threads)) * 2u +
           static_cast<std::size_t>(k.precision);
  }
};

inline PrimitiveCache<ConvPlanKey, ConvPlan, ConvPlanKeyHash>& conv_plans() {
  static PrimitiveCache<ConvPlanKey, ConvPlan, ConvPlanKeyHash> cache;
  return cache;
}

/// The plan of `s` for this thread's oneDNN thread count, which it first sets to ours: both
/// building and running a primitive read it; and for the autocast setting of the moment.
inline std::shared_ptr<ConvPlan> plan_for(const Conv3dShape& s) {
  const int threads = match_dnnl_threads();
  const ConvPrecision precision = autocast_bf16() ? ConvPrecision::bf16 : ConvPrecision::f32;
  return conv_plans().get(ConvPlanKey{s, threads, precision},
                          [&] { return std::make_shared<ConvPlan>(s, precision); });
}

/// An op's name for its errors, saying when it ran under bfloat16 autocast: on CPUs without
/// AVX-512 (cpu::bf16_convolutions() == none) oneDNN 2.6 has no bfloat16 convolution at all.
inline std::string with_precision(const std::string& where) {
  return autocast_bf16() ? where + " under bfloat16 autocast" : where;
}

/// The scratchpad a primitive asked for, from the host cache, bound to `args`.
inline HostScratch bind_scratchpad(const memory::desc& d, std::unordered_map<int, memory>& args) {
  HostScratch scratch(d.get_size());
  if (scratch.bytes()) args.emplace(DNNL_ARG_SCRATCHPAD, memory(d, dnnl_engine(), scratch.data()));
  return scratch;
}

/// Runs backward-data with dy already bound as `diff_dst` (in the layout it wants).
inline void run_backward_data(const ConvBackwardData& b, const memory& diff_dst, const Tensor<float, Cpu>& w,
                              const Tensor<float, Cpu>& dx) {
  HostScratch ws, dxs;
  std::unordered_map<int, memory> args;
  args.emplace(DNNL_ARG_DIFF_DST, diff_dst);
  args.emplace(DNNL_ARG_WEIGHTS, b.weights.bind(w.data(), ws, true));
  const memory diff_src = b.diff_src.bind(dx.data(), dxs, false);
  args.emplace(DNNL_ARG_DIFF_SRC, diff_src);
  const HostScratch pad = bind_scratchpad(b.scratchpad, args);
  b.primitive.execute(dnnl_stream(), args);
  b.diff_src.finish(diff_src, dx.data());
  dnnl_stream().wait();  // before the scratch blocks go back to the cache
}

/// Runs backward-weights with dy already bound as `diff_dst`.
inline void run_backward_weights(const ConvBackwardWeights& b, const Tensor<float, Cpu>& x, const memory& diff_dst,
                                 const Tensor<float, Cpu>& dw, const Tensor<float, Cpu>* dbias) {
  HostScratch xs, dws, dbs;
  std::unordered_map<int, memory> args;
  args.emplace(DNNL_ARG_SRC, b.src.bind(x.data(), xs, true));
  args.emplace(DNNL_ARG_DIFF_DST, diff_dst);
  const memory diff_weights = b.diff_weights.bind(dw.data(), dws, false);
  args.emplace(DNNL_ARG_DIFF_WEIGHTS, diff_weights);
  std::optional<memory> diff_bias;
  if (dbias) {
    diff_bias = b.diff_bias->bind(dbias->data(), dbs, false);
    args.emplace(DNNL_ARG_DIFF_BIAS, *diff_bias);
  }
  const HostScratch pad = bind_scratchpad(b.scratchpad, args);
  b.primitive.execute(dnnl_stream(), args);
  b.diff_weights.finish(diff_weights, dw.data());
  if (dbias) b.diff_bias->finish(*diff_bias, dbias->data());
  dnnl_stream().wait();
}

}  // namespace medseg::cpu::detail

namespace medseg::ops {

inline void conv3d_forward(const Conv3dShape& shape, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& w,
                           const Tensor<float, Cpu>* bias, const Tensor<float, Cpu>& y,
                           const Conv3dEpilogue& epilogue) {
  using namespace cpu::detail;
  const std::string where = medseg::detail::check_conv_forward(shape, x, w, bias, y);
  if (!cpu::autocast_bf16() && cpu::detail::narrow_applies(shape, epilogue)) return cpu::detail::narrow_forward(shape, x, w, bias, y);
  cpu::with_dnnl_errors(with_precision(where), [&] {
    const ConvForward& f = plan_for(shape)->forward(bias != nullptr, epilogue);
    HostScratch xs, ws, bs, ys;
    std::unordered_map<int, memory> args;
    args.emplace(DNNL_ARG_SRC, f.src.bind(x.data(), xs, true));
    args.emplace(DNNL_ARG_WEIGHTS, f.weights.bind(w.data(), ws, true));
    if (bias) args.emplace(DNNL_ARG_BIAS, f.bias_operand->bind(bias->data(), bs, true));
    const memory dst = f.dst.bind(y.data(), ys, epilogue.accumulate);
    args.emplace(DNNL_ARG_DST, dst);
    const HostScratch pad = bind_scratchpad(f.scratchpad, args);
    f.primitive.execute(cpu::dnnl_stream(), args);
    f.dst.finish(dst, y.data());
    cpu::dnnl_stream().wait();
  });
}

inline Tensor<float, Cpu> conv3d_forward_alloc(const Conv3dShape& shape, const Tensor<float, Cpu>& x,
                                               const Tensor<float, Cpu>& w, const Tensor<float, Cpu>* bias) {
  using namespace cpu::detail;
  const std::string where = medseg::detail::conv_where("conv3d_forward", shape);
  shape.validate(where);
  medseg::detail::check_conv_tensor(where, "x", x, shape.input_shape());
  medseg::detail::check_conv_tensor(where, "weight", w, shape.weight_shape());
  if (bias) medseg::detail::check_conv_tensor(where, "bias", *bias, shape.bias_shape());
  Tensor<float, Cpu> y;
  if (!cpu::autocast_bf16() && cpu::detail::narrow_applies(shape, {})) {
    y = Tensor<float, Cpu>::empty(shape.output_shape());
    cpu::detail::narrow_forward(shape, x, w, bias, y);
    return y;
  }
  cpu::with_dnnl_errors(with_precision(where), [&] {
    const ConvForward& f = plan_for(shape)->forward(bias != nullptr, {});
    HostScratch xs, ws, bs, ys;
    std::unordered_map<int, memory> args;
    args.emplace(DNNL_ARG_SRC, f.src.bind(x.data(), xs, true));
    args.emplace(DNNL_ARG_WEIGHTS, f.weights.bind(w.data(), ws, true));
    if (bias) args.emplace(DNNL_ARG_BIAS, f.bias_operand->bind(bias->data(), bs, true));
    if (!f.dst.reordered()) y = Tensor<float, Cpu>::empty(shape.output_shape());  // oneDNN writes y itself
    const memory dst = f.dst.bind(f.dst.reordered() ? nullptr : y.data(), ys, false);
    args.emplace(DNNL_ARG_DST, dst);
    {
      const HostScratch pad = bind_scratchpad(f.scratchpad, args);
      f.primitive.execute(cpu::dnnl_stream(), args);
      cpu::dnnl_stream().wait();
    }
    args.clear();
    xs = HostScratch();  // the copy of x goes before y comes
    ws = HostScratch();
    if (!y.defined()) y = Tensor<float, Cpu>::empty(shape.output_shape());
    f.dst.finish(dst, y.data());
    cpu::dnnl_stream().wait();
  });
  return y;
}

inline void conv3d_backward_data(const Conv3dShape& shape, const Tensor<float, Cpu>& dy, const Tensor<float, Cpu>& w,
                                 const Tensor<float, Cpu>& dx) {
  using namespace cpu::detail;
  const std::string where = medseg::detail::check_conv_backward_data(shape, dy, w, dx);
  if (!cpu::autocast_bf16() && cpu::detail::narrow_applies(shape, {})) return cpu::detail::narrow_backward(shape, nullptr, &w, dy, &dx, nullptr, nullptr);
  cpu::with_dnnl_errors(with_precision(where), [&] {
    const ConvBackwardData& b = plan_for(shape)->backward_data();
    HostScratch dys;
    run_backward_data(b, b.diff_dst.bind(dy.data(), dys, true), w, dx);
  });
}

inline void conv3d_backward_weights(const Conv3dShape& shape, const Tensor<float, Cpu>& x,
                                    const Tensor<float, Cpu>& dy, const Tensor<float, Cpu>& dw,
                                    const Tensor<float, Cpu>* dbias) {
  using namespace cpu::detail;
  const std::string where = medseg::detail::check_conv_backward_weights(shape, x, dy, dw, dbias);
  if (!cpu::autocast_bf16() && cpu::detail::narrow_applies(shape, {})) return cpu::detail::narrow_backward(shape, &x, nullptr, dy, nullptr, &dw, dbias);
  cpu::with_dnnl_errors(with_precision(where), [&] {
    const ConvBackwardWeights& b = plan_for(shape)->backward_weights(dbias != nullptr);
    HostScratch dys;
    run_backward_weights(b, x, b.diff_dst.bind(dy.data(), dys, true), dw, dbias);
  });
}

inline void conv3d_backward(const Conv3dShape& shape, const Tensor<float, Cpu>& x, const Tensor<float, Cpu>& w,
                            const Tensor<float, Cpu>& dy, const Tensor<float, Cpu>* dx, const Tensor<float, Cpu>& dw,
                            const Tensor<float, Cpu>* dbias) {
  using namespace cpu::detail;
  const std::string where = medseg::detail::check_conv_backward(shape, x, w, dy, dx, dw, dbias);
  if (!cpu::autocast_bf16() && cpu::detail::narrow_applies(shape, {})) return cpu::detail::narrow_backward(shape, &x, &w, dy, dx, &dw, dbias);
  cpu::with_dnnl_errors(with_precision(where), [&] {
    const auto plan = plan_for(shape);
    const ConvBackwardWeights& bw = plan->backward_weights(dbias != nullptr);
    HostScratch dys;
    const memory diff_dst = bw.diff_dst.bind(dy.data(), dys, true);
    if (dx) {
      const ConvBackwardData& bd = plan->backward_data();
      // Both primitives usually want dy in the same blocked layout: then it is reordered once.
      HostScratch other;
      const memory data_dy = bd.diff_dst.want() == bw.diff_dst.want() ? diff_dst : bd.diff_dst.bind(dy.data(), other, true);
      run_backward_data(bd, data_dy, w, *dx);
    }
    run_backward_weights(bw, x, diff_dst, dw, dbias);
  });
}

inline Tensor<float, Cpu> conv3d_backward_owned(const Conv3dShape& shape, Tensor<float, Cpu> x,
                                                const Tensor<float, Cpu>& w, Tensor<float, Cpu> dy, bool input_gradient,
                                                const Tensor<float, Cpu>& dw, const Tensor<float, Cpu>* dbias) {
  using namespace cpu::detail;
  const std::string where = medseg::detail::check_conv_backward(shape, x, w, dy, static_cast<const Tensor<float, Cpu>*>(nullptr), dw, dbias);
  Tensor<float, Cpu> dx;
  if (!cpu::autocast_bf16() && cpu::detail::narrow_applies(shape, {}))
    return cpu::detail::narrow_backward_owned(shape, std::move(x), w, std::move(dy), input_gradient, dw, dbias);
  cpu::with_dnnl_errors(with_precision(where), [&] {
    const auto plan = plan_for(shape);
    const ConvBackwardWeights& bw = plan->backward_weights(dbias != nullptr);
    const ConvBackwardData* bd = input_gradient ? &plan->backward_data() : nullptr;
    HostScratch dys;
    const memory diff_dst = bw.diff_dst.bind(dy.data(), dys, true);
    const bool shared = !bd || bd->diff_dst.want() == bw.diff_dst.want();
    if (bw.diff_dst.reordered() && shared) dy = Tensor<float, Cpu>();  // the copy serves both passes
    run_backward_weights(bw, x, diff_dst, dw, dbias);
    x = Tensor<float, Cpu>();
    if (!bd) return;
    HostScratch other, ws, dxs;
    std::unordered_map<int, memory> args;
    args.emplace(DNNL_ARG_DIFF_DST, shared ? diff_dst : bd->diff_dst.bind(dy.data(), other, true));
    args.emplace(DNNL_ARG_WEIGHTS, bd->weights.bind(w.data(), ws, true));
    const bool direct = !bd->diff_src.reordered();  // oneDNN writes dx itself
    if (direct) dx = Tensor<float, Cpu>::empty(shape.input_shape());
    const memory diff_src = bd->diff_src.bind(direct ? dx.data() : nullptr, dxs, false);
    args.emplace(DNNL_ARG_DIFF_SRC, diff_src);
    {
      const HostScratch pad = bind_scratchpad(bd->scratchpad, args);
      bd->primitive.execute(cpu::dnnl_stream(), args);
      cpu::dnnl_stream().wait();
    }
    args.clear();
    dys = HostScratch();
    other = HostScratch();
    ws = HostScratch();
    dy = Tensor<float, Cpu>();
    if (!direct) {
      dx = Tensor<float, Cpu>::empty(shape.input_shape());
      bd->diff_src.finish(diff_src, dx.data());
      cpu::dnnl_stream().wait();
    }
  });
  return dx;
}

inline std::size_t conv3d_cached_problems() { return cpu::detail::conv_plans().size(); }

}  // namespace medseg::ops

#include "conv3d_narrow.hpp"  // the definitions declared above
