// PNG: pixels survive a round trip through our writer and both libpng's reader and an
// independent zlib-only decoder, for grey, RGB and RGBA; the write is atomic; bad input
// fails with an Error naming the source.
#include <catch2/catch.hpp>

#include <cstdint>

#include "medseg/viz/png.hpp"
#include "viz_test_util.hpp"

using namespace medseg;
using namespace medseg::viz;

namespace {

Picture pattern(int width, int height, int channels) {
  Picture p{width, height, channels, std::vector<std::uint8_t>(static_cast<std::size_t>(width) * height * channels)};
  std::uint32_t state = 12345;
  for (auto& v : p.pixels) {  // noisy, so every PNG row filter gets used
    state = state * 1664525u + 1013904223u;
    v = static_cast<std::uint8_t>(state >> 24);
  }
  for (int x = 0; x < width; ++x) p.at(x, 0)[0] = static_cast<std::uint8_t>(x);  // a ramp, for Sub/Paeth
  return p;
}

}  // namespace

TEST_CASE("PNG round trip keeps every pixel for grey RGB and RGBA") {
  viz_test::ScratchDir dir("png");
  for (int channels : {1, 3, 4}) {
    const Picture p = pattern(37, 23, channels);
    const auto file = dir.path / ("p" + std::to_string(channels) + ".png");
    write_png(file, p);
    const Picture back = read_png(file);
    CHECK(back.width == 37);
    CHECK(back.height == 23);
    CHECK(back.channels == channels);
    CHECK(back.pixels == p.pixels);
    const Picture independent = viz_test::python_decode(file);
    CHECK(independent.width == 37);
    CHECK(independent.height == 23);
    CHECK(independent.channels == channels);
    CHECK(independent.pixels == p.pixels);
  }
}

TEST_CASE("write_png leaves no temporary file and replaces an old picture") {
  viz_test::ScratchDir dir("png_atomic");
  const auto file = dir.path / "curve.png";
  write_png(file, Picture::filled(8, 8, Rgb{1, 2, 3}));
  write_png(file, Picture::filled(4, 5, Rgb{9, 8, 7}));
  const Picture back = read_png(file);
  CHECK(back.width == 4);
  CHECK(back.rgb(3, 4) == Rgb{9, 8, 7});
  int entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path)) ++entries;
  CHECK(entries == 1);
}

TEST_CASE("decode_png rejects a damaged stream naming its source") {
  io::Bytes bytes = encode_png(pattern(16, 16, 3));
  bytes.resize(bytes.size() / 2);
  CHECK_THROWS_WITH(decode_png(bytes, "half.png"), Catch::Contains("half.png"));
  const io::Bytes text = {'n', 'o', 't', ' ', 'a', ' ', 'p', 'n', 'g'};
  CHECK_THROWS_WITH(decode_png(text, "text.png"), Catch::Contains("text.png") && Catch::Contains("header"));
  CHECK_THROWS_AS(read_png("/nonexistent/none.png"), Error);
}

TEST_CASE("encode_png rejects a picture whose pixel count does not match its size") {
  Picture p = Picture::filled(4, 4, white);
  p.pixels.pop_back();
  CHECK_THROWS_WITH(encode_png(p), Catch::Contains("viz::encode_png") && Catch::Contains("picture"));
}
