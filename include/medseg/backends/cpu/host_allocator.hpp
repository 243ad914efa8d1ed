// The caching host allocator behind Cpu::allocate. Freed blocks go to per-size-class free
// lists and come back on the next request of that class, so a training step, which frees and
// reallocates the same sizes every iteration, touches no fresh pages: first touch of a fresh
// 4 KiB page costs 2-3 us here, and glibc returns large blocks to the OS on every free.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

#include "../../core/error.hpp"

namespace medseg {

/// Counters of the host cache, in bytes (blocks are counted at their size-class size).
struct HostCacheStats {
  std::size_t in_use = 0;      // handed out and not yet returned
  std::size_t cached = 0;      // returned and kept for reuse
  std::size_t peak_in_use = 0;
  std::size_t limit = 0;       // cached bytes beyond this go back to the OS
  std::uint64_t hits = 0;      // requests served from the cache
  std::uint64_t misses = 0;    // requests that went to the OS
};

/// Thread-safe size-class cache of 64-byte-aligned host blocks.
/// - Sizes are rounded up to a class: 64 bytes, then 4 classes per power of two (at most 25%
///   slack). A block is reused only for requests of its own class.
/// - Blocks of 2 MiB and more are 2 MiB aligned and advised as transparent huge pages: one
///   fault per 2 MiB instead of 512 when they are first touched.
/// - A request of 2 MiB or more that finds its class empty takes a cached block of one of the
///   next `upgrade_classes` classes (at most twice its size) before asking the OS: a network's
///   tensors come in many sizes whose peaks do not coincide, so an idle larger block serves
///   instead of growing the resident set (this cut a DynamicUNet forward's peak RSS by ~30%).
/// - Cached bytes are capped (a quarter of physical memory, or MEDSEG_HOST_CACHE_LIMIT_MB);
///   MEDSEG_HOST_CACHE=0 turns caching off, and AddressSanitizer builds never cache, so that
///   use-after-free stays detectable.
/// The process-wide instance (host_allocator()) is never destroyed, so tensors that outlive
/// main's statics still free safely.
class HostAllocator {
 public:
  static constexpr std::size_t alignment = 64;
  static constexpr std::size_t huge_page = std::size_t{2} << 20;
  /// How many classes above its own a large request may take a cached block from (4: 2x).
  static constexpr int upgrade_classes = 4;

  HostAllocator();
  HostAllocator(const HostAllocator&) = delete;
  HostAllocator& operator=(const HostAllocator&) = delete;

  /// At least `bytes` (>= 1 used when 0) 64-byte-aligned bytes; throws Error when out of memory.
  void* allocate(std::size_t bytes);
  /// Returns a block from allocate(bytes) with the same `bytes`.
  void deallocate(void* p, std::size_t bytes) noexcept;
  /// Gives every cached block back to the OS.
  void trim() noexcept;
  HostCacheStats stats() const;
  bool caching() const { return caching_; }
  void set_limit(std::size_t bytes);

  /// The size-class size a request of `bytes` is served with.
  static std::size_t class_bytes(std::size_t bytes) { return class_size(class_of(bytes)); }

 private:
  static constexpr int classes = 1 + 4 * 64;  // class 0, then 4 per power of two
  static int class_of(std::size_t bytes);
  static std::size_t class_size(int c);
  static void* os_allocate(std::size_t bytes);

  mutable std::mutex mutex_;
  std::array<std::vector<void*>, classes> free_{};
  std::unordered_map<void*, int> upgraded_;  // blocks handed out above their request's class
  HostCacheStats stats_{};
  bool caching_ = true;
};

/// The process-wide host cache.
HostAllocator& host_allocator();

// ----------------------------------------------------------------------------------------
// Implementation

inline int HostAllocator::class_of(std::size_t bytes) {
  if (bytes <= alignment) return 0;
  // Class c >= 1 covers (size(c-1), size(c)]; sizes are 64 * 2^(q) * (4 + r) / 4.
  const std::size_t units = (bytes + alignment - 1) / alignment;  // >= 2
  const int top = std::bit_width(units - 1) - 1;                  // floor(log2(units - 1))
  const std::size_t base = std::size_t{1} << top;
  const std::size_t quarter = std::max<std::size_t>(1, base / 4);
  const std::size_t r = (units - 1 - base) / quarter;  // 0..3
  return 1 + 4 * top + static_cast<int>(r);
}

inline std::size_t HostAllocator::class_size(int c) {
  if (c == 0) return alignment;
  const int top = (c - 1) / 4;
  const std::size_t r = static_cast<std::size_t>((c - 1) % 4);
  const std::size_t base = std::size_t{1} << top;
  const std::size_t quarter = std::max<std::size_t>(1, base / 4);
  return (base + (r + 1) * quarter) * alignment;
}

inline HostAllocator::HostAllocator() {
#if defined(__SANITIZE_ADDRESS__)
  caching_ = false;
#endif
  if (const char* env = std::getenv("MEDSEG_HOST_CACHE"); env && std::string(env) == "0") caching_ = false;
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  stats_.limit = pages > 0 && page > 0 ? static_cast<std::size_t>(pages) * static_cast<std::size_t>(page) / 4
                                       : std::size_t{4} << 30;
  if (const char* env = std::getenv("MEDSEG_HOST_CACHE_LIMIT_MB"); env && *env) {
    char* end = nullptr;
    const long long mb = std::strtoll(env, &end, 10);
    require(*end == '\0' && mb >= 0, [&] {
      return ErrorInfo{.where = "environment", .field = "MEDSEG_HOST_CACHE_LIMIT_MB",
                       .expected = "a non-negative number of MiB", .actual = "\"" + std::string(env) + "\""};
    });
    stats_.limit = static_cast<std::size_t>(mb) << 20;
  }
}

inline void* HostAllocator::os_allocate(std::size_t bytes) {
  // Only the start is rounded to a huge page; the tail of a large block uses small pages.
  const std::size_t align = bytes >= huge_page ? huge_page : alignment;
  void* p = nullptr;
  if (posix_memalign(&p, align, bytes) != 0 || !p)
    throw Error{{.where = "Cpu::allocate", .field = "bytes", .expected = "memory available",
                 .actual = std::to_string(bytes) + " bytes could not be allocated"}};
#if defined(MADV_HUGEPAGE)
  if (align == huge_page) madvise(p, bytes / huge_page * huge_page, MADV_HUGEPAGE);  // advice: failure is harmless
#endif
  return p;
}

inline void* HostAllocator::allocate(std::size_t bytes) {
  const int c = class_of(std::max<std::size_t>(bytes, 1));
  const std::size_t size = class_size(c);
  if (caching_) {
    std::lock_guard lock(mutex_);
    auto& list = free_[static_cast<std::size_t>(c)];
    if (!list.empty()) {
      void* p = list.back();
      list.pop_back();
      stats_.cached -= size;
      stats_.in_use += size;
      stats_.peak_in_use = std::max(stats_.peak_in_use, stats_.in_use);
      ++stats_.hits;
      return p;
    }
    if (size >= huge_page)
      for (int u = c + 1; u <= std::min(c + upgrade_classes, classes - 1); ++u) {
        auto& larger = free_[static_cast<std::size_t>(u)];
        if (larger.empty()) continue;
        void* p = larger.back();
        const std::size_t usize = class_size(u);
        try {
          upgraded_.emplace(p, u);
        } catch (...) {
          break;  // cannot remember it: leave the block cached and ask the OS instead
        }
        larger.pop_back();
        stats_.cached -= usize;
        stats_.in_use += usize;
        stats_.peak_in_use = std::max(stats_.peak_in_use, stats_.in_use);
        ++stats_.hits;
        return p;
      }
  }
  void* p = os_allocate(size);
  std::lock_guard lock(mutex_);
  stats_.in_use += size;
  stats_.peak_in_use = std::max(stats_.peak_in_use, stats_.in_use);
  ++stats_.misses;
  return p;
}

inline void HostAllocator::deallocate(void* p, std::size_t bytes) noexcept {
  if (!p) return;
  int c = class_of(std::max<std::size_t>(bytes, 1));
  {
    std::lock_guard lock(mutex_);
    if (!upgraded_.empty())
      if (const auto it = upgraded_.find(p); it != upgraded_.end()) {
        c = it->second;
        upgraded_.erase(it);
      }
    const std::size_t size = class_size(c);
    stats_.in_use -= size;
    if (caching_ && stats_.cached + size <= stats_.limit) {
      try {
        free_[static_cast<std::size_t>(c)].push_back(p);
        stats_.cached += size;
        return;
      } catch (...) {
        // No room to remember the block: give it back instead.
      }
    }
  }
  std::free(p);
}

inline void HostAllocator::trim() noexcept {
  std::array<std::vector<void*>, classes> blocks;
  {
    std::lock_guard lock(mutex_);
    blocks.swap(free_);
    stats_.cached = 0;
  }
  for (auto& list : blocks)
    for (void* p : list) std::free(p);
}

inline HostCacheStats HostAllocator::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

inline void HostAllocator::set_limit(std::size_t bytes) {
  {
    std::lock_guard lock(mutex_);
    stats_.limit = bytes;
    if (stats_.cached <= bytes) return;
  }
  trim();
}

inline HostAllocator& host_allocator() {
  static HostAllocator* instance = new HostAllocator();  // deliberately never destroyed
  return *instance;
}

}  // namespace medseg
