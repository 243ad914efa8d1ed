// Line charts: ticks are nice numbers that cover the data, every drawn value lies where the
// axis mapping puts it (checked against the plot frame's own pixels), legend swatches carry
// their series' colours, and the files are valid PNGs to an independent decoder.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "medseg/viz/plot.hpp"
#include "viz_test_util.hpp"

using namespace medseg;
using namespace medseg::viz;

namespace {

bool is_nice_step(double step) {
  const double p = std::pow(10.0, std::floor(std::log10(step) + 1e-9));
  const double f = step / p;
  return std::abs(f - 1) < 1e-6 || std::abs(f - 2) < 1e-6 || std::abs(f - 5) < 1e-6;
}

int colour_distance(Rgb a, Rgb b) { return std::abs(a.r - b.r) + std::abs(a.g - b.g) + std::abs(a.b - b.b); }

}  // namespace

TEST_CASE("nice_ticks gives 1 2 5 steps that cover the range") {
  CHECK(nice_ticks(0, 97, 8) == std::vector<double>{0, 20, 40, 60, 80, 100});
  CHECK(nice_ticks(0.12, 0.93, 6) == std::vector<double>{0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0});
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> exponent(-6, 6), unit(-1, 1);
  for (int trial = 0; trial < 500; ++trial) {
    const double scale = std::pow(10.0, exponent(rng));
    double lo = unit(rng) * scale, hi = unit(rng) * scale;
    if (lo > hi) std::swap(lo, hi);
    if (hi - lo < scale * 1e-3) continue;
    const int max_ticks = 2 + trial % 10;
    const auto t = nice_ticks(lo, hi, max_ticks);
    INFO(lo << " " << hi << " " << max_ticks);
    REQUIRE(t.size() >= 2);
    CHECK(static_cast<int>(t.size()) <= std::max(max_ticks, 3));
    const double step = t[1] - t[0];
    CHECK(is_nice_step(step));
    CHECK(t.front() <= lo + step * 1e-6);
    CHECK(t.back() >= hi - step * 1e-6);
    for (std::size_t i = 1; i < t.size(); ++i) CHECK(std::abs(t[i] - t[i - 1] - step) <= step * 1e-6);
    for (double v : t) CHECK(std::abs(v / step - std::round(v / step)) < 1e-6);  // multiples of the step
  }
}

TEST_CASE("tick labels use as many decimals as the step needs") {
  CHECK(tick_label(0.5, 0.1) == "0.5");
  CHECK(tick_label(2000, 500) == "2000");
  CHECK(tick_label(0.25, 0.05) == "0.25");
  CHECK(tick_label(-1e-17, 0.2) == "0.0");
  CHECK(tick_label(3e-6, 1e-6) == "3e-06");
}

TEST_CASE("a series is drawn where the axis mapping puts its values") {
  Series loss{"loss", {}, {}};
  for (int i = 0; i <= 200; ++i) {
    loss.x.push_back(i * 5.0);
    loss.y.push_back(2.0 / (1.0 + 0.02 * i * 5.0) + 0.1);
  }
  const Chart chart = render_chart({loss}, {.title = "training loss", .width = 640, .height = 400});
  const ChartLayout& l = chart.layout;
  // The frame is drawn on the plot area's edges, and the axis ends on its outer ticks.
  CHECK(chart.picture.rgb(l.left, (l.top + l.bottom) / 2) == Rgb{40, 40, 40});
  CHECK(chart.picture.rgb(l.right, (l.top + l.bottom) / 2) == Rgb{40, 40, 40});
  CHECK(l.x_min == 0);
  CHECK(l.x_max == 1000);
  CHECK(l.y_min <= 0.1 + 2.0 / 21);
  CHECK(l.y_max >= 2.1);
  for (std::size_t i : {0u, 10u, 57u, 120u, 199u}) {
    // The mapping, written out from the frame: linear from (x_min, bottom) to (x_max, top).
    const double px = l.left + (loss.x[i] - l.x_min) / (l.x_max - l.x_min) * (l.right - l.left);
    const double py = l.bottom - (loss.y[i] - l.y_min) / (l.y_max - l.y_min) * (l.bottom - l.top);
    CHECK(std::abs(px - l.to_px(loss.x[i])) < 1e-9);
    const Rgb at = chart.picture.rgb(static_cast<int>(std::lround(px)), static_cast<int>(std::lround(py)));
    INFO("point " << i << " at " << px << ", " << py);
    CHECK(colour_distance(at, series_colour(0)) < 40);
    // Well above the curve there is no curve colour.
    const Rgb above = chart.picture.rgb(static_cast<int>(std::lround(px)), static_cast<int>(std::lround(py)) - 12);
    CHECK(colour_distance(above, series_colour(0)) > 100);
  }
}

TEST_CASE("legend swatches carry distinct series colours") {
  std::vector<Series> s;
  for (int k = 0; k < 4; ++k) s.push_back({"dice class " + std::to_string(k), {0, 1, 2}, {0.1 * k, 0.2 * k, 0.3 * k}});
  const Chart chart = render_chart(s);
  REQUIRE(chart.layout.legend_swatch.size() == 4);
  for (std::size_t k = 0; k < 4; ++k) {
    const auto [x, y] = chart.layout.legend_swatch[k];
    CHECK(chart.picture.rgb(x, y) == series_colour(k));
    for (std::size_t j = 0; j < k; ++j) CHECK(colour_distance(series_colour(j), series_colour(k)) > 60);
  }
}

TEST_CASE("log_y puts decades at equal distances") {
  Series s{"lr", {0, 1, 2, 3}, {1e-1, 1e-2, 1e-3, 1e-4}};
  const Chart chart = render_chart({s}, {.log_y = true});
  const ChartLayout& l = chart.layout;
  CHECK(std::abs((l.to_py(1e-2) - l.to_py(1e-1)) - (l.to_py(1e-3) - l.to_py(1e-2))) < 1e-9);
  CHECK(l.to_py(1e-4) == Approx(l.bottom));
  CHECK(l.to_py(1e-1) == Approx(l.top));
  for (double t : l.y_ticks) CHECK(std::abs(std::log10(t) - std::round(std::log10(t))) < 1e-9);
  const Rgb at = chart.picture.rgb(static_cast<int>(std::lround(l.to_px(2))), static_cast<int>(std::lround(l.to_py(1e-3))));
  CHECK(colour_distance(at, series_colour(0)) < 40);
}

TEST_CASE("plot_curves and plot_panels write PNGs an independent decoder reads") {
  viz_test::ScratchDir dir("plot");
  const Series a{"train", {0, 10, 20, 30}, {1.0, 0.6, 0.4, 0.35}};
  const Series b{"val", {0, 10, 20, 30}, {1.1, std::nan(""), 0.5, 0.45}};  // a gap
  plot_curves(dir.path / "loss.png", {a, b}, {.title = "loss", .width = 400, .height = 300});
  const Picture one = viz_test::python_decode(dir.path / "loss.png");
  CHECK(one.width == 400);
  CHECK(one.height == 300);
  CHECK(one.pixels == render_chart({a, b}, {.title = "loss", .width = 400, .height = 300}).picture.pixels);

  plot_panels(dir.path / "curves.png", {{a, b}, {Series{"dice", {0, 30}, {0.2, 0.9}}}},
              {{.title = "loss", .width = 400, .height = 300}, {.title = "Dice", .width = 300, .height = 320}});
  const Picture two = viz_test::python_decode(dir.path / "curves.png");
  CHECK(two.width == 700);
  CHECK(two.height == 320);
  CHECK_THROWS_WITH(plot_panels(dir.path / "x.png", {{a}}, {}), Catch::Contains("panel_options"));
  CHECK_THROWS_WITH(render_chart({Series{"bad", {1, 2}, {1}}}), Catch::Contains("series \"bad\""));
}

TEST_CASE("empty and constant series still give a framed chart") {
  const Chart empty = render_chart({});
  CHECK(empty.layout.x_max > empty.layout.x_min);
  const Chart flat = render_chart({Series{"flat", {0, 1, 2}, {0.5, 0.5, 0.5}}});
  CHECK(flat.layout.y_min < 0.5);
  CHECK(flat.layout.y_max > 0.5);
  const Chart single = render_chart({Series{"one", {3}, {7}}});
  CHECK(colour_distance(single.picture.rgb(static_cast<int>(std::lround(single.layout.to_px(3))),
                                           static_cast<int>(std::lround(single.layout.to_py(7)))),
                        series_colour(0)) == 0);
}
