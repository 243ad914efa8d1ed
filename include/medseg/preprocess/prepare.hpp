// `medseg prepare`: a raw dataset (a folder of images and labels in any format io/ reads, an
// MSD task or an nnU-Net raw dataset) preprocessed case by case into MedicalSeg's layout
// (images/*.npy float32, labels/*.npy, train/val/test list files, dataset.json with each
// case's geometry), so MedicalSeg configs carry over. Parallel over cases, resumable (a case
// whose files exist is skipped; files appear atomically), and a bad case is reported by name
// without losing the others.
#pragma once

#include <algorithm>
#include <cstdio>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <mutex>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../core/progress.hpp"
#include "../core/parallel.hpp"
#include "../io/format.hpp"
#include "fingerprint.hpp"
#include "pipeline.hpp"

namespace medseg::preprocess {

namespace fs = std::filesystem;

/// Where the raw cases are.
struct DatasetInput {
  enum class Layout {
    folders,  // images/ and labels/ folders, matched by case name ("lung_001.nii.gz")
    msd,      // a Medical Segmentation Decathlon task: dataset.json's "training" list
    nnunet,   // nnU-Net raw: imagesTr/CASE_0000.ext and labelsTr/CASE.ext
  };
  Layout layout = Layout::folders;
  fs::path images{}, labels{};  // folders
  fs::path root{};              // msd, nnunet
  /// A label's name is prefix + case + suffix, compared without case: PROMISE12's
  /// "Case00_segmentation.mhd" (suffix "_segmentation", next to the images), MRSpineSeg's
  /// "mask_case1.nii.gz" for "Case1.nii.gz" (prefix "mask_").
  std::string label_prefix{}, label_suffix{};
};

/// Seeded split of the cases: fractions for val and test, the rest for training.
struct SplitConfig {
  double val = 0.2, test = 0.0;
  std::uint64_t seed = 0;
};

struct PrepareConfig {
  DatasetInput input;
  fs::path output;
  std::vector<Step> image_steps, label_steps;
  /// image_ops as the config wrote them: dataset.json repeats them (a ct_normalize without
  /// statistics gets the fingerprint's), so an exported model preprocesses as training did.
  nlohmann::json image_ops = nlohmann::json::array();
  SplitConfig split;
  DType label_dtype = DType::uint8;
  nlohmann::json labels = nlohmann::json::object();  // {"0": "background", ...} for dataset.json
  std::string name = "dataset";
};

/// The config of a prep.json; relative paths are relative to `base` (the file's folder).
///   {"input": {"layout": "folders", "images": "raw/images", "labels": "raw/labels"},
///    "output": "prepared", "image_ops": [...], "label_ops": [...],
///    "split": {"val": 0.2, "test": 0.1, "seed": 0}, "label_dtype": "uint8"}
PrepareConfig parse_prepare_config(const nlohmann::json& j, const fs::path& base, const std::string& where);
PrepareConfig load_prepare_config(const fs::path& file);

/// One raw case. A folder as image is a DICOM series.
struct CaseSource {
  std::string name;
  fs::path image;
  std::optional<fs::path> label;
  /// nnU-Net raw: the case's further channel files (_0001, _0002, ...), stacked after `image`
  /// into [C,D,H,W] as float.
  std::vector<fs::path> more_channels{};
};

/// The cases of `input`, sorted by name.
std::vector<CaseSource> discover_cases(const DatasetInput& input);

/// Case names in their split, from a seeded shuffle of the sorted names.
struct Split {
  std::vector<std::string> train, val, test;
};
Split split_cases(std::vector<std::string> names, const SplitConfig& config);

struct CaseReport {
  enum class Status { prepared, skipped, failed };
  std::string name;
  Status status = Status::failed;
  std::string error;
  Shape input_shape, output_shape;
  io::Vec3 input_spacing{}, output_spacing{};
  double ms = 0;
};

struct PrepareReport {
  std::vector<CaseReport> cases;
  double seconds = 0;
  std::int64_t count(CaseReport::Status s) const;
};

/// Prepares every case (in parallel on the thread pool), then writes the list files and
/// dataset.json over the cases that are done. `progress` (may be null) gets a progress bar.
PrepareReport prepare_dataset(const PrepareConfig& config, std::ostream* progress = nullptr);

/// How one case is prepared: reads `source`, runs the config's steps, writes the case's files
/// (detail::write_case) and returns its meta, filling the report's shapes and spacings. The
/// CPU's is detail::prepare_case; preprocess/prepare_cuda.hpp has the GPU's.
using CasePreparer = std::function<nlohmann::json(const PrepareConfig& config, const CaseSource& source,
                                                  CaseReport& report, const std::optional<CtStats>& dataset_ct)>;
/// prepare_dataset with each case prepared by `prepare_case`; everything else (discovery,
/// fingerprint, resuming, lists, dataset.json) is the same.
PrepareReport prepare_dataset(const PrepareConfig& config, std::ostream* progress, const CasePreparer& prepare_case);

/// The summary table: one row per case, then the failures with their errors.
void print_summary(const PrepareReport& report, std::ostream& out);

/// The file name of a case without its image extensions ("a.nii.gz" -> "a").
std::string case_stem(const fs::path& path);

// ----------------------------------------------------------------------------------------
// Implementation

inline std::string case_stem(const fs::path& path) {
  std::string n = path.filename().string();
  for (const char* ext : {".nii.gz", ".nii", ".mha", ".mhd", ".hdr.gz", ".hdr", ".npy", ".dcm"})
    if (n.size() > std::string(ext).size() && n.ends_with(ext)) return n.substr(0, n.size() - std::string(ext).size());
  return n;
}

namespace detail {

inline bool is_image_file(const fs::path& p) {
  if (fs::is_directory(p)) return true;  // a DICOM series
  const std::string n = p.filename().string();
  if (n.starts_with(".")) return false;
  for (const char* ext : {".nii.gz", ".nii", ".mha", ".mhd", ".hdr", ".hdr.gz", ".npy"})
    if (n.ends_with(ext)) return true;
  return false;
}

inline std::vector<fs::path> list_images(const fs::path& dir, const std::string& where) {
  require(fs::is_directory(dir), [&] {
    return ErrorInfo{.where = where, .field = "folder", .expected = "an existing folder", .actual = dir.string()};
  });
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (is_image_file(e.path())) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

/// nnU-Net names channel files CASE_0000; labels are CASE.
inline std::string without_channel(const std::string& stem) {
  if (stem.size() > 5 && stem[stem.size() - 5] == '_' &&
      std::all_of(stem.end() - 4, stem.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
    return stem.substr(0, stem.size() - 5);
  return stem;
}

/// splitmix64: a small, fully specified generator, so splits are the same on every platform.
inline std::uint64_t splitmix(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

inline void write_atomically(const fs::path& final_path, const std::function<void(const fs::path&)>& write) {
  // Same folder (so the rename is atomic), same extension (so writers pick the format).
  const fs::path tmp = final_path.parent_path() /
                       (".partial-" + std::to_string(getpid()) + "-" + final_path.filename().string());
  try {
    write(tmp);
    fs::rename(tmp, final_path);
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
}

inline nlohmann::json geometry_json(const io::Geometry& g, const Shape& shape) {
  return {{"shape", std::vector<std::int64_t>(shape.begin(), shape.end())},
          {"spacing", g.spacing},
          {"origin", g.origin},
          {"direction", g.direction}};
}

inline io::Vec3 vec3_of(const nlohmann::json& j) { return {j.at(0).get<double>(), j.at(1).get<double>(), j.at(2).get<double>()}; }

inline Shape shape_of(const nlohmann::json& j) {
  return Shape(j.get<std::vector<std::int64_t>>());
}

}  // namespace detail

inline PrepareConfig parse_prepare_config(const nlohmann::json& j, const fs::path& base, const std::string& where) {
  // Like the steps, a prep.json is read leniently: other keys are ignored, null reads as absent.
  PrepareConfig c;
  auto path = [&](const std::string& p) { return fs::path(p).is_absolute() ? fs::path(p) : base / p; };
  JsonReader r(j, where);
  r.nulls_absent();
  JsonReader in = r.object("input");
  const std::string layout = in.opt_choice("layout", {"folders", "msd", "nnunet"}).value_or("folders");
  if (layout == "folders") {
    c.input.layout = DatasetInput::Layout::folders;
    c.input.images = path(in.get<std::string>("images"));
    if (auto l = in.opt<std::string>("labels")) c.input.labels = path(*l);
    c.input.label_prefix = in.opt<std::string>("label_prefix").value_or("");
    c.input.label_suffix = in.opt<std::string>("label_suffix").value_or("");
  } else {
    c.input.layout = layout == "msd" ? DatasetInput::Layout::msd : DatasetInput::Layout::nnunet;
    c.input.root = path(in.get<std::string>("root"));
  }
  c.output = path(r.get<std::string>("output"));
  c.image_ops = r.opt<nlohmann::json>("image_ops").value_or(nlohmann::json::array());
  c.image_steps = parse_steps(c.image_ops, where + ": image_ops");
  c.label_steps = parse_steps(r.opt<nlohmann::json>("label_ops").value_or(nlohmann::json()), where + ": label_ops");
  if (auto s = r.opt_object("split")) {
    s->read("val", c.split.val, {.min = 0, .max = 1});
    s->read("test", c.split.test, {.min = 0, .max = 1});
    s->read("seed", c.split.seed);
    if (c.split.val + c.split.test > 1)
      s->fail_text("test", "a fraction with val + test <= 1", str(c.split.test, " (val ", c.split.val, ")"));
  }
  if (auto t = r.opt_choice("label_dtype", {"uint8", "int16", "int32", "int64"})) c.label_dtype = parse_dtype(*t);
  if (auto l = r.opt<nlohmann::json>("labels")) c.labels = *l;
  c.name = r.opt<std::string>("name").value_or(c.output.filename().string());
  return c;
}

inline PrepareConfig load_prepare_config(const fs::path& file) {
  std::ifstream in(file);
  require(in.good(), [&] {
    return ErrorInfo{.where = "medseg prepare", .field = "--config", .expected = "a readable JSON file", .actual = file.string()};
  });
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error{{.where = file.string(), .field = "JSON", .expected = "valid JSON", .actual = "a syntax error", .detail = e.what()}};
  }
  return parse_prepare_config(j, file.parent_path(), file.string());
}

inline std::vector<CaseSource> discover_cases(const DatasetInput& input) {
  std::vector<CaseSource> cases;
  if (input.layout == DatasetInput::Layout::msd) {
    const fs::path json_path = input.root / "dataset.json";
    std::ifstream f(json_path);
    require(f.good(), [&] {
      return ErrorInfo{.where = "medseg prepare", .field = "MSD dataset.json", .expected = "a readable file",
                       .actual = json_path.string()};
    });
    const auto j = nlohmann::json::parse(f);
    for (const auto& t : j.at("training")) {
      const fs::path image = input.root / t.at("image").get<std::string>();
      cases.push_back({case_stem(image), image, input.root / t.at("label").get<std::string>()});
    }
  } else {
    const bool nnunet = input.layout == DatasetInput::Layout::nnunet;
    const fs::path images = nnunet ? input.root / "imagesTr" : input.images;
    const fs::path labels = nnunet ? input.root / "labelsTr" : input.labels;
    std::vector<fs::path> label_files;
    if (!labels.empty() && fs::is_directory(labels)) label_files = detail::list_images(labels, "medseg prepare: labels");
    else if (!input.label_prefix.empty() || !input.label_suffix.empty())
      label_files = detail::list_images(images, "medseg prepare: images");
    auto lower = [](std::string t) {
      for (auto& ch : t) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      return t;
    };
    const std::string prefix = lower(input.label_prefix), suffix = lower(input.label_suffix);
    auto is_label_name = [&](const std::string& stem) {
      const std::string l = lower(stem);
      return (!prefix.empty() || !suffix.empty()) && l.starts_with(prefix) && l.ends_with(suffix) &&
             l.size() > prefix.size() + suffix.size();
    };
    for (const auto& image : detail::list_images(images, "medseg prepare: images")) {
      const std::string stem = case_stem(image);
      const bool labels_here = labels.empty() || (fs::exists(labels) && fs::equivalent(images, labels));
      if (labels_here && is_label_name(stem)) continue;  // a label stored next to its image
      const std::string name = detail::without_channel(stem);
      if (nnunet && stem.substr(name.size()) != "_0000" ) continue;  // other channels of the same case
      CaseSource c{name, image, std::nullopt};
      if (nnunet) {
        const std::string ending = image.filename().string().substr(stem.size());
        for (int ch = 1;; ++ch) {
          char suffix[16];
          std::snprintf(suffix, sizeof suffix, "_%04d", ch);
          const fs::path more = image.parent_path() / (name + suffix + ending);
          if (!fs::exists(more)) break;
          c.more_channels.push_back(more);
        }
      }
      for (const auto& l : label_files) {
        const std::string ls = lower(case_stem(l));
        if (ls == prefix + lower(name) + suffix || ls == prefix + lower(stem) + suffix) c.label = l;
      }
      cases.push_back(c);
    }
  }
  std::sort(cases.begin(), cases.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return cases;
}

inline Split split_cases(std::vector<std::string> names, const SplitConfig& config) {
  std::sort(names.begin(), names.end());
  std::uint64_t state = config.seed;
  for (std::size_t i = names.size(); i > 1; --i)  // Fisher-Yates
    std::swap(names[i - 1], names[detail::splitmix(state) % i]);
  const auto n = static_cast<double>(names.size());
  const auto n_test = static_cast<std::size_t>(std::llround(n * config.test));
  const auto n_val = std::min(names.size() - n_test, static_cast<std::size_t>(std::llround(n * config.val)));
  Split s;
  for (std::size_t i = 0; i < names.size(); ++i)
    (i < n_test ? s.test : i < n_test + n_val ? s.val : s.train).push_back(names[i]);
  for (auto* v : {&s.train, &s.val, &s.test}) std::sort(v->begin(), v->end());
  return s;
}

inline std::int64_t PrepareReport::count(CaseReport::Status s) const {
  return std::count_if(cases.begin(), cases.end(), [&](const auto& c) { return c.status == s; });
}

namespace detail {

inline nlohmann::json write_case(const PrepareConfig& config, const CaseSource& src, CaseReport& report,
                                 const CaseData& data, const nlohmann::json& original);

/// Prepares one case and writes its files; the case's meta file goes last and marks it done.
/// The case's channel files as one float [C,D,H,W] image; each must be 3-D on the first's grid.
inline io::Image<float> stacked_channels(const CaseSource& src) {
  std::vector<fs::path> files{src.image};
  files.insert(files.end(), src.more_channels.begin(), src.more_channels.end());
  io::Image<float> out;
  for (std::size_t c = 0; c < files.size(); ++c) {
    const io::Image<float> im = io::image_cast<float>(io::read_image(files[c]));
    if (c == 0) {
      const Shape s = im.voxels.shape();
      require(s.rank() == 3, [&] {
        return ErrorInfo{.where = files[c].string(), .field = "shape", .expected = "[D,H,W] (one channel per file)", .actual = s.to_string()};
      });
      out = {Tensor<float>::empty({static_cast<std::int64_t>(files.size()), s[0], s[1], s[2]}), im.geometry};
    }
    require(im.voxels.shape() == out.voxels.shape().erase(0), [&] {
      return ErrorInfo{.where = files[c].string(), .field = "shape", .expected = out.voxels.shape().erase(0).to_string() + " (channel 0's)",
                       .actual = im.voxels.shape().to_string()};
    });
    const Shape s = im.voxels.shape();
    out.voxels.slice(0, static_cast<std::int64_t>(c), static_cast<std::int64_t>(c) + 1).copy_from(im.voxels.reshape({1, s[0], s[1], s[2]}));
  }
  return out;
}

inline nlohmann::json prepare_case(const PrepareConfig& config, const CaseSource& src, CaseReport& report,
                                   const std::optional<CtStats>& dataset_ct) {
  const std::string where = "case " + src.name;
  CaseData data{{}, std::nullopt, std::nullopt, {}, std::nullopt, dataset_ct};
  std::size_t done_steps = 0;
  io::Geometry original_geometry;
  {
    const io::AnyImage raw = src.more_channels.empty() ? io::read_image(src.image)  // freed once the image is float
                                                       : io::AnyImage{detail::stacked_channels(src)};
    original_geometry = io::geometry(raw);
    report.input_shape = io::shape(raw);
    report.input_spacing = io::geometry(raw).spacing;
    if (src.label) {
      data.label = io::image_cast<std::int32_t>(io::read_image(*src.label));
      const Shape image_shape = io::shape(raw), spatial = image_shape.rank() == 4 ? image_shape.erase(0) : image_shape;
      require(data.label->voxels.shape() == spatial, [&] {
        return ErrorInfo{.where = where, .field = "label shape", .expected = spatial.to_string() + " (the image's)",
                         .actual = data.label->voxels.shape().to_string() + " in " + src.label->string()};
      });
    }
    done_steps = load_image_fused(data, raw, config.image_steps);
  }
  const nlohmann::json original = geometry_json(original_geometry, report.input_shape);
  apply_steps(data, config.image_steps, config.label_steps, where, done_steps);
  return write_case(config, src, report, data, original);
}

/// Writes a prepared case's image, label (as config.label_dtype) and meta (last: it marks the
/// case done), and fills the report's output shape and spacing. Returns the meta.
inline nlohmann::json write_case(const PrepareConfig& config, const CaseSource& src, CaseReport& report,
                                 const CaseData& data, const nlohmann::json& original) {
  report.output_shape = data.image.voxels.shape();
  report.output_spacing = data.image.geometry.spacing;

  const fs::path image_out = config.output / "images" / (src.name + ".npy");
  write_atomically(image_out, [&](const fs::path& p) { io::write_image(data.image, p); });
  nlohmann::json meta = {{"name", src.name},
                         {"source_image", src.image.string()},
                         {"image", "images/" + src.name + ".npy"},
                         {"original", original},
                         {"prepared", geometry_json(data.image.geometry, data.image.voxels.shape())}};
  if (data.label) {
    const fs::path label_out = config.output / "labels" / (src.name + ".npy");
    const io::AnyImage label = visit_dtype(config.label_dtype, [&](auto tag) -> io::AnyImage {
      using L = decltype(tag);
      return io::Image<L>{data.label->voxels.template astype<L>(), data.label->geometry};
    });
    write_atomically(label_out, [&](const fs::path& p) { io::write_image(label, p); });
    meta["label"] = "labels/" + src.name + ".npy";
    meta["source_label"] = src.label->string();
  }
  write_atomically(config.output / "meta" / (src.name + ".json"), [&](const fs::path& p) { std::ofstream(p) << meta.dump(2); });
  return meta;
}

/// The fingerprint of the cases (written to fingerprint.json, read back on a rerun).
inline CtStats dataset_ct_stats(const PrepareConfig& config, const std::vector<CaseSource>& cases) {
  const fs::path file = config.output / "fingerprint.json";
  if (fs::exists(file)) {
    std::ifstream f(file);
    const auto j = nlohmann::json::parse(f).at("foreground_intensity_properties_per_channel").at("0");
    return {j.at("mean").get<double>(), j.at("std").get<double>(), j.at("percentile_00_5").get<double>(),
            j.at("percentile_99_5").get<double>()};
  }
  std::vector<CaseFingerprint> prints(cases.size());
  std::vector<char> ok(cases.size(), 0);
  parallel_for(0, static_cast<std::int64_t>(cases.size()), 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) {
      const auto& c = cases[static_cast<std::size_t>(i)];
      try {  // a case that cannot be read fails later, by name, in its own row
        const auto image = io::image_cast<float>(io::read_image(c.image));
        std::optional<io::Image<std::int32_t>> label;
        if (c.label) label = io::image_cast<std::int32_t>(io::read_image(*c.label));
        prints[static_cast<std::size_t>(i)] = fingerprint_case(image, label ? &*label : nullptr,
                                                               10'000'000 / static_cast<std::int64_t>(cases.size()));
        ok[static_cast<std::size_t>(i)] = 1;
      } catch (const std::exception&) {
      }
    }
  });
  std::vector<CaseFingerprint> good;
  for (std::size_t i = 0; i < cases.size(); ++i)
    if (ok[i]) good.push_back(std::move(prints[i]));
  const DatasetFingerprint d = summarize_fingerprints(good);
  write_atomically(file, [&](const fs::path& p) { std::ofstream(p) << d.to_json().dump(2); });
  return d.ct_stats();
}

}  // namespace detail

inline PrepareReport prepare_dataset(const PrepareConfig& config, std::ostream* progress) {
  return prepare_dataset(config, progress, detail::prepare_case);
}

inline PrepareReport prepare_dataset(const PrepareConfig& config, std::ostream* progress,
                                     const CasePreparer& prepare_case) {
  const auto start = std::chrono::steady_clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  const auto cases = discover_cases(config.input);
  require(!cases.empty(), [&] {
    return ErrorInfo{.where = "medseg prepare", .field = "input", .expected = "at least one image",
                     .actual = "none found in " + (config.input.layout == DatasetInput::Layout::folders
                                                       ? config.input.images.string() : config.input.root.string())};
  });
  for (const char* sub : {"images", "labels", "meta"}) fs::create_directories(config.output / sub);

  // The dataset fingerprint, when a step needs dataset statistics (kept for reruns).
  std::optional<CtStats> dataset_ct;
  const bool needs_fingerprint = std::any_of(config.image_steps.begin(), config.image_steps.end(), [](const Step& s) {
    const auto* c = std::get_if<CtNormalizeStep>(&s);
    return c && c->from_dataset;
  });
  if (needs_fingerprint) dataset_ct = detail::dataset_ct_stats(config, cases);

  PrepareReport report;
  report.cases.resize(cases.size());
  std::vector<nlohmann::json> metas(cases.size());
  std::mutex mutex;
  std::int64_t done = 0;
  if (progress) draw_progress(*progress, 0, static_cast<std::int64_t>(cases.size()), 0);
  // One case per task: the ops inside run serially on their worker (the pool does not nest),
  // which is the efficient split when there are more cases than threads.
  parallel_for(0, static_cast<std::int64_t>(cases.size()), 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) {
      const auto& src = cases[static_cast<std::size_t>(i)];
      auto& r = report.cases[static_cast<std::size_t>(i)];
      r.name = src.name;
      const auto t0 = std::chrono::steady_clock::now();
      const fs::path meta_path = config.output / "meta" / (src.name + ".json");
      try {
        if (fs::exists(meta_path)) {  // finished by an earlier run
          std::ifstream f(meta_path);
          metas[static_cast<std::size_t>(i)] = nlohmann::json::parse(f);
          const auto& m = metas[static_cast<std::size_t>(i)];
          r.status = CaseReport::Status::skipped;
          r.input_shape = detail::shape_of(m.at("original").at("shape"));
          r.output_shape = detail::shape_of(m.at("prepared").at("shape"));
          r.input_spacing = detail::vec3_of(m.at("original").at("spacing"));
          r.output_spacing = detail::vec3_of(m.at("prepared").at("spacing"));
        } else {
          metas[static_cast<std::size_t>(i)] = prepare_case(config, src, r, dataset_ct);
          r.status = CaseReport::Status::prepared;
        }
      } catch (const std::exception& ex) {
        r.status = CaseReport::Status::failed;
        r.error = ex.what();
      }
      r.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      std::lock_guard lock(mutex);
      ++done;
      if (progress) draw_progress(*progress, done, static_cast<std::int64_t>(cases.size()), seconds());
    }
  });

  // Lists and dataset.json over the cases that are done, in their seeded split.
  std::vector<std::string> ok;
  for (std::size_t i = 0; i < cases.size(); ++i)
    if (report.cases[i].status != CaseReport::Status::failed) ok.push_back(cases[i].name);
  std::vector<std::string> all;
  for (const auto& c : cases) all.push_back(c.name);
  const Split split = split_cases(all, config.split);
  auto meta_of = [&](const std::string& name) -> const nlohmann::json& {
    for (std::size_t i = 0; i < cases.size(); ++i)
      if (cases[i].name == name) return metas[i];
    return metas.front();
  };
  auto is_ok = [&](const std::string& n) { return std::find(ok.begin(), ok.end(), n) != ok.end(); };
  nlohmann::json dataset = {{"name", config.name}, {"labels", config.labels}, {"tensorImageSize", "3D"}};
  for (const auto& [list, names] : {std::pair{"train", &split.train}, std::pair{"val", &split.val}, std::pair{"test", &split.test}}) {
    const std::string file = std::string(list) + "_list.txt";
    nlohmann::json entries = nlohmann::json::array();
    detail::write_atomically(config.output / file, [&](const fs::path& p) {
      std::ofstream f(p);
      for (const auto& n : *names) {
        if (!is_ok(n)) continue;
        const auto& m = meta_of(n);
        f << m.at("image").get<std::string>();
        if (m.contains("label")) f << " " << m.at("label").get<std::string>();
        f << "\n";
        nlohmann::json e = {{"image", m.at("image")}};
        if (m.contains("label")) e["label"] = m.at("label");
        entries.push_back(e);
      }
    });
    dataset[std::string(list == std::string("train") ? "training" : list)] = entries;
  }
  nlohmann::json per_case = nlohmann::json::object();
  for (const auto& n : ok) {
    const auto& m = meta_of(n);
    per_case[n] = {{"original", m.at("original")}, {"prepared", m.at("prepared")}};
  }
  dataset["numTraining"] = dataset["training"].size();
  dataset["cases"] = per_case;
  for (const auto& s : config.image_steps)
    if (const auto* r = std::get_if<ResampleStep>(&s)) {
      if (r->shape) dataset["resample"] = {{"shape", *r->shape}, {"order", r->order}};
      if (r->spacing) dataset["resample"] = {{"spacing", *r->spacing}, {"order", r->order}};
    }
  dataset["image_ops"] = config.image_ops;
  for (auto& op : dataset["image_ops"])
    if (op.value("op", "") == "ct_normalize" && !op.contains("mean") && dataset_ct)
      op.update({{"mean", dataset_ct->mean}, {"std", dataset_ct->std}, {"lower", dataset_ct->lower}, {"upper", dataset_ct->upper}});
  detail::write_atomically(config.output / "dataset.json", [&](const fs::path& p) { std::ofstream(p) << dataset.dump(2); });
  report.seconds = seconds();
  return report;
}

inline void print_summary(const PrepareReport& report, std::ostream& out) {
  auto shape_text = [](const Shape& s) { return s.rank() ? s.to_string() : std::string("-"); };
  auto spacing_text = [](const io::Vec3& v) {
    std::ostringstream o;
    o << std::setprecision(3) << v[0] << "x" << v[1] << "x" << v[2];
    return o.str();
  };
  out << std::left << std::setw(24) << "case" << std::setw(10) << "status" << std::setw(18) << "shape in"
      << std::setw(18) << "shape out" << std::setw(22) << "spacing out (mm)" << std::right << std::setw(10) << "ms" << "\n";
  for (const auto& c : report.cases) {
    const char* status = c.status == CaseReport::Status::prepared ? "prepared"
                         : c.status == CaseReport::Status::skipped ? "skipped" : "FAILED";
    out << std::left << std::setw(24) << c.name << std::setw(10) << status << std::setw(18) << shape_text(c.input_shape)
        << std::setw(18) << shape_text(c.output_shape) << std::setw(22)
        << (c.status == CaseReport::Status::failed ? std::string("-") : spacing_text(c.output_spacing)) << std::right
        << std::setw(10) << std::fixed << std::setprecision(1) << c.ms << "\n";
  }
  out << report.count(CaseReport::Status::prepared) << " prepared, " << report.count(CaseReport::Status::skipped)
      << " skipped (done before), " << report.count(CaseReport::Status::failed) << " failed, in " << std::fixed
      << std::setprecision(2) << report.seconds << " s\n";
  for (const auto& c : report.cases)
    if (c.status == CaseReport::Status::failed) out << "  " << c.name << ": " << c.error << "\n";
}

}  // namespace medseg::preprocess
