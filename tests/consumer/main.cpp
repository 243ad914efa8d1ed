// Built against the installed package by scripts/test.sh: proves the headers, the targets and
// the dependencies come out of `find_package(medseg)` complete.
#include <medseg/core.hpp>

#include <iostream>

int main() {
  auto x = medseg::Tensor<float>::ones({1, 1, 4, 4, 4});
  const auto s = medseg::summarize(x);
  std::cout << "consumer: medseg " << medseg::version << ", " << x.layout() << ", mean " << s.mean << "\n";
  return s.mean == 1.0 ? 0 : 1;
}
