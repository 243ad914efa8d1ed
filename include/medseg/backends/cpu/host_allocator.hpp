// The caching host allocator behind Cpu::allocate. Freed memory is kept and handed out again,
// so a training step, which frees and reallocates the same sizes every iteration, touches no
// fresh pages: first touch of a fresh 4 KiB page costs 2-3 us here, and glibc returns large
// blocks to the OS on every free.
//
// Two pools. Small requests (under 512 KiB) use size classes with per-class free lists. Large
// ones (activations, reorder copies, scratchpads: the bulk of the bytes) are carved best-fit out
// of big reserved address ranges ("segments") and coalesce with their free neighbours when
// freed, so a freed 64 MiB block can serve a 16 MiB and a 48 MiB request later, rather than
// waiting for another 64 MiB one. A size-class cache kept a block per class that had ever been
// used, and the resident set grew to the sum of every class's own peak; with coalescing it
// stays close to the peak of the bytes actually in use.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

#include "../../core/error.hpp"

namespace medseg {

/// Counters of the host cache, in bytes (blocks are counted at their rounded size).
struct HostCacheStats {
  std::size_t in_use = 0;      // handed out and not yet returned
  std::size_t cached = 0;      // returned, kept for reuse and resident (touched)
  std::size_t peak_in_use = 0;
  std::size_t limit = 0;       // cached bytes beyond this go back to the OS
  std::uint64_t hits = 0;      // requests served from memory touched before
  std::uint64_t misses = 0;    // requests that needed fresh memory from the OS
};

/// Thread-safe cache of 64-byte-aligned host blocks.
/// - Small requests (< large_threshold) are rounded up to a class: 64 bytes, then 4 classes
///   per power of two (at most 25% slack); a block is reused only for its own class.
/// - Large requests are rounded up to 64 KiB (at most 12.5% slack) and served best-fit (the
///   smallest free range that holds them, lowest address first) from segments: address
///   ranges reserved with mmap, advised as transparent huge pages, whose pages become
///   resident only when first written. Freed blocks merge with free neighbours. The cache
///   remembers which 64 KiB granules have been handed out, so `cached` counts resident free
///   bytes, hits and misses say whether a request touched fresh memory, and allocate_zeroed
///   need not write zeros over pages the OS has never handed out (they read as zero); zeroed
///   blocks are carved from the top of their range, so they gather apart from written ones.
/// - Cached bytes are capped (a quarter of physical memory, or MEDSEG_HOST_CACHE_LIMIT_MB):
///   beyond it, freed memory goes back to the OS (madvise(MADV_DONTNEED) for large blocks).
///   MEDSEG_HOST_CACHE=0 turns caching off, and AddressSanitizer builds never cache, so that
///   use-after-free stays detectable: every block then comes from posix_memalign.
/// The process-wide instance (host_allocator()) is never destroyed, so tensors that outlive
/// main's statics still free safely.
class HostAllocator {
 public:
  static constexpr std::size_t alignment = 64;
  static constexpr std::size_t huge_page = std::size_t{2} << 20;
  /// Requests of this size and more are carved out of segments.
  static constexpr std::size_t large_threshold = std::size_t{512} << 10;
  /// Large blocks are multiples of this, aligned to it.
  static constexpr std::size_t granule = std::size_t{64} << 10;

  HostAllocator();
  ~HostAllocator();
  HostAllocator(const HostAllocator&) = delete;
  HostAllocator& operator=(const HostAllocator&) = delete;

  /// At least `bytes` (>= 1 used when 0) 64-byte-aligned bytes; throws Error when out of memory.
  void* allocate(std::size_t bytes);
  /// As allocate, with every byte zero. Pages of a large block that were never handed out
  /// are zero already and are not written, so they stay off the resident set until used
  /// (a model's gradient buffers cost no memory in a process that only runs inference).
  void* allocate_zeroed(std::size_t bytes);
  /// Returns a block from allocate(bytes) or allocate_zeroed(bytes) with the same `bytes`.
  void deallocate(void* p, std::size_t bytes) noexcept;
  /// Gives every cached block back to the OS.
  void trim() noexcept;
  HostCacheStats stats() const;
  /// Restarts peak_in_use from the bytes in use now (to measure one phase's peak).
  void reset_peak();
  bool caching() const { return caching_; }
  void set_limit(std::size_t bytes);

  /// The size a request of `bytes` is served and counted with.
  static std::size_t class_bytes(std::size_t bytes) {
    bytes = std::max<std::size_t>(bytes, 1);
    return bytes >= large_threshold ? round_up(bytes, granule) : class_size(class_of(bytes));
  }

 private:
  static constexpr int classes = 1 + 4 * 64;  // class 0, then 4 per power of two
  static int class_of(std::size_t bytes);
  static std::size_t class_size(int c);
  static std::size_t round_up(std::size_t v, std::size_t m) { return (v + m - 1) / m * m; }
  static void* os_allocate(std::size_t bytes);

  /// A reserved address range; bit g of `touched` is set once granule g has been handed out
  /// (and may be resident), cleared when it is given back to the OS.
  struct Segment {
    char* base = nullptr;
    std::size_t bytes = 0;
    std::vector<std::uint64_t> touched;
  };
  void* allocate_large(std::size_t size, bool zeroed);
  void deallocate_large(char* p, std::size_t size) noexcept;
  void add_segment(std::size_t size);
  Segment* segment_of(const char* p);
  bool is_segment_start(const char* p) const;
  void insert_free(char* p, std::size_t size);
  void erase_free(std::map<char*, std::size_t>::iterator it);
  /// Calls f(first, count) for each run of granules of [p, p + size) whose touched bit is `set`.
  template <class F>
  void for_each_run(Segment& s, char* p, std::size_t size, bool set, F&& f);
  /// Marks [p, p + size) touched; returns the bytes that were not before.
  std::size_t mark_touched(char* p, std::size_t size);
  /// Gives the touched huge pages inside the free range [p, p + size) back to the OS.
  void release(char* p, std::size_t size) noexcept;
  /// Releases free memory until cached bytes fit the limit: `first` (a range just freed) first.
  void enforce_limit(char* first, std::size_t first_size) noexcept;
  std::size_t cached_locked() const { return small_cached_ + (resident_large_ - in_use_large_); }

  mutable std::mutex mutex_;
  std::array<std::vector<void*>, classes> free_{};
  std::vector<Segment> segments_;
  std::map<char*, std::size_t> free_by_addr_;              // free large ranges: start -> bytes
  std::set<std::pair<std::size_t, char*>> free_by_size_;  // the same, ordered for best fit
  std::size_t small_cached_ = 0, in_use_large_ = 0, resident_large_ = 0, reserve_ = 0;
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
  const std::size_t physical = pages > 0 && page > 0 ? static_cast<std::size_t>(pages) * static_cast<std::size_t>(page)
                                                     : std::size_t{16} << 30;
  stats_.limit = physical / 4;
  // Address space only: pages are backed when written. One segment the size of physical
  // memory normally holds a whole process's large blocks, so they all can coalesce.
  reserve_ = std::max(round_up(physical, huge_page), std::size_t{1} << 30);
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

inline HostAllocator::~HostAllocator() {
  // Only instances other than host_allocator()'s are destroyed (tests): their blocks must all
  // have come back.
  trim();
  for (const Segment& s : segments_) munmap(s.base, s.bytes);
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
  const std::size_t size = class_bytes(bytes);
  if (caching_ && size >= large_threshold) return allocate_large(size, false);
  if (caching_) {
    const int c = class_of(std::max<std::size_t>(bytes, 1));
    std::lock_guard lock(mutex_);
    auto& list = free_[static_cast<std::size_t>(c)];
    if (!list.empty()) {
      void* p = list.back();
      list.pop_back();
      small_cached_ -= size;
      stats_.in_use += size;
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

inline void* HostAllocator::allocate_zeroed(std::size_t bytes) {
  const std::size_t size = class_bytes(bytes);
  if (caching_ && size >= large_threshold) return allocate_large(size, true);
  void* p = allocate(bytes);
  std::memset(p, 0, size);
  return p;
}

inline void HostAllocator::deallocate(void* p, std::size_t bytes) noexcept {
  if (!p) return;
  const std::size_t size = class_bytes(bytes);
  if (caching_ && size >= large_threshold) {
    deallocate_large(static_cast<char*>(p), size);
    return;
  }
  {
    std::lock_guard lock(mutex_);
    stats_.in_use -= size;
    if (caching_ && cached_locked() + size <= stats_.limit) {
      try {
        free_[static_cast<std::size_t>(class_of(std::max<std::size_t>(bytes, 1)))].push_back(p);
        small_cached_ += size;
        return;
      } catch (...) {
        // No room to remember the block: give it back instead.
      }
    }
  }
  std::free(p);
}

// -- Large blocks --------------------------------------------------------------------------

inline HostAllocator::Segment* HostAllocator::segment_of(const char* p) {
  for (Segment& s : segments_)
    if (p >= s.base && p < s.base + s.bytes) return &s;
  return nullptr;
}

inline bool HostAllocator::is_segment_start(const char* p) const {
  for (const Segment& s : segments_)
    if (s.base == p) return true;
  return false;
}

inline void HostAllocator::insert_free(char* p, std::size_t size) {
  free_by_addr_.emplace(p, size);
  free_by_size_.emplace(size, p);
}

inline void HostAllocator::erase_free(std::map<char*, std::size_t>::iterator it) {
  free_by_size_.erase({it->second, it->first});
  free_by_addr_.erase(it);
}

inline void HostAllocator::add_segment(std::size_t size) {
  const std::size_t needed = round_up(size, huge_page);
  // Reserve a huge-page-aligned range: map a huge page more and trim both ends.
  auto map = [](std::size_t bytes) -> char* {
    void* raw = mmap(nullptr, bytes + huge_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) return nullptr;
    char* r = static_cast<char*>(raw);
    char* base = reinterpret_cast<char*>(round_up(reinterpret_cast<std::uintptr_t>(r), huge_page));
    if (base > r) munmap(r, static_cast<std::size_t>(base - r));
    if (char* end = r + bytes + huge_page; end > base + bytes) munmap(base + bytes, static_cast<std::size_t>(end - (base + bytes)));
    return base;
  };
  std::size_t bytes = std::max(needed, reserve_);
  char* base = map(bytes);
  if (!base && bytes > needed) base = map(bytes = needed);  // strict overcommit or a small address space
  if (!base)
    throw Error{{.where = "Cpu::allocate", .field = "bytes", .expected = "memory available",
                 .actual = std::to_string(size) + " bytes could not be reserved"}};
#if defined(MADV_HUGEPAGE)
  madvise(base, bytes, MADV_HUGEPAGE);  // advice: one fault per 2 MiB when first touched
#endif
  Segment s;
  s.base = base;
  s.bytes = bytes;
  s.touched.assign((bytes / granule + 63) / 64, 0);
  segments_.push_back(std::move(s));
  insert_free(base, bytes);
}

template <class F>
void HostAllocator::for_each_run(Segment& s, char* p, std::size_t size, bool set, F&& f) {
  const std::size_t first = static_cast<std::size_t>(p - s.base) / granule, end = first + size / granule;
  auto bit = [&](std::size_t g) { return ((s.touched[g / 64] >> (g % 64)) & 1u) != 0; };
  for (std::size_t g = first; g < end;) {
    if (bit(g) != set) {
      ++g;
      continue;
    }
    std::size_t e = g + 1;
    while (e < end && bit(e) == set) ++e;
    f(g, e - g);
    g = e;
  }
}

inline std::size_t HostAllocator::mark_touched(char* p, std::size_t size) {
  Segment& s = *segment_of(p);
  std::size_t fresh = 0;
  for_each_run(s, p, size, false, [&](std::size_t g, std::size_t n) {
    for (std::size_t i = g; i < g + n; ++i) s.touched[i / 64] |= std::uint64_t{1} << (i % 64);
    fresh += n * granule;
  });
  resident_large_ += fresh;
  return fresh;
}

inline void HostAllocator::release(char* p, std::size_t size) noexcept {
  Segment* s = segment_of(p);
  if (!s) return;
  // Whole huge pages only (segments start on one): memory given back in 2 MiB pieces comes
  // back as one huge-page fault, where a partly released huge page is split into 4 KiB pages
  // and refills with 512 faults.
  constexpr std::size_t per_page = huge_page / granule;
  const std::size_t first = round_up(static_cast<std::size_t>(p - s->base), huge_page) / granule;
  const std::size_t end = static_cast<std::size_t>(p - s->base + size) / huge_page * per_page;
  for (std::size_t g = first; g + per_page <= end; g += per_page) {
    std::size_t touched = 0;
    for (std::size_t i = g; i < g + per_page; ++i) touched += (s->touched[i / 64] >> (i % 64)) & 1u;
    if (touched == 0) continue;
    // The pages read as zero afterwards; if the advice fails they simply stay resident.
    if (madvise(s->base + g * granule, huge_page, MADV_DONTNEED) != 0) continue;
    for (std::size_t i = g; i < g + per_page; ++i) s->touched[i / 64] &= ~(std::uint64_t{1} << (i % 64));
    resident_large_ -= touched * granule;
  }
}

inline void HostAllocator::enforce_limit(char* first, std::size_t first_size) noexcept {
  if (cached_locked() <= stats_.limit) return;
  if (first) release(first, first_size);
  for (auto it = free_by_size_.rbegin(); it != free_by_size_.rend() && cached_locked() > stats_.limit; ++it)
    release(it->second, it->first);
}

inline void* HostAllocator::allocate_large(std::size_t size, bool zeroed) {
  char* p = nullptr;
  std::vector<std::pair<char*, std::size_t>> dirty;  // touched runs to clear when zeroed
  {
    std::lock_guard lock(mutex_);
    auto it = free_by_size_.lower_bound({size, nullptr});
    if (it == free_by_size_.end()) {
      add_segment(size);
      it = free_by_size_.lower_bound({size, nullptr});
    }
    const std::size_t have = it->first;
    char* const start = it->second;
    erase_free(free_by_addr_.find(start));
    if (zeroed) {
      // From the range's top: zero blocks (gradients, optimizer state) then gather at the far
      // end of the untouched space, apart from the blocks written at once (weights). Interleaved,
      // every huge page shared with a written neighbour would make its zero part resident.
      p = start + (have - size);
      if (have > size) insert_free(start, have - size);
    } else {
      p = start;
      if (have > size) insert_free(p + size, have - size);
    }
    Segment& segment = *segment_of(p);
    if (zeroed)
      for_each_run(segment, p, size, true,
                   [&](std::size_t g, std::size_t n) { dirty.emplace_back(segment.base + g * granule, n * granule); });
    const std::size_t fresh = mark_touched(p, size);
    in_use_large_ += size;
    stats_.in_use += size;
    stats_.peak_in_use = std::max(stats_.peak_in_use, stats_.in_use);
    ++(fresh == 0 ? stats_.hits : stats_.misses);
  }
  for (const auto& [q, n] : dirty) std::memset(q, 0, n);
  return p;
}

inline void HostAllocator::deallocate_large(char* p, std::size_t size) noexcept {
  std::lock_guard lock(mutex_);
  in_use_large_ -= size;
  stats_.in_use -= size;
  char* start = p;
  std::size_t bytes = size;
  // Merge with the free neighbours in the same segment.
  if (auto next = free_by_addr_.find(p + size); next != free_by_addr_.end() && !is_segment_start(p + size)) {
    bytes += next->second;
    erase_free(next);
  }
  if (!is_segment_start(p)) {
    auto prev = free_by_addr_.lower_bound(p);
    if (prev != free_by_addr_.begin()) {
      --prev;
      if (prev->first + prev->second == p) {
        start = prev->first;
        bytes += prev->second;
        erase_free(prev);
      }
    }
  }
  try {
    insert_free(start, bytes);
  } catch (...) {
    // Out of memory for the bookkeeping: the range is lost to reuse, never handed out twice.
  }
  enforce_limit(p, size);
}

inline void HostAllocator::trim() noexcept {
  std::array<std::vector<void*>, classes> blocks;
  {
    std::lock_guard lock(mutex_);
    blocks.swap(free_);
    small_cached_ = 0;
    for (const auto& [p, size] : free_by_addr_) release(p, size);
  }
  for (auto& list : blocks)
    for (void* p : list) std::free(p);
}

inline HostCacheStats HostAllocator::stats() const {
  std::lock_guard lock(mutex_);
  HostCacheStats s = stats_;
  s.cached = cached_locked();
  return s;
}

inline void HostAllocator::reset_peak() {
  std::lock_guard lock(mutex_);
  stats_.peak_in_use = stats_.in_use;
}

inline void HostAllocator::set_limit(std::size_t bytes) {
  {
    std::lock_guard lock(mutex_);
    stats_.limit = bytes;
    if (cached_locked() <= bytes) return;
  }
  trim();
}

inline HostAllocator& host_allocator() {
  static HostAllocator* instance = new HostAllocator();  // deliberately never destroyed
  return *instance;
}

}  // namespace medseg
