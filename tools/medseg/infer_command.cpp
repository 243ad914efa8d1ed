// medseg infer --model DIR --input FILE_OR_DIR --output DIR [--benchmark] [--threads N]
// Segments images with an exported model folder (medseg export); each output is a label map
// on its input's own grid and geometry. See include/medseg/infer/predictor.hpp.
#include <algorithm>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <string>
#include <vector>

#include "any_model.hpp"
#include "command.hpp"
#include "medseg/core/error.hpp"
#include "medseg/core/parallel.hpp"
#include "medseg/infer/predictor.hpp"
#include "medseg/preprocess/prepare.hpp"

namespace medseg::tool {

namespace fs = std::filesystem;

int infer_command(Args args) {
  fs::path model, input, output;
  bool benchmark = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto value = [&]() -> std::string {
      require(i + 1 < args.size(), [&] {
        return ErrorInfo{.where = "medseg infer", .field = std::string(args[i]), .expected = "a value", .actual = "none"};
      });
      return std::string(args[++i]);
    };
    if (args[i] == "--model") model = value();
    else if (args[i] == "--input") input = value();
    else if (args[i] == "--output") output = value();
    else if (args[i] == "--benchmark") benchmark = true;
    else if (args[i] == "--threads") set_num_threads(std::stoi(value()));
    else if (args[i] == "--help" || args[i] == "-h") {
      std::cout << "usage: medseg infer --model DIR --input FILE_OR_DIR --output DIR [--benchmark] [--threads N]\n"
                   "Segments every image of --input (.nii, .nii.gz, .hdr/.img, .mha, .mhd, .npy; a folder: each image\n"
                   "in it) with the exported model folder --model (deploy.json + weights, written by medseg export).\n"
                   "Each label map goes to --output/NAME.nii.gz with the input's exact grid and geometry.\n"
                   "--benchmark prints preprocessing, inference and postprocessing time per image.\n";
      return 0;
    } else {
      throw Error{{.where = "medseg infer", .field = "argument",
                   .expected = "--model, --input, --output, --benchmark, --threads or --help", .actual = "\"" + std::string(args[i]) + "\""}};
    }
  }
  for (const auto& [flag, v] : {std::pair{"--model", &model}, std::pair{"--input", &input}, std::pair{"--output", &output}})
    require(!v->empty(), [&] { return ErrorInfo{.where = "medseg infer", .field = flag, .expected = "a path", .actual = "none given"}; });
  require(fs::exists(input), [&] {
    return ErrorInfo{.where = "medseg infer", .field = "--input", .expected = "an image file or a folder of images",
                     .actual = input.string() + " does not exist"};
  });

  std::vector<fs::path> files;
  if (fs::is_directory(input)) {
    for (const auto& e : fs::directory_iterator(input))
      if (e.is_regular_file() && preprocess::detail::is_image_file(e.path())) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    require(!files.empty(), [&] {
      return ErrorInfo{.where = "medseg infer", .field = "--input", .expected = "a folder with at least one image",
                       .actual = input.string() + " has none"};
    });
  } else {
    files.push_back(input);
  }

  infer::Predictor<> predictor{model};
  fs::create_directories(output);
  infer::PredictTiming total;
  for (const auto& f : files) {
    const fs::path out = output / (preprocess::case_stem(f) + ".nii.gz");
    predictor.predict_file(f, out);
    const auto& t = predictor.last_timing();
    total.preprocess += t.preprocess;
    total.inference += t.inference;
    total.postprocess += t.postprocess;
    std::cout << f.filename().string() << " -> " << out.string();
    if (benchmark)
      std::cout << std::fixed << std::setprecision(3) << "  preprocess " << t.preprocess << " s, inference " << t.inference
                << " s, postprocess " << t.postprocess << " s";
    std::cout << "\n";
  }
  if (benchmark && files.size() > 1)
    std::cout << std::fixed << std::setprecision(3) << "total (" << files.size() << " images): preprocess " << total.preprocess
              << " s, inference " << total.inference << " s, postprocess " << total.postprocess << " s\n";
  return 0;
}

}  // namespace medseg::tool
