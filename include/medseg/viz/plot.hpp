// Line charts as PNG: the training curves (loss, Dice) a run writes as it goes, with axes,
// "nice" ticks (1, 2 or 5 times a power of ten), numeric labels, a legend and anti-aliased
// lines. Rendering is separate from writing so tests (and callers that annotate) can see
// where the axes put every value.
//   viz::plot_curves("out/loss.png", {{"train loss", iters, losses}}, {.title = "loss", .log_y = true});
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "png.hpp"
#include "raster.hpp"

namespace medseg::viz {

struct Series {
  std::string name{};
  std::vector<double> x{}, y{};
};

/// Every member has a default, so designated initializers may name any subset without
/// -Wmissing-field-initializers.
struct PlotOptions {
  std::string title{};
  std::string x_label = "iteration";
  int width = 800, height = 480;
  bool log_y = false;
};

/// Writes a line chart of `series` to `png` (atomically). Non-finite values, and values <= 0
/// with log_y, break a line instead of stretching the axes.
void plot_curves(const std::filesystem::path& png, const std::vector<Series>& series, const PlotOptions& = {});

/// Several charts side by side in one picture (loss and Dice, say): panel i draws panels[i]
/// with panel_options[i] (its own size, title and axes).
void plot_panels(const std::filesystem::path& png, const std::vector<std::vector<Series>>& panels,
                 const std::vector<PlotOptions>& panel_options);

/// Where a rendered chart put things, in pixels (x right, y down).
struct ChartLayout {
  int left = 0, top = 0, right = 0, bottom = 0;  // the plot area's edges (inclusive)
  double x_min = 0, x_max = 1, y_min = 0, y_max = 1;  // axis ranges; log10 of y when log_y
  bool log_y = false;
  std::vector<double> x_ticks, y_ticks;  // tick values (y as data values, not log10)
  std::vector<std::array<int, 2>> legend_swatch;  // centre of each series' legend swatch

  double to_px(double x) const { return left + (x - x_min) / (x_max - x_min) * (right - left); }
  double to_py(double y) const {
    const double v = log_y ? std::log10(y) : y;
    return bottom - (v - y_min) / (y_max - y_min) * (bottom - top);
  }
};

struct Chart {
  Picture picture;
  ChartLayout layout;
};

/// The chart plot_curves writes.
Chart render_chart(const std::vector<Series>& series, const PlotOptions& options = {});

/// Ticks covering [lo, hi]: multiples of a step of 1, 2 or 5 times a power of ten, at most
/// max(max_ticks, 3) of them (a range across zero needs three), the first <= lo and the last
/// >= hi (so the axis ends on a tick).
std::vector<double> nice_ticks(double lo, double hi, int max_ticks = 8);

/// The colour of series i: matplotlib's "tab10" cycle, distinct and colour-blind aware.
Rgb series_colour(std::size_t i);

/// A tick label: as few decimals as the tick step needs, "1e-05" style for tiny or huge values.
std::string tick_label(double value, double step);

// ----------------------------------------------------------------------------------------
// Implementation

inline Rgb series_colour(std::size_t i) {
  static constexpr Rgb tab10[] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},  {148, 103, 189},
                                  {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
  return tab10[i % 10];
}

namespace detail {

/// The nice number near `x` (> 0): 1, 2, 5 or 10 times a power of ten, rounding up.
inline double nice_step(double x) {
  const double p = std::pow(10.0, std::floor(std::log10(x)));
  const double f = x / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

}  // namespace detail

inline std::vector<double> nice_ticks(double lo, double hi, int max_ticks) {
  require(std::isfinite(lo) && std::isfinite(hi) && hi > lo && max_ticks >= 2, [&] {
    return ErrorInfo{.where = "viz::nice_ticks", .field = "range", .expected = "finite lo < hi and max_ticks >= 2",
                     .actual = str(lo, ", ", hi, ", ", max_ticks)};
  });
  max_ticks = std::max(max_ticks, 3);
  double step = detail::nice_step((hi - lo) / (max_ticks - 1));
  // The first and last tick lie outside [lo, hi] at worst, so one more step may be needed.
  while (std::ceil(hi / step - 1e-9) - std::floor(lo / step + 1e-9) + 1 > max_ticks) step = detail::nice_step(step * 1.01);
  const double first = std::floor(lo / step + 1e-9), last = std::ceil(hi / step - 1e-9);
  std::vector<double> ticks;
  for (double k = first; k <= last + 0.5; k += 1) {
    const double v = k * step;
    ticks.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);  // no "-0" and no 1e-17
  }
  return ticks;
}

inline std::string tick_label(double value, double step) {
  char text[32];
  const double magnitude = std::max(std::abs(value), step);
  if (magnitude >= 1e6 || step < 1e-4)
    std::snprintf(text, sizeof text, "%.3g", value);
  else
    std::snprintf(text, sizeof text, "%.*f", std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9))), value);
  std::string s = text;
  if (s.rfind("-0", 0) == 0 && s.find_first_not_of("-0.") == std::string::npos) s.erase(0, 1);
  return s;
}

namespace detail {

inline bool usable(double x, double y, bool log_y) { return std::isfinite(x) && std::isfinite(y) && (!log_y || y > 0); }

inline void axis_ranges(const std::vector<Series>& series, const PlotOptions& o, ChartLayout& l) {
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const auto& s : series) {
    require(s.x.size() == s.y.size(), [&] {
      return ErrorInfo{.where = "viz::plot_curves", .field = "series \"" + s.name + "\"",
                       .expected = "as many x as y values", .actual = str(s.x.size(), " x, ", s.y.size(), " y")};
    });
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!usable(s.x[i], s.y[i], o.log_y)) continue;
      const double y = o.log_y ? std::log10(s.y[i]) : s.y[i];
      x0 = std::min(x0, s.x[i]);
      x1 = std::max(x1, s.x[i]);
      y0 = std::min(y0, y);
      y1 = std::max(y1, y);
    }
  }
  if (!(x1 >= x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;  // nothing to draw: an empty unit frame
  if (x1 == x0) x0 -= 0.5, x1 += 0.5;
  if (y1 == y0) {
    const double pad = o.log_y ? 0.5 : std::max(std::abs(y0) * 0.1, 0.5);
    y0 -= pad, y1 += pad;
  }
  l.x_ticks = nice_ticks(x0, x1, std::max(2, o.width / 90));
  l.x_min = l.x_ticks.front();
  l.x_max = l.x_ticks.back();
  if (o.log_y) {  // whole decades, with 2 and 5 between them when there are few
    l.y_min = std::floor(y0 + 1e-9);
    l.y_max = std::max(std::ceil(y1 - 1e-9), l.y_min + 1);
    const bool fine = l.y_max - l.y_min <= 2;
    for (double d = l.y_min; d <= l.y_max + 0.5; d += 1) {
      l.y_ticks.push_back(std::pow(10.0, d));
      if (fine && d < l.y_max) {
        l.y_ticks.push_back(2 * std::pow(10.0, d));
        l.y_ticks.push_back(5 * std::pow(10.0, d));
      }
    }
  } else {
    l.y_ticks = nice_ticks(y0, y1, std::max(2, o.height / 60));
    l.y_min = l.y_ticks.front();
    l.y_max = l.y_ticks.back();
  }
}

inline std::string y_tick_label(const ChartLayout& l, double v) {
  if (!l.log_y) return tick_label(v, l.y_ticks.size() > 1 ? l.y_ticks[1] - l.y_ticks[0] : 1.0);
  char text[32];
  std::snprintf(text, sizeof text, "%g", v);
  return text;
}

}  // namespace detail

inline Chart render_chart(const std::vector<Series>& series, const PlotOptions& o) {
  require(o.width >= 160 && o.height >= 120, [&] {
    return ErrorInfo{.where = "viz::plot_curves", .field = "width, height", .expected = "at least 160 x 120",
                     .actual = str(o.width, " x ", o.height)};
  });
  Chart chart{Picture::filled(o.width, o.height, white), {}};
  Picture& p = chart.picture;
  ChartLayout& l = chart.layout;
  l.log_y = o.log_y;
  detail::axis_ranges(series, o, l);

  const Rgb axis_colour{40, 40, 40}, grid_colour{225, 225, 225};
  const int title_scale = text_width(o.title, 2) + 20 <= o.width ? 2 : 1;
  int y_label_width = 0;
  for (double v : l.y_ticks) y_label_width = std::max(y_label_width, text_width(detail::y_tick_label(l, v)));
  l.left = 12 + y_label_width + 6;
  l.top = o.title.empty() ? 14 : 10 + text_height(title_scale) + 10;
  // Room for half of the last x tick's label, which is centred on the right edge.
  const double x_step_for_label = l.x_ticks.size() > 1 ? l.x_ticks[1] - l.x_ticks[0] : 1.0;
  l.right = o.width - std::max(18, text_width(tick_label(l.x_ticks.back(), x_step_for_label)) / 2 + 6);
  l.bottom = o.height - (6 + text_height() + 4 + (o.x_label.empty() ? 0 : text_height() + 8)) - 4;

  // Grid and ticks first, so the curves lie on top of them.
  const double x_step = l.x_ticks.size() > 1 ? l.x_ticks[1] - l.x_ticks[0] : 1.0;
  for (double v : l.x_ticks) {
    const int px = static_cast<int>(std::lround(l.to_px(v)));
    for (int y = l.top; y <= l.bottom; ++y) p.set(px, y, grid_colour);
    for (int y = l.bottom; y <= l.bottom + 4; ++y) p.set(px, y, axis_colour);
    const std::string label = tick_label(v, x_step);
    draw_text(p, px - text_width(label) / 2, l.bottom + 7, label, axis_colour);
  }
  for (double v : l.y_ticks) {
    const int py = static_cast<int>(std::lround(l.to_py(v)));
    for (int x = l.left; x <= l.right; ++x) p.set(x, py, grid_colour);
    for (int x = l.left - 4; x <= l.left; ++x) p.set(x, py, axis_colour);
    const std::string label = detail::y_tick_label(l, v);
    draw_text(p, l.left - 7 - text_width(label), py - text_height() / 2, label, axis_colour);
  }
  draw_rect(p, l.left, l.top, l.right, l.bottom, axis_colour);
  if (!o.title.empty())
    draw_text(p, (o.width - text_width(o.title, title_scale)) / 2, 10, o.title, black, title_scale);
  if (!o.x_label.empty())
    draw_text(p, (l.left + l.right - text_width(o.x_label)) / 2, o.height - 6 - text_height(), o.x_label, axis_colour);

  for (std::size_t s = 0; s < series.size(); ++s) {
    const auto& x = series[s].x;
    const auto& y = series[s].y;
    const Rgb c = series_colour(s);
    bool previous = false;
    for (std::size_t i = 0; i < x.size(); ++i) {
      if (!detail::usable(x[i], y[i], o.log_y)) {
        previous = false;
        continue;
      }
      const double px = l.to_px(x[i]), py = l.to_py(y[i]);
      const bool next = i + 1 < x.size() && detail::usable(x[i + 1], y[i + 1], o.log_y);
      if (previous)
        draw_line(p, l.to_px(x[i - 1]), l.to_py(y[i - 1]), px, py, c, 2);
      else if (!next)  // an isolated point: a dot, else it would not show
        fill_rect(p, static_cast<int>(std::lround(px)) - 2, static_cast<int>(std::lround(py)) - 2,
                  static_cast<int>(std::lround(px)) + 3, static_cast<int>(std::lround(py)) + 3, c);
      previous = true;
    }
  }

  // Legend: top right inside the plot area, on white so curves beneath do not show through.
  int name_width = 0;
  for (const auto& s : series) name_width = std::max(name_width, text_width(s.name));
  if (!series.empty()) {
    const int row = text_height() + 6, box_w = 8 + 20 + 6 + name_width + 8;
    const int x0 = l.right - 8 - box_w, y0 = l.top + 8;
    fill_rect(p, x0, y0, x0 + box_w, y0 + 6 + row * static_cast<int>(series.size()), white);
    draw_rect(p, x0, y0, x0 + box_w, y0 + 6 + row * static_cast<int>(series.size()), grid_colour);
    for (std::size_t s = 0; s < series.size(); ++s) {
      const int cy = y0 + 6 + row * static_cast<int>(s) + text_height() / 2;
      fill_rect(p, x0 + 8, cy - 1, x0 + 28, cy + 2, series_colour(s));
      l.legend_swatch.push_back({x0 + 18, cy});
      draw_text(p, x0 + 34, cy - text_height() / 2, series[s].name, axis_colour);
    }
  }
  return chart;
}

inline void plot_curves(const std::filesystem::path& png, const std::vector<Series>& series, const PlotOptions& options) {
  write_png(png, render_chart(series, options).picture);
}

inline void plot_panels(const std::filesystem::path& png, const std::vector<std::vector<Series>>& panels,
                        const std::vector<PlotOptions>& panel_options) {
  require(!panels.empty() && panels.size() == panel_options.size(), [&] {
    return ErrorInfo{.where = "viz::plot_panels", .field = "panel_options",
                     .expected = "one PlotOptions per panel, at least one panel",
                     .actual = str(panels.size(), " panels, ", panel_options.size(), " options")};
  });
  std::vector<Picture> charts;
  int width = 0, height = 0;
  for (std::size_t i = 0; i < panels.size(); ++i) {
    charts.push_back(render_chart(panels[i], panel_options[i]).picture);
    width += charts.back().width;
    height = std::max(height, charts.back().height);
  }
  Picture all = Picture::filled(width, height, white);
  int x = 0;
  for (const auto& c : charts) {
    paste(all, c, x, 0);
    x += c.width;
  }
  write_png(png, all);
}

}  // namespace medseg::viz
