// Label-map operations: remapping label values (and an ignore label for what a dataset does not
// annotate), and connected components with 6- or 26-connectivity: component labelling as
// scipy.ndimage.label numbers it, keeping the largest component, dropping small ones.
// Remapping and ignore labels run on the tensor's backend (backends/ops.hpp); the components
// are a CPU algorithm on Tensor<L, Cpu> (a serial union-find).
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../backends/ops.hpp"
#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/tensor.hpp"
#include "resample.hpp"

namespace medseg::preprocess {

/// (from, to) pairs; the element type comes from the label map, not from the braces.
template <class L>
using LabelMapping = ops::LabelMapping<L>;

/// Labels replaced by `mapping` (from, to); values not in it keep their value, or become
/// `unmapped` when given (an ignore label for classes a task leaves out).
///   remap_labels(seg, {{1, 1}, {2, 1}}, std::uint8_t{255});   // merge 1 and 2, ignore the rest but 0
template <class L, class B>
Tensor<L, B> remap_labels(const Tensor<L, B>& seg, const LabelMapping<L>& mapping,
                          std::optional<std::type_identity_t<L>> unmapped = {});

/// seg with every voxel where `mask` is zero set to `ignore` (nnU-Net marks voxels outside the
/// nonzero region with -1 this way; losses skip an ignore label).
template <class L, class M, class B>
Tensor<L, B> set_ignore_label(const Tensor<L, B>& seg, const Tensor<M, B>& mask, L ignore);

enum class Connectivity {
  faces = 6,  // neighbours share a face (scipy generate_binary_structure(3, 1))
  full = 26,  // faces, edges and corners (generate_binary_structure(3, 3))
};

/// Which voxels connect: only equal labels (each label's own components), or any two nonzero
/// ones (the foreground as a whole).
enum class ComponentsOf { each_label, foreground };

/// Components of the nonzero voxels of a [D,H,W] map. ids: 0 for background, 1..count in the
/// order of each component's first voxel in raster order (as scipy.ndimage.label numbers
/// them); sizes[id] its voxel count (sizes[0] = background).
struct Components {
  Tensor<std::int32_t, Cpu> ids;
  std::vector<std::int64_t> sizes;
  std::int64_t count() const { return static_cast<std::int64_t>(sizes.size()) - 1; }
};

template <class L>
Components connected_components(const Tensor<L, Cpu>& seg, Connectivity connectivity = Connectivity::full,
                                ComponentsOf of = ComponentsOf::each_label);

/// seg with only the largest component of each label (each_label) or of the whole
/// foreground (foreground) kept; the rest set to 0. Ties keep the first in raster order.
template <class L>
Tensor<L, Cpu> keep_largest_component(const Tensor<L, Cpu>& seg, Connectivity connectivity = Connectivity::full,
                                      ComponentsOf of = ComponentsOf::each_label);

/// seg with every component smaller than `min_voxels` set to 0.
template <class L>
Tensor<L, Cpu> remove_small_components(const Tensor<L, Cpu>& seg, std::int64_t min_voxels,
                                       Connectivity connectivity = Connectivity::full,
                                       ComponentsOf of = ComponentsOf::each_label);

// ----------------------------------------------------------------------------------------
// Implementation

template <class L, class B>
Tensor<L, B> remap_labels(const Tensor<L, B>& seg, const LabelMapping<L>& mapping,
                          std::optional<std::type_identity_t<L>> unmapped) {
  detail::require_defined(seg, "remap_labels");
  const Tensor<L, B> c = seg.contiguous();
  auto out = Tensor<L, B>::empty(c.shape());
  ops::remap_labels(c, mapping, std::optional<L>(unmapped), out);
  return out;
}

template <class L, class M, class B>
Tensor<L, B> set_ignore_label(const Tensor<L, B>& seg, const Tensor<M, B>& mask, L ignore) {
  require(mask.defined() && seg.defined() && mask.shape() == seg.shape(), [&] {
    return ErrorInfo{.where = "preprocess::set_ignore_label", .field = "mask",
                     .expected = "the label map's shape " + (seg.defined() ? seg.shape().to_string() : std::string("?")),
                     .actual = mask.defined() ? mask.shape().to_string() : "an undefined tensor"};
  });
  const Tensor<L, B> c = seg.contiguous();
  auto out = Tensor<L, B>::empty(c.shape());
  ops::set_ignore_label(c, mask.contiguous(), ignore, out);
  return out;
}

namespace detail {

inline std::int32_t find_root(std::vector<std::int32_t>& parent, std::int32_t x) {
  while (parent[static_cast<std::size_t>(x)] != x) {
    parent[static_cast<std::size_t>(x)] = parent[static_cast<std::size_t>(parent[static_cast<std::size_t>(x)])];
    x = parent[static_cast<std::size_t>(x)];
  }
  return x;
}

inline void unite(std::vector<std::int32_t>& parent, std::int32_t a, std::int32_t b) {
  a = find_root(parent, a);
  b = find_root(parent, b);
  if (a == b) return;
  // The smaller provisional id stays the root, so roots keep raster order of first voxels.
  if (a < b)
    parent[static_cast<std::size_t>(b)] = a;
  else
    parent[static_cast<std::size_t>(a)] = b;
}

}  // namespace detail

template <class L>
Components connected_components(const Tensor<L, Cpu>& seg, Connectivity connectivity, ComponentsOf of) {
  require(seg.defined() && seg.rank() == 3, [&] {
    return ErrorInfo{.where = "preprocess::connected_components", .field = "label map", .expected = "[D,H,W]",
                     .actual = seg.defined() ? seg.shape().to_string() : "an undefined tensor"};
  });
  require(seg.numel() < (std::int64_t{1} << 31), [&] {
    return ErrorInfo{.where = "preprocess::connected_components", .field = "label map",
                     .expected = "fewer than 2^31 voxels", .actual = seg.shape().to_string()};
  });
  const Tensor<L, Cpu> c = seg.contiguous();
  const std::int64_t D = c.size(0), H = c.size(1), W = c.size(2);
  const L* v = c.data();
  Components out{Tensor<std::int32_t, Cpu>::zeros(c.shape()), {}};
  std::int32_t* id = out.ids.data();

  // The neighbours already visited in raster order: 3 for faces, 13 for the full cube.
  struct Offset {
    std::int64_t dd, dh, dw;
  };
  std::vector<Offset> back;
  for (std::int64_t dd = -1; dd <= 0; ++dd)
    for (std::int64_t dh = -1; dh <= 1; ++dh)
      for (std::int64_t dw = -1; dw <= 1; ++dw) {
        if (dd == 0 && (dh > 0 || (dh == 0 && dw >= 0))) continue;  // not yet visited
        const int manhattan = static_cast<int>(-dd + (dh < 0 ? -dh : dh) + (dw < 0 ? -dw : dw));
        if (connectivity == Connectivity::faces && manhattan != 1) continue;
        back.push_back({dd, dh, dw});
      }

  // Pass 1 (serial: union-find merges cross the whole volume): provisional ids.
  std::vector<std::int32_t> parent{0};
  auto joins = [&](L a, L b) { return of == ComponentsOf::foreground ? b != L(0) : a == b; };
  for (std::int64_t d = 0; d < D; ++d)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t w = 0; w < W; ++w) {
        const std::int64_t i = (d * H + h) * W + w;
        if (v[i] == L(0)) continue;
        std::int32_t mine = 0;
        for (const auto& o : back) {
          const std::int64_t nd = d + o.dd, nh = h + o.dh, nw = w + o.dw;
          if (nd < 0 || nh < 0 || nh >= H || nw < 0 || nw >= W) continue;
          const std::int64_t j = (nd * H + nh) * W + nw;
          if (id[j] == 0 || !joins(v[i], v[j])) continue;
          if (mine == 0)
            mine = id[j];
          else
            detail::unite(parent, mine, id[j]);
        }
        if (mine == 0) {
          mine = static_cast<std::int32_t>(parent.size());
          parent.push_back(mine);
        }
        id[i] = mine;
      }

  // Roots to final ids, numbered by first voxel (a root is the smallest id of its set, and
  // provisional ids grow in raster order).
  std::vector<std::int32_t> final_id(parent.size(), 0);
  std::int32_t next = 0;
  for (std::size_t p = 1; p < parent.size(); ++p) {
    const std::int32_t r = detail::find_root(parent, static_cast<std::int32_t>(p));
    if (r == static_cast<std::int32_t>(p)) final_id[p] = ++next;
  }
  for (std::size_t p = 1; p < parent.size(); ++p)
    final_id[p] = final_id[static_cast<std::size_t>(detail::find_root(parent, static_cast<std::int32_t>(p)))];
  out.sizes.assign(static_cast<std::size_t>(next) + 1, 0);
  for (std::int64_t i = 0; i < c.numel(); ++i) {
    id[i] = final_id[static_cast<std::size_t>(id[i])];
    ++out.sizes[static_cast<std::size_t>(id[i])];
  }
  return out;
}

namespace detail {

/// seg with the voxels of components not `kept` set to 0.
template <class L>
Tensor<L, Cpu> keep_components(const Tensor<L, Cpu>& seg, const Components& comps, const std::vector<char>& kept) {
  const Tensor<L, Cpu> c = seg.contiguous();
  auto out = Tensor<L, Cpu>::empty(c.shape());
  parallel_for(0, c.numel(), 1 << 15, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i)
      out.data()[i] = kept[static_cast<std::size_t>(comps.ids.data()[i])] ? c.data()[i] : L(0);
  });
  return out;
}

}  // namespace detail

template <class L>
Tensor<L, Cpu> keep_largest_component(const Tensor<L, Cpu>& seg, Connectivity connectivity, ComponentsOf of) {
  const Components comps = connected_components(seg, connectivity, of);
  // The label of each component (its first voxel's), to pick the largest per label.
  std::vector<L> label_of(comps.sizes.size(), L(0));
  std::vector<char> seen(comps.sizes.size(), 0);
  const Tensor<L, Cpu> c = seg.contiguous();
  for (std::int64_t i = 0; i < c.numel(); ++i) {
    const auto k = static_cast<std::size_t>(comps.ids.data()[i]);
    if (k != 0 && !seen[k]) {
      seen[k] = 1;
      label_of[k] = of == ComponentsOf::foreground ? L(1) : c.data()[i];
    }
  }
  std::vector<std::pair<L, std::size_t>> best;  // label -> largest component
  for (std::size_t k = 1; k < comps.sizes.size(); ++k) {
    auto it = std::find_if(best.begin(), best.end(), [&](const auto& b) { return b.first == label_of[k]; });
    if (it == best.end())
      best.emplace_back(label_of[k], k);
    else if (comps.sizes[k] > comps.sizes[it->second])
      it->second = k;
  }
  std::vector<char> kept(comps.sizes.size(), 0);
  kept[0] = 1;
  for (const auto& b : best) kept[b.second] = 1;
  return detail::keep_components(c, comps, kept);
}

template <class L>
Tensor<L, Cpu> remove_small_components(const Tensor<L, Cpu>& seg, std::int64_t min_voxels, Connectivity connectivity,
                                       ComponentsOf of) {
  const Components comps = connected_components(seg, connectivity, of);
  std::vector<char> kept(comps.sizes.size(), 0);
  kept[0] = 1;
  for (std::size_t k = 1; k < comps.sizes.size(); ++k) kept[k] = comps.sizes[k] >= min_voxels;
  return detail::keep_components(seg, comps, kept);
}

}  // namespace medseg::preprocess
