// The Cpu backend's tag: host memory through the caching host allocator, copies on the thread
// pool. Its kernels are the other headers of this folder, reached through backends/ops.hpp.
// core/tensor.hpp includes this header: Cpu is every Tensor's default backend.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "../../core/backend.hpp"
#include "../../core/error.hpp"
#include "../../core/parallel.hpp"
#include "host_allocator.hpp"

namespace medseg {

/// Host memory; CPU kernels run on the thread pool (core/parallel.hpp).
struct Cpu {
  static constexpr std::string_view name = "cpu";
  static constexpr bool is_host = true;
  /// Every point-wise and per-set backward kernel of this backend may write dx over dy.
  static constexpr bool gradients_in_place = true;
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

}  // namespace medseg
