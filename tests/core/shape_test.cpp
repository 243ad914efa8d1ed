#include "medseg/core/shape.hpp"

#include <catch2/catch.hpp>

using namespace medseg;

TEST_CASE("Dims hold up to max_rank extents and print in one notation") {
  Shape s{2, 1, 96, 96, 96};
  CHECK(s.rank() == 5);
  CHECK(s.product() == 2 * 96 * 96 * 96);
  CHECK(s.to_string() == "[2,1,96,96,96]");
  CHECK(Shape{}.product() == 1);
  CHECK(Shape{}.to_string() == "[]");
  CHECK(Layout::contiguous(s).to_string() == "[2,1,96,96,96]:[884736,884736,9216,96,1]");
  CHECK(s.erase(1) == Shape{2, 96, 96, 96});
  CHECK(Shape(std::vector<int>{3, 4}) == Shape{3, 4});
  CHECK_THROWS_WITH((Shape{1, 2, 3, 4, 5, 6, 7, 8, 9}), Catch::Contains("rank") && Catch::Contains("at most 8"));
}

TEST_CASE("contiguity ignores the strides of unit axes") {
  CHECK(Layout::contiguous({4, 5}).is_contiguous());
  CHECK(Layout{{1, 5}, {999, 1}}.is_contiguous());
  CHECK_FALSE((Layout{{2, 5}, {10, 1}}.is_contiguous()));
  CHECK_FALSE((Layout{{2, 2}, {1, 2}}.is_contiguous()));
}

TEST_CASE("normalize_axis maps negative axes and names the op on error") {
  CHECK(normalize_axis(-1, 5, "op") == 4);
  CHECK(normalize_axis(0, 5, "op") == 0);
  CHECK_THROWS_WITH(normalize_axis(5, 5, "my_op"), Catch::Contains("my_op") && Catch::Contains("[-5, 5)"));
}
