// The list of benchmarks `medseg bench` knows. A new benchmark adds its file to
// benchmarks/CMakeLists.txt and one line here.
#include "harness.hpp"

namespace medseg::bench {

std::vector<Result> run_core(const Options&);
std::vector<Result> run_conv(const Options&);
std::vector<Result> run_preprocess(const Options&);
std::vector<Result> run_loss(const Options&);
std::vector<Result> run_optim(const Options&);
std::vector<Result> run_loader(const Options&);
std::vector<Result> run_io(const Options&);
std::vector<Result> run_train(const Options&);
std::vector<Result> run_infer(const Options&);
std::vector<Result> run_metrics(const Options&);
std::vector<Result> run_sliding_window(const Options&);

std::span<const Benchmark> all_benchmarks() {
  static const Benchmark list[] = {
      {"core", "tensor copies, fills and counter-based random numbers against NumPy", run_core},
      {"conv", "Conv3d / ConvTranspose3d forward and forward+backward (oneDNN) against PyTorch", run_conv},
      {"preprocess", "CT preprocessing (HU window, resample orders 0/1/3, z-score, crop) against scipy.ndimage/NumPy",
       run_preprocess, /*takes_input=*/true, /*takes_device=*/true},
      {"loss", "CrossEntropy, Dice, DiceCE and BCE forward+backward against PyTorch autograd", run_loss},
      {"optim", "SGD/Adam/AdamW steps and clip_grad_norm over an nnU-Net-sized UNet against torch.optim", run_optim},
      {"loader", "samples/s through the data loader with nnU-Net's 3D augmentation against the same chain in SciPy",
       run_loader},
      {"io", ".nii.gz write and read throughput against nibabel", run_io},
      {"train", "one training iteration (Dice+CE, SGD) of DynamicUNet and VNet against PyTorch, with peak memory "
                "(CPU: 64^3; --device cuda: 128^3 batch 2, float32 and TF32)",
       run_train, false, /*takes_device=*/true},
      {"infer", "one eval-mode forward of DynamicUNet and VNet against PyTorch, with peak memory (CPU: 64^3; --device "
                "cuda: one 128^3 window)",
       run_infer, false, /*takes_device=*/true},
      {"metrics", "Dice/IoU, HD95 + average surface distance (MONAI's definitions) and the anisotropic EDT of a "
                  "3-class case against scipy.ndimage", run_metrics},
      {"sliding_window", "nnU-Net's sliding-window blending (Gaussian, 64^3 windows, with and without 8-fold mirroring) "
                         "against nnU-Net v2's loop in PyTorch", run_sliding_window},
  };
  return list;
}

}  // namespace medseg::bench
