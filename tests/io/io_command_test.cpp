// `medseg info` and `medseg convert` as a user runs them: JSON out, files converted with
// geometry intact, errors that name the file, non-zero exit codes.
#include <catch2/catch.hpp>

#include <array>
#include <cstdio>
#include <sys/wait.h>

#include "golden.hpp"
#include "medseg/io.hpp"

using namespace medseg;
using namespace medseg::io;

namespace {
struct Run {
  int code;
  std::string out;
};
Run run_medseg(const std::string& args) {
  const std::string cmd = std::string(MEDSEG_EXE) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p);
  std::string out;
  std::array<char, 4096> buf{};
  while (std::fgets(buf.data(), static_cast<int>(buf.size()), p)) out += buf.data();
  const int status = pclose(p);
  return {WEXITSTATUS(status), out};
}
}  // namespace

TEST_CASE("medseg info prints shape datatype geometry orientation and range as JSON") {
  const auto dir = test::scratch_dir("cli_info");
  auto t = Tensor<std::int16_t>::empty({2, 3, 4});
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<std::int16_t>(i - 10);
  Geometry g;
  g.spacing = {0.5, 0.75, 3};
  g.origin = {1, 2, 3};
  g.direction = {-1, 0, 0, 0, -1, 0, 0, 0, 1};
  write_image(Image<std::int16_t>{t, g}, dir / "ct.nii.gz");
  const auto r = run_medseg("info '" + (dir / "ct.nii.gz").string() + "'");
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["shape"] == nlohmann::json::array({2, 3, 4}));
  CHECK(j["datatype"] == "int16");
  CHECK(j["format"] == "nifti");
  CHECK(j["orientation"] == "RAS");
  CHECK(j["spacing"][2].get<double>() == 3.0);
  CHECK(j["origin"][0].get<double>() == 1.0);
  CHECK(j["direction"][0][0].get<double>() == -1.0);
  CHECK(j["affine_ras"][0][3].get<double>() == -1.0);
  CHECK(j["min"].get<double>() == -10.0);
  CHECK(j["max"].get<double>() == 13.0);
  CHECK(j["mean"].get<double>() == Approx(1.5));
  const auto bad = run_medseg("info '" + (dir / "none.nii").string() + "'");
  CHECK(bad.code == 1);
  CHECK_THAT(bad.out, Catch::Contains("none.nii"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("medseg convert changes format dtype and orientation and keeps the geometry") {
  const auto dir = test::scratch_dir("cli_convert");
  auto t = Tensor<float>::empty({2, 3, 4});
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<float>(i) + 0.25f;
  Geometry g;
  g.spacing = {0.5, 0.75, 3};
  g.origin = {1, 2, 3};
  write_image(Image<float>{t, g}, dir / "a.nii");
  REQUIRE(run_medseg("convert '" + (dir / "a.nii").string() + "' '" + (dir / "a.mha").string() + "'").code == 0);
  const AnyImage mha = read_image(dir / "a.mha");
  CHECK(geometry(mha) == geometry(read_image(dir / "a.nii")));
  CHECK(voxel_bytes(mha) == voxel_bytes(read_image(dir / "a.nii")));
  REQUIRE(run_medseg("convert '" + (dir / "a.mha").string() + "' '" + (dir / "b.nii.gz").string() +
                     "' --dtype int16 --orient RAS").code == 0);
  const AnyImage b = read_image(dir / "b.nii.gz");
  CHECK(dtype(b) == DType::int16);
  CHECK(orientation_code(geometry(b)) == "RAS");
  const auto bad = run_medseg("convert '" + (dir / "a.nii").string() + "' '" + (dir / "x.png").string() + "'");
  CHECK(bad.code == 1);
  CHECK_THAT(bad.out, Catch::Contains("x.png") && Catch::Contains("extension"));
  CHECK(run_medseg("convert onlyone.nii").code != 0);
  std::filesystem::remove_all(dir);
}

TEST_CASE("medseg info and convert read compressed and colour DICOM, or say what the build lacks") {
  const std::string files = "/usr/lib/python3/dist-packages/pydicom/data/test_files/";
  if (!std::filesystem::exists(files + "JPEG2000.dcm")) return;  // python3-pydicom not installed
  const auto dir = test::scratch_dir("cli_dicom");
  const auto j2k = run_medseg("info '" + files + "JPEG2000.dcm'");
  const auto rle = run_medseg("info '" + files + "SC_rgb_rle_2frame.dcm'");  // decoded by medseg itself
  REQUIRE(rle.code == 0);
  CHECK(nlohmann::json::parse(rle.out)["shape"] == nlohmann::json::array({3, 2, 100, 100}));
#if defined(MEDSEG_WITH_GDCM) && MEDSEG_WITH_GDCM
  REQUIRE(j2k.code == 0);
  const auto j = nlohmann::json::parse(j2k.out);
  CHECK(j["format"] == "dicom");
  CHECK(j["shape"] == nlohmann::json::array({1, 1024, 256}));
  REQUIRE(run_medseg("convert '" + files + "SC_rgb_jpeg_gdcm.dcm' '" + (dir / "rgb.nii.gz").string() + "'").code == 0);
  CHECK(shape(read_image(dir / "rgb.nii.gz")) == Shape{3, 1, 100, 100});
#else
  CHECK(j2k.code == 1);
  CHECK_THAT(j2k.out, Catch::Contains("JPEG2000.dcm") && Catch::Contains("medseg::dicom_codecs"));
#endif
  std::filesystem::remove_all(dir);
}
