// libFuzzer target: arbitrary bytes as the JSON files nnU-Net's automation reads (nnUNetPlans.json
// with every configuration resolved and turned into a recipe, dataset_fingerprint.json,
// dataset.json); read, or medseg::Error (or a JSON syntax error), nothing else.
#include <cstddef>
#include <cstdint>
#include <string>

#include "medseg/nnunet/plans.hpp"
#include "medseg/nnunet/fingerprint.hpp"
#include "medseg/nnunet/recipe.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace medseg;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(std::string(reinterpret_cast<const char*>(data), size));
  } catch (const nlohmann::json::exception&) {  // not JSON (or a number beyond double's range)
    return 0;
  }
  try {
    nnunet::Plans plans = nnunet::Plans::from_json(j, "fuzz.json");
    const nnunet::DatasetJson dataset = nnunet::DatasetJson::from_json(
        {{"channel_names", {{"0", "CT"}}}, {"labels", {{"background", 0}, {"a", 1}}}, {"numTraining", 5}, {"file_ending", ".nii.gz"}},
        "dataset.json");
    for (const auto& name : plans.configuration_names()) {
      const auto c = plans.configuration(name);
      try {
        nnunet::make_recipe(plans, c, dataset);
      } catch (const Error&) {
      }
    }
  } catch (const Error&) {
  }
  try {
    nnunet::Fingerprint::from_json(j, "fuzz.json");
  } catch (const Error&) {
  }
  try {
    nnunet::DatasetJson::from_json(j, "fuzz.json");
  } catch (const Error&) {
  }
  return 0;
}
