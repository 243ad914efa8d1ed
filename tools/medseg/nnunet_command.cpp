// medseg nnunet SUBCOMMAND: nnU-Net's automation under the names nnU-Net users know.
//   verify DATASET_DIR   every problem of a raw dataset at once (nnU-Net's verify_dataset_integrity)
//   plan DATASET_DIR     fingerprint + plans + folds (nnUNetv2_plan_and_preprocess's planning half)
//   plan --fingerprint F --dataset-json D -o nnUNetPlans.json   plans from a fingerprint alone
// See include/medseg/nnunet/ and docs/nnunet.md.
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>

#include "command.hpp"
#include "medseg/core/error.hpp"
#include "medseg/core/parallel.hpp"
#include "medseg/nnunet.hpp"

namespace medseg::tool {
namespace {

namespace fs = std::filesystem;

constexpr const char* usage =
    "usage: medseg nnunet SUBCOMMAND ...\n"
    "nnU-Net v2's automation, on nnU-Net v2 raw datasets (dataset.json, imagesTr/, labelsTr/, imagesTs/).\n\n"
    "  verify DATASET_DIR\n"
    "      Checks the whole dataset before any work: dataset.json, every case's channel and label files,\n"
    "      the file ending, numTraining, label values, each label on its image's grid, NaN voxels, enough\n"
    "      cases for 5 folds. Lists every problem, each naming its case and file.\n"
    "  plan DATASET_DIR [-o DIR] [--memory-target-gb G] [--plans-name NAME] [--threads N] [--quiet]\n"
    "      verify, then the dataset fingerprint, then nnU-Net's default plans (2d, 3d_fullres and, when\n"
    "      nnU-Net would make them, 3d_lowres and 3d_cascade_fullres), then the 5 folds. Writes\n"
    "      DIR/dataset_fingerprint.json, DIR/NAME.json (nnUNetPlans.json), DIR/dataset.json and\n"
    "      DIR/splits_final.json (the dataset's own splits_final.json when it has one). DIR defaults to\n"
    "      $nnUNet_preprocessed/DATASET (nnU-Net's), else nnUNet_preprocessed/DATASET here.\n"
    "  plan --fingerprint dataset_fingerprint.json --dataset-json dataset.json -o nnUNetPlans.json\n"
    "       [--memory-target-gb G] [--plans-name NAME] [--dataset-name NAME]\n"
    "      Plans from a fingerprint alone, as nnU-Net's plan_experiment does (either tool's fingerprint).\n\n"
    "  preprocess DATASET_DIR [-c CONFIG ...] [--threads N] [--quiet]\n"
    "      Every training case through the plans' preprocessing for each configuration (default\n"
    "      3d_fullres) into PREPROCESSED/nnUNetPlans_CONFIG/. An interrupted run resumes.\n"
    "  train DATASET_DIR CONFIG FOLD [--minutes M | --iters N] [--resume] [--device cpu] [--no-validation]\n"
    "      nnUNetTrainer's recipe on fold FOLD (0..4, or all) of CONFIG: SGD 0.01 Nesterov 0.99, poly,\n"
    "      1000 epochs x 250 iterations unless --minutes (the schedule fitted to the time) or --iters;\n"
    "      then the fold's validation cases predicted and scored. Writes RESULTS/nnUNetTrainer__nnUNetPlans__\n"
    "      CONFIG/fold_FOLD/ (checkpoint_final/, checkpoint_best/, progress.png, validation/).\n"
    "  predict -i INPUT_DIR -o OUTPUT_DIR -m TRAINED_DIR [-m TRAINED_DIR ...] [-f FOLD ...] [--checkpoint NAME]\n"
    "          [--disable-tta] [--save-probabilities]\n"
    "      Every CASE_0000.nii.gz (+ _0001 ...) of INPUT_DIR through every fold of every configuration\n"
    "      folder given, probabilities averaged, labels on the input's grid (CASE.nii.gz).\n"
    "  evaluate PRED_DIR REF_DIR --dataset-json dataset.json [-o summary]\n"
    "      Dice, IoU, HD95 and ASSD per case and class; writes summary.json and summary.csv.\n"
    "  find_best DATASET_DIR [-c CONFIG ...]\n"
    "      Scores every configuration trained on all folds, and every pair as an ensemble, on the\n"
    "      cross-validation; picks the best and whether keeping the largest component (of the foreground,\n"
    "      then of each class) helps. Writes RESULTS/inference_information.json (with the predict command)\n"
    "      and postprocessing.json, which predict applies.\n"
    "  run DATASET_DIR --minutes N [--seed S] [--threads N]\n"
    "      Everything on a time budget: verify, fingerprint, plans sized for this machine, preprocessing,\n"
    "      training (one model on all cases; from 300 minutes on, five folds and find_best), then\n"
    "      imagesTs predicted into RESULTS/imagesTs_predictions (scored when labelsTs exists).\n\n"
    "Folders: PREPROCESSED is $nnUNet_preprocessed/DATASET and RESULTS $nnUNet_results/DATASET (nnU-Net's\n"
    "variables), else nnUNet_preprocessed/ and nnUNet_results/ here; --preprocessed and --results set them.\n"
    "--memory-target-gb: the GPU memory a configuration may use (default 8, nnU-Net's); patch and batch\n"
    "size follow from it through nnU-Net's memory estimate.\n";

struct PlanArgs {
  std::optional<fs::path> dataset, fingerprint, dataset_json, out;
  std::optional<std::string> dataset_name;
  nnunet::PlannerSettings settings;
  bool quiet = false;
};

[[noreturn]] void bad_argument(const std::string& command, const std::string& expected, std::string_view actual) {
  throw Error{{.where = "medseg nnunet " + command, .field = "argument", .expected = expected,
               .actual = "\"" + std::string(actual) + "\""}};
}

double positive_number(const std::string& command, std::string_view flag, std::string_view text) {
  try {
    std::size_t used = 0;
    const double v = std::stod(std::string(text), &used);
    if (used == text.size() && v > 0) return v;
  } catch (const std::exception&) {
  }
  throw Error{{.where = "medseg nnunet " + command, .field = std::string(flag), .expected = "a positive number",
               .actual = "\"" + std::string(text) + "\""}};
}

/// $VARIABLE/NAME, else ./VARIABLE/NAME (nnUNet_preprocessed, nnUNet_results).
fs::path default_dir(const char* variable, const fs::path& dataset) {
  const char* env = std::getenv(variable);
  const fs::path base = env && *env ? fs::path(env) : fs::path(variable);
  fs::path name = fs::absolute(dataset).lexically_normal();
  if (name.filename().empty()) name = name.parent_path();
  return base / name.filename();
}
fs::path default_preprocessed_dir(const fs::path& dataset) { return default_dir("nnUNet_preprocessed", dataset); }

void print_plans(const nnunet::Plans& plans, std::ostream& out) {
  for (const auto& name : plans.configuration_names()) {
    const nnunet::Configuration c = plans.configuration(name);
    auto list = [](const auto& v) {
      std::string s;
      for (const auto& x : v) s += (s.empty() ? "" : "x") + str(x);
      return s;
    };
    out << "  " << name << ": patch " << list(c.patch_size) << ", batch " << c.batch_size << ", spacing " << list(c.spacing)
        << ", " << c.architecture.features_per_stage.size() << " stages";
    const auto& written = plans.configurations[name];
    if (written.contains("inherits_from")) out << " (inherits " << written["inherits_from"].get<std::string>() << ")";
    if (c.previous_stage) out << " (after " << *c.previous_stage << ")";
    out << "\n";
  }
}

int plan(Args args) {
  PlanArgs a;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto value = [&](std::string_view flag) {
      if (i + 1 >= args.size()) bad_argument("plan", "a value after " + std::string(flag), flag);
      return std::string(args[++i]);
    };
    if (args[i] == "--help" || args[i] == "-h") {
      std::cout << usage;
      return 0;
    } else if (args[i] == "-o" || args[i] == "--output" || args[i] == "--preprocessed") {
      a.out = value(args[i]);
    } else if (args[i] == "--results") {
      value(args[i]);  // the later steps' folder, accepted so one set of folder flags serves every step
    } else if (args[i] == "--fingerprint") {
      a.fingerprint = value(args[i]);
    } else if (args[i] == "--dataset-json") {
      a.dataset_json = value(args[i]);
    } else if (args[i] == "--dataset-name") {
      a.dataset_name = value(args[i]);
    } else if (args[i] == "--plans-name") {
      a.settings.plans_name = value(args[i]);
    } else if (args[i] == "--memory-target-gb") {
      a.settings.gpu_memory_target_gb = positive_number("plan", "--memory-target-gb", value(args[i]));
    } else if (args[i] == "--threads") {
      set_num_threads(static_cast<int>(positive_number("plan", "--threads", value(args[i]))));
    } else if (args[i] == "--quiet") {
      a.quiet = true;
    } else if (!args[i].starts_with("-") && !a.dataset) {
      a.dataset = fs::path(std::string(args[i]));
    } else {
      bad_argument("plan", "DATASET_DIR or --fingerprint F --dataset-json D, and the options of medseg nnunet --help", args[i]);
    }
  }
  std::ostream silent(nullptr);
  std::ostream& log = a.quiet ? silent : std::cerr;

  if (a.fingerprint || a.dataset_json) {  // plans from a fingerprint alone
    if (!a.fingerprint || !a.dataset_json || !a.out || a.dataset)
      bad_argument("plan", "--fingerprint F --dataset-json D -o PLANS.json together, without DATASET_DIR",
                   a.fingerprint ? "--fingerprint" : "--dataset-json");
    const auto fingerprint = nnunet::Fingerprint::load(*a.fingerprint);
    const auto dataset_json = nnunet::DatasetJson::load(*a.dataset_json);
    const std::string name = a.dataset_name.value_or(fs::absolute(*a.dataset_json).parent_path().filename().string());
    const auto plans = nnunet::plan_experiment(fingerprint, dataset_json, name, a.settings);
    plans.save(*a.out);
    print_plans(plans, std::cout);
    std::cout << "plans: " << a.out->string() << "\n";
    return 0;
  }
  if (!a.dataset) bad_argument("plan", "DATASET_DIR (an nnU-Net v2 raw dataset)", "nothing");
  const fs::path out = a.out.value_or(default_preprocessed_dir(*a.dataset));
  log << "medseg nnunet plan: checking " << a.dataset->string() << "\n";
  nnunet::verify_dataset(*a.dataset);
  log << "fingerprint (" << num_threads() << " threads)\n";
  const auto fingerprint = nnunet::extract_fingerprint(*a.dataset, a.quiet ? nullptr : &std::cerr);
  const auto dataset_json = nnunet::DatasetJson::load(*a.dataset / "dataset.json");
  const std::string name = a.dataset_name.value_or(fs::absolute(*a.dataset).lexically_normal().filename().string());
  const auto plans = nnunet::plan_experiment(fingerprint, dataset_json, name, a.settings);

  fs::create_directories(out);
  fingerprint.save(out / "dataset_fingerprint.json");
  plans.save(out / (a.settings.plans_name + ".json"));
  io::copy_file_atomic(*a.dataset / "dataset.json", out / "dataset.json");
  const auto cases = data::NnunetRawDataset::open(*a.dataset);
  std::vector<std::string> names;
  for (std::size_t i = 0; i < cases.size(); ++i) names.push_back(cases.name(i));
  const fs::path own_splits = *a.dataset / "splits_final.json";
  const auto folds = fs::exists(own_splits) ? nnunet::load_folds(own_splits, names) : nnunet::make_folds(names);
  nnunet::save_folds(out / "splits_final.json", folds);

  print_plans(plans, std::cout);
  std::cout << "output: " << out.string() << " (dataset_fingerprint.json, " << a.settings.plans_name
            << ".json, dataset.json, splits_final.json: " << folds.size() << " folds"
            << (fs::exists(own_splits) ? ", the dataset's own" : "") << ")\n";
  return 0;
}

int verify(Args args) {
  if (args.size() != 1 || args[0] == "--help" || args[0] == "-h") {
    std::cout << usage;
    return args.size() == 1 ? 0 : 2;
  }
  const fs::path dataset{std::string(args[0])};
  nnunet::verify_dataset(dataset);
  std::cout << dataset.string() << ": a valid nnU-Net v2 raw dataset\n";
  return 0;
}

/// DATASET_DIR and the folders options every later step shares.
struct StepArgs {
  nnunet::Folders folders;
  std::vector<std::string> positional;
  bool quiet = false;
};

/// Parses `args`: positional words, --preprocessed, --results, --threads, --quiet, and the
/// step's own flags through `own` (returns false for a flag it does not know).
template <class Own>
StepArgs step_args(const std::string& step, Args args, Own&& own) {
  StepArgs a;
  std::optional<fs::path> pre, res;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto value = [&]() {
      if (i + 1 >= args.size()) bad_argument(step, "a value after " + std::string(args[i]), args[i]);
      return std::string(args[++i]);
    };
    if (args[i] == "--preprocessed") pre = value();
    else if (args[i] == "--results") res = value();
    else if (args[i] == "--threads") set_num_threads(static_cast<int>(positive_number(step, "--threads", value())));
    else if (args[i] == "--quiet") a.quiet = true;
    else if (!args[i].starts_with("-")) a.positional.emplace_back(args[i]);
    else if (!own(args[i], value)) bad_argument(step, "an option of medseg nnunet --help", args[i]);
  }
  if (a.positional.empty()) bad_argument(step, "DATASET_DIR (an nnU-Net v2 raw dataset)", "nothing");
  a.folders.raw = a.positional.front();
  a.folders.preprocessed = pre.value_or(default_preprocessed_dir(a.folders.raw));
  a.folders.results = res.value_or(default_dir("nnUNet_results", a.folders.raw));
  return a;
}

bool wants_help(Args args) {
  return std::any_of(args.begin(), args.end(), [](std::string_view a) { return a == "--help" || a == "-h"; });
}

int preprocess(Args args) {
  if (wants_help(args)) return std::cout << usage, 0;
  std::vector<std::string> configurations;
  const auto a = step_args("preprocess", args, [&](std::string_view flag, auto value) {
    if (flag != "-c") return false;
    configurations.push_back(value());
    return true;
  });
  if (configurations.empty()) configurations = {"3d_fullres"};
  for (const auto& c : configurations) {
    if (!a.quiet) std::cerr << "medseg nnunet preprocess " << c << " (" << num_threads() << " threads)\n";
    const auto report = nnunet::preprocess_configuration(a.folders, c, a.quiet ? nullptr : &std::cerr);
    std::cout << c << ": " << report.count(preprocess::CaseReport::Status::prepared) << " cases preprocessed, "
              << report.count(preprocess::CaseReport::Status::skipped) << " already done -> "
              << nnunet::prepare_config(a.folders, c).output.string() << "\n";
  }
  return 0;
}

int train(Args args) {
  if (wants_help(args)) return std::cout << usage, 0;
  nnunet::TrainerSettings settings;
  const auto a = step_args("train", args, [&](std::string_view flag, auto value) {
    if (flag == "--minutes") settings.minutes = positive_number("train", flag, value());
    else if (flag == "--iters") settings.iters = static_cast<std::int64_t>(positive_number("train", flag, value()));
    else if (flag == "--resume") settings.resume = true;
    else if (flag == "--no-validation") settings.validate = false;
    else if (flag == "--seed") settings.seed = static_cast<std::uint64_t>(positive_number("train", flag, value()));
    else if (flag == "--device") {
      const std::string d = value();
      if (d != "cpu")
        throw Error{{.where = "medseg nnunet train", .field = "--device", .expected = "cpu (training nnU-Net configurations on the "
                                                                                     "GPU from the command is not built yet)",
                     .actual = d}};
    } else return false;
    return true;
  });
  if (a.positional.size() != 3) bad_argument("train", "DATASET_DIR CONFIG FOLD", a.positional.size() > 3 ? a.positional[3] : "too few words");
  if (a.quiet) settings.progress = nullptr;
  const auto r = nnunet::train_fold(a.folders, a.positional[1], a.positional[2], settings);
  std::cout << "trained " << a.positional[1] << " fold " << a.positional[2] << ": " << r.iterations << " iterations -> "
            << r.folder.string() << "\n";
  if (r.validation)
    std::cout << "validation (" << r.validation->cases << " cases): mean foreground Dice " << r.validation->mean_dice << "\n";
  return 0;
}

int predict(Args args) {
  if (wants_help(args)) return std::cout << usage, 0;
  std::optional<fs::path> input, output;
  std::vector<nnunet::TrainedModel> models;
  std::vector<std::string> folds;
  std::string checkpoint = "checkpoint_final";
  nnunet::PredictSettings settings;
  bool quiet = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto value = [&]() {
      if (i + 1 >= args.size()) bad_argument("predict", "a value after " + std::string(args[i]), args[i]);
      return std::string(args[++i]);
    };
    if (args[i] == "-i") input = value();
    else if (args[i] == "-o") output = value();
    else if (args[i] == "-m") models.push_back({.folder = value()});
    else if (args[i] == "-f") folds.push_back(value());
    else if (args[i] == "--checkpoint") checkpoint = value();
    else if (args[i] == "--disable-tta") settings.mirror = false;
    else if (args[i] == "--save-probabilities") settings.save_probabilities = true;
    else if (args[i] == "--threads") set_num_threads(static_cast<int>(positive_number("predict", "--threads", value())));
    else if (args[i] == "--quiet") quiet = true;
    else bad_argument("predict", "-i, -o, -m, -f, --checkpoint, --disable-tta, --save-probabilities, --threads, --quiet", args[i]);
  }
  if (!input || !output || models.empty()) bad_argument("predict", "-i INPUT_DIR -o OUTPUT_DIR -m TRAINED_DIR", "too few options");
  for (auto& m : models) {
    m.folds = folds;
    m.checkpoint = checkpoint;
  }
  settings.progress = quiet ? nullptr : &std::cerr;
  const auto names = nnunet::predict_folder(*input, *output, models, settings);
  std::cout << names.size() << " cases predicted -> " << output->string() << "\n";
  return 0;
}

int evaluate(Args args) {
  if (wants_help(args)) return std::cout << usage, 0;
  std::vector<fs::path> folders;
  std::optional<fs::path> dataset_json;
  fs::path out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto value = [&]() {
      if (i + 1 >= args.size()) bad_argument("evaluate", "a value after " + std::string(args[i]), args[i]);
      return std::string(args[++i]);
    };
    if (args[i] == "--dataset-json" || args[i] == "-djfile") dataset_json = value();
    else if (args[i] == "-o") out = value();
    else if (!args[i].starts_with("-")) folders.emplace_back(std::string(args[i]));
    else bad_argument("evaluate", "PRED_DIR REF_DIR --dataset-json F [-o OUT]", args[i]);
  }
  if (folders.size() != 2 || !dataset_json) bad_argument("evaluate", "PRED_DIR REF_DIR --dataset-json dataset.json", "too few");
  const auto d = nnunet::DatasetJson::load(*dataset_json);
  std::vector<std::string> names;
  for (const auto& [v, n] : d.label_values) names.push_back(n);
  if (out.empty()) out = folders[0] / "summary";
  const auto e = nnunet::evaluate_folders(folders[0], folders[1], names, out, d.file_ending);
  std::cout << e.summary.cases << " cases: mean foreground Dice " << e.summary.mean_dice << ", IoU " << e.summary.mean_iou
            << ", HD95 " << e.summary.mean_hd95 << " mm -> " << out.string() << ".json, .csv\n";
  return 0;
}

int find_best(Args args) {
  if (wants_help(args)) return std::cout << usage, 0;
  std::vector<std::string> configurations;
  const auto a = step_args("find_best", args, [&](std::string_view flag, auto value) {
    if (flag != "-c") return false;
    configurations.push_back(value());
    return true;
  });
  const auto b = nnunet::find_best(a.folders, configurations, &std::cout);
  std::cout << "best: " << b.best.name() << " (cross-validation mean foreground Dice " << b.best.mean_dice << ", "
            << b.mean_dice_postprocessed << " postprocessed: largest foreground region "
            << (b.postprocessing.largest_foreground_component ? "yes" : "no") << ", largest component of classes [";
  for (std::size_t i = 0; i < b.postprocessing.largest_component_classes.size(); ++i)
    std::cout << (i ? ", " : "") << b.postprocessing.largest_component_classes[i];
  std::cout << "])\n" << (a.folders.results / "inference_information.json").string() << "\n";
  return 0;
}

int run(Args args) {
  if (wants_help(args)) return std::cout << usage, 0;
  nnunet::RunSettings settings;
  bool minutes = false;
  const auto a = step_args("run", args, [&](std::string_view flag, auto value) {
    if (flag == "--minutes") settings.minutes = positive_number("run", flag, value()), minutes = true;
    else if (flag == "--seed") settings.seed = static_cast<std::uint64_t>(positive_number("run", flag, value()));
    else return false;
    return true;
  });
  if (!minutes) bad_argument("run", "--minutes N (the time budget)", "none");
  settings.progress = a.quiet ? nullptr : &std::cerr;
  const auto r = nnunet::run(a.folders, settings);
  std::cout << "medseg nnunet run: " << r.configuration << ", folds";
  for (const auto& f : r.folds) std::cout << " " << f;
  std::cout << "; models in " << a.folders.trained(r.configuration).string() << "\n";
  if (!r.predictions.empty()) std::cout << "imagesTs predicted -> " << r.predictions.string() << "\n";
  if (r.test) {
    std::cout << "imagesTs against labelsTs: mean foreground Dice " << r.test->summary.mean_dice << " (per class";
    for (std::size_t k = 1; k < r.test->summary.dice.size(); ++k) std::cout << " " << r.test->summary.dice[k];
    std::cout << ")\n";
  }
  return 0;
}

}  // namespace

int nnunet_command(Args args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::cout << usage;
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "plan") return plan(args.subspan(1));
  if (args[0] == "verify") return verify(args.subspan(1));
  if (args[0] == "preprocess") return preprocess(args.subspan(1));
  if (args[0] == "train") return train(args.subspan(1));
  if (args[0] == "predict") return predict(args.subspan(1));
  if (args[0] == "evaluate") return evaluate(args.subspan(1));
  if (args[0] == "find_best") return find_best(args.subspan(1));
  if (args[0] == "run") return run(args.subspan(1));
  throw Error{{.where = "medseg nnunet", .field = "subcommand",
               .expected = "verify, plan, preprocess, train, predict, evaluate, find_best or run (medseg nnunet --help)",
               .actual = "\"" + std::string(args[0]) + "\""}};
}

}  // namespace medseg::tool
