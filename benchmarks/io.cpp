// `medseg bench io`: .nii.gz write and read throughput against nibabel in the same run, on
// the same int16 CT-sized volume (256 x 256 x 160, 20 MiB). Ours compresses and inflates
// 4 MiB gzip members on all threads with libdeflate; nibabel uses zlib on one thread. Each
// side also reads the other's file (nibabel's is one gzip member, which we inflate serially).
#include <cmath>
#include <filesystem>
#include <string>
#include <unistd.h>

#include "harness.hpp"
#include "medseg/io.hpp"

namespace medseg::bench {

std::vector<Result> run_io(const Options& options) {
  const std::int64_t d = options.quick ? 16 : 160, h = options.quick ? 64 : 256, w = options.quick ? 64 : 256;
  const int repeats = options.quick ? 2 : 5;
  auto t = Tensor<std::int16_t>::empty({d, h, w});
  for (std::int64_t k = 0; k < d; ++k)
    for (std::int64_t j = 0; j < h; ++j)
      for (std::int64_t i = 0; i < w; ++i)
        t.data()[(k * h + j) * w + i] =
            static_cast<std::int16_t>((i * 37 + j * 11 + k * 5) % 1200 - 1000 + (i * j + k) % 17);
  io::Geometry g;
  g.spacing = {0.8, 0.8, 2.5};
  g.direction = {-1, 0, 0, 0, -1, 0, 0, 0, 1};  // nibabel's diag affine, in LPS
  const io::AnyImage image = io::Image<std::int16_t>{t, g};
  const auto dir = std::filesystem::temp_directory_path() / ("medseg_bench_io." + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto ours = dir / "medseg.nii.gz";

  const double write_ms = median_ms([&] { io::write_image(image, ours); }, repeats);
  const double read_ms = median_ms([&] { io::read_image(ours); }, repeats);
  std::string why;
  const auto peer = run_python_peer("io.py", {std::to_string(d), std::to_string(h), std::to_string(w),
                                              std::to_string(repeats), ours.string()}, why);
  const std::string peer_name = peer ? peer->value("peer", std::string("nibabel")) : "nibabel (" + why + ")";
  auto peer_ms = [&](const char* key) -> std::optional<double> {
    if (peer && peer->contains(key)) return (*peer)[key].get<double>();
    return std::nullopt;
  };
  const double mib = static_cast<double>(t.nbytes()) / (1 << 20);
  auto rate = [&](double ms) { return std::to_string(static_cast<int>(mib / (ms / 1000))) + " MiB/s"; };
  const std::string size = std::to_string(w) + "x" + std::to_string(h) + "x" + std::to_string(d) + " int16";
  const auto file_mib = static_cast<double>(std::filesystem::file_size(ours)) / (1 << 20);
  std::vector<Result> results;
  results.push_back({"write .nii.gz " + size, write_ms, peer_name, peer_ms("write"),
                     rate(write_ms) + ", " + str(std::round(file_mib * 10) / 10) +
                         " MiB file (level 1)"});
  results.push_back({"read .nii.gz " + size, read_ms, peer_name, peer_ms("read_ours"),
                     rate(read_ms) + " (medseg's file; nibabel reads it too" +
                         (peer && !(*peer).value("ours_matches", false) ? ": MISMATCH)" : ")")});
  if (peer && peer->contains("nibabel_file")) {
    const std::string theirs = (*peer)["nibabel_file"];
    const double cross_ms = median_ms([&] { io::read_image(theirs); }, repeats);
    results.push_back({"read nibabel's .nii.gz " + size, cross_ms, peer_name, peer_ms("read"),
                       rate(cross_ms) + " (one gzip member: serial inflate)"});
    std::filesystem::remove_all(std::filesystem::path(theirs).parent_path());
  }
  std::filesystem::remove_all(dir);
  return results;
}

}  // namespace medseg::bench
