// The training data loader: worker threads load cases (through an in-memory cache with a
// byte budget), augment them with a composed transform and collate batches [N,C,D,H,W]
// into a bounded prefetch queue, forever (iteration-based training). Batch b is a pure
// function of (seed, b): every sample draws from its own counter-based stream keyed by
// (epoch, case), so the batches are the same on any number of workers.
//
// Loader<D, T, L, Cuda> (include data/cuda.hpp) augments and collates on the GPU instead:
// the workers still decode and cache cases in host memory and stage each sample for upload;
// next() uploads, augments and collates on the calling thread's current stream, drawing the
// same random numbers as the CPU loader, so its batch b equals the CPU loader's batch b
// (labels exactly, images to the GPU kernels' rounding; backends/cuda/augment.hpp).
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <exception>
#include <iterator>
#include <list>
#include <memory>
#include <mutex>
#include <numeric>
#include <set>
#include <string>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/rng.hpp"
#include "../core/tensor.hpp"
#include "../transforms/concepts.hpp"
#include "dataset.hpp"

namespace medseg::data {

/// Loader settings; the defaults suit a GPU fed with 3-D patches.
struct LoaderOptions {
  std::int64_t batch_size = 2;    // nnU-Net 3d_fullres
  int workers = 2;                // threads that augment; 0 prepares batches on the caller's thread
  std::uint64_t seed = 0;
  int prefetch = 4;               // batches made ahead of the consumer (ready or in the works)
  bool shuffle = true;            // a fresh permutation of the cases each epoch
  std::size_t cache_bytes = 0;    // decoded cases kept in memory (0: load every time)
};

/// One collated batch. image [N,C,D,H,W] float; label [N,1,D,H,W] (undefined when the
/// dataset has no labels), the layout losses accept (loss/target.hpp). On backend B: the
/// host for the CPU loader, the GPU for Loader<D, T, L, Cuda>.
template <class L = LabelValue, class B = Cpu>
struct Batch {
  Tensor<float, B> image;
  Tensor<L, B> label;
  std::uint64_t number = 0;            // b: the b-th batch since the start
  std::uint64_t epoch = 0;
  std::vector<std::size_t> cases;      // dataset index of each sample
};

/// Samples of equal shape stacked along a new batch axis, on the samples' backend (device
/// copies ordered on the current stream). Throws Error naming the sample whose image or
/// label shape differs from the first's.
template <class L, class B>
Batch<L, B> collate(const std::vector<transforms::BasicSample<L, B>>& samples);

namespace detail {
/// How a device loader's workers hand a host sample to next(): stage() runs on a worker
/// thread, upload() on the consumer's, on its current stream. Each device backend defines it
/// (data/cuda.hpp for Cuda); the CPU loader has no use for it.
template <class B, class L>
struct Staging {
  static_assert(std::is_void_v<B>, "medseg: a Loader on a GPU backend needs its device mode: "
                                   "#include <medseg/data/cuda.hpp> and link medseg::cuda");
};
/// On the host nothing is staged: the workers augment, and collate the batch themselves.
template <class L>
struct Staging<Cpu, L> {
  using Staged = transforms::BasicSample<L>;
};

/// A host sample copied to backend B, synchronously: for batch(b), off the prefetch path.
template <class B, class L>
transforms::BasicSample<L, B> upload(const transforms::BasicSample<L>& s) {
  transforms::BasicSample<L, B> out;
  out.image = s.image.template to<B>();
  if (s.label.defined()) out.label = s.label.template to<B>();
  return out;
}
}  // namespace detail

/// Decoded cases as samples, least recently used dropped past `budget` bytes. Entries are
/// shared, never copied: transforms never write the storage of their input.
template <class L>
class SampleCache {
 public:
  explicit SampleCache(std::size_t budget) : budget_(budget) {}
  std::shared_ptr<const transforms::BasicSample<L>> find(std::size_t i);
  void insert(std::size_t i, std::shared_ptr<const transforms::BasicSample<L>> sample);
  /// Entry i, made by `load()` on a miss. Workers asking for a case another worker is
  /// loading wait for it instead of decoding it again: each case is read once while it fits.
  template <class F>
  std::shared_ptr<const transforms::BasicSample<L>> get(std::size_t i, F&& load);
  std::size_t bytes() const;

 private:
  using Entry = std::pair<std::size_t, std::shared_ptr<const transforms::BasicSample<L>>>;
  static std::size_t bytes_of(const transforms::BasicSample<L>& s) {
    return s.image.nbytes() + (s.label.defined() ? s.label.nbytes() : 0);
  }
  std::size_t budget_;
  mutable std::mutex mutex_;
  std::list<Entry> entries_;  // most recent first
  std::unordered_map<std::size_t, typename std::list<Entry>::iterator> index_;
  std::size_t used_ = 0;
  std::set<std::size_t> loading_;  // cases a worker is decoding now
  std::condition_variable loaded_;
};

/// The loader. D is any data::Dataset, T any transform (usually a Compose); L the label
/// element type of the batches; B where samples are augmented and batches collated: Cpu, or
/// Cuda with data/cuda.hpp (then T needs the GPU version of each of its transforms).
///   data::Loader loader{train, transforms::nnunet_3d({128, 128, 128}), {.batch_size = 2, .workers = 4}};
///   for (int it = 0; it < 1000; ++it) { auto batch = loader.next(); ... }
///   auto gpu = data::make_loader<Cuda>(train, augmentation, {.batch_size = 2});  // Batch<LabelValue, Cuda>
template <Dataset D, class T, class L = LabelValue, class B = Cpu>
class Loader {
  static_assert(transforms::Transform<T, L, B>,
                "medseg: Loader needs a transform with apply(BasicSample<L, B>&, RandomStream&)");
  static constexpr bool on_host = std::is_same_v<B, Cpu>;

 public:
  Loader(D dataset, T transform, LoaderOptions options = {});
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  /// The next batch, waiting for the workers if none is ready. Rethrows (as Error) the first
  /// failure a worker met, naming the case. On a device, its samples are augmented now, on
  /// the calling thread's current stream; a failure there is thrown from this call, and the
  /// next call goes on with the following batch.
  Batch<L, B> next();
  /// Batch `b`, computed now on the calling thread: what next() returns as its b-th batch.
  Batch<L, B> batch(std::uint64_t b) const;
  std::uint64_t batches_per_epoch() const { return batches_per_epoch_; }
  const LoaderOptions& options() const { return options_; }
  std::size_t cached_bytes() const { return cache_.bytes(); }

  /// The random stream of case `index` in epoch `epoch`.
  RandomStream sample_stream(std::uint64_t epoch, std::size_t index) const {
    return RandomStream(options_.seed, 0x6c6f6164ull).substream(epoch).substream(index);
  }
  /// The order of the cases in epoch `epoch`: a Fisher-Yates shuffle from the seed.
  std::vector<std::size_t> epoch_order(std::uint64_t epoch) const;

 private:
  using Sample = transforms::BasicSample<L, B>;
  /// What a worker makes of one sample: augmented on the host, or staged for next() to upload.
  using Made = typename detail::Staging<B, L>::Staged;

  transforms::BasicSample<L> load_sample(std::size_t index) const;
  /// Case `index` read from the dataset as a sample (no cache).
  transforms::BasicSample<L> decode(std::size_t index) const;
  /// `f()`, its Errors rethrown naming case `index`.
  template <class F>
  auto for_case(std::size_t index, F&& f) const;
  /// Sample `s` of case `index` augmented with the case's stream of `epoch`; Errors name the case.
  Sample augmented(std::uint64_t epoch, std::size_t index, Sample s) const;
  /// The case of sample `slot` of batch b.
  std::size_t case_at(std::uint64_t b, std::size_t slot) const;
  /// What a worker makes of sample `slot` of batch b; `index` receives its case.
  Made prepare(std::uint64_t b, std::size_t slot, std::size_t& index) const;
  /// The samples of batch b collated, numbered and with their cases.
  Batch<L, B> finish(std::uint64_t b, const std::vector<Sample>& samples, std::vector<std::size_t> cases) const;
  /// Runs `workers` copies of work() on the pool until the loader stops.
  void produce();
  /// A worker: claims the next sample, waits until its batch is within the prefetch window,
  /// prepares it, and hands the batch on when it was the batch's last sample.
  void work();

  struct Pending {
    std::vector<Made> samples;
    std::vector<std::size_t> cases;
    std::uint64_t done = 0;
  };
  /// Batch `b` from its staged samples: uploaded, augmented and collated on the device.
  Batch<L, B> deliver(std::uint64_t b, Pending& staged);
  /// What the workers queue for next(): a collated batch, or (on a device) its staged samples.
  using Ready = std::conditional_t<on_host, Batch<L>, Pending>;

  D dataset_;
  T transform_;
  LoaderOptions options_;
  std::uint64_t batches_per_epoch_ = 0;
  mutable SampleCache<L> cache_;
  [[no_unique_address]] detail::Staging<B, L> staging_;

  std::unique_ptr<ThreadPool> pool_;
  std::thread producer_;
  std::mutex mutex_;
  std::condition_variable ready_, space_;
  std::map<std::uint64_t, Ready> ready_batches_;  // made, not yet taken; keyed by number
  std::exception_ptr failure_;
  bool stopping_ = false;
  std::uint64_t delivered_ = 0;  // batches next() has returned
  std::atomic<std::uint64_t> next_sample_{0};
  std::map<std::uint64_t, Pending> pending_;  // batches with some samples made
};

template <Dataset D, class T>
Loader(D, T, LoaderOptions) -> Loader<D, T, LabelValue>;
template <Dataset D, class T>
Loader(D, T) -> Loader<D, T, LabelValue>;

/// A loader on backend B, which class template argument deduction cannot name:
///   auto loader = data::make_loader<Cuda>(train, augmentation, {.batch_size = 2, .workers = 2});
template <class B, class L = LabelValue, Dataset D, class T>
Loader<D, T, L, B> make_loader(D dataset, T transform, LoaderOptions options = {}) {
  return {std::move(dataset), std::move(transform), options};
}

// ----------------------------------------------------------------------------------------
// Implementation

template <class L, class B>
Batch<L, B> collate(const std::vector<transforms::BasicSample<L, B>>& samples) {
  require(!samples.empty(), [&] {
    return ErrorInfo{.where = "data::collate", .field = "samples", .expected = "at least one", .actual = "none"};
  });
  const auto& first = samples.front();
  const Shape image_shape = first.image.shape();
  const bool labelled = first.label.defined();
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const auto& s = samples[i];
    require(s.image.shape() == image_shape, [&] {
      return ErrorInfo{.where = "data::collate", .field = "image shape of sample " + std::to_string(i),
                       .expected = image_shape.to_string() + " (sample 0's)", .actual = s.image.shape().to_string(),
                       .detail = "a batch needs equal patch sizes: end the transform with a crop to the patch size"};
    });
    require(s.label.defined() == labelled && (!labelled || s.label.shape() == first.label.shape()), [&] {
      return ErrorInfo{.where = "data::collate", .field = "label of sample " + std::to_string(i),
                       .expected = labelled ? first.label.shape().to_string() + " (sample 0's)" : "none (sample 0 has none)",
                       .actual = s.label.defined() ? s.label.shape().to_string() : "none"};
    });
  }
  const auto n = static_cast<std::int64_t>(samples.size());
  Batch<L, B> b;
  b.image = Tensor<float, B>::empty({n, image_shape[0], image_shape[1], image_shape[2], image_shape[3]});
  for (std::int64_t i = 0; i < n; ++i)
    b.image[i].copy_from(samples[static_cast<std::size_t>(i)].image);
  if (labelled) {
    const Shape ls = first.label.shape();
    b.label = Tensor<L, B>::empty({n, ls[0], ls[1], ls[2], ls[3]});
    for (std::int64_t i = 0; i < n; ++i) b.label[i].copy_from(samples[static_cast<std::size_t>(i)].label);
  }
  return b;
}

template <class L>
std::shared_ptr<const transforms::BasicSample<L>> SampleCache<L>::find(std::size_t i) {
  std::lock_guard lock(mutex_);
  const auto it = index_.find(i);
  if (it == index_.end()) return nullptr;
  entries_.splice(entries_.begin(), entries_, it->second);
  return it->second->second;
}

template <class L>
void SampleCache<L>::insert(std::size_t i, std::shared_ptr<const transforms::BasicSample<L>> sample) {
  const std::size_t bytes = bytes_of(*sample);
  if (bytes > budget_) return;
  std::lock_guard lock(mutex_);
  if (index_.count(i)) return;
  while (used_ + bytes > budget_ && !entries_.empty()) {
    used_ -= bytes_of(*entries_.back().second);
    index_.erase(entries_.back().first);
    entries_.pop_back();
  }
  entries_.emplace_front(i, std::move(sample));
  index_[i] = entries_.begin();
  used_ += bytes;
}

template <class L>
template <class F>
std::shared_ptr<const transforms::BasicSample<L>> SampleCache<L>::get(std::size_t i, F&& load) {
  {
    std::unique_lock lock(mutex_);
    loaded_.wait(lock, [&] { return loading_.count(i) == 0; });
    if (const auto it = index_.find(i); it != index_.end()) {
      entries_.splice(entries_.begin(), entries_, it->second);
      return it->second->second;
    }
    loading_.insert(i);
  }
  auto done = [&] {
    std::lock_guard lock(mutex_);
    loading_.erase(i);
    loaded_.notify_all();
  };
  std::shared_ptr<const transforms::BasicSample<L>> sample;
  try {
    sample = load();
  } catch (...) {
    done();
    throw;
  }
  insert(i, sample);
  done();
  return sample;
}

template <class L>
std::size_t SampleCache<L>::bytes() const {
  std::lock_guard lock(mutex_);
  return used_;
}

template <Dataset D, class T, class L, class B>
Loader<D, T, L, B>::Loader(D dataset, T transform, LoaderOptions options)
    : dataset_(std::move(dataset)), transform_(std::move(transform)), options_(options), cache_(options.cache_bytes) {
  const auto n = static_cast<std::int64_t>(dataset_.size());
  require(options_.batch_size >= 1 && options_.batch_size <= n, [&] {
    return ErrorInfo{.where = "data::Loader", .field = "batch_size",
                     .expected = "1 to the dataset's " + std::to_string(n) + " cases",
                     .actual = std::to_string(options_.batch_size)};
  });
  require(options_.workers >= 0 && options_.prefetch >= 1, [&] {
    return ErrorInfo{.where = "data::Loader", .field = "workers / prefetch", .expected = ">= 0 workers and >= 1 prefetch",
                     .actual = std::to_string(options_.workers) + " / " + std::to_string(options_.prefetch)};
  });
  batches_per_epoch_ = static_cast<std::uint64_t>(n / options_.batch_size);  // the last partial batch is dropped
  if (options_.workers > 0) {
    // A private pool: the producer thread is its first member, and transforms' own
    // parallel_for calls run inline on these threads instead of queueing on the global pool.
    // Own threads: its chunks are long-lived loops, not a compute region of OpenMP's team.
    pool_ = std::make_unique<ThreadPool>(options_.workers, PoolThreads::own);
    producer_ = std::thread([this] { produce(); });
  }
}

template <Dataset D, class T, class L, class B>
Loader<D, T, L, B>::~Loader() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  space_.notify_all();
  if (producer_.joinable()) producer_.join();
}

template <Dataset D, class T, class L, class B>
std::vector<std::size_t> Loader<D, T, L, B>::epoch_order(std::uint64_t epoch) const {
  std::vector<std::size_t> order(dataset_.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  if (!options_.shuffle) return order;
  RandomStream rng = RandomStream(options_.seed, 0x73687566ull).substream(epoch);
  for (std::size_t i = order.size(); i > 1; --i)
    std::swap(order[i - 1], order[rng.below(static_cast<std::uint32_t>(i))]);
  return order;
}

template <Dataset D, class T, class L, class B>
transforms::BasicSample<L> Loader<D, T, L, B>::load_sample(std::size_t index) const {
  if (options_.cache_bytes > 0)  // shares the tensors: transforms replace, never write
    return *cache_.get(index, [&] { return std::make_shared<const transforms::BasicSample<L>>(decode(index)); });
  return decode(index);
}

template <Dataset D, class T, class L, class B>
transforms::BasicSample<L> Loader<D, T, L, B>::decode(std::size_t index) const {
  Case c = dataset_.load(index);
  transforms::BasicSample<L> s;
  s.image = c.image.voxels.rank() == 3 ? c.image.voxels.reshape({1, c.image.voxels.size(0), c.image.voxels.size(1),
                                                                  c.image.voxels.size(2)})
                                       : c.image.voxels.contiguous();
  if (c.label) {
    const auto& v = c.label->voxels;
    const Shape spatial{1, v.size(-3), v.size(-2), v.size(-1)};
    if constexpr (std::is_same_v<L, LabelValue>)
      s.label = v.contiguous().reshape(spatial);
    else
      s.label = v.template astype<L>().reshape(spatial);
  }
  return s;
}

template <Dataset D, class T, class L, class B>
template <class F>
auto Loader<D, T, L, B>::for_case(std::size_t index, F&& f) const {
  try {
    return f();
  } catch (const Error& e) {
    auto info = e.info();
    info.where = "data::Loader: case " + std::to_string(index) + " (" + dataset_.name(index) + ")" +
                 (info.where.empty() ? "" : ": " + info.where);
    throw Error{info};
  }
}

template <Dataset D, class T, class L, class B>
auto Loader<D, T, L, B>::augmented(std::uint64_t epoch, std::size_t index, Sample s) const -> Sample {
  return for_case(index, [&] {
    RandomStream rng = sample_stream(epoch, index);
    transform_.apply(s, rng);
    return std::move(s);
  });
}

template <Dataset D, class T, class L, class B>
std::size_t Loader<D, T, L, B>::case_at(std::uint64_t b, std::size_t slot) const {
  const auto first = static_cast<std::size_t>((b % batches_per_epoch_) * static_cast<std::uint64_t>(options_.batch_size));
  return epoch_order(b / batches_per_epoch_)[first + slot];
}

template <Dataset D, class T, class L, class B>
auto Loader<D, T, L, B>::prepare(std::uint64_t b, std::size_t slot, std::size_t& index) const -> Made {
  const std::uint64_t epoch = b / batches_per_epoch_;
  index = case_at(b, slot);
  auto s = for_case(index, [&] { return load_sample(index); });
  if constexpr (on_host)
    return augmented(epoch, index, std::move(s));
  else
    return staging_.stage(s);
}

template <Dataset D, class T, class L, class B>
Batch<L, B> Loader<D, T, L, B>::finish(std::uint64_t b, const std::vector<Sample>& samples,
                                       std::vector<std::size_t> cases) const {
  Batch<L, B> out = collate(samples);
  out.number = b;
  out.epoch = b / batches_per_epoch_;
  out.cases = std::move(cases);
  return out;
}

template <Dataset D, class T, class L, class B>
Batch<L, B> Loader<D, T, L, B>::batch(std::uint64_t b) const {
  const auto bs = static_cast<std::size_t>(options_.batch_size);
  const std::uint64_t epoch = b / batches_per_epoch_;
  std::vector<Sample> samples(bs);
  std::vector<std::size_t> cases(bs);
  for (std::size_t k = 0; k < bs; ++k) {
    if constexpr (on_host) {
      samples[k] = prepare(b, k, cases[k]);
    } else {  // no staging: a direct (synchronous) upload of each host sample
      const std::size_t index = cases[k] = case_at(b, k);
      samples[k] = augmented(epoch, index, detail::upload<B>(for_case(index, [&] { return load_sample(index); })));
    }
  }
  return finish(b, samples, std::move(cases));
}

template <Dataset D, class T, class L, class B>
Batch<L, B> Loader<D, T, L, B>::deliver(std::uint64_t b, Pending& staged) {
  const std::uint64_t epoch = b / batches_per_epoch_;
  std::vector<Sample> samples(staged.samples.size());
  for (std::size_t k = 0; k < samples.size(); ++k) {
    samples[k] = augmented(epoch, staged.cases[k], staging_.upload(staged.samples[k]));
  }
  return finish(b, samples, std::move(staged.cases));
}

template <Dataset D, class T, class L, class B>
void Loader<D, T, L, B>::produce() {
  // One long-lived loop per worker, run as the pool's chunks: pool threads mark themselves as
  // inside the pool, so the transforms' own parallel_for calls run inline on them.
  pool_->parallel_for(0, options_.workers, 1, [this](std::int64_t lo, std::int64_t hi) {
    for (std::int64_t w = lo; w < hi; ++w) work();
  });
}

template <Dataset D, class T, class L, class B>
void Loader<D, T, L, B>::work() {
  const auto bs = static_cast<std::uint64_t>(options_.batch_size);
  const auto room = static_cast<std::uint64_t>(options_.prefetch);
  for (;;) {
    // Samples are claimed in order, so the oldest unfinished batch is always being worked on
    // and the window below always opens once the consumer takes what is ready.
    const std::uint64_t k = next_sample_.fetch_add(1);
    const std::uint64_t b = k / bs;
    {
      std::unique_lock lock(mutex_);
      space_.wait(lock, [&] { return stopping_ || failure_ || b < delivered_ + room; });
      if (stopping_ || failure_) return;
    }
    try {
      std::size_t index = 0;
      auto sample = prepare(b, static_cast<std::size_t>(k % bs), index);
      Pending complete;
      {
        std::lock_guard lock(mutex_);
        auto& p = pending_[b];
        if (p.samples.empty()) {
          p.samples.resize(bs);
          p.cases.resize(bs);
        }
        p.samples[k % bs] = std::move(sample);
        p.cases[k % bs] = index;
        if (++p.done == bs) {
          complete = std::move(p);
          pending_.erase(b);
        }
      }
      if (complete.samples.empty()) continue;
      // The last sample of batch b: this worker collates it (on the host) or queues its
      // staged samples for next() (on a device).
      Ready made = [&] {
        if constexpr (on_host)
          return finish(b, complete.samples, std::move(complete.cases));
        else
          return std::move(complete);
      }();
      {
        std::lock_guard lock(mutex_);
        ready_batches_.emplace(b, std::move(made));
      }
      ready_.notify_all();
    } catch (...) {
      {
        std::lock_guard lock(mutex_);
        if (!failure_) failure_ = std::current_exception();
      }
      ready_.notify_all();
      space_.notify_all();
      return;
    }
  }
}

template <Dataset D, class T, class L, class B>
Batch<L, B> Loader<D, T, L, B>::next() {
  if (!pool_) return batch(delivered_++);
  std::unique_lock lock(mutex_);
  ready_.wait(lock, [&] { return ready_batches_.count(delivered_) > 0 || failure_; });
  const auto it = ready_batches_.find(delivered_);
  if (it == ready_batches_.end()) std::rethrow_exception(failure_);
  Ready made = std::move(it->second);
  ready_batches_.erase(it);
  const std::uint64_t b = delivered_++;
  lock.unlock();
  space_.notify_all();
  if constexpr (on_host)
    return made;
  else
    return deliver(b, made);
}

}  // namespace medseg::data
