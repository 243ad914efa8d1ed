// The Dataset concept every layout satisfies (MedicalSeg lists, the Medical Segmentation
// Decathlon, nnU-Net v2 raw), and CachedDataset, which keeps loaded cases in memory up to a
// byte budget. Datasets are lazy: opening one reads only its lists and checks that every
// file named exists; load(i) reads the files of case i.
//
//   auto train = data::CachedDataset{data::ListDataset::open("lung/train_list.txt"), 8ull << 30};
//   for (std::size_t i = 0; i < train.size(); ++i) { data::Case c = train.load(i); ... }
#pragma once

#include <concepts>
#include <cstddef>
#include <list>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

#include "case.hpp"

namespace medseg::data {

/// What a loader needs from a dataset. load(i) for i in [0, size()) returns case i, throwing
/// Error (naming the file) for unreadable or inconsistent data; it may be called from
/// several threads at once.
template <class D>
concept Dataset = requires(const D& d, std::size_t i) {
  { d.size() } -> std::convertible_to<std::size_t>;
  { d.name(i) } -> std::convertible_to<std::string>;
  { d.load(i) } -> std::same_as<Case>;
  { d.labels() } -> std::convertible_to<LabelMap>;
};

/// Bytes a case holds in memory (image and label voxels).
inline std::size_t case_bytes(const Case& c) {
  return c.image.voxels.nbytes() + (c.label ? c.label->voxels.nbytes() : 0);
}

/// A Dataset that keeps up to `budget_bytes` of loaded cases, dropping the least recently
/// used first. load() returns a deep copy, so callers may modify a case in place without
/// touching the cache. A case larger than the whole budget is never kept.
template <Dataset D>
class CachedDataset {
 public:
  CachedDataset(D inner, std::size_t budget_bytes) : inner_(std::move(inner)), budget_(budget_bytes) {}

  std::size_t size() const { return inner_.size(); }
  std::string name(std::size_t i) const { return inner_.name(i); }
  LabelMap labels() const { return inner_.labels(); }
  Case load(std::size_t i) const;

  std::size_t cached_bytes() const {
    std::lock_guard lock(mutex_);
    return used_;
  }
  std::size_t cached_cases() const {
    std::lock_guard lock(mutex_);
    return entries_.size();
  }
  const D& inner() const { return inner_; }

 private:
  static Case deep_copy(const Case& c) {
    Case out{c.name, {c.image.voxels.clone(), c.image.geometry}, std::nullopt};
    if (c.label) out.label = io::Image<LabelValue>{c.label->voxels.clone(), c.label->geometry};
    return out;
  }

  D inner_;
  std::size_t budget_;
  mutable std::mutex mutex_;
  mutable std::list<std::pair<std::size_t, Case>> entries_;  // most recently used first
  mutable std::unordered_map<std::size_t, typename std::list<std::pair<std::size_t, Case>>::iterator> index_;
  mutable std::size_t used_ = 0;
};

template <Dataset D>
CachedDataset(D, std::size_t) -> CachedDataset<D>;

// ----------------------------------------------------------------------------------------
// Implementation

template <Dataset D>
Case CachedDataset<D>::load(std::size_t i) const {
  {
    std::lock_guard lock(mutex_);
    if (auto it = index_.find(i); it != index_.end()) {
      entries_.splice(entries_.begin(), entries_, it->second);
      return deep_copy(it->second->second);
    }
  }
  Case c = inner_.load(i);  // outside the lock: other threads keep loading meanwhile
  const std::size_t bytes = case_bytes(c);
  if (bytes > budget_) return c;
  Case kept = deep_copy(c);
  std::lock_guard lock(mutex_);
  if (index_.count(i)) return c;  // another thread cached it first
  while (used_ + bytes > budget_ && !entries_.empty()) {
    used_ -= case_bytes(entries_.back().second);
    index_.erase(entries_.back().first);
    entries_.pop_back();
  }
  entries_.emplace_front(i, std::move(kept));
  index_[i] = entries_.begin();
  used_ += bytes;
  return c;
}

}  // namespace medseg::data
