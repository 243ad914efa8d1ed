// medseg info FILE: what a volume is, as one JSON object: format, shape, element type,
// geometry (spacing, origin, direction, orientation code, the RAS affine) and value range.
#include <array>
#include <cmath>
#include <iostream>
#include <limits>
#include <string>

#include <nlohmann/json.hpp>

#include "command.hpp"
#include "medseg/io.hpp"

namespace medseg::tool {

int info_command(Args args) {
  if (args.size() != 1 || args[0] == "--help" || args[0] == "-h") {
    std::cout << "usage: medseg info FILE\n"
                 "Prints one JSON object describing FILE (.nii, .nii.gz, .hdr/.img, .mha, .mhd, .npy): shape\n"
                 "([C,]D,H,W), datatype, spacing/origin (x,y,z, LPS mm), direction (rows), orientation code\n"
                 "(e.g. \"RAS\"), affine_ras (as nibabel prints it), and min/max/mean of the voxels.\n";
    return args.size() == 1 ? 0 : 2;
  }
  const std::filesystem::path path{std::string(args[0])};
  const io::AnyImage image = io::read_image(path);
  const io::Geometry& g = io::geometry(image);
  double lo = std::numeric_limits<double>::infinity(), hi = -lo, sum = 0;
  std::int64_t nans = 0;
  std::visit(
      [&](const auto& im) {
        const auto v = im.voxels.contiguous();
        for (std::int64_t i = 0; i < v.numel(); ++i) {
          const double x = static_cast<double>(v.data()[i]);
          if (std::isnan(x)) {
            ++nans;
            continue;
          }
          lo = std::min(lo, x);
          hi = std::max(hi, x);
          sum += x;
        }
      },
      image);
  const Shape s = io::shape(image);
  const std::int64_t counted = s.product() - nans;
  nlohmann::json j;
  j["file"] = path.string();
  j["format"] = std::array<const char*, 4>{"nifti", "metaimage", "npy", "dicom"}[static_cast<int>(io::format_of(path))];
  j["shape"] = s.to_vector();
  j["datatype"] = std::string(name(io::dtype(image)));
  j["spacing"] = g.spacing;
  j["origin"] = g.origin;
  j["direction"] = {{g.direction[0], g.direction[1], g.direction[2]},
                    {g.direction[3], g.direction[4], g.direction[5]},
                    {g.direction[6], g.direction[7], g.direction[8]}};
  j["orientation"] = io::orientation_code(g);
  const io::Mat4 a = g.affine_ras();
  j["affine_ras"] = {{a[0], a[1], a[2], a[3]}, {a[4], a[5], a[6], a[7]}, {a[8], a[9], a[10], a[11]}, {0, 0, 0, 1}};
  j["min"] = counted ? nlohmann::json(lo) : nlohmann::json(nullptr);
  j["max"] = counted ? nlohmann::json(hi) : nlohmann::json(nullptr);
  j["mean"] = counted ? nlohmann::json(sum / static_cast<double>(counted)) : nlohmann::json(nullptr);
  j["nan_count"] = nans;
  std::cout << j.dump(2) << "\n";
  return 0;
}

}  // namespace medseg::tool
