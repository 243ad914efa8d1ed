// Orientation codes and reorientation without resampling. A code has one letter per index
// axis (i, j, k) naming the patient direction that axis increases towards, as nibabel's
// aff2axcodes and SimpleITK's DICOMOrientImageFilter write it: "RAS" is nibabel's
// canonical orientation, "LPS" is ITK's identity direction.
// Reorienting only permutes and flips axes (and moves the origin to the new first voxel),
// so voxel values are exact and reorienting back restores the original image.
#pragma once

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <string>
#include <string_view>

#include <Eigen/SVD>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "image.hpp"

namespace medseg::io {

/// The orientation code of `g`: for each index axis the closest patient direction. Oblique
/// directions match axes as nibabel's io_orientation (and so as_closest_canonical) does.
std::string orientation_code(const Geometry& g);

/// The same image with its axes permuted and flipped so that orientation_code() of the
/// result is `code` (three letters, one of each pair L/R, P/A, S/I, e.g. "RAS" or "LPS").
/// Channels stay the first axis. world(voxel) is unchanged for every voxel.
template <Element T>
Image<T> reorient(const Image<T>& image, std::string_view code);

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

/// For each index axis: the world axis (0 x, 1 y, 2 z) it follows and whether it runs in
/// the world axis's positive (LPS) direction.
struct AxisMap {
  std::array<int, 3> world{};
  std::array<bool, 3> positive{};
};

inline AxisMap axis_map(const Geometry& g) {
  // nibabel's io_orientation: the closest orthogonal matrix (polar factor U V^T of the SVD,
  // which removes shear), then for axes i, j, k in turn the world axis of largest magnitude,
  // that world axis being taken out of the race for the axes after it.
  Eigen::Matrix3d rs;
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) rs(r, c) = g.direction[3 * r + c];
  for (int c = 0; c < 3; ++c)
    if (rs.col(c).norm() > 0) rs.col(c) /= rs.col(c).norm();
  Eigen::JacobiSVD<Eigen::Matrix3d> svd(rs, Eigen::ComputeFullU | Eigen::ComputeFullV);
  Eigen::Matrix3d q = svd.matrixU() * svd.matrixV().transpose();
  AxisMap m;
  std::array<bool, 3> taken{};
  for (int c = 0; c < 3; ++c) {
    int best = -1;
    for (int r = 0; r < 3; ++r)
      if (!taken[r] && (best < 0 || std::abs(q(r, c)) > std::abs(q(best, c)))) best = r;
    taken[best] = true;
    m.world[c] = best;
    m.positive[c] = q(best, c) >= 0;
    q.row(best).setZero();
  }
  return m;
}

inline AxisMap parse_orientation(std::string_view code) {
  static constexpr std::string_view positive = "LPS", negative = "RAI";
  AxisMap m;
  std::array<bool, 3> seen{};
  bool ok = code.size() == 3;
  for (std::size_t a = 0; ok && a < 3; ++a) {
    const char ch = static_cast<char>(std::toupper(static_cast<unsigned char>(code[a])));
    const auto p = positive.find(ch), n = negative.find(ch);
    const auto w = p != std::string_view::npos ? p : n;
    ok = w != std::string_view::npos && !seen[w];
    if (!ok) break;
    seen[w] = true;
    m.world[a] = static_cast<int>(w);
    m.positive[a] = p != std::string_view::npos;
  }
  require(ok, [&] {
    return ErrorInfo{.where = "reorient", .field = "orientation code",
                     .expected = "three letters, one from each of L/R, P/A, S/I (e.g. RAS, LPS)",
                     .actual = "\"" + std::string(code) + "\""};
  });
  return m;
}

}  // namespace detail

inline std::string orientation_code(const Geometry& g) {
  const auto m = detail::axis_map(g);
  std::string code;
  for (int c = 0; c < 3; ++c) code += (m.positive[c] ? "LPS" : "RAI")[m.world[c]];
  return code;
}

template <Element T>
Image<T> reorient(const Image<T>& image, std::string_view code) {
  const auto target = detail::parse_orientation(code);
  const auto current = detail::axis_map(image.geometry);
  const Tensor<T, Cpu> src = image.voxels.contiguous();
  const int rank = src.rank();
  require(rank == 3 || rank == 4, [&] {
    return ErrorInfo{.where = "reorient", .field = "voxels", .expected = "[D,H,W] or [C,D,H,W]",
                     .actual = src.shape().to_string()};
  });
  const auto n = image.size();  // (i, j, k) extents
  std::array<std::int64_t, 3> old_stride{};  // element stride of index axes i, j, k
  for (int c = 0; c < 3; ++c) old_stride[c] = src.strides()[rank - 1 - c];

  Geometry g = image.geometry;
  std::array<std::int64_t, 3> new_n{}, step{};
  std::int64_t base = 0;
  Vec3 first{};  // old index of the new first voxel
  for (int a = 0; a < 3; ++a) {
    const int c = static_cast<int>(std::find(current.world.begin(), current.world.end(), target.world[a]) -
                                   current.world.begin());
    const bool flip = current.positive[c] != target.positive[a];
    new_n[a] = n[c];
    g.spacing[a] = image.geometry.spacing[c];
    for (int r = 0; r < 3; ++r) g.direction[3 * r + a] = image.geometry.direction[3 * r + c] * (flip ? -1.0 : 1.0);
    step[a] = flip ? -old_stride[c] : old_stride[c];
    if (flip) {
      base += (n[c] - 1) * old_stride[c];
      first[c] = static_cast<double>(n[c] - 1);
    }
  }
  g.origin = image.geometry.index_to_world(first);

  Shape shape = src.shape();
  for (int a = 0; a < 3; ++a) shape[rank - 1 - a] = new_n[a];
  auto out = Tensor<T, Cpu>::empty(shape);
  const std::int64_t channels = rank == 4 ? shape[0] : 1;
  const std::int64_t channel_stride = new_n[0] * new_n[1] * new_n[2];
  const T* in = src.data();
  T* o = out.data();
  parallel_for(0, channels * new_n[2], 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t ck = b; ck < e; ++ck) {
      const std::int64_t ch = ck / new_n[2], k = ck % new_n[2];
      const T* plane = in + ch * channel_stride + base + k * step[2];
      T* dst = o + ch * channel_stride + k * new_n[0] * new_n[1];
      for (std::int64_t j = 0; j < new_n[1]; ++j) {
        const T* row = plane + j * step[1];
        for (std::int64_t i = 0; i < new_n[0]; ++i) *dst++ = row[i * step[0]];
      }
    }
  });
  return Image<T>{out, g};
}

}  // namespace medseg::io
