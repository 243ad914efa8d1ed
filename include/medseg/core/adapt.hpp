// Zero-copy bridges from CPU tensors to xtensor and Eigen, so n-d array work and linear
// algebra use those libraries on our memory. The adaptors are views: they share storage
// and must not outlive the tensor's storage.
//
//   auto x = Tensor<float>::zeros({4, 5});
//   auto xa = as_xtensor(x);           // xt::xarray_adaptor, strides included
//   xt::noalias(xa) = xa * 2.0f;       // assign in place: see below
//   auto m = as_eigen_matrix(x);       // Eigen::Map of a 4x5 row-major matrix
//
// Assign into an adaptor with xt::noalias(xa) = expr. A plain `xa = expr` evaluates into a
// contiguous temporary and copies its storage linearly over the adaptor's, which is only
// right for a contiguous tensor: a channel view would get the wrong voxels.
#pragma once

#include <Eigen/Core>
#include <unsupported/Eigen/CXX11/Tensor>
#include <xtensor/xadapt.hpp>
#include <xtensor/xnoalias.hpp>

#include "tensor.hpp"

namespace medseg {

/// An xtensor view (dynamic rank) of a CPU tensor, with its strides: channel slices work too.
template <class T>
auto as_xtensor(const Tensor<T, Cpu>& t) {
  std::vector<std::size_t> shape = t.shape().to_size_vector();
  std::vector<std::ptrdiff_t> strides(t.strides().begin(), t.strides().end());
  // xtensor sizes an adapted strided buffer by its element count, not by the memory the
  // strides span (it throws "not resizable" otherwise), so numel() is passed.
  return xt::adapt(t.data(), static_cast<std::size_t>(t.numel()), xt::no_ownership(), std::move(shape),
                   std::move(strides));
}

/// An xtensor view of static rank R (faster indexing than the dynamic-rank one).
template <std::size_t R, class T>
auto as_xtensor(const Tensor<T, Cpu>& t) {
  require(t.rank() == static_cast<int>(R) && t.is_contiguous(), [&] {
    return ErrorInfo{.where = "as_xtensor<" + std::to_string(R) + ">", .field = "tensor",
                     .expected = "a contiguous tensor of rank " + std::to_string(R), .actual = t.layout().to_string()};
  });
  std::array<std::size_t, R> shape;
  for (std::size_t i = 0; i < R; ++i) shape[i] = static_cast<std::size_t>(t.shape()[static_cast<int>(i)]);
  return xt::adapt(t.data(), static_cast<std::size_t>(t.numel()), xt::no_ownership(), shape);
}

template <class T>
using EigenRowMajorMap =
    Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, Eigen::Unaligned, Eigen::OuterStride<>>;

/// A rank-2 tensor as a row-major Eigen matrix; a column slice keeps its row stride.
template <class T>
EigenRowMajorMap<T> as_eigen_matrix(const Tensor<T, Cpu>& t) {
  require(t.rank() == 2 && (t.size(1) <= 1 || t.strides()[1] == 1), [&] {
    return ErrorInfo{.where = "as_eigen_matrix", .field = "tensor", .expected = "rank 2 with unit column stride",
                     .actual = t.layout().to_string()};
  });
  const auto outer = t.size(0) > 1 ? t.strides()[0] : t.size(1);
  return EigenRowMajorMap<T>(t.data(), t.size(0), t.size(1), Eigen::OuterStride<>(outer));
}

/// Any contiguous tensor as an Eigen column vector of numel() elements.
template <class T>
Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>> as_eigen_vector(const Tensor<T, Cpu>& t) {
  require(t.is_contiguous(), [&] {
    return ErrorInfo{.where = "as_eigen_vector", .field = "layout", .expected = "a contiguous tensor",
                     .actual = t.layout().to_string()};
  });
  return Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>>(t.data(), t.numel());
}

/// A contiguous tensor as an Eigen::TensorMap of rank R, row-major like ours.
template <int R, class T>
Eigen::TensorMap<Eigen::Tensor<T, R, Eigen::RowMajor>> as_eigen_tensor(const Tensor<T, Cpu>& t) {
  require(t.rank() == R && t.is_contiguous(), [&] {
    return ErrorInfo{.where = "as_eigen_tensor<" + std::to_string(R) + ">", .field = "tensor",
                     .expected = "a contiguous tensor of rank " + std::to_string(R), .actual = t.layout().to_string()};
  });
  std::array<Eigen::Index, R> dims;
  for (int i = 0; i < R; ++i) dims[static_cast<std::size_t>(i)] = t.shape()[i];
  return Eigen::TensorMap<Eigen::Tensor<T, R, Eigen::RowMajor>>(t.data(), dims);
}

}  // namespace medseg
