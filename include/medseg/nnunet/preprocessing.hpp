// nnU-Net's preprocessing of one configuration (nnUNetv2_preprocess -c CONFIG): every
// training case of the raw dataset through the plans' recipe (recipe.hpp) by `medseg
// prepare`'s engine, into PREPROCESSED/DATA_IDENTIFIER/ in MedicalSeg's layout (images/*.npy,
// labels/*.npy, meta/*.json). Cases run in parallel; a case whose meta exists is skipped, so
// an interrupted run resumes where it stopped.
#pragma once

#include <ostream>
#include <string>

#include "../preprocess/prepare.hpp"
#include "recipe.hpp"
#include "training.hpp"

namespace medseg::nnunet {

/// The `medseg prepare` config that preprocesses `configuration`.
preprocess::PrepareConfig prepare_config(const Folders& folders, const std::string& configuration);

/// Preprocesses every training case for `configuration`; throws naming the failed cases.
preprocess::PrepareReport preprocess_configuration(const Folders& folders, const std::string& configuration,
                                                   std::ostream* progress = nullptr);

// ----------------------------------------------------------------------------------------
// Implementation

inline preprocess::PrepareConfig prepare_config(const Folders& folders, const std::string& configuration) {
  const Plans plans = Plans::load(folders.plans_file());
  const Configuration c = plans.configuration(configuration);
  const DatasetJson dataset = DatasetJson::load(folders.preprocessed / "dataset.json");
  const Recipe r = make_recipe(plans, c, dataset);
  preprocess::PrepareConfig p;
  p.input.layout = preprocess::DatasetInput::Layout::nnunet;
  p.input.root = folders.raw;
  p.output = folders.data(c);
  p.image_ops = r.image_ops;
  p.image_steps = preprocess::parse_steps(r.image_ops, "plans " + configuration + ": image_ops");
  p.label_steps = preprocess::parse_steps(r.label_ops, "plans " + configuration + ": label_ops");
  p.split = {.val = 0, .test = 0, .seed = 0};  // the folds come from splits_final.json
  for (std::size_t k = 0; k < r.class_names.size(); ++k) p.labels[std::to_string(k)] = r.class_names[k];
  p.name = c.data_identifier;
  return p;
}

inline preprocess::PrepareReport preprocess_configuration(const Folders& folders, const std::string& configuration,
                                                          std::ostream* progress) {
  const auto report = preprocess::prepare_dataset(prepare_config(folders, configuration), progress);
  std::string failed;
  for (const auto& c : report.cases)
    if (c.status == preprocess::CaseReport::Status::failed) failed += "\n  - " + c.name + ": " + c.error;
  require(failed.empty(), [&] {
    return ErrorInfo{.where = "nnunet preprocess " + configuration, .field = "cases", .expected = "every case preprocessed",
                     .actual = "failures:" + failed};
  });
  return report;
}

}  // namespace medseg::nnunet
