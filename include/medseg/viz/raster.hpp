// Picture: an 8-bit raster (grey, RGB or RGBA, top row first) and the few drawing operations
// the overlays and plots need (rectangles, anti-aliased lines, alpha blending, 5x7 text).
// Everything clips at the picture's edges, so callers may draw partly outside it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "../core/error.hpp"
#include "font.hpp"

namespace medseg::viz {

struct Rgb {
  std::uint8_t r = 0, g = 0, b = 0;
  friend bool operator==(const Rgb&, const Rgb&) = default;
};

inline constexpr Rgb black{0, 0, 0}, white{255, 255, 255};

/// Pixels row by row from the top, the channels of a pixel adjacent: grey (1), RGB (3) or
/// RGBA (4). Drawing functions take Rgb colours; on a grey picture they write the luma.
struct Picture {
  int width = 0, height = 0, channels = 3;
  std::vector<std::uint8_t> pixels;

  /// A width x height picture of `channels` channels, every pixel `fill` (alpha 255).
  static Picture filled(int width, int height, Rgb fill = white, int channels = 3);

  bool contains(int x, int y) const { return x >= 0 && y >= 0 && x < width && y < height; }
  std::uint8_t* at(int x, int y) { return pixels.data() + (static_cast<std::size_t>(y) * width + x) * channels; }
  const std::uint8_t* at(int x, int y) const {
    return pixels.data() + (static_cast<std::size_t>(y) * width + x) * channels;
  }
  /// The colour at (x, y) (grey repeated on a grey picture). Precondition: contains(x, y).
  Rgb rgb(int x, int y) const;
  /// Sets (x, y) to `c` (alpha 255); outside the picture nothing happens.
  void set(int x, int y, Rgb c);
  /// Mixes `c` into (x, y) with weight `alpha` in [0, 1]; outside the picture nothing happens.
  void blend(int x, int y, Rgb c, double alpha);
};

/// Fills the rectangle [x0, x1) x [y0, y1).
void fill_rect(Picture& p, int x0, int y0, int x1, int y1, Rgb c);
/// The outline of the rectangle [x0, x1] x [y0, y1] (both ends included), one pixel wide.
void draw_rect(Picture& p, int x0, int y0, int x1, int y1, Rgb c);
/// An anti-aliased line between pixel centres (x0, y0) and (x1, y1) (Xiaolin Wu's algorithm:
/// the two pixels straddling the line share its coverage), `thickness` 1 or more pixels.
void draw_line(Picture& p, double x0, double y0, double x1, double y1, Rgb c, int thickness = 1);

/// Text in the 5x7 font, its top-left corner at (x, y), each font pixel a `scale` x `scale`
/// block. Returns the x after the last character.
int draw_text(Picture& p, int x, int y, std::string_view text, Rgb c, int scale = 1);
/// Text rotated 90 degrees counter-clockwise (reading upwards, as a y-axis label), its
/// bottom-left corner at (x, y).
void draw_text_up(Picture& p, int x, int y, std::string_view text, Rgb c, int scale = 1);
/// The width in pixels draw_text gives `text` (without the blank column after the last glyph).
int text_width(std::string_view text, int scale = 1);
inline int text_height(int scale = 1) { return glyph_height * scale; }

/// Copies `src` into `dst` with its top-left corner at (x, y), clipping; channel counts may
/// differ (grey is expanded, RGB to RGBA gets alpha 255).
void paste(Picture& dst, const Picture& src, int x, int y);

// ----------------------------------------------------------------------------------------
// Implementation

inline Picture Picture::filled(int width, int height, Rgb fill, int channels) {
  require(width > 0 && height > 0 && width <= (1 << 16) && height <= (1 << 16), [&] {
    return ErrorInfo{.where = "viz::Picture", .field = "size", .expected = "1 to 65536 pixels each way",
                     .actual = std::to_string(width) + "x" + std::to_string(height)};
  });
  require(channels == 1 || channels == 3 || channels == 4, [&] {
    return ErrorInfo{.where = "viz::Picture", .field = "channels", .expected = "1 (grey), 3 (RGB) or 4 (RGBA)",
                     .actual = std::to_string(channels)};
  });
  Picture p{width, height, channels, std::vector<std::uint8_t>(static_cast<std::size_t>(width) * height * channels)};
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) p.set(x, y, fill);
  return p;
}

inline Rgb Picture::rgb(int x, int y) const {
  const std::uint8_t* q = at(x, y);
  return channels == 1 ? Rgb{q[0], q[0], q[0]} : Rgb{q[0], q[1], q[2]};
}

namespace detail {
inline std::uint8_t luma(Rgb c) {  // ITU-R BT.601 weights, as PIL's convert("L")
  return static_cast<std::uint8_t>(std::lround(0.299 * c.r + 0.587 * c.g + 0.114 * c.b));
}
}  // namespace detail

inline void Picture::set(int x, int y, Rgb c) {
  if (!contains(x, y)) return;
  std::uint8_t* q = at(x, y);
  if (channels == 1) {
    q[0] = detail::luma(c);
    return;
  }
  q[0] = c.r;
  q[1] = c.g;
  q[2] = c.b;
  if (channels == 4) q[3] = 255;
}

inline void Picture::blend(int x, int y, Rgb c, double alpha) {
  if (!contains(x, y) || !(alpha > 0)) return;
  alpha = std::min(alpha, 1.0);
  const Rgb old = rgb(x, y);
  auto mix = [alpha](std::uint8_t a, std::uint8_t b) {
    return static_cast<std::uint8_t>(std::lround(a * (1 - alpha) + b * alpha));
  };
  set(x, y, {mix(old.r, c.r), mix(old.g, c.g), mix(old.b, c.b)});
}

inline void fill_rect(Picture& p, int x0, int y0, int x1, int y1, Rgb c) {
  for (int y = std::max(0, y0); y < std::min(p.height, y1); ++y)
    for (int x = std::max(0, x0); x < std::min(p.width, x1); ++x) p.set(x, y, c);
}

inline void draw_rect(Picture& p, int x0, int y0, int x1, int y1, Rgb c) {
  for (int x = x0; x <= x1; ++x) {
    p.set(x, y0, c);
    p.set(x, y1, c);
  }
  for (int y = y0; y <= y1; ++y) {
    p.set(x0, y, c);
    p.set(x1, y, c);
  }
}

inline void draw_line(Picture& p, double x0, double y0, double x1, double y1, Rgb c, int thickness) {
  if (!std::isfinite(x0) || !std::isfinite(y0) || !std::isfinite(x1) || !std::isfinite(y1)) return;
  const bool steep = std::abs(y1 - y0) > std::abs(x1 - x0);
  if (steep) {
    std::swap(x0, y0);
    std::swap(x1, y1);
  }
  if (x0 > x1) {
    std::swap(x0, x1);
    std::swap(y0, y1);
  }
  // Lines far outside the picture are clipped to it along the major axis first, so a wild
  // value costs nothing.
  const double limit = steep ? p.height + 2.0 : p.width + 2.0;
  const double dx = x1 - x0, gradient = dx > 0 ? (y1 - y0) / dx : 0.0;
  const double start = std::max(std::round(x0), -2.0), stop = std::min(std::round(x1), limit);
  const int half = (thickness - 1) / 2;
  auto plot = [&](int a, int b, double coverage) {
    for (int t = -half; t < thickness - half; ++t) {
      if (steep)
        p.blend(b + t, a, c, coverage);
      else
        p.blend(a, b + t, c, coverage);
    }
  };
  for (double xa = start; xa <= stop; xa += 1) {
    const double y = std::clamp(y0 + gradient * (xa - x0), -1e6, 1e6);  // int-safe; far off-picture anyway
    const double yf = std::floor(y), frac = y - yf;
    const int a = static_cast<int>(xa), b = static_cast<int>(yf);
    if (thickness == 1) {
      plot(a, b, 1 - frac);
      plot(a, b + 1, frac);
    } else {  // a solid core with soft edges
      for (int t = -half; t < thickness - half; ++t) p.blend(steep ? b + t : a, steep ? a : b + t, c, 1.0);
      const int lo = b - half - 1, hi = b + thickness - half;
      steep ? p.blend(lo, a, c, 1 - frac) : p.blend(a, lo, c, 1 - frac);
      steep ? p.blend(hi, a, c, frac) : p.blend(a, hi, c, frac);
    }
  }
}

inline int text_width(std::string_view text, int scale) {
  return text.empty() ? 0 : (static_cast<int>(text.size()) * glyph_advance - 1) * scale;
}

inline int draw_text(Picture& p, int x, int y, std::string_view text, Rgb c, int scale) {
  for (char ch : text) {
    const auto g = glyph(ch);
    for (int col = 0; col < glyph_width; ++col)
      for (int row = 0; row < glyph_height; ++row)
        if ((g[static_cast<std::size_t>(col)] >> row) & 1)
          fill_rect(p, x + col * scale, y + row * scale, x + (col + 1) * scale, y + (row + 1) * scale, c);
    x += glyph_advance * scale;
  }
  return x;
}

inline void draw_text_up(Picture& p, int x, int y, std::string_view text, Rgb c, int scale) {
  // Rotated counter-clockwise: a glyph's column runs along -y, its row along +x.
  for (char ch : text) {
    const auto g = glyph(ch);
    for (int col = 0; col < glyph_width; ++col)
      for (int row = 0; row < glyph_height; ++row)
        if ((g[static_cast<std::size_t>(col)] >> row) & 1)
          fill_rect(p, x + row * scale, y - (col + 1) * scale, x + (row + 1) * scale, y - col * scale, c);
    y -= glyph_advance * scale;
  }
}

inline void paste(Picture& dst, const Picture& src, int x, int y) {
  for (int r = 0; r < src.height; ++r)
    for (int col = 0; col < src.width; ++col) dst.set(x + col, y + r, src.rgb(col, r));
}

}  // namespace medseg::viz
