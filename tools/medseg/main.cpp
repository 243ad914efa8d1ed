// medseg: prepare, train, evaluate, export and run 3D segmentation models, and benchmark
// them. `medseg --help` lists the commands; `medseg COMMAND --help` explains one.
#include <unistd.h>

#include <cstdlib>
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
    {"nnunet", "nnU-Net, automated, from a raw dataset: medseg nnunet run DATASET_DIR --minutes N (and its steps)", nnunet_command},
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

/// OpenMP's threads (oneDNN's, and our pool's, which runs on the same team) spin-wait between
/// parallel regions by default, for milliseconds. On cores another process also wants (another
/// session's, whatever its nice value), that spinning holds them: beside one busy process, a
/// VNet training step on 2 cores took 7.1 s instead of 2.1 s alone, and 4.0 s when the threads
/// wait passively, which costs nothing measurable alone (2.09 s; GOMP_SPINCOUNT=10000: 4.1 s
/// busy). A command that trains for minutes should not depend on a quiet machine, so the
/// command runs with OMP_WAIT_POLICY=passive unless the user set a policy. libgomp reads the
/// variable once, when it loads (before main), so the command starts itself again with it set.
/// Benchmarks keep OpenMP's default, which is what their peers (PyTorch) run with.
void wait_passively_in_openmp(const std::vector<std::string_view>& args, char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || (!args.empty() && args[0] == "bench")) return;
  ::setenv("OMP_WAIT_POLICY", "passive", 1);
  ::execv("/proc/self/exe", argv);  // returns only if it failed: then run as we are
  ::unsetenv("OMP_WAIT_POLICY");
}

}  // namespace
}  // namespace medseg::tool

int main(int argc, char** argv) {
  using namespace medseg::tool;
  const std::vector<std::string_view> args(argv + 1, argv + argc);
  wait_passively_in_openmp(args, argv);
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
