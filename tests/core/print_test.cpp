#include "medseg/core/print.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <sstream>

using namespace medseg;

TEST_CASE("printing gives type layout and small tensors' values") {
  std::ostringstream os;
  os << Tensor<float>::from({0, 1, 2, 3, 4, 5}, {2, 3});
  CHECK(os.str() == "Tensor<float32,cpu> [2,3]:[3,1] {0, 1, 2, 3, 4, 5}");
  std::ostringstream big;
  big << Tensor<std::uint8_t>::zeros({1, 1, 8, 8, 8});
  CHECK(big.str() == "Tensor<uint8,cpu> [1,1,8,8,8]:[512,512,64,8,1]");
  std::ostringstream none;
  none << Tensor<float16>{};
  CHECK(none.str() == "Tensor<float16,cpu> (undefined)");
}

TEST_CASE("summary counts NaNs and skips them in min max and mean") {
  auto t = Tensor<float>::from({1.0f, std::nanf(""), 3.0f, -2.0f}, {4});
  const auto s = summarize(t);
  CHECK(s.nan_count == 1);
  CHECK(s.min == -2.0);
  CHECK(s.max == 3.0);
  CHECK(s.mean == Approx(2.0 / 3));
  CHECK(summary(t) == "Tensor<float32,cpu> [4]:[1] min=-2 max=3 mean=0.666667 nan=1");
}
