// MedicalSeg's COVID-19 CT lung recipe as plain C++: VNet, CE + Dice 1:1, SGD (momentum 0.9,
// weight decay 1e-4), lr 1e-3 with poly decay 0.9 over 15k iterations, batch 6 of 128^3
// crops with RandomResizedCrop3D, RandomRotation3D and RandomFlip3D, evaluation by sliding
// window every 500 iterations, best model kept by validation mean Dice.
//
// It expects a dataset prepared by `medseg prepare --config configs/prepare/covid19_ct_lung.json`
// (MedicalSeg's layout: train_list.txt, val_list.txt, images/ and labels/ as .npy):
//   train_vnet_lung data/lung_coronavirus_phase0 output/vnet_lung [iters]
// The same run from the config file: medseg train --config
// configs/lung_coronavirus/vnet_lung_coronavirus_128_128_128_15k.json
#include <medseg/data.hpp>
#include <medseg/data/loader.hpp>
#include <medseg/infer/evaluate.hpp>
#include <medseg/loss.hpp>
#include <medseg/optim.hpp>
#include <medseg/train.hpp>
#include <medseg/transforms.hpp>
#include <medseg/vnet.hpp>

#include <iostream>
#include <string>

int main(int argc, char** argv) {
  using namespace medseg;
  if (argc < 3) {
    std::cerr << "usage: train_vnet_lung PREPARED_DATASET SAVE_DIR [ITERS]\n";
    return 2;
  }
  const std::filesystem::path root = argv[1];
  const std::int64_t iters = argc > 3 ? std::stoll(argv[3]) : 15000;

  auto train = data::ListDataset::open(root / "train_list.txt");
  auto val = data::ListDataset::open(root / "val_list.txt");
  data::Loader loader{train, transforms::medicalseg_lung({128, 128, 128}), {.batch_size = 6, .workers = 2, .seed = 0}};

  models::VNet<Cpu> net{{.in_channels = 1, .num_classes = 3}};  // models::VNet<Cuda> on a GPU
  nn::name_root(net);
  loss::Mixed loss{loss::CrossEntropy{}, loss::Dice{}};
  optim::SGD opt{nn::parameters(net), {.lr = 1e-3, .momentum = 0.9, .weight_decay = 1e-4}};
  optim::PolyLR sched{opt, {.total_iters = iters, .power = 0.9}};

  train::Trainer trainer{net, loss, opt, sched,
                         {.iters = iters, .save_every = 500, .eval_every = 500, .save_dir = argv[2]}};
  trainer.on_eval([](const train::EvalResult& r) { std::cout << "validation mean Dice " << r.mean_dice << "\n"; });
  trainer.fit(loader, [&](models::VNet<Cpu>& m) {
    const auto e = infer::evaluate(m, val, {.window = {.roi = {128, 128, 128}}, .num_classes = 3, .surface_distances = false});
    return train::EvalResult{.mean_dice = e.summary.mean_dice, .per_class_dice = e.summary.dice};
  });
  return 0;
}
