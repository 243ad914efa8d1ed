// medseg export --config CFG --model_path WEIGHTS --save_dir DIR [--largest_component]
// MedicalSeg's export.py: a self-contained model folder (deploy.json + model.safetensors)
// that `medseg infer --model DIR` runs with nothing else. See docs/deploy.md.
#include <filesystem>
#include <iostream>
#include <string>

#include "any_model.hpp"
#include "command.hpp"
#include "medseg/infer/deploy.hpp"
#include "medseg/io/file.hpp"
#include "medseg/nn/state_dict.hpp"
#include "workflow.hpp"

namespace medseg::tool {

int export_command(Args args) {
  std::string config_path;
  fs::path model_path, save_dir;
  bool largest_component = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto value = [&]() -> std::string {
      require(i + 1 < args.size(), [&] {
        return ErrorInfo{.where = "medseg export", .field = std::string(args[i]), .expected = "a value", .actual = "none"};
      });
      return std::string(args[++i]);
    };
    if (args[i] == "--config") config_path = value();
    else if (args[i] == "--model_path") model_path = value();
    else if (args[i] == "--save_dir") save_dir = value();
    else if (args[i] == "--largest_component") largest_component = true;
    else if (args[i] == "--help" || args[i] == "-h") {
      std::cout << "usage: medseg export --config CFG --model_path WEIGHTS --save_dir DIR [--largest_component]\n"
                   "Writes DIR/deploy.json and DIR/model.safetensors: the model of CFG with WEIGHTS (a .safetensors\n"
                   "file or a checkpoint folder such as output/best_model), the image preprocessing its prepared\n"
                   "dataset recorded (dataset.json's image_ops), CFG's sliding-window settings and export.labels.\n"
                   "--largest_component keeps each class's largest connected component at inference.\n"
                   "medseg infer --model DIR needs nothing else.\n";
      return 0;
    } else {
      throw Error{{.where = "medseg export", .field = "argument",
                   .expected = "--config, --model_path, --save_dir, --largest_component or --help",
                   .actual = "\"" + std::string(args[i]) + "\""}};
    }
  }
  require(!config_path.empty() && !model_path.empty() && !save_dir.empty(), [&] {
    return ErrorInfo{.where = "medseg export", .field = config_path.empty() ? "--config" : model_path.empty() ? "--model_path" : "--save_dir",
                     .expected = "a path", .actual = "none given"};
  });
  const train::Config config = train::load_config(config_path);
  infer::DeployConfig deploy = deploy_config(config);
  deploy.postprocess.largest_component = largest_component;

  // Load into the model first: a weights file that does not fit the config fails here, not at deploy.
  auto model = models::AnyModel<Cpu>::from_json(deploy.model, config.source_of("model") + ": model");
  nn::name_root(model);
  nn::load_state_dict(model, weights_file(model_path, "medseg export"));
  fs::create_directories(save_dir);
  nn::save_state_dict(model, save_dir / deploy.weights, {{"medseg_model", deploy.model.dump()}});
  infer::write_deploy(save_dir, deploy);
  std::cout << "exported to " << save_dir.string() << " (deploy.json + " << deploy.weights << ")\n";
  if (deploy.image_ops.empty())
    std::cout << "note: no image_ops recorded (the dataset.json of train_dataset has none): medseg infer will feed images "
                 "to the network as they are\n";
  return 0;
}

}  // namespace medseg::tool
