// Cases that already live in memory (made by the program, or loaded and preprocessed once),
// as a Dataset the loader accepts: MONAI's Dataset(data=[...]) for a list of arrays. Cases
// are checked once, when added, with the same rules a file-backed layout applies on load.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "case.hpp"

namespace medseg::data {

/// A Dataset over cases held in memory. load(i) returns a case that shares the stored voxels
/// (cases are not copied: loader transforms never write their input's storage). Copies of a
/// MemoryDataset share its cases, so handing one to a Loader is cheap.
///   data::MemoryDataset train{{.labels = {{0, "background"}, {1, "brain"}}}};
///   train.add({"case0", image, label});
class MemoryDataset {
 public:
  struct Options {
    LabelMap labels{};  // declared label values; empty accepts 0..255
  };
  MemoryDataset() : MemoryDataset(Options{}) {}
  explicit MemoryDataset(Options options)
      : options_(std::move(options)), cases_(std::make_shared<std::vector<Case>>()) {}

  /// Adds a case after checking its image is [C,D,H,W], its label (if any) is on the image's
  /// grid and holds declared values only. Throws Error naming the case otherwise.
  void add(Case c);

  std::size_t size() const { return cases_->size(); }
  std::string name(std::size_t i) const { return at(i).name; }
  Case load(std::size_t i) const { return at(i); }
  LabelMap labels() const { return options_.labels; }

 private:
  const Case& at(std::size_t i) const;

  Options options_;
  std::shared_ptr<std::vector<Case>> cases_;
};

// ----------------------------------------------------------------------------------------
// Implementation

inline void MemoryDataset::add(Case c) {
  const std::string where = "MemoryDataset case '" + c.name + "'";
  require(c.image.voxels.defined() && c.image.voxels.rank() == 4, [&] {
    return ErrorInfo{.where = where, .field = "image", .expected = "a float image [C,D,H,W]",
                     .actual = c.image.voxels.defined() ? c.image.voxels.shape().to_string() : "no voxels"};
  });
  if (c.label) {
    check_same_grid(c.image, *c.label, where);
    const auto& labels = options_.labels;
    if (!labels.empty()) {
      const LabelValue* v = c.label->voxels.data();
      for (std::int64_t i = 0; i < c.label->voxels.numel(); ++i)
        require(labels.count(v[i]) == 1, [&] {
          return ErrorInfo{.where = where, .field = "label", .expected = "a declared label value",
                           .actual = std::to_string(int(v[i])) + " at voxel " + std::to_string(i)};
        });
    }
  }
  cases_->push_back(std::move(c));
}

inline const Case& MemoryDataset::at(std::size_t i) const {
  require(i < cases_->size(), [&] {
    return ErrorInfo{.where = "MemoryDataset", .field = "index", .expected = "< " + std::to_string(cases_->size()),
                     .actual = std::to_string(i)};
  });
  return (*cases_)[i];
}

}  // namespace medseg::data
