// The whole MedicalSeg workflow through the medseg command, as a user runs it, on a small
// synthetic phantom dataset: prepare -> train -> val -> export -> infer. It must learn (a
// Dice no constant guess reaches), write predictions on the raw images' own grid and
// geometry, and the exported folder run by `medseg infer` must give exactly what the
// library's in-process predictor gives with the checkpoint's weights. The same config with
// "amp": true (bfloat16 convolutions) must learn as well, where this CPU has them.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "medseg/backends/cpu/math_mode.hpp"
#include "medseg/infer/predictor.hpp"
#include "medseg/io.hpp"
#include "medseg/metrics.hpp"
#include "run_medseg.hpp"

namespace fs = std::filesystem;
using namespace medseg;
using tools_test::run_medseg;

namespace {

/// A phantom: a bright ellipsoid (class 1) and a dark box (class 2) at random places in
/// noise, 48x40x20 voxels of 0.8 x 0.8 x 1.6 mm, the x axis flipped (a non-identity direction).
struct Phantom {
  io::Image<std::int16_t> image;
  io::Image<std::uint8_t> label;
};

Phantom make_phantom(int index) {
  const std::int64_t nx = 48, ny = 40, nz = 20;
  RandomStream rng(1234, static_cast<std::uint64_t>(index));
  auto image = Tensor<std::int16_t>::empty({nz, ny, nx});
  auto label = Tensor<std::uint8_t>::zeros({nz, ny, nx});
  auto noise = Tensor<float>::empty({nz, ny, nx});
  random::normal(noise, {7, static_cast<std::uint64_t>(index), 0}, 0.0f, 30.0f);
  const double ex = 14 + 20 * rng.uniform(), ey = 12 + 16 * rng.uniform(), ez = 6 + 8 * rng.uniform();
  const double rx = 6 + 3 * rng.uniform(), ry = 5 + 3 * rng.uniform(), rz = 3 + 1.5 * rng.uniform();
  const std::int64_t bx = static_cast<std::int64_t>(4 + 30 * rng.uniform()), by = static_cast<std::int64_t>(4 + 24 * rng.uniform());
  for (std::int64_t z = 0; z < nz; ++z)
    for (std::int64_t y = 0; y < ny; ++y)
      for (std::int64_t x = 0; x < nx; ++x) {
        const std::int64_t i = (z * ny + y) * nx + x;
        const double e = std::pow((x - ex) / rx, 2) + std::pow((y - ey) / ry, 2) + std::pow((z - ez) / rz, 2);
        const bool box = x >= bx && x < bx + 8 && y >= by && y < by + 8 && z >= 4 && z < 10;
        std::uint8_t l = e <= 1.0 ? 1 : 0;
        if (box && l == 0) l = 2;
        label.data()[i] = l;
        image.data()[i] = static_cast<std::int16_t>(100.0f + (l == 1 ? 150.0f : l == 2 ? -80.0f : 0.0f) + noise.data()[i]);
      }
  io::Geometry g;
  g.spacing = {0.8, 0.8, 1.6};
  g.origin = {20.0 + index, -10.0, 5.0};
  g.direction = {-1, 0, 0, 0, 1, 0, 0, 0, 1};
  return {{image, g}, {label, g}};
}

void write_phantom(const fs::path& root, int index) {
  const auto p = make_phantom(index);
  const std::string name = "phantom_" + std::to_string(index) + ".nii.gz";
  io::write_image(io::AnyImage{p.image}, root / "raw/images" / name);
  io::write_image(io::AnyImage{p.label}, root / "raw/labels" / name);
}

/// The phantoms as an nnU-Net v2 raw dataset: 8 training and 2 test cases, two channels
/// (the MRI-like image, and a CT-like copy: nnU-Net normalises each by its own scheme).
fs::path write_nnunet_phantoms(const fs::path& root) {
  const fs::path d = root / "Dataset042_Phantom";
  for (int i = 0; i < 10; ++i) {
    auto p = make_phantom(i);
    const std::string split = i < 8 ? "Tr" : "Ts", name = "phantom_" + std::to_string(i);
    io::write_image(io::AnyImage{p.image}, d / ("images" + split) / (name + "_0000.nii.gz"));
    for (std::int64_t v = 0; v < p.image.voxels.numel(); ++v)
      p.image.voxels.data()[v] = static_cast<std::int16_t>(2 * p.image.voxels.data()[v] - 300);
    io::write_image(io::AnyImage{p.image}, d / ("images" + split) / (name + "_0001.nii.gz"));
    io::write_image(io::AnyImage{p.label}, d / ("labels" + split) / (name + ".nii.gz"));
  }
  std::ofstream(d / "dataset.json") << R"({"channel_names": {"0": "MRI", "1": "CT"},
    "labels": {"background": 0, "ellipsoid": 1, "box": 2}, "numTraining": 8, "file_ending": ".nii.gz"})";
  return d;
}

void write_json(const fs::path& file, const nlohmann::json& j) { std::ofstream(file) << j.dump(2); }

}  // namespace

TEST_CASE("workflow: prepare train val export infer on a phantom dataset") {
  const fs::path root = fs::temp_directory_path() / ("medseg_workflow_" + std::to_string(getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "raw/images");
  fs::create_directories(root / "raw/labels");
  for (int i = 0; i < 10; ++i) write_phantom(root, i);

  // prepare: 1.6 mm isotropic (in-plane halved), z-score; labels follow the image's grid.
  write_json(root / "prep.json",
             {{"input", {{"layout", "folders"}, {"images", "raw/images"}, {"labels", "raw/labels"}}},
              {"output", "prepared"},
              {"image_ops", {{{"op", "resample"}, {"spacing", {1.6, 1.6, 1.6}}}, {{"op", "zscore"}}}},
              {"label_ops", {{{"op", "resample"}}}},
              {"labels", {{"0", "background"}, {"1", "ellipsoid"}, {"2", "box"}}},
              {"split", {{"val", 0.2}, {"seed", 0}}}});
  const auto prep = run_medseg("prepare --quiet --config " + (root / "prep.json").string());
  INFO(prep.out);
  REQUIRE(prep.code == 0);
  const auto dataset = nlohmann::json::parse(std::ifstream(root / "prepared/dataset.json"));
  CHECK(dataset.at("image_ops").size() == 2);

  // train: a small DynamicUNet (deep supervision) with MedicalSeg's config keys.
  const nlohmann::json dataset_section = {{"type", "MedicalDataset"}, {"dataset_root", (root / "prepared").string()},
                                          {"num_classes", 3}};
  nlohmann::json train_set = dataset_section, val_set = dataset_section;
  train_set["mode"] = "train";
  train_set["transforms"] = {{{"type", "RandomCrop"}, {"size", {16, 16, 16}}}, {{"type", "RandomFlip3D"}}};
  val_set["mode"] = "val";
  write_json(root / "train.json",
             {{"batch_size", 2}, {"iters", 160}, {"seed", 0}, {"num_workers", 1}, {"log_iters", 20},
              {"save_interval", 80}, {"keep_checkpoint_max", 1}, {"do_eval", true},
              {"save_dir", (root / "output").string()},
              {"train_dataset", train_set}, {"val_dataset", val_set},
              {"model", {{"type", "DynamicUNet"}, {"in_channels", 1}, {"num_classes", 3},
                         {"features", {8, 16, 32}}, {"kernels", {{3, 3, 3}, {3, 3, 3}, {3, 3, 3}}},
                         {"strides", {{1, 1, 1}, {2, 2, 2}, {2, 2, 2}}},
                         {"convs_per_stage", {2, 2, 2}}, {"convs_per_stage_decoder", {2, 2}}}},
              {"optimizer", {{"type", "adam"}}},
              {"lr_scheduler", {{"type", "PolynomialDecay"}, {"learning_rate", 0.003}, {"power", 0.9}}},
              {"loss", {{"types", {{{"type", "MixedLoss"},
                                    {"losses", {{{"type", "CrossEntropyLoss"}}, {{"type", "DiceLoss"}}}},
                                    {"coef", {1, 1}}}}},
                        {"coef", {1}}}},
              {"inference", {{"roi", {16, 16, 16}}, {"overlap", 0.5}}},
              {"export", {{"labels", {{"0", "background"}, {"1", "ellipsoid"}, {"2", "box"}}}}}});
  const auto tr = run_medseg("train --threads 2 --config " + (root / "train.json").string());
  INFO(tr.out);
  REQUIRE(tr.code == 0);
  CHECK(fs::exists(root / "output/best_model/model.safetensors"));
  CHECK(fs::exists(root / "output/iter_160"));
  CHECK_FALSE(fs::exists(root / "output/iter_80"));  // keep_checkpoint_max 1
  CHECK(fs::exists(root / "output/metrics.jsonl"));

  // val: learning shown on the held-out cases (a constant guess scores 0 on both classes).
  const auto val = run_medseg("val --config " + (root / "train.json").string() + " --model_path " +
                              (root / "output/best_model").string() + " --save_predictions");
  INFO(val.out);
  REQUIRE(val.code == 0);
  const auto metrics = nlohmann::json::parse(std::ifstream(root / "output/best_model/val_metrics.json"));
  const double mean_dice = metrics.at("mean").at("mean_dice").get<double>();
  CHECK(mean_dice > 0.6);

  // export -> infer on a raw validation image: output on the raw grid, equal to in-process.
  const auto ex = run_medseg("export --config " + (root / "train.json").string() + " --model_path " +
                             (root / "output/best_model").string() + " --save_dir " + (root / "export").string());
  INFO(ex.out);
  REQUIRE(ex.code == 0);
  std::string val_case;
  {
    std::ifstream list(root / "prepared/val_list.txt");
    std::string image;
    list >> image;
    val_case = fs::path(image).stem().string();  // "phantom_K" (.npy)
  }
  const fs::path raw = root / "raw/images" / (val_case + ".nii.gz");
  const auto inf = run_medseg("infer --model " + (root / "export").string() + " --input " + raw.string() + " --output " +
                              (root / "infer").string() + " --benchmark");
  INFO(inf.out);
  REQUIRE(inf.code == 0);
  CHECK_THAT(inf.out, Catch::Contains("inference"));
  const auto written = io::read_image_as<std::uint8_t>(root / "infer" / (val_case + ".nii.gz"));
  const auto source = io::read_image_as<std::int16_t>(raw);
  CHECK(written.voxels.shape() == source.voxels.shape());
  for (int k = 0; k < 3; ++k) {
    CHECK(written.geometry.spacing[k] == Approx(source.geometry.spacing[k]).epsilon(1e-6));
    CHECK(written.geometry.origin[k] == Approx(source.geometry.origin[k]).margin(1e-4));
  }
  CHECK(written.geometry.direction[0] == Approx(-1.0));
  const auto reference = io::read_image_as<std::uint8_t>(root / "raw/labels" / (val_case + ".nii.gz"));
  CHECK(metrics::nan_mean(metrics::dice_per_class(written.voxels, reference.voxels, 3)) > 0.5);

  infer::Predictor<> in_process{models::AnyModel<Cpu>::from_json(infer::read_deploy(root / "export").model, "test"),
                                infer::read_deploy(root / "export")};
  nn::load_state_dict(in_process.model(), root / "output/best_model/model.safetensors");
  const auto direct = in_process.predict(io::read_image(raw));
  std::int64_t differ = 0;
  for (std::int64_t i = 0; i < written.voxels.numel(); ++i) differ += written.voxels.data()[i] != direct.labels.voxels.data()[i];
  CHECK(differ == 0);

  // Mixed precision from the config: the same run with "amp": true learns as well.
  if (cpu::bf16_convolutions() != cpu::Bf16Convolutions::none) {
    const auto amp = run_medseg("train --threads 2 --config " + (root / "train.json").string() +
                                " --set amp=true --save_dir " + (root / "output_amp").string());
    INFO(amp.out);
    REQUIRE(amp.code == 0);
    const auto amp_val = run_medseg("val --config " + (root / "train.json").string() + " --model_path " +
                                    (root / "output_amp/best_model").string());
    INFO(amp_val.out);
    REQUIRE(amp_val.code == 0);
    const auto amp_metrics = nlohmann::json::parse(std::ifstream(root / "output_amp/best_model/val_metrics.json"));
    const double amp_dice = amp_metrics.at("mean").at("mean_dice").get<double>();
    INFO("mean Dice float32 " << mean_dice << ", amp " << amp_dice);
    CHECK(amp_dice > 0.6);
    CHECK(amp_dice != mean_dice);  // bfloat16 convolutions really ran: the run went elsewhere
  }

  // A bad config fails with one clear line naming the file and the key.
  write_json(root / "bad.json", {{"_base_", "train.json"}, {"iterz", 5}});
  const auto bad = run_medseg("train --config " + (root / "bad.json").string());
  CHECK(bad.code != 0);
  CHECK_THAT(bad.out, Catch::Contains("bad.json") && Catch::Contains("iterz") && Catch::Contains("iters"));
  fs::remove_all(root);
}

TEST_CASE("workflow: nnU-Net automated, from a raw dataset to cross-validation, find_best, ensembles and predictions") {
  const fs::path root = fs::temp_directory_path() / ("medseg_nnunet_" + std::to_string(getpid()));
  fs::remove_all(root);
  for (const char* sub : {"Dataset042_Phantom/imagesTr", "Dataset042_Phantom/labelsTr", "Dataset042_Phantom/imagesTs",
                          "Dataset042_Phantom/labelsTs"})
    fs::create_directories(root / sub);
  const fs::path raw = write_nnunet_phantoms(root);
  const std::string dirs = raw.string() + " --preprocessed " + (root / "pre").string() + " --results " + (root / "res").string();
  const fs::path pre = root / "pre", res = root / "res";

  for (const char* step : {"verify", "plan", "preprocess", "train", "predict", "evaluate", "find_best", "run"}) {
    const auto help = run_medseg(std::string("nnunet ") + step + " --help");
    CHECK(help.code == 0);
    CHECK_THAT(help.out, Catch::Contains("find_best DATASET_DIR"));
  }
  const auto verify = run_medseg("nnunet verify " + raw.string());
  INFO(verify.out);
  REQUIRE(verify.code == 0);

  // Plans: from the folder, and from its fingerprint alone: the same.
  const auto plan = run_medseg("nnunet plan --quiet " + raw.string() + " -o " + pre.string());
  INFO(plan.out);
  REQUIRE(plan.code == 0);
  const auto replan = run_medseg("nnunet plan --fingerprint " + (pre / "dataset_fingerprint.json").string() + " --dataset-json " +
                                 (raw / "dataset.json").string() + " --dataset-name Dataset042_Phantom -o " + (root / "again.json").string());
  INFO(replan.out);
  REQUIRE(replan.code == 0);
  auto plans = nlohmann::json::parse(std::ifstream(pre / "nnUNetPlans.json"));
  CHECK(plans == nlohmann::json::parse(std::ifstream(root / "again.json")));
  CHECK(plans["configurations"]["3d_fullres"]["normalization_schemes"] == nlohmann::json{"ZScoreNormalization", "CTNormalization"});
  // Patches smaller than the plans' (the whole 20x40x48 case) keep the test short, and a
  // second configuration, as nnU-Net users add one: 3d_fullres with a yet smaller patch.
  CHECK(plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["strides"][1] == nlohmann::json{1, 2, 2});
  plans["configurations"]["3d_fullres"]["patch_size"] = {12, 24, 24};
  plans["configurations"]["3d_small"] = {{"inherits_from", "3d_fullres"}, {"patch_size", {8, 16, 16}}, {"batch_size", 3}};
  std::ofstream(pre / "nnUNetPlans.json") << plans.dump(2);

  // Preprocessing resumes: a case without its meta is the only one redone.
  auto pp = run_medseg("nnunet preprocess --quiet " + dirs);
  INFO(pp.out);
  REQUIRE(pp.code == 0);
  const auto data = pre / plans["configurations"]["3d_fullres"]["data_identifier"].get<std::string>();
  fs::remove(data / "meta/phantom_3.json");
  pp = run_medseg("nnunet preprocess --quiet -c 3d_fullres -c 3d_small " + dirs);
  INFO(pp.out);
  REQUIRE(pp.code == 0);
  CHECK_THAT(pp.out, Catch::Contains("1 cases preprocessed, 7 already done") && Catch::Contains("0 cases preprocessed, 8 already done"));

  // Five folds of each configuration, briefly; a resumed fold picks up its schedule.
  for (const char* config : {"3d_fullres", "3d_small"})
    for (int fold = 0; fold < 5; ++fold) {
      const auto tr = run_medseg(std::string("nnunet train --quiet --threads 2 ") + dirs + " " + config + " " +
                                 std::to_string(fold) + " --iters 16");
      INFO(tr.out);
      REQUIRE(tr.code == 0);
    }
  const fs::path fullres = res / "nnUNetTrainer__nnUNetPlans__3d_fullres";
  for (const char* f : {"checkpoint_final/deploy.json", "checkpoint_best/model.safetensors", "validation/summary.json",
                        "validation/summary.csv", "training/schedule.json"})
    CHECK(fs::exists(fullres / "fold_0" / f));
  const auto resumed = run_medseg("nnunet train " + dirs + " 3d_fullres 0 --iters 16 --resume");
  INFO(resumed.out);
  CHECK(resumed.code == 0);
  CHECK_THAT(resumed.out, Catch::Contains("resumed at iteration 16 of 16"));

  // evaluate agrees with the validation the trainer scored (the same cases, the same maps).
  const auto ev = run_medseg("nnunet evaluate " + (fullres / "fold_0/validation").string() + " " + (raw / "labelsTr").string() +
                             " --dataset-json " + (raw / "dataset.json").string() + " -o " + (root / "fold0").string());
  INFO(ev.out);
  REQUIRE(ev.code == 0);
  const auto trainer_view = nlohmann::json::parse(std::ifstream(fullres / "fold_0/validation/summary.json"));
  const auto evaluate_view = nlohmann::json::parse(std::ifstream(root / "fold0.json"));
  CHECK(evaluate_view.at("mean").at("mean_dice") == trainer_view.at("mean").at("mean_dice"));
  CHECK(evaluate_view.at("cases").size() == trainer_view.at("cases").size());

  // find_best: both configurations and their ensemble scored on the cross-validation.
  const auto best = run_medseg("nnunet find_best " + dirs);
  INFO(best.out);
  REQUIRE(best.code == 0);
  const auto info = nlohmann::json::parse(std::ifstream(res / "inference_information.json"));
  CHECK(info.at("cross_validation_mean_foreground_dice").size() == 3);
  CHECK(info.at("cross_validation_mean_foreground_dice").contains("3d_fullres+3d_small"));
  CHECK(info.at("mean_dice_postprocessed").get<double>() >= info.at("best").at("mean_dice").get<double>());
  INFO(info.dump(1));
  CHECK(info.at("best").at("mean_dice").get<double>() > 0.5);  // learnt: a constant guess scores 0

  // predict: the ensemble of both configurations (two folds each, without test-time
  // mirroring to keep the test short), on the test images' own grid.
  const auto pr = run_medseg("nnunet predict --quiet -i " + (raw / "imagesTs").string() + " -o " + (root / "pred").string() +
                             " -m " + fullres.string() + " -m " + (res / "nnUNetTrainer__nnUNetPlans__3d_small").string() +
                             " -f 0 -f 1 --disable-tta --save-probabilities");
  INFO(pr.out);
  REQUIRE(pr.code == 0);
  const auto predicted = io::read_image_as<std::uint8_t>(root / "pred/phantom_8.nii.gz");
  const auto source = io::read_image_as<std::int16_t>(raw / "imagesTs/phantom_8_0000.nii.gz");
  CHECK(predicted.voxels.shape() == source.voxels.shape());
  CHECK(predicted.geometry.direction[0] == Approx(-1.0));
  CHECK(predicted.geometry.origin[0] == Approx(source.geometry.origin[0]));
  CHECK(fs::exists(root / "pred/phantom_8.npy"));
  const auto test = run_medseg("nnunet evaluate " + (root / "pred").string() + " " + (raw / "labelsTs").string() +
                               " --dataset-json " + (raw / "dataset.json").string());
  INFO(test.out);
  CHECK(test.code == 0);
  CHECK(nlohmann::json::parse(std::ifstream(root / "pred/summary.json")).at("mean").at("mean_dice").get<double>() > 0.5);

  // run: the whole thing on a small budget, in fresh folders.
  const auto all = run_medseg("nnunet run --threads 2 " + raw.string() + " --preprocessed " + (root / "pre2").string() +
                              " --results " + (root / "res2").string() + " --minutes 0.3 --quiet");
  INFO(all.out);
  REQUIRE(all.code == 0);
  CHECK_THAT(all.out, Catch::Contains("imagesTs against labelsTs: mean foreground Dice"));
  CHECK(fs::exists(root / "res2/imagesTs_predictions/phantom_9.nii.gz"));

  // Bad input: every problem at once.
  fs::remove(raw / "labelsTr/phantom_2.nii.gz");
  fs::remove(raw / "imagesTr/phantom_5_0001.nii.gz");
  const auto bad = run_medseg("nnunet plan " + dirs);
  CHECK(bad.code != 0);
  CHECK_THAT(bad.out, Catch::Contains("2 problems") && Catch::Contains("label of case phantom_2") &&
                          Catch::Contains("channel 1 (CT) of case phantom_5"));
  fs::remove_all(root);
}
