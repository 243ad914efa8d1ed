// .npy against NumPy: every dtype, byte order, memory order and format version NumPy
// writes reads to the same elements; medseg's files read back exactly and in NumPy; bad
// headers fail naming the file and field.
#include <catch2/catch.hpp>

#include <array>
#include <cstdio>

#include "golden.hpp"
#include "medseg/io/npy.hpp"

using namespace medseg;
using namespace medseg::io;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

nlohmann::json numpy_reads(const std::filesystem::path& file) {
  const std::string cmd =
      "/usr/bin/python3 '" MEDSEG_SOURCE_DIR "/tests/io/make_npy_golden.py' --check '" + file.string() + "'";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p);
  std::string out;
  std::array<char, 4096> buf{};
  while (std::fgets(buf.data(), static_cast<int>(buf.size()), p)) out += buf.data();
  REQUIRE(pclose(p) == 0);
  return nlohmann::json::parse(out);
}

}  // namespace

TEST_CASE("npy: every dtype, byte order, memory order and version NumPy writes reads exactly") {
  const auto dir = test::golden_dir("make_npy_golden.py");
  int n = 0;
  const auto m = test::manifest(dir);
  for (const auto& e : m["entries"]) {
    const std::string path = e["path"];
    INFO(path);
    const AnyImage im = read_npy(path);
    CHECK(std::string(name(dtype(im))) == e["dtype"].get<std::string>());
    CHECK(shape(im) == Shape(e["shape"].get<std::vector<std::int64_t>>()));
    CHECK(voxel_bytes(im) == read_file(e["raw"].get<std::string>()));
    ++n;
  }
  CHECK(n == 144);
}

TEST_CASE("npy: medseg's files round-trip exactly and NumPy reads them") {
  const auto dir = test::scratch_dir("npy_round_trip");
  for (DType t : {DType::uint8, DType::int8, DType::int16, DType::uint16, DType::int32, DType::uint32, DType::int64,
                  DType::uint64, DType::float16, DType::float32, DType::float64}) {
    for (const Shape& s : {Shape{5}, Shape{3, 4}, Shape{2, 3, 4}, Shape{2, 1, 3, 4}}) {
      AnyImage im = make_image(t, s, Geometry{});
      std::visit(
          [](auto& x) {
            using T = typename std::remove_cvref_t<decltype(x.voxels)>::value_type;
            for (std::int64_t i = 0; i < x.voxels.numel(); ++i) x.voxels.data()[i] = T(static_cast<float>(i % 50));
          },
          im);
      const auto path = dir / (std::string(name(t)) + std::to_string(s.rank()) + ".npy");
      write_npy(im, path);
      const AnyImage back = read_npy(path);
      CHECK(dtype(back) == t);
      CHECK(shape(back) == s);
      CHECK(voxel_bytes(back) == voxel_bytes(im));
      CHECK(read_file(path).size() % 64 == voxel_bytes(im).size() % 64);  // data starts at a multiple of 64
    }
  }
  const auto j = numpy_reads(dir / "int16" "3.npy");
  CHECK(j["shape"] == nlohmann::json::array({2, 3, 4}));
  CHECK(j["dtype"] == "int16");
  CHECK(j["sum"].get<double>() == 276.0);
  std::filesystem::remove_all(dir);
}

TEST_CASE("npy: bad headers fail naming the file and field") {
  const Bytes good = encode_npy(AnyImage(Image<float>{Tensor<float>::zeros({2, 3}), {}}));
  REQUIRE_NOTHROW(decode_npy(good, "a.npy"));
  auto edited = [&](const std::string& from, const std::string& to) {
    std::string s(good.begin(), good.end());
    const auto at = s.find(from);
    REQUIRE(at != std::string::npos);
    s.replace(at, from.size(), to);
    Bytes b(s.begin(), s.end());
    return error_of([&] { decode_npy(b, "a.npy"); });
  };
  CHECK_THAT(edited("<f4", "<c8"), Catch::Contains("a.npy") && Catch::Contains("descr") && Catch::Contains("<c8"));
  CHECK_THAT(edited("(2, 3)", "(2, 0)"), Catch::Contains("shape") && Catch::Contains("0"));
  CHECK_THAT(edited("(2, 3)", "(2, 9)"), Catch::Contains("a.npy") && Catch::Contains("exceed"));
  CHECK_THAT(edited("False", "Maybe"), Catch::Contains("fortran_order"));
  CHECK_THAT(edited("'shape'", "'shapes'"), Catch::Contains("shape"));
  CHECK_THAT(edited("NUMPY", "NUMPX"), Catch::Contains("magic"));
  Bytes cut(good.begin(), good.begin() + 30);
  CHECK_THAT(error_of([&] { decode_npy(cut, "a.npy"); }), Catch::Contains("header length"));
  CHECK_THAT(error_of([&] { read_npy("/nonexistent/x.npy"); }), Catch::Contains("x.npy"));
}
