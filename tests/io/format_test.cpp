// read_image/write_image: the format by extension, and geometry carried across formats.
#include <catch2/catch.hpp>

#include "golden.hpp"
#include "medseg/io.hpp"

using namespace medseg;
using namespace medseg::io;

TEST_CASE("format: extensions choose the format and unknown ones fail with the list") {
  CHECK(format_of("a/b/scan.nii.gz") == ImageFormat::nifti);
  CHECK(format_of("SCAN.NII") == ImageFormat::nifti);
  CHECK(format_of("x.hdr") == ImageFormat::nifti);
  CHECK(format_of("x.img.gz") == ImageFormat::nifti);
  CHECK(format_of("case_00.mha") == ImageFormat::metaimage);
  CHECK(format_of("case_00.mhd") == ImageFormat::metaimage);
  CHECK(format_of("images/x.npy") == ImageFormat::npy);
  CHECK_THROWS_WITH(format_of("x.png"), Catch::Contains("x.png") && Catch::Contains(".png") && Catch::Contains(".mha"));
  CHECK_THROWS_WITH(read_image("x.tiff"), Catch::Contains("extension"));
}

TEST_CASE("format: geometry and voxels survive nii to mha to nii.gz to mhd") {
  const auto dir = test::scratch_dir("format_chain");
  Geometry g;
  g.spacing = {0.9765625, 0.9765625, 2.5};
  g.origin = {-250.0, -180.5, 1200.25};
  g.direction = {1, 0, 0, 0, -1, 0, 0, 0, -1};
  auto t = Tensor<std::int16_t>::empty({4, 5, 6});
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<std::int16_t>(i * 37 - 1024);
  write_image(Image<std::int16_t>{t, g}, dir / "a.nii");
  const AnyImage a = read_image(dir / "a.nii");
  write_image(a, dir / "b.mha");
  const AnyImage b = read_image(dir / "b.mha");
  write_image(b, dir / "c.nii.gz");
  const AnyImage c = read_image(dir / "c.nii.gz");
  write_image(c, dir / "d.mhd", {.compress_metaimage = false});
  const AnyImage d = read_image(dir / "d.mhd");
  for (const AnyImage* x : {&b, &c, &d}) {
    CHECK(geometry(*x) == geometry(a));
    CHECK(voxel_bytes(*x) == voxel_bytes(a));
  }
  CHECK(geometry(a).origin == g.origin);  // these values are exact in float32
  CHECK(geometry(a).spacing == g.spacing);
  const auto f = read_image_as<float>(dir / "c.nii.gz");
  CHECK(f.voxels.data()[1] == -987.0f);
  write_image(a, dir / "e.npy");
  CHECK(voxel_bytes(read_image(dir / "e.npy")) == voxel_bytes(a));
  std::filesystem::remove_all(dir);
}
