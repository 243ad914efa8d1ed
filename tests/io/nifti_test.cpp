// NIfTI-1/2 and Analyze against nibabel: every file of Debian's nibabel test data and files
// nibabel writes here (every datatype, byte order, form and transform code), then round
// trips and the bad inputs that must fail with an error naming file and field.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <fstream>

#include "golden.hpp"
#include "medseg/io/nifti.hpp"

using namespace medseg;
using namespace medseg::io;

namespace {

std::vector<double> read_doubles(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::vector<double> v;
  double x;
  while (f.read(reinterpret_cast<char*>(&x), sizeof x)) v.push_back(x);
  return v;
}

bool same_bits_or_both_nan(double a, double b) {
  return (std::isnan(a) && std::isnan(b)) || std::memcmp(&a, &b, sizeof a) == 0;
}

Image<float> test_image(const Shape& shape) {
  auto t = Tensor<float>::empty(shape);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<float>(i % 97) * 0.5f - 7.0f;
  Geometry g;
  g.spacing = {0.8, 1.25, 3.0};
  g.origin = {-120.5, 33.0, 7.25};
  g.direction = {0, 0, 1, -1, 0, 0, 0, -1, 0};  // a permutation with flips: sagittal-like
  return {t, g};
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

/// A valid little-endian NIfTI-1 file of 4x3x2 int16 voxels, to corrupt field by field.
Bytes valid_nifti() {
  auto im = Image<std::int16_t>{Tensor<std::int16_t>::full({2, 3, 4}, 7), Geometry{}};
  Bytes h = encode_nifti_header(AnyImage(im), true);
  Bytes v = voxel_bytes(AnyImage(im));
  h.insert(h.end(), v.begin(), v.end());
  return h;
}

}  // namespace

TEST_CASE("nifti: every nibabel test file and generated file reads as nibabel reads it") {
  const auto dir = test::golden_dir("make_nifti_golden.py");
  const auto m = test::manifest(dir);
  int compared = 0, refused = 0;
  for (const auto& e : m["entries"]) {
    const std::string path = e["path"];
    INFO(path);
    if (!e["ok"].get<bool>()) {
      INFO("nibabel: " << e["error"].get<std::string>());
      CHECK_THROWS_AS(read_nifti(path), Error);
      ++refused;
      continue;
    }
    const auto im = std::get<Image<double>>(read_nifti(path, {.dtype = DType::float64}));
    // Shape: nibabel's (i, j, k, ...) reversed, padded to rank 3.
    auto nib_shape = e["shape"].get<std::vector<std::int64_t>>();
    while (nib_shape.size() < 3) nib_shape.push_back(1);
    std::reverse(nib_shape.begin(), nib_shape.end());
    if (e["cls"] == "Cifti2Image") {  // nibabel drops CIFTI's four leading unit dims; medseg keeps the NIfTI dims
      Shape ours, theirs;
      for (auto n : im.voxels.shape())
        if (n != 1) ours.push_back(n);
      for (auto n : nib_shape)
        if (n != 1) theirs.push_back(n);
      CHECK(ours == theirs);
    } else {
      CHECK(im.voxels.shape() == Shape(nib_shape));
    }
    const auto expected = read_doubles(dir / e["data"].get<std::string>());
    REQUIRE(static_cast<std::int64_t>(expected.size()) == im.voxels.numel());
    std::int64_t mismatches = 0;
    for (std::int64_t i = 0; i < im.voxels.numel(); ++i)
      mismatches += !same_bits_or_both_nan(im.voxels.data()[i], expected[static_cast<std::size_t>(i)]);
    CHECK(mismatches == 0);
    const Mat4 ours = im.geometry.affine_ras();
    const auto theirs = e["affine"];
    for (int r = 0; r < 4; ++r)
      for (int c = 0; c < 4; ++c) {
        const double t = theirs[r][c];
        INFO("affine[" << r << "][" << c << "]");
        CHECK(ours[4 * r + c] == Approx(t).margin(1e-12).epsilon(1e-12));
      }
    // Unscaled reads keep the stored type.
    const AnyImage raw = read_nifti(path);
    if (!e["scaled"].get<bool>()) CHECK(std::string(name(dtype(raw))) == e["dtype"].get<std::string>());
    ++compared;
  }
  CHECK(compared >= 120);
  CHECK(refused >= 3);  // analyze.hdr, nifti1.hdr, nifti2.hdr come without their .img
}

TEST_CASE("nifti: round trips keep voxels and geometry for every datatype and form") {
  const auto dir = test::scratch_dir("nifti_round_trip");
  const auto source = test_image({3, 4, 5});
  for (DType t : {DType::uint8, DType::int8, DType::int16, DType::uint16, DType::int32, DType::uint32, DType::int64,
                  DType::uint64, DType::float32, DType::float64}) {
    const AnyImage first = visit_dtype(t, [&](auto tag) -> AnyImage {
      using T = decltype(tag);
      return Image<T>{source.voxels.astype<float>().template astype<T>(), source.geometry};
    });
    for (const char* ext : {".nii", ".nii.gz", ".hdr", ".img.gz"}) {
      for (int version : {1, 2}) {
        const auto path = dir / (std::string(name(t)) + "_v" + std::to_string(version) + ext);
        INFO(path);
        write_nifti(first, path, {.version = version});
        const AnyImage read = read_nifti(path);
        REQUIRE(dtype(read) == t);
        CHECK(shape(read) == shape(first));
        CHECK(voxel_bytes(read) == voxel_bytes(first));
        // Geometry goes through the file's float32 fields once, then is stable.
        for (int i = 0; i < 3; ++i) CHECK(geometry(read).spacing[i] == Approx(source.geometry.spacing[i]).epsilon(1e-6));
        write_nifti(read, path, {.version = version});
        const AnyImage again = read_nifti(path);
        CHECK(geometry(again) == geometry(read));
        CHECK(voxel_bytes(again) == voxel_bytes(read));
      }
    }
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("nifti: float16 voxels are written as float32 with the same values") {
  const auto dir = test::scratch_dir("nifti_half");
  const auto im = test_image({2, 3, 4});
  write_nifti(AnyImage(Image<float16>{im.voxels.astype<float16>(), im.geometry}), dir / "h.nii");
  const AnyImage back = read_nifti(dir / "h.nii");
  REQUIRE(dtype(back) == DType::float32);
  CHECK(std::get<Image<float>>(back).voxels.to_vector() == im.voxels.astype<float16>().astype<float>().to_vector());
  std::filesystem::remove_all(dir);
}

TEST_CASE("nifti: the qform alone carries an oblique geometry with a reflection") {
  // Written sform and qform agree: dropping the sform code must give the same transform.
  const auto dir = test::scratch_dir("nifti_qform");
  auto im = test_image({2, 3, 4});
  const double c = std::cos(0.3), s = std::sin(0.3);
  im.geometry.direction = {c, -s, 0, s, c, 0, 0, 0, -1};  // rotation about z, then k flipped
  Bytes file = encode_nifti_header(AnyImage(im), true);
  store_le<std::int16_t>(&file[254], 0);  // sform_code = 0
  const Bytes v = voxel_bytes(AnyImage(im));
  file.insert(file.end(), v.begin(), v.end());
  const auto read = decode_nifti(file, {}, "qform.nii");
  const Mat4 a = geometry(read).affine_lps(), b = im.geometry.affine_lps();
  for (int i = 0; i < 16; ++i) CHECK(a[i] == Approx(b[i]).margin(1e-5));
  CHECK(geometry(read).direction[8] == Approx(-1.0).margin(1e-6));
  std::filesystem::remove_all(dir);
}

TEST_CASE("nifti: bad headers and truncated files fail naming the file and field") {
  const Bytes good = valid_nifti();
  REQUIRE_NOTHROW(decode_nifti(good, {}, "scan.nii"));

  auto with = [&](auto edit) {
    Bytes b = good;
    edit(b);
    return error_of([&] { decode_nifti(b, {}, "scan.nii"); });
  };
  CHECK_THAT(with([](Bytes& b) { b.resize(b.size() - 10); }),
             Catch::Contains("scan.nii") && Catch::Contains("voxel data") && Catch::Contains("exceed"));
  CHECK_THAT(with([](Bytes& b) { store_le<std::int16_t>(&b[42], 0); }),
             Catch::Contains("scan.nii") && Catch::Contains("dim[1]") && Catch::Contains("positive"));
  CHECK_THAT(with([](Bytes& b) { store_le<std::int16_t>(&b[44], -3); }), Catch::Contains("dim[2]") && Catch::Contains("-3"));
  CHECK_THAT(with([](Bytes& b) { store_le<std::int16_t>(&b[40], 9); }), Catch::Contains("dim[0]"));
  CHECK_THAT(with([](Bytes& b) { store_le<std::int16_t>(&b[70], 32); }),
             Catch::Contains("datatype") && Catch::Contains("complex64"));
  CHECK_THAT(with([](Bytes& b) { store_le<std::int16_t>(&b[70], 77); }), Catch::Contains("datatype") && Catch::Contains("77"));
  CHECK_THAT(with([](Bytes& b) { store_le<std::int32_t>(&b[0], 123); }), Catch::Contains("sizeof_hdr"));
  CHECK_THAT(with([](Bytes& b) { store_le<float>(&b[108], 100.0f); }), Catch::Contains("vox_offset"));
  CHECK_THAT(with([](Bytes& b) { b.resize(200); }), Catch::Contains("header") && Catch::Contains("348"));
  // Spacing comes from the sform columns: a zero column and a NaN entry are both refused.
  CHECK_THAT(with([](Bytes& b) {
               for (int r = 0; r < 3; ++r) store_le<float>(&b[280 + 16 * r], 0.0f);
             }),
             Catch::Contains("spacing of axis i"));
  CHECK_THAT(with([](Bytes& b) { store_le<float>(&b[284], std::nanf("")); }), Catch::Contains("finite"));
  // The qform path reads spacing from pixdim.
  CHECK_THAT(with([](Bytes& b) {
               store_le<std::int16_t>(&b[254], 0);
               store_le<float>(&b[80], 0.0f);
             }),
             Catch::Contains("spacing"));
  CHECK_THAT(with([](Bytes& b) {
               store_le<std::int16_t>(&b[254], 0);
               store_le<float>(&b[256], 2.0f);
             }),
             Catch::Contains("quatern"));
  CHECK_THAT(with([](Bytes& b) {
               store_le<float>(&b[112], 2.0f);
               store_le<float>(&b[116], INFINITY);
             }),
             Catch::Contains("scl_inter"));
}

TEST_CASE("nifti: truncated and corrupt .nii.gz files fail naming the file") {
  const auto dir = test::scratch_dir("nifti_gz");
  write_nifti(AnyImage(test_image({4, 5, 6})), dir / "a.nii.gz");
  Bytes gz = read_file(dir / "a.nii.gz");
  write_file_atomic(dir / "cut.nii.gz", {ByteSpan(gz).first(gz.size() / 2)});
  CHECK_THAT(error_of([&] { read_nifti(dir / "cut.nii.gz"); }),
             Catch::Contains("cut.nii.gz") && Catch::Contains("gzip"));
  gz[gz.size() / 2] ^= 0x5a;
  gz[gz.size() / 2 + 1] ^= 0xa5;
  write_file_atomic(dir / "bad.nii.gz", {gz});
  CHECK_THAT(error_of([&] { read_nifti(dir / "bad.nii.gz"); }), Catch::Contains("bad.nii.gz"));
  CHECK_THAT(error_of([&] { read_nifti(dir / "missing.nii"); }), Catch::Contains("missing.nii"));
  write_nifti(AnyImage(test_image({2, 2, 2})), dir / "pair.hdr");
  std::filesystem::remove(dir / "pair.img");
  CHECK_THAT(error_of([&] { read_nifti(dir / "pair.hdr"); }), Catch::Contains("pair.img") && Catch::Contains("missing"));
  std::filesystem::remove_all(dir);
}
