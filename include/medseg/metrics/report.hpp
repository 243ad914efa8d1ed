// Per-case evaluation and its aggregation: every metric of one case (hard Dice and IoU,
// HD95 and average surface distance in mm, MedicalSeg's soft Dice), the mean over cases that
// skips undefined (NaN) values as nnU-Net does, and the CSV and JSON files a person or a
// script reads afterwards. Files are written atomically, so a reader never sees half of one.
#pragma once

#include <unistd.h>

#include <charconv>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "overlap.hpp"
#include "soft_dice.hpp"
#include "surface_distance.hpp"

namespace medseg::metrics {

struct EvaluationOptions {
  int num_classes = 2;                     // labels 0..num_classes-1, 0 the background
  EmptyClass empty = EmptyClass::nnunet;   // Dice/IoU of a class absent from the reference
  bool surface_distances = true;           // HD95 and ASSD (two distance transforms per class)
  SurfaceDistanceOptions surface{};        // spacing (mm), erosion connectivity, percentile
  bool background_distances = false;       // MONAI include_background=False: class 0 gets NaN
};

/// Every metric of one case; each vector has one value per class (index = label).
/// hd95/assd are NaN for classes not measured; soft_dice is empty without probabilities.
struct CaseMetrics {
  std::string name;
  std::vector<double> dice, iou, hd95, assd, soft_dice;
  /// Mean Dice over the foreground classes 1..K-1, NaN skipped (nnU-Net's foreground mean).
  double mean_foreground_dice() const;
};

/// Means over cases, per class, skipping NaN (np.nanmean); +inf (a missed structure's
/// distance) is kept, so a mean distance with one missed case is inf, as it should read.
struct Summary {
  int num_classes = 0;
  std::int64_t cases = 0;
  std::vector<double> dice, iou, hd95, assd, soft_dice;
  double mean_dice = std::numeric_limits<double>::quiet_NaN();       // over foreground classes
  double mean_iou = std::numeric_limits<double>::quiet_NaN();        // over foreground classes
  double mean_hd95 = std::numeric_limits<double>::quiet_NaN();       // over foreground classes
  double mean_assd = std::numeric_limits<double>::quiet_NaN();       // over foreground classes
  double mean_soft_dice = std::numeric_limits<double>::quiet_NaN();  // all classes (MedicalSeg's mDice)
};

/// The metrics of one case. prediction and reference: label maps [D,H,W] (leading axes of
/// extent 1 allowed, as [1,D,H,W]); probabilities (optional): [K,D,H,W] for the soft Dice.
///   auto m = metrics::evaluate_case("case_007", pred, ref, {.num_classes = 3,
///                                   .surface = {.spacing = {2.5, 0.8, 0.8}}}, probs);
template <std::integral L, std::integral R>
CaseMetrics evaluate_case(std::string name, const Tensor<L, Cpu>& prediction, const Tensor<R, Cpu>& reference,
                          const EvaluationOptions& options, const Tensor<float, Cpu>& probabilities = {});

Summary summarize(const std::vector<CaseMetrics>& cases);

/// One row per case (case, mean_foreground_dice, dice_<class>..., iou_..., hd95_...,
/// assd_..., soft_dice_...), then a row named "mean". Class columns are named by
/// `class_names` when given (one per class), else by label. NaN and inf print as nan, inf.
void write_csv(const std::filesystem::path& path, const std::vector<CaseMetrics>& cases, const Summary& summary,
               const std::vector<std::string>& class_names = {});

/// {"num_classes", "class_names", "cases": [{"name", "dice": [...], ...}], "mean": {...}}.
/// JSON has no NaN or infinity: NaN is written as null, +inf as the string "inf".
void write_json(const std::filesystem::path& path, const std::vector<CaseMetrics>& cases, const Summary& summary,
                const std::vector<std::string>& class_names = {});

// ----------------------------------------------------------------------------------------
// Implementation

namespace detail {

/// `t` as [D,H,W] when its leading axes all have extent 1.
template <class T>
Tensor<T, Cpu> as_volume(const Tensor<T, Cpu>& t, const char* where, const char* field) {
  bool ok = t.defined() && t.rank() >= 3;
  for (int a = 0; ok && a < t.rank() - 3; ++a) ok = t.size(a) == 1;
  require(ok, [&] {
    return ErrorInfo{.where = where, .field = field, .expected = "a [D,H,W] label map (or [1,D,H,W])",
                     .actual = shape_text(t)};
  });
  return t.rank() == 3 ? t : t.contiguous().reshape({t.size(-3), t.size(-2), t.size(-1)});
}

inline std::string number_text(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest text that reads back exactly
  return std::string(buf, r.ptr);
}

inline nlohmann::json number_json(double v) {
  if (std::isnan(v)) return nullptr;
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return v;
}

inline nlohmann::json numbers_json(const std::vector<double>& values) {
  auto a = nlohmann::json::array();
  for (double v : values) a.push_back(number_json(v));
  return a;
}

/// Writes `text` to `path` through a temporary sibling and a rename.
inline void write_atomically(const std::filesystem::path& path, const std::string& text, const char* what) {
  const auto tmp = std::filesystem::path(path.string() + ".tmp-" + std::to_string(::getpid()));
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    require(static_cast<bool>(out), [&] {
      return ErrorInfo{.where = std::string(what) + ": " + path.string(), .field = "file", .expected = "writable",
                       .actual = "cannot create " + tmp.string()};
    });
    out << text;
    require(static_cast<bool>(out.flush()), [&] {
      return ErrorInfo{.where = std::string(what) + ": " + path.string(), .field = "file", .expected = "written",
                       .actual = "write failed (disk full?)"};
    });
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) std::filesystem::remove(tmp);
  require(!ec, [&] {
    return ErrorInfo{.where = std::string(what) + ": " + path.string(), .field = "file", .expected = "renamed into place",
                     .actual = ec.message()};
  });
}

/// Column names of one metric: <metric>_<class name or label>.
inline std::string class_column(const std::string& metric, int c, const std::vector<std::string>& names) {
  return metric + "_" + (names.empty() ? std::to_string(c) : names[static_cast<std::size_t>(c)]);
}

inline void check_class_names(const std::vector<std::string>& names, int num_classes, const char* where) {
  require(names.empty() || static_cast<int>(names.size()) == num_classes, [&] {
    return ErrorInfo{.where = where, .field = "class_names", .expected = str(num_classes, " names (or none)"),
                     .actual = str(names.size())};
  });
}

}  // namespace detail

inline double CaseMetrics::mean_foreground_dice() const {
  return nan_mean(dice.size() > 1 ? std::vector<double>(dice.begin() + 1, dice.end()) : std::vector<double>{});
}

template <std::integral L, std::integral R>
CaseMetrics evaluate_case(std::string name, const Tensor<L, Cpu>& prediction, const Tensor<R, Cpu>& reference,
                          const EvaluationOptions& options, const Tensor<float, Cpu>& probabilities) {
  constexpr const char* where = "metrics::evaluate_case";
  const auto p = detail::as_volume(prediction, where, "prediction");
  const auto r = detail::as_volume(reference, where, "reference");
  const int K = options.num_classes;
  CaseMetrics m;
  m.name = std::move(name);
  for (const auto& n : class_counts(p, r, K)) {
    m.dice.push_back(dice(n, options.empty));
    m.iou.push_back(iou(n, options.empty));
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  m.hd95.assign(static_cast<std::size_t>(K), nan);
  m.assd.assign(static_cast<std::size_t>(K), nan);
  if (options.surface_distances) {
    const auto sd = surface_distance_per_class(p, r, K, options.surface, options.background_distances ? 0 : 1);
    for (std::size_t c = 0; c < sd.size(); ++c) {
      m.hd95[c] = sd[c].hausdorff;
      m.assd[c] = sd[c].average;
    }
  }
  if (probabilities.defined()) {
    require(probabilities.rank() == 4 && probabilities.size(0) == K, [&] {
      return ErrorInfo{.where = where, .field = "probabilities", .expected = str("[", K, ",D,H,W]"),
                       .actual = probabilities.shape().to_string()};
    });
    m.soft_dice = soft_dice_per_class(probabilities, r);
  }
  return m;
}

inline Summary summarize(const std::vector<CaseMetrics>& cases) {
  Summary s;
  s.cases = static_cast<std::int64_t>(cases.size());
  if (cases.empty()) return s;
  s.num_classes = static_cast<int>(cases.front().dice.size());
  const auto K = static_cast<std::size_t>(s.num_classes);
  for (const auto& c : cases)
    require(c.dice.size() == K && c.iou.size() == K && c.hd95.size() == K && c.assd.size() == K, [&] {
      return ErrorInfo{.where = "metrics::summarize", .field = "case " + c.name,
                       .expected = str(K, " classes per metric"), .actual = str(c.dice.size(), " Dice values")};
    });
  auto per_class_mean = [&](auto member) {
    std::vector<double> out(K);
    for (std::size_t k = 0; k < K; ++k) {
      std::vector<double> values;
      for (const auto& c : cases)
        if ((c.*member).size() == K) values.push_back((c.*member)[k]);
      out[k] = nan_mean(values);
    }
    return out;
  };
  auto foreground_mean = [&](const std::vector<double>& v) {
    return nan_mean(K > 1 ? std::vector<double>(v.begin() + 1, v.end()) : std::vector<double>{});
  };
  s.dice = per_class_mean(&CaseMetrics::dice);
  s.iou = per_class_mean(&CaseMetrics::iou);
  s.hd95 = per_class_mean(&CaseMetrics::hd95);
  s.assd = per_class_mean(&CaseMetrics::assd);
  s.mean_dice = foreground_mean(s.dice);
  s.mean_iou = foreground_mean(s.iou);
  s.mean_hd95 = foreground_mean(s.hd95);
  s.mean_assd = foreground_mean(s.assd);
  bool any_soft = false;
  for (const auto& c : cases) any_soft |= c.soft_dice.size() == K;
  if (any_soft) {
    s.soft_dice = per_class_mean(&CaseMetrics::soft_dice);
    s.mean_soft_dice = nan_mean(s.soft_dice);
  }
  return s;
}

inline void write_csv(const std::filesystem::path& path, const std::vector<CaseMetrics>& cases, const Summary& summary,
                      const std::vector<std::string>& class_names) {
  detail::check_class_names(class_names, summary.num_classes, "metrics::write_csv");
  const bool soft = !summary.soft_dice.empty();
  std::string text = "case,mean_foreground_dice";
  for (const char* metric : {"dice", "iou", "hd95", "assd", "soft_dice"}) {
    if (std::string(metric) == "soft_dice" && !soft) continue;
    for (int c = 0; c < summary.num_classes; ++c) text += "," + detail::class_column(metric, c, class_names);
  }
  text += "\n";
  auto row = [&](const std::string& name, double mean_dice, const std::vector<const std::vector<double>*>& columns) {
    text += name + "," + detail::number_text(mean_dice);
    for (const auto* v : columns)
      for (int c = 0; c < summary.num_classes; ++c)
        text += "," + detail::number_text(static_cast<std::size_t>(c) < v->size() ? (*v)[static_cast<std::size_t>(c)]
                                                                                 : std::nan(""));
    text += "\n";
  };
  for (const auto& c : cases) {
    std::vector<const std::vector<double>*> cols{&c.dice, &c.iou, &c.hd95, &c.assd};
    if (soft) cols.push_back(&c.soft_dice);
    row(c.name, c.mean_foreground_dice(), cols);
  }
  std::vector<const std::vector<double>*> cols{&summary.dice, &summary.iou, &summary.hd95, &summary.assd};
  if (soft) cols.push_back(&summary.soft_dice);
  row("mean", summary.mean_dice, cols);
  detail::write_atomically(path, text, "metrics::write_csv");
}

inline void write_json(const std::filesystem::path& path, const std::vector<CaseMetrics>& cases, const Summary& summary,
                       const std::vector<std::string>& class_names) {
  detail::check_class_names(class_names, summary.num_classes, "metrics::write_json");
  nlohmann::json j;
  j["num_classes"] = summary.num_classes;
  j["class_names"] = class_names;
  auto& list = j["cases"] = nlohmann::json::array();
  for (const auto& c : cases) {
    nlohmann::json e;
    e["name"] = c.name;
    e["mean_foreground_dice"] = detail::number_json(c.mean_foreground_dice());
    e["dice"] = detail::numbers_json(c.dice);
    e["iou"] = detail::numbers_json(c.iou);
    e["hd95"] = detail::numbers_json(c.hd95);
    e["assd"] = detail::numbers_json(c.assd);
    if (!c.soft_dice.empty()) e["soft_dice"] = detail::numbers_json(c.soft_dice);
    list.push_back(std::move(e));
  }
  auto& mean = j["mean"];
  mean["cases"] = summary.cases;
  mean["dice"] = detail::numbers_json(summary.dice);
  mean["iou"] = detail::numbers_json(summary.iou);
  mean["hd95"] = detail::numbers_json(summary.hd95);
  mean["assd"] = detail::numbers_json(summary.assd);
  mean["mean_dice"] = detail::number_json(summary.mean_dice);
  mean["mean_iou"] = detail::number_json(summary.mean_iou);
  mean["mean_hd95"] = detail::number_json(summary.mean_hd95);
  mean["mean_assd"] = detail::number_json(summary.mean_assd);
  if (!summary.soft_dice.empty()) {
    mean["soft_dice"] = detail::numbers_json(summary.soft_dice);
    mean["mean_soft_dice"] = detail::number_json(summary.mean_soft_dice);
  }
  detail::write_atomically(path, j.dump(2) + "\n", "metrics::write_json");
}

}  // namespace medseg::metrics
