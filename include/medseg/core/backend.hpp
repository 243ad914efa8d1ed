// The Backend concept: a backend is a tag type with static functions for memory: allocate,
// free, 2-D pitched copies, zeroing. The tags themselves, their memory and their kernels live
// in backends/<name>/ (Cpu in backends/cpu/backend.hpp, Cuda in backends/cuda/backend.hpp),
// found by the backend type; nothing above backends/ names a vendor library.
// Eigen's devices have the same shape: a small struct, chosen where an expression is assigned.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <string_view>

#include "error.hpp"
#include "fwd.hpp"
#include "parallel.hpp"

namespace medseg {

/// Direction of a copy, from the point of view of the backend that performs it.
enum class CopyKind { host_to_host, host_to_device, device_to_host, device_to_device };

/// What a backend offers. Memory is raw bytes; tensors add types and layouts on top.
/// - allocate(n) returns memory aligned to at least 64 bytes, or throws Error (never null).
/// - copy_2d copies `rows` rows of `width` bytes, row starts `dst_pitch`/`src_pitch` bytes
///   apart; it is complete (visible to the host) when it returns unless both sides are on
///   the device, where it is ordered on the backend's current stream.
template <class B>
concept Backend = requires(std::size_t n, void* p, const void* q, CopyKind k) {
  { B::name } -> std::convertible_to<std::string_view>;
  { B::is_host } -> std::convertible_to<bool>;
  { B::allocate(n) } -> std::same_as<void*>;
  { B::deallocate(p, n) } noexcept;
  { B::copy_2d(p, n, q, n, n, n, k) };
  { B::zero(p, n) };
  { B::synchronize() };
};

namespace detail {
/// Copies between any two backends: the device side performs the copy.
template <Backend Dst, Backend Src>
void copy_2d_between(void* dst, std::size_t dst_pitch, const void* src, std::size_t src_pitch, std::size_t width,
                     std::size_t rows) {
  if constexpr (Dst::is_host && Src::is_host)
    Dst::copy_2d(dst, dst_pitch, src, src_pitch, width, rows, CopyKind::host_to_host);
  else if constexpr (Dst::is_host)
    Src::copy_2d(dst, dst_pitch, src, src_pitch, width, rows, CopyKind::device_to_host);
  else if constexpr (Src::is_host)
    Dst::copy_2d(dst, dst_pitch, src, src_pitch, width, rows, CopyKind::host_to_device);
  else {
    static_assert(std::same_as<Dst, Src>, "medseg: copies between two different device backends are not supported");
    Dst::copy_2d(dst, dst_pitch, src, src_pitch, width, rows, CopyKind::device_to_device);
  }
}
}  // namespace detail

}  // namespace medseg
