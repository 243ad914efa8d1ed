#include "medseg/core/random.hpp"
#include "medseg/core/rng.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <numeric>
#include <set>

using namespace medseg;

TEST_CASE("Philox4x32-10 matches the Random123 known-answer vectors") {
  using B = Philox4x32::Block;
  const B zero{{0, 0, 0, 0}}, ones{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}};
  const B pi{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}};
  CHECK(Philox4x32::generate(zero, 0, 0) == B{{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}});
  CHECK(Philox4x32::generate(ones, 0xffffffffu, 0xffffffffu) == B{{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}});
  CHECK(Philox4x32::generate(pi, 0xa4093822u, 0x299f31d0u) == B{{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}});
}

TEST_CASE("a RandomStream is a pure function of seed stream and position") {
  RandomStream a(7, 3), b(7, 3), c(7, 4), d(8, 3);
  std::vector<std::uint32_t> va, vb, vc, vd;
  for (int i = 0; i < 100; ++i) {
    va.push_back(a.next_u32());
    vb.push_back(b.next_u32());
    vc.push_back(c.next_u32());
    vd.push_back(d.next_u32());
  }
  CHECK(va == vb);
  CHECK(va != vc);
  CHECK(va != vd);
  RandomStream e(7, 3);
  e.seek(42);
  CHECK(e.next_u32() == va[42]);
  CHECK(a.position() == 100);
  CHECK(a.substream(1).stream() != a.substream(2).stream());
  CHECK(a.substream(1).stream() == b.substream(1).stream());
}

TEST_CASE("random fills are identical whatever the thread count") {
  auto fill_all = [] {
    auto u = Tensor<float>::empty({3, 1, 40, 41, 43});
    auto n = Tensor<double>::empty({100003});
    auto m = Tensor<std::uint8_t>::empty({5000});
    random::uniform(u, {.seed = 123, .stream = 9}, -2.0f, 3.0f);
    random::normal(n, {.seed = 123, .stream = 10, .offset = 5}, 1.0f, 2.0f);
    random::bernoulli(m, {.seed = 5}, 0.3f);
    return std::tuple{u.to_vector(), n.to_vector(), m.to_vector()};
  };
  set_num_threads(1);
  const auto one = fill_all();
  set_num_threads(2);
  const auto two = fill_all();
  set_num_threads(7);
  const auto seven = fill_all();
  set_num_threads(default_thread_count());
  CHECK(one == two);
  CHECK(one == seven);
}

TEST_CASE("fills index the sequence by element: an offset shifts it") {
  auto a = Tensor<float>::empty({103});
  auto b = Tensor<float>::empty({100});
  random::uniform(a, {.seed = 1, .stream = 2});
  random::uniform(b, {.seed = 1, .stream = 2, .offset = 3});
  for (int i = 0; i < 100; ++i) CHECK(b(i) == a(i + 3));
  for (int i = 0; i < 103; ++i) CHECK(a(i) == uniform_at(1, 2, static_cast<std::uint64_t>(i)));
  auto n = Tensor<float>::empty({11});
  random::normal(n, {.seed = 4, .stream = 0, .offset = 1});
  for (int i = 0; i < 11; ++i) CHECK(n(i) == normal_at(4, 0, static_cast<std::uint64_t>(i + 1)));
}

TEST_CASE("uniform and normal fills have the right moments") {
  const std::int64_t n = 1 << 20;
  auto u = Tensor<double>::empty({n});
  random::uniform(u, {.seed = 2024}, 2.0f, 6.0f);
  const auto uv = u.to_vector();
  const double umean = std::accumulate(uv.begin(), uv.end(), 0.0) / n;
  double uvar = 0;
  for (double x : uv) uvar += (x - umean) * (x - umean);
  uvar /= n;
  CHECK(umean == Approx(4.0).margin(0.01));
  CHECK(uvar == Approx(16.0 / 12).margin(0.01));
  CHECK(*std::min_element(uv.begin(), uv.end()) >= 2.0);
  CHECK(*std::max_element(uv.begin(), uv.end()) < 6.0);

  auto z = Tensor<double>::empty({n});
  random::normal(z, {.seed = 2024, .stream = 1}, -1.0f, 3.0f);
  const auto zv = z.to_vector();
  const double zmean = std::accumulate(zv.begin(), zv.end(), 0.0) / n;
  double zvar = 0, within1 = 0;
  for (double x : zv) {
    zvar += (x - zmean) * (x - zmean);
    within1 += std::abs(x + 1.0) < 3.0;
  }
  zvar /= n;
  CHECK(zmean == Approx(-1.0).margin(0.02));
  CHECK(zvar == Approx(9.0).margin(0.05));
  CHECK(within1 / n == Approx(0.6827).margin(0.003));

  auto m = Tensor<float>::empty({n});
  random::bernoulli(m, {.seed = 3}, 0.25f);
  const auto mv = m.to_vector();
  CHECK(std::accumulate(mv.begin(), mv.end(), 0.0) / n == Approx(0.25).margin(0.003));
}

TEST_CASE("below(n) is uniform over 0..n-1") {
  RandomStream r(11, 0);
  std::vector<int> counts(7, 0);
  for (int i = 0; i < 70000; ++i) ++counts[r.below(7)];
  for (int c : counts) CHECK(c == Approx(10000).margin(400));
  CHECK(r.below(1) == 0);
  CHECK(r.below(0) == 0);
}
