#include "medseg/optim/schedules.hpp"

#include "medseg/optim/sgd.hpp"

#include "optim_test_support.hpp"

using namespace medseg;
using namespace optim_test;

namespace {
nn::ParameterList<Cpu> one_parameter() { return {nn::make_parameter("w", Tensor<float>::zeros({1}))}; }
}  // namespace

TEST_CASE("PolyLR decays with power 0.9 to end_lr and holds there") {
  optim::SGD opt{one_parameter(), {.lr = 0.01}};
  optim::PolyLR sched{opt, {.total_iters = 10, .power = 0.9, .end_lr = 1e-4}};
  CHECK(opt.lr() == 0.01);
  for (int t = 1; t <= 12; ++t) {
    sched.step();
    const double f = std::pow(1.0 - std::min(t, 10) / 10.0, 0.9);
    CHECK(opt.lr() == Approx((0.01 - 1e-4) * f + 1e-4).epsilon(1e-14));
  }
  CHECK(opt.lr() == Approx(1e-4));
  CHECK(sched.iteration() == 12);
}

TEST_CASE("Cosine step and warm-up schedules give their closed forms") {
  optim::SGD opt{one_parameter(), {.lr = 1.0}};
  optim::CosineLR cosine{opt, {.total_iters = 4, .eta_min = 0.2}};
  CHECK(cosine.lr_at(2) == Approx(0.6));
  CHECK(cosine.lr_at(4) == Approx(0.2));
  CHECK(cosine.lr_at(9) == Approx(0.2));  // held after total_iters
  optim::StepLR step{opt, {.step_size = 3, .gamma = 0.5}};
  CHECK(step.lr_at(2) == 1.0);
  CHECK(step.lr_at(3) == 0.5);
  CHECK(step.lr_at(7) == 0.25);
  optim::WarmupLR warm{opt, {.iters = 4, .start_factor = 0.2}, optim::PolyOptions{.total_iters = 10, .power = 1.0}};
  CHECK(opt.lr() == Approx(0.2));
  CHECK(warm.lr_at(2) == Approx(0.6));
  CHECK(warm.lr_at(4) == Approx(1.0));
  CHECK(warm.lr_at(9) == Approx(0.5));
  optim::SGD fresh{one_parameter(), {.lr = 1.0}};  // a scheduler's base is the lr it finds
  optim::WarmupLR plain{fresh, {.iters = 2}};
  CHECK(plain.lr_at(1) == Approx(0.5005));
  CHECK(plain.lr_at(50) == 1.0);
}

TEST_CASE("Schedules reject bad options naming them") {
  optim::SGD opt{one_parameter(), {.lr = 1.0}};
  CHECK_THROWS_WITH((optim::PolyLR{opt, {}}), Catch::Contains("optim::PolyLR") && Catch::Contains("total_iters") &&
                                                  Catch::Contains("got 0"));
  CHECK_THROWS_WITH((optim::StepLR{opt, {.step_size = 2, .gamma = 0}}), Catch::Contains("gamma"));
  CHECK_THROWS_WITH((optim::WarmupLR{opt, {.iters = 3, .start_factor = 0}}), Catch::Contains("start_factor"));
  CHECK_THROWS_WITH((optim::WarmupLR{opt, {.iters = 3}, optim::CosineOptions{}}), Catch::Contains("optim::CosineLR"));
}

TEST_CASE("A scheduler's state restores the iteration and the lr") {
  const auto dir = temp_dir();
  optim::SGD opt{one_parameter(), {.lr = 0.3}};
  optim::PolyLR sched{opt, {.total_iters = 100}};
  for (int t = 0; t < 37; ++t) sched.step();
  safetensors::Writer w;
  sched.save_state(w);
  w.save(dir / "sched.safetensors");
  optim::SGD fresh{one_parameter(), {.lr = 0.3}};
  optim::PolyLR again{fresh, {.total_iters = 100}};
  again.load_state(safetensors::File::read(dir / "sched.safetensors"));
  CHECK(again.iteration() == 37);
  CHECK(fresh.lr() == opt.lr());
  optim::StepLR other{fresh, {.step_size = 3}};
  CHECK_THROWS_WITH(other.load_state(safetensors::File::read(dir / "sched.safetensors")),
                    Catch::Contains("expected optim::StepLR") && Catch::Contains("got optim::PolyLR"));
  fs::remove_all(dir);
}
