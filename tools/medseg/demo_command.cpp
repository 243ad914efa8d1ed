// medseg demo: brain masking on real MRI, end to end, on the CPU in minutes.
// One real volume (Colin27, Debian's mricron-data) becomes training and validation cases by
// realistic random deformation; a reduced-width VNet trains for a bounded time; Dice is
// measured on held-out deformed cases and on the original, undeformed volume at its own 1 mm
// grid; the predicted mask, overlay pictures, training curves and a deploy folder are written.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "any_model.hpp"
#include "command.hpp"
#include "medseg/core/parallel.hpp"
#include "medseg/data.hpp"
#include "medseg/data/loader.hpp"
#include "medseg/infer/evaluate.hpp"
#include "medseg/infer/predictor.hpp"
#include "medseg/io.hpp"
#include "medseg/loss.hpp"
#include "medseg/metrics.hpp"
#include "medseg/optim.hpp"
#include "medseg/preprocess.hpp"
#include "medseg/train.hpp"
#include "medseg/transforms.hpp"
#include "medseg/viz.hpp"

namespace medseg::tool {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct DemoOptions {
  fs::path data = "/usr/share/mricron/templates";
  fs::path out = "demo-output";
  double minutes = 8.0;        // training time budget; evaluation and writing come on top (~30 s)
  std::int64_t iters = 0;      // > 0: exactly this many iterations, whatever the time
  std::string augment = "light";          // or "nnunet": nnU-Net's full default chain
  std::vector<int> mirror_axes{2};        // test-time mirroring: left-right, as in training
  std::int64_t width = 8;      // VNet's first-level channels (MedicalSeg: 16). oneDNN pads channels
                               // to blocks of 16, so 8 costs ~12% more per iteration than 4 for 4x
                               // the weights; 16 costs 3x (0.57 / 0.64 / 1.91 s per iteration here)
  std::int64_t patch = 48;     // training patch and sliding window edge (a multiple of 16)
  int train_cases = 12;
  int val_cases = 3;
  std::uint64_t seed = 0;
};

constexpr double spacing_mm = 2.0;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

/// The preprocessing the network sees, as deploy.json records it: 2 mm, then z-score.
nlohmann::json image_ops() {
  return nlohmann::json::array({{{"op", "resample"}, {"spacing", {spacing_mm, spacing_mm, spacing_mm}}, {"order", 3}},
                                {{"op", "zscore"}}});
}

/// The Colin27 T1 and its brain mask (ch2bet > 0), on their common 1 mm grid.
struct Colin {
  io::Image<float> t1;
  io::Image<data::LabelValue> brain;
};

Colin load_colin(const fs::path& dir) {
  const fs::path t1 = dir / "ch2.nii.gz", bet = dir / "ch2bet.nii.gz";
  for (const auto& f : {t1, bet})
    require(fs::exists(f), [&] {
      return ErrorInfo{.where = "medseg demo", .field = "data", .expected = "Debian's mricron-data (scripts/setup.sh --demo)",
                       .actual = f.string() + " is missing"};
    });
  Colin c{io::read_image_as<float>(t1), {}};
  const auto stripped = io::read_image_as<float>(bet);
  data::check_same_geometry(c.t1.geometry, stripped.geometry, bet.string());
  c.brain = {Tensor<data::LabelValue>::empty(stripped.voxels.shape()), stripped.geometry};
  for (std::int64_t i = 0; i < stripped.voxels.numel(); ++i) c.brain.voxels.data()[i] = stripped.voxels.data()[i] > 0 ? 1 : 0;
  return c;
}

/// The volume at 2 mm in its raw intensities and the mask on the same grid, as a sample.
struct Base {
  transforms::Sample sample;
  io::Geometry grid;
};

Base at_training_resolution(const Colin& c) {
  const auto image = preprocess::resample_to_spacing<float>(c.t1, {spacing_mm, spacing_mm, spacing_mm},
                                                            {.order = 3, .grid = preprocess::GridMode::extent});
  const auto& v = image.voxels;
  const preprocess::Extent3 shape{v.size(0), v.size(1), v.size(2)};
  const auto mask = preprocess::resize<data::LabelValue>(c.brain.voxels, shape, {.order = 0, .grid = preprocess::GridMode::extent});
  return {{v.reshape({1, shape[0], shape[1], shape[2]}), mask.reshape({1, shape[0], shape[1], shape[2]})}, image.geometry};
}

/// What a scanner and a different head give: a mild affine (rotation up to 10 degrees about
/// each axis, anisotropic scale 0.9..1.1), an elastic deformation, an MR bias field and noise.
/// The spatial part samples the 1 mm volume straight onto a `grid` of the 2 mm training
/// resolution (`zoom` input voxels per output voxel), so a case is one interpolation away from
/// the real volume, as the deploy preprocessing's resampling is.
auto realistic_deformation(const transforms::Index3& grid, double zoom) {
  const auto f = static_cast<float>(zoom);
  return transforms::SpatialTransform{.patch_size = grid,
                                      .p_rotation = 1.0f,
                                      .angle_degrees = {{{-10, 10}, {-10, 10}, {-10, 10}}},
                                      .p_scale = 1.0f,
                                      .scale = {0.9f * f, 1.1f * f},
                                      .anisotropic_scale = true,
                                      .p_elastic = 1.0f,
                                      .elastic_alpha = {0.0f, 150.0f * f},  // input voxels: the same millimetres
                                      .elastic_sigma = {9.0f, 13.0f}} |   // output voxels
         transforms::RandomBiasField{.coefficients = {-0.15f, 0.15f}} |
         transforms::GaussianNoise{.p = 1.0f, .sigma = {0.0f, 6.0f}};  // on the 0..255 scale of the T1
}

/// Case `index`: the 1 mm volume deformed onto the 2 mm grid with its own random stream, then
/// z-scored as the deploy preprocessing does.
data::Case make_case(const Colin& colin, const Base& base, std::uint64_t seed, std::uint64_t index, const std::string& name) {
  const auto& v = colin.t1.voxels;
  const Shape one{1, v.size(0), v.size(1), v.size(2)};
  transforms::Sample s{colin.t1.voxels.reshape(one), colin.brain.voxels.reshape(one)};
  const transforms::Index3 grid{base.sample.image.size(1), base.sample.image.size(2), base.sample.image.size(3)};
  const double zoom = spacing_mm / colin.t1.geometry.spacing[0];
  RandomStream stream = RandomStream(seed, 0x64656d6full).substream(index);
  realistic_deformation(grid, zoom).apply(s, stream);
  s.image = preprocess::zscore(s.image);
  const Shape spatial{s.image.size(1), s.image.size(2), s.image.size(3)};
  return {name, {s.image, base.grid}, io::Image<data::LabelValue>{s.label.reshape(spatial), base.grid}};
}

void write_text(const fs::path& file, const std::string& text) {
  const fs::path tmp = fs::path(file).concat(".tmp");
  std::ofstream(tmp) << text;
  fs::rename(tmp, file);
}

/// The reduced-width VNet, as deploy.json records it.
nlohmann::json model_json(std::int64_t width) {
  return {{"type", "VNet"}, {"in_channels", 1}, {"num_classes", 2}, {"norm", "instance"}, {"dropout", 0.0}, {"width", width}};
}

/// Seconds per training iteration (forward, loss, backward) of `model` on `batch`, from two
/// timed passes after a warm-up one. Gradients are cleared again: nothing is learnt.
template <class Model, class Loss, class BatchT>
double seconds_per_iteration(Model& model, Loss& loss, const BatchT& batch) {
  double t = 0;
  for (int pass = 0; pass < 3; ++pass) {
    const auto t0 = Clock::now();
    loss.forward(model.forward(batch.image), batch.label);
    model.backward(loss.backward());
    if (pass > 0) t += seconds_since(t0);
  }
  nn::zero_grad(model);
  return t / 2;
}

/// The demo's online augmentation. The cases already differ in pose, shape and intensity, so a
/// light chain learns fastest in a few hundred iterations: nnU-Net's crop (33% foreground),
/// rotation up to 15 degrees and zoom 0.9..1.1 (each with p 0.2), noise, gamma, and mirroring
/// left-right only (a head upside down is not an MRI a brain mask meets). In 500 iterations
/// nnU-Net's full chain (--augment nnunet) reached brain Dice 0.92 on the original volume where
/// this one reached 0.955.
auto light_augmentation(const transforms::Index3& patch) {
  return transforms::SpatialTransform{.patch_size = patch,
                                      .crop_size = transforms::initial_patch_size(patch, 15.0, 0.9),
                                      .foreground_fraction = 0.33f,
                                      .p_rotation = 0.2f,
                                      .angle_degrees = {{{-15, 15}, {-15, 15}, {-15, 15}}},
                                      .p_scale = 0.2f,
                                      .scale = {0.9f, 1.1f}} |
         transforms::GaussianNoise{} | transforms::Gamma{.p = 0.3f} |
         transforms::RandomFlip3D{.p = 0.5f, .axes = {false, false, true}};  // W: left-right
}

struct TrainingRun {
  std::int64_t iterations = 0;
  double seconds_per_iteration = 0;
};

/// Trains `model` with Dice + CE and Adam for as many iterations as fit the time budget (or
/// exactly o.iters), the learning rate decaying polynomially over them, evaluating five times
/// and keeping the best weights in train_dir/best_model.
template <class Augmentation>
TrainingRun train_model(models::AnyModel<Cpu>& model, const data::MemoryDataset& train_set,
                        const data::MemoryDataset& val_set, const Augmentation& augmentation, const DemoOptions& o,
                        const fs::path& train_dir, const infer::EvaluateOptions& val_options) {
  loss::Mixed loss{loss::CrossEntropy{}, loss::Dice{{.include_background = false, .batch = true}}};
  optim::Adam opt{nn::parameters(model), {.lr = 2e-3}};
  data::Loader loader{train_set, augmentation, {.batch_size = 2, .workers = 1, .seed = o.seed}};
  TrainingRun run;
  run.seconds_per_iteration = seconds_per_iteration(model, loss, loader.batch(0));
  run.iterations = o.iters > 0 ? o.iters
                               : std::max<std::int64_t>(10, static_cast<std::int64_t>(o.minutes * 60.0 /
                                                                                      (1.08 * run.seconds_per_iteration)));
  std::cout << "  VNet (width " << o.width << ", " << nn::parameters(model).size() << " parameter tensors): "
            << std::setprecision(2) << run.seconds_per_iteration << " s per iteration of batch 2 -> " << run.iterations
            << " iterations";
  if (o.iters == 0) std::cout << " in " << std::setprecision(1) << o.minutes << " min";
  std::cout << " (" << o.augment << " augmentation)\n";
  optim::PolyLR schedule{opt, {.total_iters = run.iterations, .power = 0.9}};
  train::Trainer trainer{model, loss, opt, schedule,
                         {.iters = run.iterations, .log_every = 5, .save_every = run.iterations,
                          .eval_every = std::max<std::int64_t>(1, run.iterations / 5), .keep_checkpoint_max = 1,
                          .save_dir = train_dir, .seed = o.seed}};
  trainer.fit(loader, [&](models::AnyModel<Cpu>& m) {
    const auto e = infer::evaluate(m, val_set, val_options);
    return train::EvalResult{.mean_dice = e.summary.mean_dice, .per_class_dice = e.summary.dice};
  });
  return run;
}

int run_demo(const DemoOptions& o) {
  const auto start = Clock::now();
  fs::create_directories(o.out);
  std::cout << std::fixed << "medseg demo: brain masking on real MRI, on the CPU (" << num_threads() << " threads)\n"
            << "  data:  the Colin27 T1 template (Debian's mricron-data): one real 181x217x181 MRI volume at 1 mm;\n"
            << "         brain mask = ch2bet > 0 (its brain-extracted version).\n"
            << "  cases: training and validation cases are made from this ONE real volume by random deformation\n"
            << "         (affine + elastic + MR bias field + noise): synthetic variations of one subject, not other\n"
            << "         subjects. The final test is the original, undeformed volume on its own 1 mm grid.\n";

  // 1. Data: the real volume at 2 mm, deformed into training and validation cases.
  const Colin colin = load_colin(o.data);
  const Base base = at_training_resolution(colin);
  const data::LabelMap labels{{0, "background"}, {1, "brain"}};
  data::MemoryDataset train_set{{.labels = labels}}, val_set{{.labels = labels}};
  for (int i = 0; i < o.train_cases + o.val_cases; ++i) {
    const bool is_val = i >= o.train_cases;
    auto c = make_case(colin, base, o.seed, static_cast<std::uint64_t>(i), (is_val ? "val_" : "train_") + std::to_string(i));
    (is_val ? val_set : train_set).add(std::move(c));
  }
  std::cout << "  made " << o.train_cases << " training and " << o.val_cases << " validation cases at 2 mm ("
            << base.sample.image.size(1) << "x" << base.sample.image.size(2) << "x" << base.sample.image.size(3) << ") in "
            << std::setprecision(1) << seconds_since(start) << " s\n";

  // 2. Model, then training with nnU-Net's Dice + CE on augmented patches (3).
  auto model = models::AnyModel<Cpu>::from_json(model_json(o.width), "medseg demo: model");
  nn::name_root(model);
  const transforms::Index3 patch{o.patch, o.patch, o.patch};
  const fs::path train_dir = o.out / "training";
  const infer::EvaluateOptions val_options{.window = {.roi = patch, .overlap = 0.5}, .num_classes = 2, .surface_distances = false};
  const auto train_with = [&](const auto& augmentation) {
    return train_model(model, train_set, val_set, augmentation, o, train_dir, val_options);
  };
  const TrainingRun run = o.augment == "nnunet" ? train_with(transforms::nnunet_3d(patch)) : train_with(light_augmentation(patch));
  const auto iters = run.iterations;
  const auto per_iteration = run.seconds_per_iteration;

  // 4. Held-out deformed cases, scored at 2 mm with every metric, from the best weights.
  nn::load_state_dict(model, train_dir / "best_model" / "model.safetensors");
  auto val = infer::evaluate(model, val_set, {.window = val_options.window, .num_classes = 2});
  metrics::write_json(o.out / "validation_metrics.json", val.cases, val.summary, {"background", "brain"});
  std::cout << "  validation (" << val.summary.cases << " deformed cases, 2 mm): brain Dice " << std::setprecision(4)
            << val.summary.dice[1] << ", HD95 " << std::setprecision(2) << val.summary.hd95[1] << " mm\n";

  // 5. Export, then the original volume through the exported folder, as `medseg infer` runs it.
  const fs::path model_dir = o.out / "model";
  infer::DeployConfig deploy;
  deploy.model = model_json(o.width);
  deploy.image_ops = image_ops();
  deploy.inference.roi = patch;
  deploy.inference.mirror_axes = o.mirror_axes;
  deploy.postprocess.largest_component = true;
  deploy.labels = {"background", "brain"};
  fs::create_directories(model_dir);
  nn::save_state_dict(model, model_dir / deploy.weights);
  infer::write_deploy(model_dir, deploy);
  infer::Predictor<> predictor{model_dir};
  const auto prediction = predictor.predict(io::AnyImage{colin.t1});
  io::write_image(io::AnyImage{prediction.labels}, o.out / "brain_mask.nii.gz");
  const auto& sp = colin.t1.geometry.spacing;  // (x, y, z); the metrics take (D, H, W)
  const auto original = metrics::evaluate_case("colin27", prediction.labels.voxels, colin.brain.voxels,
                                               {.num_classes = 2, .surface = {.spacing = {sp[2], sp[1], sp[0]}}});
  const auto& t = predictor.last_timing();
  std::cout << "  original volume (undeformed, 1 mm, 181x217x181): brain Dice " << std::setprecision(4) << original.dice[1]
            << ", HD95 " << std::setprecision(2) << original.hd95[1] << " mm  (preprocess " << t.preprocess
            << " s, inference " << t.inference << " s, postprocess " << t.postprocess << " s)\n";

  // 6. Pictures and the report.
  viz::write_overlay(o.out / "overlay_original.png", colin.t1, prediction.labels, colin.brain);
  const nlohmann::json report{{"iterations", iters},
                              {"seconds_per_iteration", per_iteration},
                              {"width", o.width},
                              {"validation_brain_dice", val.summary.dice[1]},
                              {"validation_brain_hd95_mm", val.summary.hd95[1]},
                              {"original_brain_dice", original.dice[1]},
                              {"original_brain_hd95_mm", original.hd95[1]},
                              {"total_seconds", seconds_since(start)}};
  write_text(o.out / "demo.json", report.dump(2) + "\n");
  std::cout << "  wrote " << (o.out / "brain_mask.nii.gz").string() << " (the input's grid and geometry), overlay_original.png,\n"
            << "        training/curves.png, training/metrics.jsonl, validation_metrics.json, demo.json and model/\n"
            << "        (deploy.json + weights: medseg infer --model " << model_dir.string() << " --input ch2.nii.gz ...)\n"
            << "  done in " << std::setprecision(0) << seconds_since(start) << " s";
  if (original.dice[1] < 0.95)
    std::cout << "; brain Dice below the 0.95 a healthy run reaches: train longer with --minutes";
  std::cout << "\n";
  return 0;
}

}  // namespace

int demo_command(Args args) {
  DemoOptions o;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto value = [&]() -> std::string {
      require(i + 1 < args.size(), [&] {
        return ErrorInfo{.where = "medseg demo", .field = std::string(args[i]), .expected = "a value", .actual = "none"};
      });
      return std::string(args[++i]);
    };
    if (args[i] == "--out") o.out = value();
    else if (args[i] == "--data") o.data = value();
    else if (args[i] == "--minutes") o.minutes = std::stod(value());
    else if (args[i] == "--iters") o.iters = std::stoll(value());
    else if (args[i] == "--augment") {
      o.augment = value();
      require(o.augment == "light" || o.augment == "nnunet", [&] {
        return ErrorInfo{.where = "medseg demo", .field = "--augment", .expected = "light or nnunet", .actual = o.augment};
      });
    } else if (args[i] == "--mirror") {
      const std::string axes = value();
      o.mirror_axes.clear();
      for (char ch : axes == "none" ? std::string() : axes) {
        const int axis = ch - '0';
        require(axis >= 0 && axis <= 2 && std::find(o.mirror_axes.begin(), o.mirror_axes.end(), axis) == o.mirror_axes.end(), [&] {
          return ErrorInfo{.where = "medseg demo", .field = "--mirror",
                           .expected = "distinct axes from 0, 1, 2 (D, H, W), e.g. 2, or none", .actual = axes};
        });
        o.mirror_axes.push_back(axis);
      }
    }
    else if (args[i] == "--seed") o.seed = std::stoull(value());
    else if (args[i] == "--threads") set_num_threads(std::stoi(value()));
    else if (args[i] == "--help" || args[i] == "-h") {
      std::cout << "usage: medseg demo [--out DIR] [--minutes M | --iters N] [--width W] [--patch P] [--augment A]\n"
                   "                   [--mirror AXES] [--seed S] [--threads N] [--data DIR]\n"
                   "Trains a reduced-width VNet to mask the brain in real MRI (Colin27, Debian's mricron-data) and\n"
                   "evaluates it. Training and validation cases are random deformations (affine + elastic + bias\n"
                   "field + noise) of the one real volume. Writes to DIR (default demo-output): the predicted mask\n"
                   "as NIfTI on the input's grid, overlay pictures, training curves, metrics and a deploy folder.\n"
                   "--minutes bounds the training time (default 8); --width sets the VNet's channels (default 8),\n"
                   "--patch the training patch edge (default 48, a multiple of 16); --iters trains exactly N\n"
                   "iterations instead of a time budget. --augment light (default: crop, mild rotation and zoom,\n"
                   "noise, gamma, left-right mirroring) or nnunet (nnU-Net's full chain); --mirror: test-time\n"
                   "mirroring axes of the exported model (default 2, left-right; none for none).\n";
      return 0;
    } else {
      throw Error{{.where = "medseg demo", .field = "argument",
                   .expected = "--out, --data, --minutes, --iters, --width, --patch, --augment, --mirror, --seed, --threads or --help",
                   .actual = "\"" + std::string(args[i]) + "\""}};
    }
  }
  return run_demo(o);
}

}  // namespace medseg::tool
