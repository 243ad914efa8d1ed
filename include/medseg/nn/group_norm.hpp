// GroupNorm (torch.nn.GroupNorm, Wu and He 2018): statistics per sample over groups of
// channels, so results do not depend on the batch size; the normalisation of small-batch 3-D
// segmentation (nnU-Net uses InstanceNorm, its groups == channels special case).
#pragma once

#include <cstdint>
#include <string>

#include "../backends/ops.hpp"
#include "normalization.hpp"

namespace medseg::nn {

struct GroupNormOptions {
  std::int64_t num_groups = 1, num_channels = 1;
  double eps = 1e-5;
  bool affine = true;
};

/// x [N, C, ...] -> y, same shape. Parameters "weight", "bias" [C] (ones, zeros).
///   GroupNorm<Cpu> norm{{.num_groups = 8, .num_channels = 32}};
template <class B = Cpu>
class GroupNorm : public detail::Normalization<GroupNorm<B>, B> {
 public:
  using Options = GroupNormOptions;
  static constexpr std::string_view kind = "GroupNorm";
  GroupNorm(const Options& o);  // NOLINT: implicit, as every layer

  Tensor<float, B> forward(const Tensor<float, B>& x);

 private:
  Options o_;
};

// ----------------------------------------------------------------------------------------
// Implementation

template <class B>
GroupNorm<B>::GroupNorm(const Options& o)
    : detail::Normalization<GroupNorm<B>, B>("num_channels", o.num_channels, o.eps, o.affine), o_(o) {
  require(o.num_groups >= 1 && o.num_channels % o.num_groups == 0, [&] {
    return ErrorInfo{.where = "GroupNorm", .field = "num_groups", .expected = "a divisor of num_channels (both >= 1)",
                     .actual = str(o.num_groups, " groups for ", o.num_channels, " channels")};
  });
}

template <class B>
Tensor<float, B> GroupNorm<B>::forward(const Tensor<float, B>& x) {
  require(x.defined() && x.rank() >= 2, [&] {
    return ErrorInfo{.where = this->where("GroupNorm"), .field = "input rank", .expected = ">= 2 ([N, C, ...])",
                     .actual = x.defined() ? x.shape().to_string() : "an undefined tensor"};
  });
  this->require_input("GroupNorm", x, x.rank(), o_.num_channels, "N, C, ...");
  const Tensor<float, B> xc = x.contiguous();
  const std::int64_t n = x.size(0), c = x.size(1), s = x.numel() / std::max<std::int64_t>(n * c, 1);
  auto y = this->output_buffer(x.shape());
  this->keep(xc, this->normalize(ops::NormSets::group(n, c, s, o_.num_groups), xc, y));
  return y;
}

}  // namespace medseg::nn
