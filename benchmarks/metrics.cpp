// `medseg bench metrics`: evaluating one segmentation case as MONAI and nnU-Net do, on a
// synthetic 3-class [96,160,160] label map with 2.5 x 0.8 x 0.8 mm voxels: per-class Dice/IoU,
// HD95 + average surface distance of the foreground classes (surfaces by erosion, exact
// anisotropic distance transforms), and one whole-volume distance transform, against
// scipy.ndimage and NumPy doing the same (MONAI's CPU path is exactly these SciPy calls).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

#include "harness.hpp"
#include "medseg/core.hpp"
#include "medseg/metrics.hpp"

namespace medseg::bench {
namespace {

/// Two ellipsoid "organs" (labels 1 and 2); `shift` moves and `grow` inflates them, so the
/// prediction is the reference slightly off, as a decent model's output is.
Tensor<std::uint8_t> organs(const Shape& shape, double shift, double grow) {
  auto t = Tensor<std::uint8_t>::empty(shape);
  const std::int64_t D = shape[0], H = shape[1], W = shape[2];
  parallel_for(0, D, 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t d = b; d < e; ++d)
      for (std::int64_t h = 0; h < H; ++h)
        for (std::int64_t w = 0; w < W; ++w) {
          const double z = static_cast<double>(d) / static_cast<double>(D) - 0.5;
          const double y = static_cast<double>(h) / static_cast<double>(H) - 0.5 - shift;
          const double x = static_cast<double>(w) / static_cast<double>(W) - 0.5;
          // a bumpy surface, so distances vary along it
          const double bump = 0.02 * std::sin(17 * x) * std::cos(13 * y + 5 * z);
          std::uint8_t label = 0;
          const double a = (x + 0.18) / (0.2 + grow), c = y / (0.25 + grow), s = z / (0.3 + grow);
          if (a * a + c * c + s * s < 1 + bump) label = 1;
          const double a2 = (x - 0.2) / (0.12 + grow), c2 = (y + 0.05) / (0.15 + grow), s2 = z / (0.2 + grow);
          if (a2 * a2 + c2 * c2 + s2 * s2 < 1 - bump) label = 2;
          t(d, h, w) = label;
        }
  });
  return t;
}

template <class... A>
std::string format(const char* pattern, A... args) {
  char buf[200];
  std::snprintf(buf, sizeof buf, pattern, args...);
  return buf;
}

void write_raw(const std::string& path, const Tensor<std::uint8_t>& t) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(t.data()), static_cast<std::streamsize>(t.nbytes()));
}

}  // namespace

std::vector<Result> run_metrics(const Options& options) {
  const Shape shape = options.quick ? Shape{24, 40, 40} : Shape{96, 160, 160};
  const metrics::Spacing spacing{2.5, 0.8, 0.8};
  const int repeats = options.quick ? 2 : 7;
  const auto reference = organs(shape, 0.0, 0.0);
  const auto prediction = organs(shape, 0.015, 0.01);

  const std::string stem = "/tmp/medseg_bench_metrics_" + std::to_string(::getpid());
  write_raw(stem + ".ref", reference);
  write_raw(stem + ".pred", prediction);
  std::string why;
  const auto peer = run_python_peer("metrics.py", {stem, std::to_string(shape[0]), std::to_string(shape[1]),
                                                   std::to_string(shape[2]), "2.5,0.8,0.8", std::to_string(repeats)},
                                    why);
  std::filesystem::remove(stem + ".ref");
  std::filesystem::remove(stem + ".pred");
  const std::string peer_name = peer ? peer->value("peer", std::string("scipy")) : "scipy (" + why + ")";
  auto peer_ms = [&](const char* key) -> std::optional<double> {
    if (peer && peer->contains(key)) return (*peer)[key].get<double>();
    return std::nullopt;
  };

  std::vector<Result> results;
  const std::string grid = shape.to_string();
  std::vector<double> dice;
  const double counts_ms = median_ms([&] { dice = metrics::dice_per_class(prediction, reference, 3); }, repeats);
  results.push_back({"Dice+IoU of 3 classes " + grid, counts_ms, peer_name, peer_ms("overlap"),
                     format("Dice %.4f / %.4f", dice[1], dice[2])});

  std::vector<metrics::SurfaceDistance> sd;
  const double sd_ms = median_ms(
      [&] { sd = metrics::surface_distance_per_class(prediction, reference, 3, {.spacing = spacing}); }, repeats);
  std::string note = format("HD95 %.3f / %.3f mm, ASSD %.3f / %.3f mm", sd[1].hausdorff, sd[2].hausdorff,
                            sd[1].average, sd[2].average);
  if (peer && peer->contains("hd95_1"))
    note += format(" (peer HD95 %.3f / %.3f)", (*peer)["hd95_1"].get<double>(), (*peer)["hd95_2"].get<double>());
  results.push_back({"HD95+ASSD of 2 classes " + grid, sd_ms, peer_name, peer_ms("surface"), note});

  const double edt_ms = median_ms([&] { (void)metrics::distance_transform_edt(reference, spacing); }, repeats);
  results.push_back({"distance_transform_edt " + grid, edt_ms, peer_name, peer_ms("edt"), "anisotropic, float64"});
  return results;
}

}  // namespace medseg::bench
