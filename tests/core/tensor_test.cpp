#include "medseg/core/tensor.hpp"

#include <catch2/catch.hpp>

#include <numeric>

using namespace medseg;

namespace {
Tensor<float> iota(const Shape& s) {
  auto t = Tensor<float>::empty(s);
  std::iota(t.data(), t.data() + t.numel(), 0.0f);
  return t;
}
}  // namespace

TEST_CASE("factories give the shape contiguous strides and values asked for") {
  auto z = Tensor<float>::zeros({2, 1, 4, 5, 6});
  CHECK(z.shape() == Shape{2, 1, 4, 5, 6});
  CHECK(z.strides() == Strides{120, 120, 30, 6, 1});
  CHECK(z.numel() == 240);
  CHECK(z.nbytes() == 960);
  CHECK(z.is_contiguous());
  CHECK(z.rank() == 5);
  CHECK(z.size(-1) == 6);
  CHECK(std::all_of(z.data(), z.data() + z.numel(), [](float v) { return v == 0.0f; }));

  auto f = Tensor<std::int16_t>::full({3, 3}, -7);
  for (auto v : f.to_vector()) CHECK(v == -7);
  auto o = Tensor<double>::ones({4});
  CHECK(o.to_vector() == std::vector<double>{1, 1, 1, 1});

  auto h = Tensor<float16>::ones({2});
  CHECK(static_cast<float>(h.to_vector()[1]) == 1.0f);
}

TEST_CASE("host memory is 64-byte aligned") {
  for (int n : {1, 3, 17, 1000}) {
    auto t = Tensor<std::uint8_t>::empty({n});
    CHECK(reinterpret_cast<std::uintptr_t>(t.data()) % 64 == 0);
  }
}

TEST_CASE("from copies values and checks their count") {
  auto t = Tensor<int>::from({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(t(1, 2) == 6);
  CHECK(t(0, 1) == 2);
  CHECK_THROWS_WITH(Tensor<int>::from({1, 2, 3}, {2, 3}),
                    Catch::Contains("Tensor::from") && Catch::Contains("6 values for shape [2,3]") &&
                        Catch::Contains("got 3"));
}

TEST_CASE("negative extents are refused") {
  CHECK_THROWS_WITH(Tensor<float>::empty({2, -1}), Catch::Contains("extent -1 on axis 1"));
}

TEST_CASE("copies of a tensor share its storage; clone does not") {
  auto a = iota({2, 3});
  auto b = a;
  b(0, 0) = 42.0f;
  CHECK(a(0, 0) == 42.0f);
  CHECK(a.shares_storage_with(b));
  CHECK(a.use_count() == 2);

  auto c = a.clone();
  c(0, 0) = -1.0f;
  CHECK(a(0, 0) == 42.0f);
  CHECK_FALSE(a.shares_storage_with(c));
}

TEST_CASE("indexing selects along axis 0 and shares storage") {
  auto x = iota({2, 3, 4});
  auto x1 = x[1];
  CHECK(x1.shape() == Shape{3, 4});
  CHECK(x1(0, 0) == 12.0f);
  CHECK(x[-1](2, 3) == 23.0f);
  x1(2, 3) = 100.0f;
  CHECK(x(1, 2, 3) == 100.0f);
  CHECK(x1.shares_storage_with(x));
  CHECK_THROWS_WITH(x[2], Catch::Contains("index") && Catch::Contains("in [-2, 2)") && Catch::Contains("got 2"));
  CHECK_THROWS_WITH(x[-3], Catch::Contains("got -3"));
}

TEST_CASE("slice along the batch axis is a contiguous view") {
  auto x = iota({4, 2, 3});
  auto s = x.slice(0, 1, 3);
  CHECK(s.shape() == Shape{2, 2, 3});
  CHECK(s.is_contiguous());
  CHECK(s(0, 0, 0) == 6.0f);
  s.fill(-1.0f);
  CHECK(x(1, 0, 0) == -1.0f);
  CHECK(x(2, 1, 2) == -1.0f);
  CHECK(x(3, 0, 0) == 18.0f);
  CHECK(x(0, 1, 2) == 5.0f);
}

TEST_CASE("slice along the channel axis is a strided view that copies correctly") {
  auto x = iota({2, 4, 3});  // N=2, C=4, 3 voxels
  auto ch = x.slice(1, 1, 3);
  CHECK(ch.shape() == Shape{2, 2, 3});
  CHECK(ch.strides() == Strides{12, 3, 1});
  CHECK_FALSE(ch.is_contiguous());
  CHECK(ch(1, 0, 0) == 15.0f);
  CHECK(ch.to_vector() == std::vector<float>{3, 4, 5, 6, 7, 8, 15, 16, 17, 18, 19, 20});

  auto dense = ch.contiguous();
  CHECK(dense.is_contiguous());
  CHECK(dense.to_vector() == ch.to_vector());
  CHECK_FALSE(dense.shares_storage_with(x));

  // Writing through the view touches only the selected channels.
  ch.fill(0.0f);
  CHECK(x(0, 0, 2) == 2.0f);
  CHECK(x(0, 1, 0) == 0.0f);
  CHECK(x(1, 3, 0) == 21.0f);

  // Copy into a strided destination from a dense source.
  ch.copy_from(Tensor<float>::full({2, 2, 3}, 9.0f));
  CHECK(x(1, 2, 2) == 9.0f);
  CHECK(x(1, 3, 2) == 23.0f);
}

TEST_CASE("slices compose and negative bounds count from the end") {
  auto x = iota({3, 5, 2});
  auto v = x.slice(0, -2, 3).slice(1, 1, -1);  // samples 1..2, channels 1..3
  CHECK(v.shape() == Shape{2, 3, 2});
  CHECK(v(0, 0, 0) == 12.0f);
  CHECK(v(1, 2, 1) == 27.0f);
  CHECK(v[1].is_contiguous());
}

TEST_CASE("out-of-range slices and spatial slices throw") {
  auto x = iota({2, 3, 4});
  CHECK_THROWS_WITH(x.slice(0, 1, 3), Catch::Contains("0 <= begin <= end <= 2") && Catch::Contains("[1, 3)"));
  CHECK_THROWS_WITH(x.slice(1, 2, 1), Catch::Contains("[2, 1)"));
  CHECK_THROWS_WITH(x.slice(2, 0, 1), Catch::Contains("0 or 1"));
  CHECK_THROWS_WITH(x.slice(5, 0, 1), Catch::Contains("axis") && Catch::Contains("got 5"));
  CHECK_NOTHROW(x.slice(1, 3, 3));  // empty is fine
  CHECK(x.slice(1, 3, 3).numel() == 0);
}

TEST_CASE("reshape keeps storage infers -1 and checks the element count") {
  auto x = iota({2, 3, 4});
  auto r = x.reshape({6, -1});
  CHECK(r.shape() == Shape{6, 4});
  CHECK(r.shares_storage_with(x));
  CHECK(r(5, 3) == 23.0f);
  CHECK(x.flatten().shape() == Shape{24});
  CHECK_THROWS_WITH(x.reshape({5, 5}), Catch::Contains("24 elements, as in [2,3,4]") && Catch::Contains("[5,5]"));
  CHECK_THROWS_WITH(x.reshape({-1, -1}), Catch::Contains("at most one -1"));
  CHECK_THROWS_WITH(x.reshape({7, -1}), Catch::Contains("[7,-1]"));
  CHECK_THROWS_WITH(x.slice(1, 0, 2).reshape({16}), Catch::Contains("contiguous") && Catch::Contains("[2,2,4]:[12,4,1]"));
  CHECK(x.slice(1, 0, 2).contiguous().reshape({16}).numel() == 16);
}

TEST_CASE("at checks index count and range") {
  auto x = iota({2, 3});
  CHECK(x.at(1, 2) == 5.0f);
  CHECK_THROWS_WITH(x.at(1), Catch::Contains("index count") && Catch::Contains("2 for shape [2,3]"));
  CHECK_THROWS_WITH(x.at(0, 3), Catch::Contains("index on axis 1") && Catch::Contains("[0, 3)"));
}

TEST_CASE("copy_from checks shapes") {
  auto x = iota({2, 3});
  CHECK_THROWS_WITH(x.copy_from(iota({3, 2})), Catch::Contains("copy_from") && Catch::Contains("expected [2,3]") &&
                                                  Catch::Contains("got [3,2]"));
}

TEST_CASE("undefined tensors say so instead of crashing") {
  Tensor<float> t;
  CHECK_FALSE(t.defined());
  CHECK_THROWS_WITH(t.reshape({1}), Catch::Contains("undefined"));
  CHECK_THROWS_WITH(t.clone(), Catch::Contains("undefined"));
}

TEST_CASE("astype converts element by element") {
  auto x = Tensor<float>::from({-1.5f, 0.25f, 2.75f, 65504.0f}, {4});
  auto i = x.astype<std::int32_t>();
  CHECK(i.to_vector() == std::vector<std::int32_t>{-1, 0, 2, 65504});
  auto h = x.astype<float16>().astype<float>();
  CHECK(h.to_vector() == x.to_vector());  // all four are exact in binary16
  auto b = Tensor<float>::from({1.0f + 1.0f / 512}, {1}).astype<bfloat16>().astype<double>();
  CHECK(b.to_vector()[0] == 1.0);  // bfloat16 keeps 8 bits: rounds to 1
  // Channel slices convert through a dense copy.
  auto s = iota({2, 3, 2}).slice(1, 1, 2).astype<double>();
  CHECK(s.to_vector() == std::vector<double>{2, 3, 8, 9});
}

TEST_CASE("large fills and copies run on the thread pool and stay exact") {
  auto x = Tensor<float>::empty({3, 5, 64, 64, 16});
  x.fill(2.5f);
  CHECK(std::all_of(x.data(), x.data() + x.numel(), [](float v) { return v == 2.5f; }));
  std::iota(x.data(), x.data() + x.numel(), 0.0f);
  auto y = x.slice(1, 1, 4).contiguous();
  for (std::int64_t n = 0; n < 3; ++n)
    for (std::int64_t c = 0; c < 3; ++c) CHECK(y(n, c, 7, 9, 3) == x(n, c + 1, 7, 9, 3));
}

TEST_CASE("wrap views external memory without owning it") {
  std::vector<double> buffer{1, 2, 3, 4, 5, 6};
  auto t = Tensor<double>::wrap(buffer.data(), {3, 2});
  t(2, 1) = 60;
  CHECK(buffer[5] == 60);
  CHECK(t.to_vector() == buffer);
  CHECK(t.clone().use_count() == 1);
}
