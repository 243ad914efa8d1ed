// The example of README.md, compiled so that it stays true.
#include <medseg/core.hpp>
#include <iostream>

int main() {
  using namespace medseg;
  auto batch = Tensor<float>::zeros({2, 1, 96, 96, 96});       // NCDHW
  random::normal(batch, {.seed = 0, .stream = 1}, 0.0f, 1.0f);  // same numbers on any thread count
  auto first = batch[0];                                      // [1,96,96,96], shares storage
  auto label = Tensor<std::uint8_t>::zeros({2, 1, 96, 96, 96});
  std::cout << summary(first) << "\n";
  auto x = as_xtensor(first);                                 // zero-copy views for xtensor / Eigen
  xt::noalias(x) = (x - xt::mean(x)()) / xt::stddev(x)();
  set_num_threads(2);                                         // or MEDSEG_NUM_THREADS=2
  try {
    batch.reshape({5, -1});
  } catch (const Error& e) {
    std::cout << e.what() << "\n";
    return std::string(e.what()).find("expected 1769472 elements") != std::string::npos ? 0 : 1;
  }
  return 1;
}
