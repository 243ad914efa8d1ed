// medseg: prepare, train, evaluate, export and run 3D segmentation models, and benchmark
// them. `medseg --help` lists the commands; `medseg COMMAND --help` explains one.
#include <iostream>
#include <string>
#include <vector>

#include "command.hpp"
#include "medseg/core/error.hpp"
#include "medseg/version.hpp"

namespace medseg::tool {
namespace {

int version_command(Args) {
  std::cout << "medseg " << medseg::version << "\n";
  return 0;
}

int help_command(Args);

const Command commands[] = {
    {"bench", "run a benchmark against its peer (PyTorch, SciPy, NumPy): medseg bench [NAME] [--json]",
     bench_command},
    {"prepare", "preprocess a raw dataset into MedicalSeg's layout: medseg prepare --config prep.json",
     prepare_command},
    {"train", "train the model of a JSON config on a prepared dataset: medseg train --config CFG", train_command},
    {"val", "score trained weights on the config's validation set: medseg val --config CFG --model_path W",
     val_command},
    {"export", "write a self-contained model folder: medseg export --config CFG --model_path W --save_dir DIR",
     export_command},
    {"infer", "segment images with an exported model: medseg infer --model DIR --input PATH --output DIR",
     infer_command},
    {"demo", "train and evaluate a brain-mask VNet on real MRI (Colin27), on the CPU: medseg demo", demo_command},
    {"info", "describe an image as JSON (shape, datatype, geometry, orientation, range): medseg info FILE",
     info_command},
    {"convert", "convert between .nii(.gz), .hdr/.img, .mha/.mhd and .npy: medseg convert IN OUT", convert_command},
    {"version", "print the version", version_command},
    {"help", "list the commands", help_command},
};

int help_command(Args) {
  std::cout << "medseg " << medseg::version << ": 3D medical image segmentation\n\n"
            << "usage: medseg COMMAND [ARGS...]\n\ncommands:\n";
  for (const auto& c : commands) std::cout << "  " << c.name << std::string(10 - c.name.size(), ' ') << c.summary << "\n";
  std::cout << "\nmedseg COMMAND --help explains a command.\n";
  return 0;
}

}  // namespace
}  // namespace medseg::tool

int main(int argc, char** argv) {
  using namespace medseg::tool;
  const std::vector<std::string_view> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h") return help_command({});
  if (args[0] == "--version") return version_command({});
  for (const auto& c : commands) {
    if (c.name != args[0]) continue;
    try {
      return c.run(Args(args).subspan(1));
    } catch (const std::exception& e) {
      std::cerr << "medseg " << c.name << ": " << e.what() << "\n";
      return 1;
    }
  }
  std::cerr << "medseg: unknown command \"" << args[0] << "\"; medseg --help lists the commands\n";
  return 2;
}
