// medseg convert IN OUT: from any image format medseg reads to any it writes, keeping the
// voxels and geometry; optionally a new element type or a reorientation (no resampling).
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "command.hpp"
#include "medseg/io.hpp"

namespace medseg::tool {

int convert_command(Args args) {
  std::vector<std::string_view> files;
  std::optional<DType> dtype;
  std::string orient;
  io::WriteOptions options;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto a = args[i];
    const bool has_value = i + 1 < args.size();
    if (a == "--help" || a == "-h") {
      std::cout << "usage: medseg convert IN OUT [--dtype T] [--orient CODE] [--level N]\n"
                   "Converts between .nii, .nii.gz, .hdr/.img, .mha, .mhd and .npy (formats by extension), keeping\n"
                   "voxels and geometry. --dtype float32|int16|uint8|... converts values (scaling applied, integers\n"
                   "rounded and saturated); --orient RAS|LPS|... permutes and flips axes without resampling;\n"
                   "--level N is the gzip/zlib level (1 fastest .. 12 smallest, default 1).\n";
      return 0;
    } else if (a == "--dtype" && has_value) {
      dtype = parse_dtype(args[++i]);
    } else if (a == "--orient" && has_value) {
      orient = std::string(args[++i]);
    } else if (a == "--level" && has_value) {
      options.compression_level = std::stoi(std::string(args[++i]));
    } else if (!a.starts_with("-")) {
      files.push_back(a);
    } else {
      throw Error{{.where = "medseg convert", .field = "argument", .expected = "IN OUT [--dtype T] [--orient CODE] [--level N]",
                   .actual = "\"" + std::string(a) + "\""}};
    }
  }
  require(files.size() == 2, [&] {
    return ErrorInfo{.where = "medseg convert", .field = "files", .expected = "IN and OUT",
                     .actual = std::to_string(files.size()) + " file names"};
  });
  io::AnyImage image = io::read_image(std::string(files[0]), {.dtype = dtype});
  if (!orient.empty())
    image = std::visit([&](const auto& im) -> io::AnyImage { return io::reorient(im, orient); }, image);
  io::write_image(image, std::string(files[1]), options);
  return 0;
}

}  // namespace medseg::tool
