// `medseg demo` as plain user code: learn to mask the brain in real MRI on the CPU.
//
// The data are one real volume, the Colin27 T1 of Debian's mricron-data, with its brain mask
// (ch2bet > 0). Training cases are random deformations of it (an affine, an elastic field,
// an MR bias field and noise), made once at 2 mm; nnU-Net's augmentation runs on top while
// training. The model is then scored on the original volume on its own 1 mm grid, through
// the same deploy path `medseg infer` takes, and the mask is written as NIfTI.
//   brain_mask [ITERATIONS] [OUTPUT.nii.gz]         (apt install mricron-data first)
#include <medseg/data.hpp>
#include <medseg/data/loader.hpp>
#include <medseg/infer/predictor.hpp>
#include <medseg/io.hpp>
#include <medseg/loss.hpp>
#include <medseg/metrics.hpp>
#include <medseg/optim.hpp>
#include <medseg/preprocess.hpp>
#include <medseg/train.hpp>
#include <medseg/transforms.hpp>

#include <iostream>
#include <string>

using namespace medseg;

int main(int argc, char** argv) {
  const std::int64_t iters = argc > 1 ? std::stoll(argv[1]) : 300;
  const std::string output = argc > 2 ? argv[2] : "brain_mask.nii.gz";
  const std::string templates = "/usr/share/mricron/templates/";

  // The real volume and its mask, resampled to 2 mm (raw intensities: deformation comes first).
  const auto t1 = io::read_image_as<float>(templates + "ch2.nii.gz");
  auto brain = io::read_image_as<std::uint8_t>(templates + "ch2bet.nii.gz");
  for (std::int64_t i = 0; i < brain.voxels.numel(); ++i) brain.voxels.data()[i] = brain.voxels.data()[i] > 0;
  const auto image = preprocess::resample_to_spacing<float>(t1, {2.0, 2.0, 2.0}, {.order = 3, .grid = preprocess::GridMode::extent});
  const auto& v = image.voxels;
  const auto mask = preprocess::resize<std::uint8_t>(brain.voxels, {v.size(0), v.size(1), v.size(2)},
                                                     {.order = 0, .grid = preprocess::GridMode::extent});

  // Twelve deformed training cases, each z-scored as the deploy preprocessing will do.
  const auto deform = transforms::SpatialTransform{.p_rotation = 1.0f, .angle_degrees = {{{-10, 10}, {-10, 10}, {-10, 10}}},
                                                   .p_scale = 1.0f, .scale = {0.9f, 1.1f}, .anisotropic_scale = true,
                                                   .p_elastic = 1.0f, .elastic_alpha = {0.0f, 150.0f}} |
                      transforms::RandomBiasField{.coefficients = {-0.15f, 0.15f}} |
                      transforms::GaussianNoise{.p = 1.0f, .sigma = {0.0f, 6.0f}};
  data::MemoryDataset train{{.labels = {{0, "background"}, {1, "brain"}}}};
  for (std::uint64_t i = 0; i < 12; ++i) {
    transforms::Sample s{v.reshape({1, v.size(0), v.size(1), v.size(2)}), mask.reshape({1, v.size(0), v.size(1), v.size(2)})};
    RandomStream rng(i, 1);
    deform.apply(s, rng);
    train.add({"case" + std::to_string(i), {preprocess::zscore(s.image), image.geometry},
               io::Image<std::uint8_t>{s.label.reshape({v.size(0), v.size(1), v.size(2)}), image.geometry}});
  }

  // A reduced-width VNet, Dice + CE, Adam with poly decay, nnU-Net's augmentation on 64^3 patches.
  const nlohmann::json model_json = {{"type", "VNet"}, {"num_classes", 2}, {"norm", "instance"}, {"dropout", 0.0}, {"width", 8}};
  auto net = models::AnyModel<Cpu>::from_json(model_json, "brain_mask");
  nn::name_root(net);
  loss::Mixed loss{loss::CrossEntropy{}, loss::Dice{{.include_background = false, .batch = true}}};
  optim::Adam opt{nn::parameters(net), {.lr = 2e-3}};
  optim::PolyLR sched{opt, {.total_iters = iters, .power = 0.9}};
  data::Loader loader{train, transforms::nnunet_3d({64, 64, 64}), {.batch_size = 2, .workers = 1}};
  train::Trainer trainer{net, loss, opt, sched, {.iters = iters, .save_every = iters, .save_dir = "brain_mask_training"}};
  trainer.fit(loader);

  // The original volume through the deploy path: resample + z-score, sliding window, back to 1 mm.
  infer::DeployConfig deploy;
  deploy.model = model_json;
  deploy.image_ops = {{{"op", "resample"}, {"spacing", {2.0, 2.0, 2.0}}, {"order", 3}}, {{"op", "zscore"}}};
  deploy.inference.roi = {64, 64, 64};
  infer::Predictor<> predictor{std::move(net), deploy};
  const auto prediction = predictor.predict(io::AnyImage{t1});
  io::write_image(io::AnyImage{prediction.labels}, output);
  const double dice = metrics::dice_per_class(prediction.labels.voxels, brain.voxels, 2)[1];
  std::cout << "brain Dice on the original volume: " << dice << "; mask written to " << output << "\n";
  return 0;
}
