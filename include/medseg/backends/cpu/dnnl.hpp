// The oneDNN plumbing shared by the CPU ops: one engine, a stream per thread, oneDNN's
// threads kept equal to medseg's (MEDSEG_NUM_THREADS), a thread-safe cache of primitives
// keyed by problem, and scratch memory from the caching host allocator. Nothing outside
// backends/cpu/ includes this header: above it, no code names oneDNN.
#pragma once

#include <dlfcn.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

#include <oneapi/dnnl/dnnl.hpp>
#include <oneapi/dnnl/dnnl_debug.h>

#include "../../core/error.hpp"
#include "../../core/parallel.hpp"
#include "host_allocator.hpp"

namespace medseg::cpu {

/// The CPU engine every primitive is created on.
const dnnl::engine& dnnl_engine();

/// This thread's in-order stream. Streams are per thread so that ops called from several
/// threads at once never share one; primitives themselves are shared.
dnnl::stream& dnnl_stream();

/// Makes oneDNN primitives created or run on this thread use medseg::num_threads() threads,
/// and returns that count. Debian's libdnnl runs on OpenMP (libgomp), whose thread count is
/// per calling thread, so ops call this first each time; it costs a compare when nothing
/// changed. A primitive keeps the count it was created with: cache primitives by it.
int match_dnnl_threads();

/// Runs `body`, turning a dnnl::error into medseg::Error naming `where` (op and shape).
template <class Body>
decltype(auto) with_dnnl_errors(const std::string& where, Body&& body);

/// A block of host memory from the caching allocator, for reorder targets and scratchpads.
class HostScratch {
 public:
  HostScratch() = default;
  explicit HostScratch(std::size_t bytes) : bytes_(bytes), data_(bytes ? host_allocator().allocate(bytes) : nullptr) {}
  ~HostScratch() { host_allocator().deallocate(data_, bytes_); }
  HostScratch(HostScratch&& o) noexcept : bytes_(std::exchange(o.bytes_, 0)), data_(std::exchange(o.data_, nullptr)) {}
  HostScratch& operator=(HostScratch&& o) noexcept {
    std::swap(bytes_, o.bytes_);
    std::swap(data_, o.data_);
    return *this;
  }
  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }

 private:
  std::size_t bytes_ = 0;
  void* data_ = nullptr;
};

/// A thread-safe map from a problem key to its primitives (one Value per key, built once).
/// Creating a oneDNN convolution primitive costs 0.1-10 ms (JIT code generation), which is
/// why ops look theirs up here instead of building one per call.
template <class Key, class Value, class Hash = std::hash<Key>>
class PrimitiveCache {
 public:
  /// The cached value for `key`, made by `make()` (a std::shared_ptr<Value>) on the first
  /// request. Values are never evicted: a network has a few dozen distinct problems.
  template <class Make>
  std::shared_ptr<Value> get(const Key& key, Make&& make) {
    std::lock_guard lock(mutex_);
    auto it = map_.find(key);
    if (it != map_.end()) return it->second;
    std::shared_ptr<Value> value = make();
    map_.emplace(key, value);
    return value;
  }
  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return map_.size();
  }
  void clear() {
    std::lock_guard lock(mutex_);
    map_.clear();
  }

 private:
  mutable std::mutex mutex_;
  std::unordered_map<Key, std::shared_ptr<Value>, Hash> map_;
};

/// Plain float32 memory descriptor with `dims` in `tag` order.
inline dnnl::memory::desc plain_desc(const dnnl::memory::dims& dims, dnnl::memory::format_tag tag) {
  return dnnl::memory::desc(dims, dnnl::memory::data_type::f32, tag);
}

// ----------------------------------------------------------------------------------------
// Implementation

inline const dnnl::engine& dnnl_engine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

inline dnnl::stream& dnnl_stream() {
  thread_local dnnl::stream stream(dnnl_engine());
  return stream;
}

inline int match_dnnl_threads() {
  // libgomp is loaded with libdnnl; looking it up at run time keeps OpenMP out of our link
  // line and off users' compile flags.
  using SetThreads = void (*)(int);
  static const SetThreads set_threads = [] {
    return reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
  }();
  thread_local int current = 0;
  const int wanted = num_threads();
  if (set_threads && current != wanted) {
    set_threads(wanted);
    current = wanted;
  }
  return wanted;
}

template <class Body>
decltype(auto) with_dnnl_errors(const std::string& where, Body&& body) {
  try {
    return std::forward<Body>(body)();
  } catch (const dnnl::error& e) {
    throw Error{{.where = where, .field = "oneDNN", .expected = "a supported problem",
                 .actual = std::string(dnnl_status2str(e.status)), .detail = e.what()}};
  }
}

}  // namespace medseg::cpu
