// nnU-Net's evaluate_folder: a folder of predicted label maps against a folder of reference
// ones (same file names), every metric per case and class (Dice, IoU, HD95 and average
// surface distance in mm on the reference's spacing), the means over cases with NaN skipped,
// written as summary.json and summary.csv. The numbers are metrics::evaluate_case's, the
// same `medseg val` reports.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "../data/case.hpp"
#include "../io/image.hpp"
#include "../metrics/report.hpp"

namespace medseg::nnunet {

struct FolderEvaluation {
  std::vector<metrics::CaseMetrics> cases;
  metrics::Summary summary;
};

/// Every `file_ending` file of `predictions` scored against the same name in `references`;
/// `class_names` (background first) fixes the classes. Writes `out`.json and `out`.csv when
/// `out` is not empty.
FolderEvaluation evaluate_folders(const std::filesystem::path& predictions, const std::filesystem::path& references,
                                  const std::vector<std::string>& class_names, const std::filesystem::path& out = {},
                                  const std::string& file_ending = ".nii.gz");

// ----------------------------------------------------------------------------------------
// Implementation

inline FolderEvaluation evaluate_folders(const std::filesystem::path& predictions, const std::filesystem::path& references,
                                         const std::vector<std::string>& class_names, const std::filesystem::path& out,
                                         const std::string& file_ending) {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  require(fs::is_directory(predictions), [&] {
    return ErrorInfo{.where = "nnunet evaluate", .field = "predictions", .expected = "a folder", .actual = predictions.string()};
  });
  for (const auto& e : fs::directory_iterator(predictions))
    if (e.path().filename().string().ends_with(file_ending)) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  require(!files.empty(), [&] {
    return ErrorInfo{.where = predictions.string(), .field = "predictions", .expected = "*" + file_ending + " label maps", .actual = "none"};
  });
  data::LabelMap declared;
  for (std::size_t k = 0; k < class_names.size(); ++k) declared[static_cast<int>(k)] = class_names[k];
  FolderEvaluation r;
  for (const auto& f : files) {
    const std::string name = f.filename().string().substr(0, f.filename().string().size() - file_ending.size());
    const fs::path ref_file = references / f.filename();
    data::require_file(ref_file, references.string(), "reference of " + name);
    const auto pred = data::load_label(f, declared);
    const auto ref = data::load_label(ref_file, declared);
    data::check_same_geometry(ref.geometry, pred.geometry, f.string() + " (against " + ref_file.string() + ")");
    const auto& s = ref.geometry.spacing;  // (x, y, z); the metrics take (D, H, W)
    r.cases.push_back(metrics::evaluate_case(name, pred.voxels, ref.voxels,
                                             {.num_classes = static_cast<int>(class_names.size()),
                                              .surface = {.spacing = {s[2], s[1], s[0]}}}));
  }
  r.summary = metrics::summarize(r.cases);
  if (!out.empty()) {
    metrics::write_json(fs::path(out.string() + ".json"), r.cases, r.summary, class_names);
    metrics::write_csv(fs::path(out.string() + ".csv"), r.cases, r.summary, class_names);
  }
  return r;
}

}  // namespace medseg::nnunet
