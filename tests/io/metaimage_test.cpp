// MetaImage against ITK's example data (Debian's insighttoolkit5-examples), read by an
// independent NumPy reader at test time; round trips of .mha and .mhd (+ .raw/.zraw); and
// bad headers that must fail naming the file and field.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>

#include "golden.hpp"
#include "medseg/io/metaimage.hpp"

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

const char* itk_data = "/usr/share/doc/insighttoolkit5-examples/examples/Data";

}  // namespace

TEST_CASE("metaimage: ITK's example files read as an independent reader sees them") {
  if (!std::filesystem::exists(itk_data)) {
    WARN("insighttoolkit5-examples is not installed (scripts/setup.sh --python installs it)");
    return;
  }
  const auto dir = test::golden_dir("make_metaimage_golden.py");
  const auto m = test::manifest(dir);
  int compared = 0;
  for (const auto& e : m["entries"]) {
    const std::string path = e["path"];
    INFO(path);
    if (!e["ok"].get<bool>()) {
      CHECK_THROWS_AS(read_metaimage(path), Error);
      continue;
    }
    const AnyImage any = read_metaimage(path);
    CHECK(std::string(name(dtype(any))) == e["dtype"].get<std::string>());
    const auto im = image_cast<double>(any);
    CHECK(im.voxels.shape() == Shape(e["shape"].get<std::vector<std::int64_t>>()));
    std::ifstream f(dir / e["data"].get<std::string>(), std::ios::binary);
    std::vector<double> expected(static_cast<std::size_t>(im.voxels.numel()));
    f.read(reinterpret_cast<char*>(expected.data()), static_cast<std::streamsize>(expected.size() * sizeof(double)));
    REQUIRE(f.gcount() == static_cast<std::streamsize>(expected.size() * sizeof(double)));
    CHECK(im.voxels.to_vector() == expected);
    for (int i = 0; i < 3; ++i) {
      CHECK(im.geometry.spacing[i] == e["spacing"][i].get<double>());
      CHECK(im.geometry.origin[i] == e["origin"][i].get<double>());
    }
    for (int i = 0; i < 9; ++i) CHECK(im.geometry.direction[i] == e["direction"][i].get<double>());
    ++compared;
  }
  CHECK(compared >= 20);
}

TEST_CASE("metaimage: direction columns follow ITK, compressed and raw data agree") {
  if (!std::filesystem::exists(itk_data)) return;
  const std::string d = itk_data;
  // "Plus30": index axis i turns 30 degrees from +x towards +y.
  const auto plus = read_metaimage(d + "/BrainProtonDensitySliceBorder20DirectionPlus30.mhd");
  CHECK(geometry(plus).direction[0] == Approx(std::cos(M_PI / 6)).epsilon(1e-7));
  CHECK(geometry(plus).direction[3] == Approx(0.5));
  const auto raw = read_metaimage(d + "/BrainProtonDensitySliceBorder20.mhd");
  CHECK(voxel_bytes(plus) == voxel_bytes(raw));  // .zraw and .raw hold the same slice
}

TEST_CASE("metaimage: round trips keep voxels and geometry for every type and form") {
  const auto dir = test::scratch_dir("metaimage_round_trip");
  Geometry g;
  g.spacing = {0.7, 1.1, 2.5};
  g.origin = {-10.125, 3.3, 99.0};
  const double c = std::cos(0.4), s = std::sin(0.4);
  g.direction = {c, 0, s, 0, 1, 0, -s, 0, c};
  for (DType t : {DType::uint8, DType::int8, DType::int16, DType::uint16, DType::int32, DType::uint32, DType::int64,
                  DType::uint64, DType::float32, DType::float64}) {
    for (const Shape& shape : {Shape{3, 4, 5}, Shape{2, 3, 4, 5}}) {
      AnyImage im = make_image(t, shape, g);
      std::visit(
          [](auto& x) {
            using T = typename std::remove_cvref_t<decltype(x.voxels)>::value_type;
            for (std::int64_t i = 0; i < x.voxels.numel(); ++i) x.voxels.data()[i] = T(static_cast<float>(i % 61));
          },
          im);
      for (const char* ext : {".mha", ".mhd"})
        for (bool compress : {true, false}) {
          const auto path = dir / (std::string(name(t)) + std::to_string(shape.rank()) + (compress ? "z" : "") + ext);
          INFO(path);
          write_metaimage(im, path, {.compress = compress});
          const AnyImage back = read_metaimage(path);
          CHECK(dtype(back) == t);
          CHECK(io::shape(back) == shape);
          CHECK(geometry(back) == g);  // 17 significant digits: exact
          CHECK(voxel_bytes(back) == voxel_bytes(im));
        }
    }
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("metaimage: bad headers and data fail naming the file and field") {
  auto decode = [](const std::string& text) {
    return error_of([&] {
      decode_metaimage(ByteSpan(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()), {}, "x.mha");
    });
  };
  const std::string head = "ObjectType = Image\nNDims = 3\n";
  const std::string tail = "ElementType = MET_SHORT\nElementDataFile = LOCAL\n";
  const std::string voxels(2 * 2 * 3 * 4, '\0');
  CHECK(decode(head + "DimSize = 2 3 4\n" + tail + voxels) == "no error");
  CHECK_THAT(decode(head + "DimSize = 2 3 4\n" + tail + voxels.substr(5)),
             Catch::Contains("x.mha") && Catch::Contains("voxel data") && Catch::Contains("exceed"));
  CHECK_THAT(decode(head + "DimSize = 2 0 4\n" + tail), Catch::Contains("DimSize") && Catch::Contains("positive"));
  CHECK_THAT(decode(head + "DimSize = 2 -3 4\n" + tail), Catch::Contains("DimSize"));
  CHECK_THAT(decode(head + "DimSize = 2 3\n" + tail), Catch::Contains("DimSize") && Catch::Contains("3 numbers"));
  CHECK_THAT(decode(head + "DimSize = 2 3 4\nElementSpacing = 1 0 1\n" + tail + voxels),
             Catch::Contains("spacing of axis j"));
  CHECK_THAT(decode(head + "DimSize = 2 3 4\nElementSpacing = 1 nan 1\n" + tail + voxels), Catch::Contains("spacing"));
  CHECK_THAT(decode(head + "DimSize = 2 3 4\nElementType = MET_CFLOAT\nElementDataFile = LOCAL\n"),
             Catch::Contains("ElementType") && Catch::Contains("MET_CFLOAT"));
  CHECK_THAT(decode(head + "DimSize = 2 3 4\nCompressedData = True\n" + tail + "garbage!"),
             Catch::Contains("zlib stream"));
  CHECK_THAT(decode(head + "DimSize = 2 3 4\n"), Catch::Contains("ElementDataFile"));
  CHECK_THAT(decode("\x89PNG\r\n\x1a\n"), Catch::Contains("x.mha"));
  const auto dir = test::scratch_dir("metaimage_bad");
  std::ofstream(dir / "a.mhd") << head << "DimSize = 2 3 4\nElementType = MET_SHORT\nElementDataFile = a.raw\n";
  CHECK_THAT(error_of([&] { read_metaimage(dir / "a.mhd"); }), Catch::Contains("a.raw") && Catch::Contains("missing"));
  std::filesystem::remove_all(dir);
}
