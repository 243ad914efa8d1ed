// Geometry: index <-> world transforms, affines in LPS and RAS, validation, and AnyImage.
#include <catch2/catch.hpp>

#include <cmath>

#include "medseg/io/image.hpp"

using namespace medseg;
using namespace medseg::io;

namespace {
Geometry oblique() {
  Geometry g;
  g.spacing = {0.5, 0.75, 2.0};
  g.origin = {10, -20, 30};
  const double c = std::cos(0.2), s = std::sin(0.2);
  g.direction = {c, -s, 0, s, c, 0, 0, 0, 1};
  return g;
}
}  // namespace

TEST_CASE("image: index_to_world follows origin + direction * spacing * index") {
  const Geometry g = oblique();
  const Vec3 w = g.index_to_world({2, 4, 1});
  const double c = std::cos(0.2), s = std::sin(0.2);
  CHECK(w[0] == Approx(10 + c * 0.5 * 2 - s * 0.75 * 4));
  CHECK(w[1] == Approx(-20 + s * 0.5 * 2 + c * 0.75 * 4));
  CHECK(w[2] == Approx(30 + 2.0));
  const Vec3 back = g.world_to_index(w);
  CHECK(back[0] == Approx(2));
  CHECK(back[1] == Approx(4));
  CHECK(back[2] == Approx(1));
}

TEST_CASE("image: affines convert between LPS and RAS by negating x and y") {
  const Geometry g = oblique();
  const Mat4 lps = g.affine_lps(), ras = g.affine_ras();
  for (int c = 0; c < 4; ++c) {
    CHECK(ras[c] == -lps[c]);
    CHECK(ras[4 + c] == -lps[4 + c]);
    CHECK(ras[8 + c] == lps[8 + c]);
  }
  const Geometry r = Geometry::from_affine_ras(ras);
  for (int i = 0; i < 3; ++i) {
    CHECK(r.spacing[i] == Approx(g.spacing[i]));
    CHECK(r.origin[i] == Approx(g.origin[i]));
  }
  for (int i = 0; i < 9; ++i) CHECK(r.direction[i] == Approx(g.direction[i]).margin(1e-15));
}

TEST_CASE("image: validate refuses zero NaN and negative spacing and singular directions") {
  Geometry g = oblique();
  REQUIRE_NOTHROW(validate(g, "scan.nii"));
  g.spacing[1] = 0;
  CHECK_THROWS_WITH(validate(g, "scan.nii"), Catch::Contains("scan.nii") && Catch::Contains("spacing of axis j"));
  g.spacing[1] = std::nan("");
  CHECK_THROWS_WITH(validate(g, "scan.nii"), Catch::Contains("spacing of axis j"));
  g.spacing[1] = -1;
  CHECK_THROWS_WITH(validate(g, "scan.nii"), Catch::Contains("positive"));
  g = oblique();
  g.direction = {1, 0, 0, 1, 0, 0, 0, 0, 1};
  CHECK_THROWS_WITH(validate(g, "scan.nii"), Catch::Contains("direction") && Catch::Contains("invertible"));
  g = oblique();
  g.origin[2] = INFINITY;
  CHECK_THROWS_WITH(validate(g, "scan.nii"), Catch::Contains("origin z"));
}

TEST_CASE("image: AnyImage reports dtype and shape and converts") {
  AnyImage a = Image<std::int16_t>{Tensor<std::int16_t>::full({2, 3, 4}, -5), oblique()};
  CHECK(dtype(a) == DType::int16);
  CHECK(shape(a) == Shape{2, 3, 4});
  CHECK(geometry(a) == oblique());
  const auto f = image_cast<float>(a);
  CHECK(f.voxels.to_vector() == std::vector<float>(24, -5.0f));
  CHECK(f.size() == std::array<std::int64_t, 3>{4, 3, 2});
  CHECK(f.channels() == 1);
  const auto same = image_cast<std::int16_t>(a);
  CHECK(same.voxels.shares_storage_with(std::get<Image<std::int16_t>>(a).voxels));
  const AnyImage m = make_image(DType::float16, {3, 2, 2, 2}, Geometry{});
  CHECK(dtype(m) == DType::float16);
  CHECK(std::get<Image<float16>>(m).channels() == 3);
}
