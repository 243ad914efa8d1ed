// PNG in and out for Pictures (8-bit grey, RGB, RGBA) through libpng's simplified API, which
// reports errors in a message instead of longjmp, so no C++ frame is ever jumped over.
// Files are written atomically (io::write_file_atomic), so a training run that is killed
// while plotting never leaves a truncated curve.png behind.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <png.h>

#include "../core/error.hpp"
#include "../io/file.hpp"
#include "raster.hpp"

namespace medseg::viz {

/// The PNG file of `picture` (8 bits per channel; grey, RGB or RGBA as the picture has).
io::Bytes encode_png(const Picture& picture);

/// The picture in a PNG byte stream, as 8-bit grey (grey files), RGB (colour and palette
/// files) or RGBA (files with transparency); 16-bit files are reduced to 8 bits. `where`
/// names the source in errors.
Picture decode_png(io::ByteSpan bytes, const std::string& where = "png");

/// encode_png written to `path` atomically.
void write_png(const std::filesystem::path& path, const Picture& picture);
/// decode_png of a file.
Picture read_png(const std::filesystem::path& path);

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

inline png_uint_32 png_format(int channels) {
  return channels == 1 ? PNG_FORMAT_GRAY : channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_RGBA;
}

inline void check_picture(const Picture& p, const std::string& where) {
  require(p.width > 0 && p.height > 0 && (p.channels == 1 || p.channels == 3 || p.channels == 4) &&
              p.pixels.size() == static_cast<std::size_t>(p.width) * p.height * p.channels,
          [&] {
            return ErrorInfo{.where = where, .field = "picture",
                             .expected = "width x height x channels (1, 3 or 4) pixels",
                             .actual = std::to_string(p.width) + "x" + std::to_string(p.height) + "x" +
                                       std::to_string(p.channels) + " with " + std::to_string(p.pixels.size()) +
                                       " bytes"};
          });
}

}  // namespace detail

inline io::Bytes encode_png(const Picture& picture) {
  detail::check_picture(picture, "viz::encode_png");
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(picture.width);
  image.height = static_cast<png_uint_32>(picture.height);
  image.format = detail::png_format(picture.channels);
  const auto stride = static_cast<png_int_32>(picture.width * picture.channels);
  // First call sizes the stream, the second writes it.
  png_alloc_size_t size = 0;
  int ok = png_image_write_to_memory(&image, nullptr, &size, 0, picture.pixels.data(), stride, nullptr);
  io::Bytes out;
  if (ok) {
    out.resize(size);
    ok = png_image_write_to_memory(&image, out.data(), &size, 0, picture.pixels.data(), stride, nullptr);
    out.resize(size);
  }
  const std::string message = image.message;
  png_image_free(&image);
  require(ok != 0, [&] {
    return ErrorInfo{.where = "viz::encode_png", .field = "libpng", .expected = "a written image", .actual = message};
  });
  return out;
}

inline Picture decode_png(io::ByteSpan bytes, const std::string& where) {
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  auto fail = [&](const char* stage) {
    const std::string message = image.message;
    png_image_free(&image);
    throw Error{{.where = where, .field = stage, .expected = "a valid PNG stream", .actual = message}};
  };
  if (!png_image_begin_read_from_memory(&image, bytes.data(), bytes.size())) fail("header");
  Picture p;
  p.width = static_cast<int>(image.width);
  p.height = static_cast<int>(image.height);
  const bool alpha = (image.format & PNG_FORMAT_FLAG_ALPHA) != 0;
  const bool colour = (image.format & (PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_COLORMAP)) != 0;
  p.channels = alpha ? 4 : colour ? 3 : 1;
  image.format = detail::png_format(p.channels);  // 8 bits, no linear conversion
  p.pixels.resize(static_cast<std::size_t>(p.width) * p.height * p.channels);
  if (!png_image_finish_read(&image, nullptr, p.pixels.data(), 0, nullptr)) fail("pixels");
  png_image_free(&image);
  return p;
}

inline void write_png(const std::filesystem::path& path, const Picture& picture) {
  const io::Bytes bytes = encode_png(picture);
  io::write_file_atomic(path, {io::ByteSpan(bytes)});
}

inline Picture read_png(const std::filesystem::path& path) {
  const io::Bytes bytes = io::read_file(path);
  return decode_png(bytes, path.string());
}

}  // namespace medseg::viz
