// medseg prepare --config prep.json [--threads N] [--quiet] [--device cpu|cuda]
// Preprocesses a raw dataset into MedicalSeg's layout; see include/medseg/preprocess/prepare.hpp
// (prepare_cuda.hpp for --device cuda) and the ready-made configs in configs/prepare/.
#include <iostream>
#include <string>

#include "command.hpp"
#include "medseg/core/error.hpp"
#include "medseg/core/parallel.hpp"
#include "medseg/preprocess/prepare.hpp"
#if defined(MEDSEG_WITH_CUDA) && MEDSEG_WITH_CUDA
#include "medseg/preprocess/prepare_cuda.hpp"
#endif

namespace medseg::tool {

int prepare_command(Args args) {
  std::string config_path, device = "cpu";
  bool quiet = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) {
      config_path = std::string(args[++i]);
    } else if (args[i] == "--threads" && i + 1 < args.size()) {
      set_num_threads(std::stoi(std::string(args[++i])));
    } else if (args[i] == "--quiet") {
      quiet = true;
    } else if (args[i] == "--device" && i + 1 < args.size()) {
      device = std::string(args[++i]);
      if (device != "cpu" && device != "cuda")
        throw Error{{.where = "medseg prepare", .field = "--device", .expected = "cpu or cuda", .actual = device}};
    } else if (args[i] == "--help" || args[i] == "-h") {
      std::cout << "usage: medseg prepare --config prep.json [--threads N] [--quiet] [--device cpu|cuda]\n"
                   "Preprocesses every case of a raw dataset (a folder of images and labels, an MSD task or an\n"
                   "nnU-Net raw dataset) with the image_ops and label_ops the config lists, into MedicalSeg's\n"
                   "layout: images/*.npy (float32), labels/*.npy, train/val/test_list.txt, dataset.json.\n"
                   "Cases run in parallel; finished cases are skipped on a rerun; a failed case is reported and\n"
                   "the others still finish. Ready-made configs: configs/prepare/*.json.\n"
                   "--device cuda: each case's ops on the GPU (files decoded on the CPU threads meanwhile),\n"
                   "with the same output as on the CPU; needs a medseg built with CUDA and a GPU.\n";
      return 0;
    } else {
      throw Error{{.where = "medseg prepare", .field = "argument",
                   .expected = "--config FILE, --threads N, --quiet, --device cpu|cuda or --help", .actual = "\"" + std::string(args[i]) + "\""}};
    }
  }
  if (config_path.empty())
    throw Error{{.where = "medseg prepare", .field = "--config", .expected = "a prep.json file", .actual = "none given"}};
#if !(defined(MEDSEG_WITH_CUDA) && MEDSEG_WITH_CUDA)
  if (device == "cuda")
    throw Error{{.where = "medseg prepare", .field = "--device", .expected = "cpu (this medseg was built without CUDA; "
                                                                             "configure with -DMEDSEG_CUDA=ON for cuda)",
                 .actual = "cuda"}};
#endif
  const auto config = preprocess::load_prepare_config(config_path);
  std::ostream* progress = quiet ? nullptr : &std::cerr;
  preprocess::PrepareReport report;
#if defined(MEDSEG_WITH_CUDA) && MEDSEG_WITH_CUDA
  if (device == "cuda")
    report = preprocess::prepare_dataset_on_device(config, progress);  // says so when there is no GPU
  else
#endif
    report = preprocess::prepare_dataset(config, progress);
  preprocess::print_summary(report, std::cout);
  std::cout << "output: " << config.output.string() << "\n";
  return report.count(preprocess::CaseReport::Status::failed) == 0 ? 0 : 1;
}

}  // namespace medseg::tool
