// The Backend concept and the CPU backend. A backend is a tag type with static functions for
// memory: allocate, free, 2-D pitched copies, zeroing. Kernels live in backends/<name>/ and
// are found by the backend type; nothing above that folder names a vendor library.
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

#include "../backends/cpu/host_allocator.hpp"
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

/// Host memory; CPU kernels run on the thread pool (core/parallel.hpp).
struct Cpu {
  static constexpr std::string_view name = "cpu";
  static constexpr bool is_host = true;
  /// Host buffers are 64-byte aligned: one cache line, one AVX-512 vector.
  static constexpr std::size_t alignment = 64;

  /// Through the caching host allocator (backends/cpu/host_allocator.hpp): blocks are reused
  /// by size class, so steady-state training touches no fresh pages.
  static void* allocate(std::size_t bytes) { return host_allocator().allocate(bytes); }
  /// Zeroed memory; pages the process never used are left for the OS to zero on first write.
  static void* allocate_zeroed(std::size_t bytes) { return host_allocator().allocate_zeroed(bytes); }
  static void deallocate(void* p, std::size_t bytes) noexcept { host_allocator().deallocate(p, bytes); }

  static void copy_2d(void* dst, std::size_t dst_pitch, const void* src, std::size_t src_pitch, std::size_t width,
                      std::size_t rows, CopyKind kind) {
    if (kind != CopyKind::host_to_host)
      throw Error{{.where = "Cpu::copy_2d", .field = "kind", .expected = "host_to_host",
                   .detail = "copies to or from a device are done by that device's backend"}};
    if (width == 0 || rows == 0) return;
    auto* d = static_cast<char*>(dst);
    auto* s = static_cast<const char*>(src);
    // Large copies use every thread: one core alone does not saturate memory bandwidth.
    constexpr std::int64_t piece = 1 << 20;
    if (dst_pitch == width && src_pitch == width) {
      const auto n = static_cast<std::int64_t>(width * rows);
      parallel_for(0, (n + piece - 1) / piece, 4, [&](std::int64_t b, std::int64_t e) {
        const std::int64_t end = std::min(n, e * piece);
        std::memcpy(d + b * piece, s + b * piece, static_cast<std::size_t>(end - b * piece));
      });
      return;
    }
    const auto grain = std::max<std::int64_t>(1, piece / static_cast<std::int64_t>(width));
    parallel_for(0, static_cast<std::int64_t>(rows), grain, [&](std::int64_t b, std::int64_t e) {
      for (auto r = static_cast<std::size_t>(b); r < static_cast<std::size_t>(e); ++r)
        std::memcpy(d + r * dst_pitch, s + r * src_pitch, width);
    });
  }
  static void zero(void* p, std::size_t bytes) { std::memset(p, 0, bytes); }
  static void synchronize() {}
};

static_assert(Backend<Cpu>);

namespace detail {
/// Copies between any two backends: the device side performs the copy.
template <Backend Dst, Backend Src>
void copy_2d_between(void* dst, std::size_t dst_pitch, const void* src, std::size_t src_pitch, std::size_t width,
                     std::size_t rows) {
  if constexpr (Dst::is_host && Src::is_host)
    Cpu::copy_2d(dst, dst_pitch, src, src_pitch, width, rows, CopyKind::host_to_host);
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
