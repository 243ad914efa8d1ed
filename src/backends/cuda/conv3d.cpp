// cuDNN convolutions for backends/cuda/conv3d.hpp, through cuDNN 9's convolution API
// (cudnnConvolutionForward / BackwardData / BackwardFilter on 5-D NCDHW float descriptors).
//
// Each problem maps onto one cuDNN convolution, its "cuDNN view": cuDNN's forward reads
// `conv_input` and writes `conv_output` through `filter`. A plain convolution is that
// forward, from x to y. A transposed convolution (x [N, Cin, in], w [Cin, Cout/g, k...]) is
// the backward-data of the plain convolution from [N, Cout, out] to [N, Cin, in] whose
// filter is w, which is PyTorch's weight layout as it stands: there conv_input is medseg's
// output and conv_output medseg's input. So:
//                      plain                            transposed
//   forward            Forward(x -> y)                  BackwardData(x -> y)
//   backward-data      BackwardData(dy -> dx)           Forward(dy -> dx)
//   backward-weights   BackwardFilter(x, dy -> dw)      BackwardFilter(dy, x -> dw)
// Descriptors and the algorithm of each cuDNN call are made once per problem and cached.
#include "medseg/backends/cuda/conv3d.hpp"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "backends/cuda/conv3d_epilogue.hpp"
#include "medseg/backends/cuda/check.hpp"
#include "medseg/backends/cuda/cudnn.hpp"
#include "medseg/core/tensor.hpp"

// cuDNN 9 marks this API deprecated (in favour of its graph API) but keeps it supported; the
// marks only turn into warnings when CUDNN_WARN_DEPRECATED is defined. Should a build define
// it, -Werror must not fail on the API this file chose on purpose.
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

namespace medseg::cuda::detail {
namespace {

// ---------------------------------------------------------------------------------------
// Owned cuDNN descriptors

template <class Handle, cudnnStatus_t (*destroy)(Handle)>
class Descriptor {
 public:
  explicit Descriptor(cudnnStatus_t (*create)(Handle*)) { MEDSEG_CUDNN_CHECK(create(&handle_)); }
  ~Descriptor() {
    if (handle_) (void)destroy(handle_);
  }
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;

  Handle get() const { return handle_; }

 private:
  Handle handle_ = nullptr;
};

using TensorDescriptor = Descriptor<cudnnTensorDescriptor_t, cudnnDestroyTensorDescriptor>;
using FilterDescriptor = Descriptor<cudnnFilterDescriptor_t, cudnnDestroyFilterDescriptor>;
using ConvolutionDescriptor = Descriptor<cudnnConvolutionDescriptor_t, cudnnDestroyConvolutionDescriptor>;

/// The descriptors take int sizes: a tensor of 2^31 elements or more cannot be described.
int as_int(std::int64_t v) { return static_cast<int>(v); }

void describe_tensor(const TensorDescriptor& d, const Shape& shape) {
  int dims[5], strides[5];
  std::int64_t stride = 1;
  for (int i = 4; i >= 0; --i) {
    dims[i] = as_int(shape[i]);
    strides[i] = as_int(stride);
    stride *= shape[i];
  }
  MEDSEG_CUDNN_CHECK(cudnnSetTensorNdDescriptor(d.get(), CUDNN_DATA_FLOAT, 5, dims, strides));
}

void describe_filter(const FilterDescriptor& d, const Shape& shape) {
  const int dims[5] = {as_int(shape[0]), as_int(shape[1]), as_int(shape[2]), as_int(shape[3]), as_int(shape[4])};
  MEDSEG_CUDNN_CHECK(cudnnSetFilterNdDescriptor(d.get(), CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 5, dims));
}

void describe_convolution(const ConvolutionDescriptor& d, const Conv3dShape& s, cudnnMathType_t math) {
  const int pad[3] = {as_int(s.padding[0]), as_int(s.padding[1]), as_int(s.padding[2])};
  const int stride[3] = {as_int(s.stride[0]), as_int(s.stride[1]), as_int(s.stride[2])};
  const int dilation[3] = {as_int(s.dilation[0]), as_int(s.dilation[1]), as_int(s.dilation[2])};
  // Cross-correlation, as PyTorch and oneDNN compute it; float accumulation.
  MEDSEG_CUDNN_CHECK(
      cudnnSetConvolutionNdDescriptor(d.get(), 3, pad, stride, dilation, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  MEDSEG_CUDNN_CHECK(cudnnSetConvolutionGroupCount(d.get(), as_int(s.groups)));
  MEDSEG_CUDNN_CHECK(cudnnSetConvolutionMathType(d.get(), math));
}

// ---------------------------------------------------------------------------------------
// Choosing algorithms

/// The math type a search starts from. Off: FMA only, so cuDNN offers no tensor-core
/// (TF32) kernel. On: the default, which on float data lets cuDNN offer TF32 kernels; the
/// chosen algorithm's own math type is then set on the descriptor it runs with.
cudnnMathType_t search_math(bool tf32) { return tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH; }

bool math_allowed(cudnnMathType_t math, bool tf32) {
  // ALLOW_CONVERSION may round float32 operands to half precision: never wanted here.
  if (tf32) return math != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
  return math == CUDNN_FMA_MATH || math == CUDNN_DEFAULT_MATH;
}

/// One cuDNN call's algorithm and workspace, and the convolution descriptor carrying the
/// math type that algorithm was chosen with (so each call has a descriptor of its own).
template <class Algorithm>
struct Choice {
  Algorithm algorithm{};
  std::size_t workspace = 0;
  ConvolutionDescriptor convolution{cudnnCreateConvolutionDescriptor};
};

/// The first usable result: it succeeded, fits the workspace limit and uses an allowed math
/// type; deterministic ones first when asked. Results come best-first from cuDNN (by its
/// heuristics' ranking, or by measured time). Falls back to any math type rather than to
/// nothing: the descriptor's math type still binds the kernel that runs.
template <class Perf>
const Perf* pick(const std::vector<Perf>& results, std::size_t limit, bool tf32, bool prefer_deterministic) {
  auto fits = [&](const Perf& p) { return p.status == CUDNN_STATUS_SUCCESS && p.memory <= limit; };
  if (prefer_deterministic)
    for (const Perf& p : results)
      if (fits(p) && math_allowed(p.mathType, tf32) && p.determinism == CUDNN_DETERMINISTIC) return &p;
  for (const Perf& p : results)
    if (fits(p) && math_allowed(p.mathType, tf32)) return &p;
  for (const Perf& p : results)
    if (fits(p)) return &p;
  return nullptr;
}

/// Bytes of workspace an algorithm may use: half the device's free memory when the plan is
/// made, capped by MEDSEG_CUDNN_WORKSPACE_MB when set. A fixed cap costs dearly: cuDNN's fast
/// weight-gradient algorithm for a 32-channel 3x3x3 convolution at 128^3, batch 2, needs just
/// over 1 GiB, and without it the next best takes 425 ms instead of a few (H100, cuDNN 9).
/// PyTorch likewise lets cuDNN take what the device has free.
std::size_t workspace_budget() {
  std::size_t free_bytes = 0, total_bytes = 0;
  MEDSEG_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return std::min(conv3d_workspace_limit(), free_bytes / 2);
}

/// Device scratch of `bytes` (none for 0), from the Cuda allocator.
Tensor<std::uint8_t, Cuda> scratch(std::size_t bytes) {
  if (bytes == 0) return {};
  return Tensor<std::uint8_t, Cuda>::empty({static_cast<std::int64_t>(bytes)});
}

// ---------------------------------------------------------------------------------------
// Plans

struct PlanKey {
  Conv3dShape shape;
  int device = 0;
  bool tf32 = false;
  bool benchmark = false;
  bool deterministic = false;
  friend bool operator==(const PlanKey&, const PlanKey&) = default;
};

struct PlanKeyHash {
  std::size_t operator()(const PlanKey& k) const noexcept {
    return (Conv3dShapeHash{}(k.shape) * 31u + static_cast<std::size_t>(k.device)) * 8u + (k.tf32 ? 4u : 0u) +
           (k.benchmark ? 2u : 0u) + (k.deterministic ? 1u : 0u);
  }
};

/// The cuDNN view of one problem and, made on first use, the algorithm of each cuDNN call.
/// Descriptors are never changed once a call may use them, so several threads can run the
/// same plan at once (each with its own handle).
class ConvPlan {
 public:
  ConvPlan(const Conv3dShape& s, bool tf32, bool benchmark, bool deterministic);

  using Forward = Choice<cudnnConvolutionFwdAlgo_t>;
  using BackwardData = Choice<cudnnConvolutionBwdDataAlgo_t>;
  using BackwardFilter = Choice<cudnnConvolutionBwdFilterAlgo_t>;

  // Each chooser gets the tensors its cuDNN call will read, for a timed search.
  const Forward& forward(cudnnHandle_t h, const float* in, const float* filter);
  const BackwardData& backward_data(cudnnHandle_t h, const float* filter, const float* dout);
  const BackwardFilter& backward_filter(cudnnHandle_t h, const float* in, const float* dout);

  const TensorDescriptor conv_input{cudnnCreateTensorDescriptor};
  const TensorDescriptor conv_output{cudnnCreateTensorDescriptor};
  const FilterDescriptor filter{cudnnCreateFilterDescriptor};

 private:
  template <class C>
  void finish(C& choice, const auto& perf) const;

  Conv3dShape s_;
  bool tf32_, benchmark_, deterministic_;
  Shape conv_input_shape_, conv_output_shape_;
  std::mutex mutex_;
  std::unique_ptr<Forward> forward_;
  std::unique_ptr<BackwardData> backward_data_;
  std::unique_ptr<BackwardFilter> backward_filter_;
};

ConvPlan::ConvPlan(const Conv3dShape& s, bool tf32, bool benchmark, bool deterministic)
    : s_(s), tf32_(tf32), benchmark_(benchmark), deterministic_(deterministic) {
  // The op names itself around these errors (with_conv_errors).
  const std::string where = "cuDNN";
  conv_input_shape_ = s.transposed ? s.output_shape() : s.input_shape();
  conv_output_shape_ = s.transposed ? s.input_shape() : s.output_shape();
  for (const auto& [name, shape] : {std::pair{"input", s.input_shape()}, std::pair{"output", s.output_shape()},
                                    std::pair{"weight", s.weight_shape()}})
    require(shape.product() <= INT_MAX, [&] {
      return ErrorInfo{.where = where, .field = name, .expected = "fewer than 2^31 elements (cuDNN's int sizes)",
                       .actual = shape.to_string(), .detail = "split the batch"};
    });
  describe_tensor(conv_input, conv_input_shape_);
  describe_tensor(conv_output, conv_output_shape_);
  describe_filter(filter, s.weight_shape());
  // cuDNN derives the output size of its forward; it must be ours. It is not where a
  // transposed convolution's output_padding reaches a whole stride (allowed with dilation).
  const ConvolutionDescriptor probe{cudnnCreateConvolutionDescriptor};
  describe_convolution(probe, s, search_math(tf32));
  int dims[5] = {};
  MEDSEG_CUDNN_CHECK(cudnnGetConvolutionNdForwardOutputDim(probe.get(), conv_input.get(), filter.get(), 5, dims));
  const Shape derived{dims[0], dims[1], dims[2], dims[3], dims[4]};
  require(derived == conv_output_shape_, [&] {
    return ErrorInfo{.where = where, .field = "shape", .expected = "a problem cuDNN can express",
                     .actual = "cuDNN's convolution maps " + conv_input_shape_.to_string() + " to " +
                               derived.to_string() + ", not " + conv_output_shape_.to_string(),
                     .detail = s.transposed ? "the CUDA backend needs output_padding < stride" : ""};
  });
}

/// Takes the chosen algorithm and sets its math type on the call's descriptor (with TF32
/// allowed; else FMA stays). The caller then asks cuDNN for that exact pairing's workspace,
/// which can exceed what the search reported.
template <class C>
void ConvPlan::finish(C& choice, const auto& perf) const {
  if (tf32_)
    MEDSEG_CUDNN_CHECK(cudnnSetConvolutionMathType(
        choice.convolution.get(), math_allowed(perf.mathType, true) ? perf.mathType : search_math(true)));
  choice.algorithm = perf.algo;
  choice.workspace = perf.memory;
}

/// MEDSEG_CUDNN_VERBOSE=1: one line on stderr per algorithm chosen, with the candidates cuDNN
/// offered (their measured times under the timed search), to see why a step is slow.
bool verbose_choices() {
  static const bool on = [] {
    const char* v = std::getenv("MEDSEG_CUDNN_VERBOSE");
    return v && *v && std::string(v) != "0";
  }();
  return on;
}

template <class Perf>
void report_choice(const char* call, const Conv3dShape& s, const Perf& chosen, const std::vector<Perf>& results) {
  if (!verbose_choices()) return;
  std::string line = std::string("cuDNN ") + call + " " + s.to_string() + ": algo " +
                     std::to_string(static_cast<int>(chosen.algo)) + " (math " +
                     std::to_string(static_cast<int>(chosen.mathType)) + ", " +
                     std::to_string(chosen.memory >> 20) + " MiB); offered:";
  for (const Perf& p : results) {
    char item[96];
    std::snprintf(item, sizeof item, " %d/m%d/%s%s%.3fms/%zuMiB", static_cast<int>(p.algo), static_cast<int>(p.mathType),
                  p.status == CUDNN_STATUS_SUCCESS ? "" : "failed/", p.determinism == CUDNN_DETERMINISTIC ? "det/" : "",
                  static_cast<double>(p.time), p.memory >> 20);
    line += item;
  }
  std::fprintf(stderr, "%s\n", line.c_str());
}

/// Throws when no algorithm qualified.
template <class Perf>
const Perf& require_pick(const Perf* p, const char* call, std::size_t limit) {
  require(p != nullptr, [&] {
    return ErrorInfo{.where = "cuDNN", .field = call, .expected = "an algorithm cuDNN supports",
                     .actual = "none within the workspace limit of " + std::to_string(limit) + " bytes",
                     .detail = "free device memory, or raise MEDSEG_CUDNN_WORKSPACE_MB"};
  });
  return *p;
}

const ConvPlan::Forward& ConvPlan::forward(cudnnHandle_t h, const float* in, const float* filter_data) {
  std::lock_guard lock(mutex_);
  if (forward_) return *forward_;
  auto choice = std::make_unique<Forward>();
  describe_convolution(choice->convolution, s_, search_math(tf32_));
  int count = 0, returned = 0;
  MEDSEG_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &count));
  std::vector<cudnnConvolutionFwdAlgoPerf_t> results(static_cast<std::size_t>(std::max(count, 1)));
  const std::size_t limit = workspace_budget();
  if (benchmark_) {
    const auto workspace = scratch(limit);
    const auto out = Tensor<float, Cuda>::empty(conv_output_shape_);  // the search overwrites it
    MEDSEG_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(
        h, conv_input.get(), in, filter.get(), filter_data, choice->convolution.get(), conv_output.get(), out.data(),
        count, &returned, results.data(), workspace.data(), limit));
  } else {
    MEDSEG_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, conv_input.get(), filter.get(),
                                                              choice->convolution.get(), conv_output.get(), count,
                                                              &returned, results.data()));
  }
  results.resize(static_cast<std::size_t>(std::clamp(returned, 0, count)));
  const auto& perf = require_pick(pick(results, limit, tf32_, false), "forward algorithm", limit);
  report_choice("forward", s_, perf, results);
  finish(*choice, perf);
  std::size_t bytes = 0;
  MEDSEG_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(h, conv_input.get(), filter.get(),
                                                             choice->convolution.get(), conv_output.get(),
                                                             choice->algorithm, &bytes));
  choice->workspace = std::max(choice->workspace, bytes);
  forward_ = std::move(choice);
  return *forward_;
}

const ConvPlan::BackwardData& ConvPlan::backward_data(cudnnHandle_t h, const float* filter_data, const float* dout) {
  std::lock_guard lock(mutex_);
  if (backward_data_) return *backward_data_;
  auto choice = std::make_unique<BackwardData>();
  describe_convolution(choice->convolution, s_, search_math(tf32_));
  int count = 0, returned = 0;
  MEDSEG_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &count));
  std::vector<cudnnConvolutionBwdDataAlgoPerf_t> results(static_cast<std::size_t>(std::max(count, 1)));
  const std::size_t limit = workspace_budget();
  if (benchmark_) {
    const auto workspace = scratch(limit);
    const auto din = Tensor<float, Cuda>::empty(conv_input_shape_);
    MEDSEG_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(
        h, filter.get(), filter_data, conv_output.get(), dout, choice->convolution.get(), conv_input.get(),
        din.data(), count, &returned, results.data(), workspace.data(), limit));
  } else {
    MEDSEG_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, filter.get(), conv_output.get(),
                                                                   choice->convolution.get(), conv_input.get(),
                                                                   count, &returned, results.data()));
  }
  results.resize(static_cast<std::size_t>(std::clamp(returned, 0, count)));
  // Some backward-data algorithms add with atomics, so their sums vary from run to run.
  const auto& perf = require_pick(pick(results, limit, tf32_, deterministic_), "backward-data algorithm", limit);
  report_choice("backward-data", s_, perf, results);
  finish(*choice, perf);
  std::size_t bytes = 0;
  MEDSEG_CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(h, filter.get(), conv_output.get(),
                                                                  choice->convolution.get(), conv_input.get(),
                                                                  choice->algorithm, &bytes));
  choice->workspace = std::max(choice->workspace, bytes);
  backward_data_ = std::move(choice);
  return *backward_data_;
}

const ConvPlan::BackwardFilter& ConvPlan::backward_filter(cudnnHandle_t h, const float* in, const float* dout) {
  std::lock_guard lock(mutex_);
  if (backward_filter_) return *backward_filter_;
  auto choice = std::make_unique<BackwardFilter>();
  describe_convolution(choice->convolution, s_, search_math(tf32_));
  int count = 0, returned = 0;
  MEDSEG_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &count));
  std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> results(static_cast<std::size_t>(std::max(count, 1)));
  const std::size_t limit = workspace_budget();
  if (benchmark_) {
    const auto workspace = scratch(limit);
    const auto dfilter = Tensor<float, Cuda>::empty(s_.weight_shape());
    MEDSEG_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(
        h, conv_input.get(), in, conv_output.get(), dout, choice->convolution.get(), filter.get(), dfilter.data(),
        count, &returned, results.data(), workspace.data(), limit));
  } else {
    MEDSEG_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, conv_input.get(), conv_output.get(),
                                                                     choice->convolution.get(), filter.get(), count,
                                                                     &returned, results.data()));
  }
  results.resize(static_cast<std::size_t>(std::clamp(returned, 0, count)));
  const auto& perf =
      require_pick(pick(results, limit, tf32_, deterministic_), "backward-filter algorithm", limit);
  report_choice("backward-filter", s_, perf, results);
  finish(*choice, perf);
  std::size_t bytes = 0;
  MEDSEG_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(h, conv_input.get(), conv_output.get(),
                                                                    choice->convolution.get(), filter.get(),
                                                                    choice->algorithm, &bytes));
  choice->workspace = std::max(choice->workspace, bytes);
  backward_filter_ = std::move(choice);
  return *backward_filter_;
}

class PlanCache {
 public:
  std::shared_ptr<ConvPlan> get(const Conv3dShape& s) {
    int device = 0;
    MEDSEG_CUDA_CHECK(cudaGetDevice(&device));
    const PlanKey key{s, device, allow_tf32(), cudnn_benchmark(), cudnn_deterministic()};
    std::lock_guard lock(mutex_);
    auto it = plans_.find(key);
    if (it != plans_.end()) return it->second;
    auto plan = std::make_shared<ConvPlan>(s, key.tf32, key.benchmark, key.deterministic);
    plans_.emplace(key, plan);
    return plan;
  }
  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return plans_.size();
  }

 private:
  mutable std::mutex mutex_;
  std::unordered_map<PlanKey, std::shared_ptr<ConvPlan>, PlanKeyHash> plans_;
};

PlanCache& plans() {
  static PlanCache cache;
  return cache;
}

// ---------------------------------------------------------------------------------------
// The three cuDNN calls, on a plan: out = alpha * call(...) + beta * out

const float one = 1.0f, zero = 0.0f;

void run_forward(ConvPlan& plan, const float* in, const float* w, float* out, bool accumulate) {
  const cudnnHandle_t h = cudnn_handle();
  const auto& c = plan.forward(h, in, w);
  const auto workspace = scratch(c.workspace);
  MEDSEG_CUDNN_CHECK(cudnnConvolutionForward(h, &one, plan.conv_input.get(), in, plan.filter.get(), w,
                                             c.convolution.get(), c.algorithm, workspace.data(), c.workspace,
                                             accumulate ? &one : &zero, plan.conv_output.get(), out));
}

void run_backward_data(ConvPlan& plan, const float* w, const float* dout, float* din, bool accumulate) {
  const cudnnHandle_t h = cudnn_handle();
  const auto& c = plan.backward_data(h, w, dout);
  const auto workspace = scratch(c.workspace);
  MEDSEG_CUDNN_CHECK(cudnnConvolutionBackwardData(h, &one, plan.filter.get(), w, plan.conv_output.get(), dout,
                                                  c.convolution.get(), c.algorithm, workspace.data(), c.workspace,
                                                  accumulate ? &one : &zero, plan.conv_input.get(), din));
}

void run_backward_filter(ConvPlan& plan, const float* in, const float* dout, float* dw) {
  const cudnnHandle_t h = cudnn_handle();
  const auto& c = plan.backward_filter(h, in, dout);
  const auto workspace = scratch(c.workspace);
  MEDSEG_CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &one, plan.conv_input.get(), in, plan.conv_output.get(), dout,
                                                    c.convolution.get(), c.algorithm, workspace.data(), c.workspace,
                                                    &zero, plan.filter.get(), dw));
}

// ---------------------------------------------------------------------------------------
// The ops' shared steps

/// Runs `body`, naming the op and problem in any error from cuDNN, CUDA or the allocator.
template <class Body>
void with_conv_errors(const std::string& where, Body&& body) {
  try {
    body();
  } catch (const Error& e) {
    throw Error{{.where = where, .detail = e.what()}};
  }
}

std::int64_t voxels(const std::array<std::int64_t, 3>& dhw) { return dhw[0] * dhw[1] * dhw[2]; }

/// Backward-data: dx from dy, overwritten.
void backward_data_on(ConvPlan& plan, const Conv3dShape& s, const Tensor<float, Cuda>& dy,
                      const Tensor<float, Cuda>& w, const Tensor<float, Cuda>& dx) {
  if (s.transposed)
    run_forward(plan, dy.data(), w.data(), dx.data(), false);
  else
    run_backward_data(plan, w.data(), dy.data(), dx.data(), false);
}

/// Backward-weights: dw and the bias gradient from x and dy, overwritten.
void backward_weights_on(ConvPlan& plan, const Conv3dShape& s, const Tensor<float, Cuda>& x,
                         const Tensor<float, Cuda>& dy, const Tensor<float, Cuda>& dw,
                         const Tensor<float, Cuda>* dbias) {
  if (s.transposed)
    run_backward_filter(plan, dy.data(), x.data(), dw.data());
  else
    run_backward_filter(plan, x.data(), dy.data(), dw.data());
  if (dbias) conv3d_bias_gradient(dy.data(), dbias->data(), s.batch, s.out_channels, voxels(s.output()));
}

}  // namespace
}  // namespace medseg::cuda::detail

namespace medseg::ops {

using cuda::detail::plans;
using cuda::detail::with_conv_errors;

void conv3d_forward(const Conv3dShape& shape, const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& w,
                    const Tensor<float, Cuda>* bias, const Tensor<float, Cuda>& y, const Conv3dEpilogue& epilogue) {
  const std::string where = medseg::detail::check_conv_forward(shape, x, w, bias, y);
  with_conv_errors(where, [&] {
    const auto plan = plans().get(shape);
    // accumulate: cuDNN adds y's contents itself (beta = 1), before the bias and activation.
    if (shape.transposed)
      cuda::detail::run_backward_data(*plan, w.data(), x.data(), y.data(), epilogue.accumulate);
    else
      cuda::detail::run_forward(*plan, x.data(), w.data(), y.data(), epilogue.accumulate);
    cuda::detail::conv3d_bias_activation(y.data(), bias ? bias->data() : nullptr, shape.batch, shape.out_channels,
                                         cuda::detail::voxels(shape.output()), epilogue);
  });
}

void conv3d_backward_data(const Conv3dShape& shape, const Tensor<float, Cuda>& dy, const Tensor<float, Cuda>& w,
                          const Tensor<float, Cuda>& dx) {
  const std::string where = medseg::detail::check_conv_backward_data(shape, dy, w, dx);
  with_conv_errors(where, [&] { cuda::detail::backward_data_on(*plans().get(shape), shape, dy, w, dx); });
}

void conv3d_backward_weights(const Conv3dShape& shape, const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& dy,
                             const Tensor<float, Cuda>& dw, const Tensor<float, Cuda>* dbias) {
  const std::string where = medseg::detail::check_conv_backward_weights(shape, x, dy, dw, dbias);
  with_conv_errors(where, [&] {
    cuda::detail::backward_weights_on(*plans().get(shape), shape, x, dy, dw, dbias);
  });
}

void conv3d_backward(const Conv3dShape& shape, const Tensor<float, Cuda>& x, const Tensor<float, Cuda>& w,
                     const Tensor<float, Cuda>& dy, const Tensor<float, Cuda>* dx, const Tensor<float, Cuda>& dw,
                     const Tensor<float, Cuda>* dbias) {
  const std::string where = medseg::detail::check_conv_backward(shape, x, w, dy, dx, dw, dbias);
  with_conv_errors(where, [&] {
    const auto plan = plans().get(shape);
    if (dx) cuda::detail::backward_data_on(*plan, shape, dy, w, *dx);
    cuda::detail::backward_weights_on(*plan, shape, x, dy, dw, dbias);
  });
}

}  // namespace medseg::ops

namespace medseg::cuda {

std::size_t conv3d_cached_problems() { return detail::plans().size(); }

std::size_t conv3d_workspace_limit() {
  static const std::size_t limit = [] {
    const char* v = std::getenv("MEDSEG_CUDNN_WORKSPACE_MB");
    const long long mb = v ? std::atoll(v) : 0;
    return mb > 0 ? static_cast<std::size_t>(mb) << 20 : SIZE_MAX;
  }();
  return limit;
}

}  // namespace medseg::cuda
