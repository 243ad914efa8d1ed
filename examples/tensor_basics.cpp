// Tensors, views and reproducible random numbers: the ground everything in medseg stands on.
//
// A Tensor<T, Backend> is a handle to shared storage, like a std::shared_ptr. Copying the
// handle shares the voxels; views (x[i], slice, reshape) share them too; clone() copies.
// Random numbers are counter-based: element i of a fill with (seed, stream) is the same on
// any number of threads, and the same in a CUDA kernel.
//
// This program builds a batch of two noisy 32^3 "scans", takes one channel of it as a view,
// normalises that view in place, and checks that the batch saw the change.
#include <cmath>
#include <iostream>

#include <medseg/core.hpp>

int main() {
  using namespace medseg;

  // A batch: N=2 samples, C=2 channels (say CT and a mask), 32^3 voxels, NCDHW.
  auto batch = Tensor<float>::zeros({2, 2, 32, 32, 32});
  std::cout << "batch:    " << batch << "\n";

  // Channel 0 of both samples, as a strided view over the batch's storage.
  auto ct = batch.slice(1, 0, 1);
  std::cout << "ct view:  " << ct << "\n";

  // Fill it with Gaussian noise around a CT-like value: mean -300 HU, sd 200.
  // Views along the channel axis are not contiguous, so fill a contiguous tensor and copy.
  auto noise = Tensor<float>::empty(ct.shape());
  random::normal(noise, {.seed = 42, .stream = 0}, -300.0f, 200.0f);
  ct.copy_from(noise);
  std::cout << "ct:       " << summary(ct) << "\n";

  // z-score the view in place through the xtensor adaptor: no copy of the voxels.
  // xt::noalias writes element by element through the view's strides; a plain `x = ...`
  // would copy a contiguous temporary linearly over the storage (over the mask channel too).
  auto x = as_xtensor(ct);
  const double mean = xt::mean(x)();
  const double sd = xt::stddev(x)();
  xt::noalias(x) = (x - mean) / sd;
  const auto s = summarize(batch.slice(1, 0, 1));
  std::cout << "after:    " << summary(batch.slice(1, 0, 1)) << "\n";
  std::cout << "mask:     " << summary(batch.slice(1, 1, 2)) << "\n";

  // The normalisation reached the batch, and the other channel is untouched.
  const auto mask = summarize(batch.slice(1, 1, 2));
  const bool ok = std::abs(s.mean) < 1e-3 && mask.min == 0 && mask.max == 0 && std::abs(mean + 300) < 2;
  std::cout << (ok ? "ok" : "FAILED") << "\n";
  return ok ? 0 : 1;
}
