// The cross-validation folds (splits_final.json): the dataset's own file when it has one,
// otherwise made the way nnU-Net makes them (nnunetv2/utilities/crossval_split.py,
// MIC-DKFZ/nnUNet@0e495086): the case names sorted, then sklearn's
// KFold(n_splits=5, shuffle=True, random_state=12345): NumPy's legacy RandomState shuffle of
// the indices (MT19937, Fisher-Yates with masked rejection sampling), cut into consecutive
// folds, the first n % k folds one case larger; train and val each in sorted order. The same
// case names give the same folds as nnU-Net, so results compare fold by fold.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../data/medicalseg.hpp"
#include "../io/file.hpp"

namespace medseg::nnunet {

struct Fold {
  std::vector<std::string> train, val;
};

/// nnU-Net's default seed for its folds.
inline constexpr std::uint32_t split_seed = 12345;

/// 0..n-1 shuffled as numpy.random.RandomState(seed).shuffle(np.arange(n)).
std::vector<std::int64_t> numpy_shuffled_indices(std::int64_t n, std::uint32_t seed);

/// nnU-Net's generate_crossval_split: `folds` folds of `cases` (sorted first).
std::vector<Fold> make_folds(std::vector<std::string> cases, std::size_t folds = 5, std::uint32_t seed = split_seed);

/// Reads splits_final.json, checking each fold names only `cases` (when not empty).
std::vector<Fold> load_folds(const std::filesystem::path& file, const std::vector<std::string>& cases = {});
void save_folds(const std::filesystem::path& file, const std::vector<Fold>& folds);

// ----------------------------------------------------------------------------------------
// Implementation

inline std::vector<std::int64_t> numpy_shuffled_indices(std::int64_t n, std::uint32_t seed) {
  std::mt19937 mt(seed);  // RandomState(int) seeds MT19937 with init_genrand, as std::mt19937 does
  std::vector<std::int64_t> v(static_cast<std::size_t>(std::max<std::int64_t>(n, 0)));
  for (std::int64_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = i;
  for (std::int64_t i = n - 1; i > 0; --i) {
    // random_interval(i): the smallest all-ones mask >= i, 32-bit draws rejected above i.
    std::uint64_t mask = static_cast<std::uint64_t>(i);
    for (int shift : {1, 2, 4, 8, 16, 32}) mask |= mask >> shift;
    std::uint64_t j;
    do j = static_cast<std::uint64_t>(mt()) & mask;
    while (j > static_cast<std::uint64_t>(i));
    std::swap(v[static_cast<std::size_t>(i)], v[j]);
  }
  return v;
}

inline std::vector<Fold> make_folds(std::vector<std::string> cases, std::size_t folds, std::uint32_t seed) {
  require(folds >= 2 && cases.size() >= folds, [&] {
    return ErrorInfo{.where = "nnunet::make_folds", .field = "cases",
                     .expected = "at least " + std::to_string(std::max<std::size_t>(folds, 2)) + " for " + std::to_string(folds) + " folds",
                     .actual = std::to_string(cases.size())};
  });
  std::sort(cases.begin(), cases.end());
  const auto n = static_cast<std::int64_t>(cases.size()), k = static_cast<std::int64_t>(folds);
  const auto order = numpy_shuffled_indices(n, seed);
  std::vector<Fold> out;
  std::int64_t start = 0;
  for (std::int64_t f = 0; f < k; ++f) {
    const std::int64_t size = n / k + (f < n % k ? 1 : 0);
    std::vector<bool> in_val(static_cast<std::size_t>(n), false);
    for (std::int64_t i = start; i < start + size; ++i) in_val[static_cast<std::size_t>(order[static_cast<std::size_t>(i)])] = true;
    Fold fold;
    for (std::int64_t i = 0; i < n; ++i) (in_val[static_cast<std::size_t>(i)] ? fold.val : fold.train).push_back(cases[static_cast<std::size_t>(i)]);
    out.push_back(std::move(fold));
    start += size;
  }
  return out;
}

inline std::vector<Fold> load_folds(const std::filesystem::path& file, const std::vector<std::string>& cases) {
  const std::string where = file.string();
  const nlohmann::json j = data::detail::read_json(file);
  require(j.is_array() && !j.empty(), [&] {
    return ErrorInfo{.where = where, .field = "folds", .expected = "a list of {\"train\": [...], \"val\": [...]}",
                     .actual = j.dump().substr(0, 60)};
  });
  const std::set<std::string> known(cases.begin(), cases.end());
  std::vector<Fold> out;
  for (std::size_t f = 0; f < j.size(); ++f) {
    JsonReader r(j[f], where, "[" + std::to_string(f) + "]");
    Fold fold{r.get<std::vector<std::string>>("train"), r.get<std::vector<std::string>>("val")};
    r.finish();
    for (const auto* list : {&fold.train, &fold.val})
      for (const auto& c : *list)
        require(known.empty() || known.count(c), [&] {
          return ErrorInfo{.where = where, .field = "fold " + std::to_string(f) + (list == &fold.train ? " train" : " val"),
                           .expected = "cases of the dataset", .actual = "\"" + c + "\", which imagesTr does not have"};
        });
    out.push_back(std::move(fold));
  }
  return out;
}

inline void save_folds(const std::filesystem::path& file, const std::vector<Fold>& folds) {
  nlohmann::ordered_json j = nlohmann::ordered_json::array();
  for (const auto& f : folds) j.push_back({{"train", f.train}, {"val", f.val}});
  io::write_text_atomic(file, j.dump(4) + "\n");
}

}  // namespace medseg::nnunet
