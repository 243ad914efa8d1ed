// evaluate_case ties the metrics together; summarize takes NaN-skipping means; the CSV and
// JSON files hold one row per case and the mean, and appear atomically.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "medseg/metrics/report.hpp"
#include "reference.hpp"

using namespace medseg;
using namespace medseg::metrics;

namespace {

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TEST_CASE("evaluate_case gives every metric of a case") {
  const auto g = metrics_test::make_golden("case", 7, {22, 26, 19}, 4, {2.5, 0.8, 1.1});
  const EvaluationOptions o{.num_classes = 4, .surface = {.spacing = g.spacing}};
  // [1,D,H,W] label maps are accepted as volumes.
  const auto m = evaluate_case("blobs", g.prediction.reshape({1, 22, 26, 19}), g.reference, o, g.probabilities);
  CHECK(m.name == "blobs");
  for (int c = 0; c < 4; ++c) {
    INFO("class " << c);
    const auto k = static_cast<std::size_t>(c);
    CHECK(m.dice[k] == Approx(g.at("dice", c)).epsilon(1e-12));
    CHECK(m.iou[k] == Approx(g.at("iou", c)).epsilon(1e-12));
    CHECK(m.soft_dice[k] == Approx(g.at("soft_dice", c)).epsilon(1e-6));
    if (c == 0) {
      CHECK(std::isnan(m.hd95[k]));  // background distances are off by default
    } else {
      CHECK(m.hd95[k] == Approx(g.at("hd95", c)).epsilon(1e-9));
      CHECK(m.assd[k] == Approx(g.at("assd", c)).epsilon(1e-9));
    }
  }
  CHECK(m.mean_foreground_dice() == Approx((g.at("dice", 1) + g.at("dice", 2) + g.at("dice", 3)) / 3));
  EvaluationOptions with_bg = o;
  with_bg.background_distances = true;
  with_bg.surface_distances = true;
  CHECK(evaluate_case("b", g.prediction, g.reference, with_bg).hd95[0] == Approx(g.at("hd95", 0)).epsilon(1e-9));
  CHECK_THROWS_WITH(evaluate_case("x", g.prediction, g.reference, o, Tensor<float>::zeros({3, 22, 26, 19})),
                    Catch::Contains("probabilities") && Catch::Contains("[4,D,H,W]"));
  CHECK_THROWS_WITH(evaluate_case("x", g.prediction.reshape({2, 11, 26, 19}), g.reference, o),
                    Catch::Contains("prediction") && Catch::Contains("[2,11,26,19]"));
}

TEST_CASE("summarize skips NaN and writes CSV and JSON") {
  const double nan = std::nan(""), inf = INFINITY;
  std::vector<CaseMetrics> cases{
      {"a", {0.9, 0.8, nan}, {0.8, 0.6, nan}, {nan, 2.0, nan}, {nan, 1.0, nan}, {0.95, 0.7, 0.1}},
      {"b", {0.7, 0.4, 0.5}, {0.5, 0.25, 1.0 / 3}, {nan, 4.0, inf}, {nan, 2.0, inf}, {0.85, 0.5, 0.3}},
  };
  const Summary s = summarize(cases);
  CHECK(s.cases == 2);
  CHECK(s.num_classes == 3);
  CHECK(s.dice[0] == Approx(0.8));
  CHECK(s.dice[1] == Approx(0.6));
  CHECK(s.dice[2] == Approx(0.5));      // case a's NaN skipped
  CHECK(s.mean_dice == Approx(0.55));   // foreground classes 1 and 2
  CHECK(s.hd95[1] == Approx(3.0));
  CHECK(std::isinf(s.hd95[2]));         // a missed structure stays visible
  CHECK(std::isnan(s.hd95[0]));
  CHECK(s.mean_soft_dice == Approx((0.9 + 0.6 + 0.2) / 3));

  const auto dir = std::filesystem::current_path() / ("metrics_report_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  write_csv(dir / "metrics.csv", cases, s, {"background", "liver", "tumour"});
  write_json(dir / "metrics.json", cases, s);
  const std::string csv = read_text(dir / "metrics.csv");
  std::istringstream lines(csv);
  std::string header, row_a, row_b, mean_row, extra;
  std::getline(lines, header);
  std::getline(lines, row_a);
  std::getline(lines, row_b);
  std::getline(lines, mean_row);
  CHECK_FALSE(std::getline(lines, extra));
  CHECK(header.rfind("case,mean_foreground_dice,dice_background,dice_liver,dice_tumour,iou_background", 0) == 0);
  CHECK(header.find("soft_dice_tumour") != std::string::npos);
  CHECK(row_a.rfind("a,0.8,0.9,0.8,nan,", 0) == 0);
  CHECK(row_b.find(",inf,") != std::string::npos);
  INFO(mean_row);
  CHECK(mean_row.rfind("mean,0.55,0.8,0.6", 0) == 0);
  CHECK(mean_row.find(",nan,3,inf,nan,1.5,inf,") != std::string::npos);  // hd95 and assd of classes 0..2

  const auto j = nlohmann::json::parse(read_text(dir / "metrics.json"));
  CHECK(j["num_classes"] == 3);
  CHECK(j["cases"].size() == 2);
  CHECK(j["cases"][0]["name"] == "a");
  CHECK(j["cases"][0]["dice"][2].is_null());   // NaN
  CHECK(j["cases"][1]["hd95"][2] == "inf");
  CHECK(j["mean"]["mean_dice"].get<double>() == Approx(0.55));
  CHECK(j["mean"]["cases"] == 2);
  // Only the two files: the temporaries were renamed away.
  std::int64_t files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++files;
  CHECK(files == 2);
  CHECK_THROWS_WITH(write_csv(dir / "bad.csv", cases, s, {"only one"}), Catch::Contains("class_names"));
  CHECK_THROWS_WITH(write_json(dir / "missing" / "m.json", cases, s), Catch::Contains("m.json"));
  std::filesystem::remove_all(dir);
}
