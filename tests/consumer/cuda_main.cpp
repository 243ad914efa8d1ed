// Built against the installed package by scripts/test.sh when it has medseg::cuda: a user's
// program that trains VNet on the GPU, compiled with the host compiler and linked with the
// installed kernel library.
#include <medseg/cuda.hpp>
#include <medseg/loss.hpp>
#include <medseg/optim.hpp>
#include <medseg/vnet.hpp>

#include <iostream>

int main() {
  using namespace medseg;
  if (!cuda::available()) {
    std::cout << "consumer_cuda: built against medseg::cuda; no GPU here, nothing run\n";
    return 0;
  }
  models::VNet<Cuda> net{{.in_channels = 1, .num_classes = 2, .width = 4}};
  loss::Mixed loss{loss::CrossEntropy<Cuda>{}, loss::Dice<Cuda>{}};
  optim::Adam opt{nn::parameters(net), {.lr = 1e-3}};
  const auto x = Tensor<float, Cuda>::ones({1, 1, 32, 32, 32});
  const auto labels = Tensor<std::int64_t, Cuda>::zeros({1, 1, 32, 32, 32});
  net.train(true);
  opt.zero_grad();
  const float value = loss.forward(net.forward(x), labels);
  (void)net.backward(loss.backward());
  opt.step();
  std::cout << "consumer_cuda: one VNet<Cuda> step, loss " << value << "\n";
  return value > 0 ? 0 : 1;
}
