// Losses and optimizers on the Cuda backend against the same objects on the CPU, on the same
// inputs: every loss with several option sets and every label element type (values within
// 1e-5, gradients within 1e-4 of the largest), the same errors for bad labels and NaN
// logits, SGD/Adam/AdamW trajectories over 10 steps (within 1e-5; the kernels round as the
// CPU does, so they are expected to agree exactly), clip_grad_norm, and optimizer state that
// moves between the backends through a checkpoint.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "medseg/cuda.hpp"
#include "medseg/loss.hpp"
#include "medseg/optim.hpp"

using namespace medseg;

static_assert(loss::Loss<loss::Dice<Cuda>, Cuda>);
static_assert(loss::Loss<loss::CrossEntropy<Cuda>, Cuda>);
static_assert(loss::Loss<loss::BinaryCrossEntropy<Cuda>, Cuda>);
static_assert(loss::Loss<loss::DiceCE<Cuda>, Cuda>);

namespace {

/// Uniform in [low, high) on the host; `stream` tells the inputs of one test apart.
Tensor<float> random_tensor(const Shape& shape, std::uint64_t stream, float low = -3.0f, float high = 3.0f) {
  auto t = Tensor<float>::empty(shape);
  random::uniform(t, {.seed = 20241127, .stream = stream}, low, high);
  return t;
}

/// Class indices in [0, classes) of element type L.
template <class L>
Tensor<L> random_labels(const Shape& shape, int classes, std::uint64_t stream) {
  const auto u = random_tensor(shape, stream, 0.0f, 1.0f);
  auto t = Tensor<L>::empty(shape);
  for (std::int64_t i = 0; i < t.numel(); ++i)
    t.data()[i] = static_cast<L>(std::min(classes - 1, static_cast<int>(u.data()[i] * static_cast<float>(classes))));
  return t;
}

/// One-hot float maps [N,C,spatial...] of index labels [N,1,spatial...].
Tensor<float> one_hot(const Tensor<std::int64_t>& labels, std::int64_t classes) {
  Shape shape = labels.shape();
  shape[1] = classes;
  auto t = Tensor<float>::zeros(shape);
  const std::int64_t n = shape[0], s = labels.numel() / n;
  for (std::int64_t b = 0; b < n; ++b)
    for (std::int64_t v = 0; v < s; ++v) t.data()[(b * classes + labels.data()[b * s + v]) * s + v] = 1.0f;
  return t;
}

/// Probabilities over the channel axis (each voxel's values sum to 1).
Tensor<float> soft_labels(const Shape& shape, std::uint64_t stream) {
  auto t = random_tensor(shape, stream, 0.05f, 1.0f);
  const std::int64_t n = shape[0], c = shape[1], s = t.numel() / (n * c);
  for (std::int64_t b = 0; b < n; ++b)
    for (std::int64_t v = 0; v < s; ++v) {
      float sum = 0;
      for (std::int64_t k = 0; k < c; ++k) sum += t.data()[(b * c + k) * s + v];
      for (std::int64_t k = 0; k < c; ++k) t.data()[(b * c + k) * s + v] /= sum;
    }
  return t;
}

void check_value(float gpu, float cpu, float tol = 1e-5f) {
  INFO("gpu " << gpu << ", cpu " << cpu);
  CHECK(std::abs(gpu - cpu) <= tol * std::abs(cpu) + 1e-7f);
}

/// max |gpu - cpu| <= tol * max |cpu| (+ a tiny floor for all-zero tensors).
void check_close(const Tensor<float, Cuda>& gpu, const Tensor<float>& cpu, float tol) {
  REQUIRE(gpu.shape() == cpu.shape());
  const auto a = gpu.to_vector(), b = cpu.to_vector();
  float diff = 0, scale = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(a[i] - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  INFO("shape " << cpu.shape().to_string() << ": max |gpu - cpu| = " << diff << ", max |cpu| = " << scale);
  CHECK(diff <= tol * scale + 1e-12f);
}

/// Forward, backward and backward_accumulate of one loss on both backends.
template <class CpuLoss, class CudaLoss, class L>
void compare_loss(CpuLoss& cpu, CudaLoss& gpu, const Tensor<float>& logits, const Tensor<L>& labels) {
  const float vc = cpu.forward(logits, labels);
  const float vg = gpu.forward(logits.to<Cuda>(), labels.template to<Cuda>());
  check_value(vg, vc);
  const auto gc = cpu.backward();
  check_close(gpu.backward(), gc, 1e-4f);
  // Adding a scaled gradient into an existing one, as Mixed and DeepSupervision do.
  const auto base = random_tensor(logits.shape(), 99);
  auto acc_c = base.clone();
  auto acc_g = base.to<Cuda>();
  cpu.backward_accumulate(acc_c, 0.5f);
  gpu.backward_accumulate(acc_g, 0.5f);
  check_close(acc_g, acc_c, 1e-5f);
}

/// The message each backend throws, "" when none.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const Shape small{2, 3, 5, 6, 7};      // S = 210: one block
const Shape large{2, 4, 24, 30, 20};   // S = 14400: several blocks on both backends

}  // namespace

TEST_CASE("Dice on the GPU equals Dice on the CPU for every option set") {
  const std::vector<loss::DiceOptions> configs = {
      {},
      {.include_background = false},
      {.squared_denominator = true},
      {.smooth_numerator = 1.0, .smooth_denominator = 1.0, .batch = true},
      {.include_background = false, .batch = true, .class_weights = {0.3f, 2.0f, 1.0f}},
      {.activation = loss::Activation::sigmoid},
      {.activation = loss::Activation::sigmoid, .squared_denominator = true, .class_weights = {1.0f, 0.5f, 2.0f, 1.5f}},
      {.activation = loss::Activation::none, .batch = true},
  };
  for (const Shape& shape : {small, large}) {
    const std::int64_t c = shape[1];
    Shape label_shape = shape;
    label_shape[1] = 1;
    for (std::size_t k = 0; k < configs.size(); ++k) {
      auto options = configs[k];
      if (!options.class_weights.empty())  // one weight per scored class of this shape
        options.class_weights.resize(static_cast<std::size_t>(options.include_background ? c : c - 1), 1.25f);
      INFO("shape " << shape.to_string() << ", configuration " << k);
      auto x = random_tensor(shape, 10 + k);
      if (options.activation == loss::Activation::none)  // probabilities in (0.1, 0.9)
        x = random_tensor(shape, 10 + k, 0.1f, 0.9f);
      const auto labels = random_labels<std::int64_t>(label_shape, static_cast<int>(c), 20 + k);
      loss::Dice<Cpu> cpu{options};
      loss::Dice<Cuda> gpu{options};
      compare_loss(cpu, gpu, x, labels);
      compare_loss(cpu, gpu, x, random_labels<std::int32_t>(label_shape, static_cast<int>(c), 30 + k));
      compare_loss(cpu, gpu, x, random_labels<std::uint8_t>(shape.erase(1), static_cast<int>(c), 40 + k));
      compare_loss(cpu, gpu, x, one_hot(labels, c));
    }
  }
}

TEST_CASE("sigmoid Dice on one channel reads index labels as the foreground mask on the GPU") {
  const Shape shape{2, 1, 9, 8, 7};
  const auto x = random_tensor(shape, 30);
  loss::Dice<Cpu> cpu{{.activation = loss::Activation::sigmoid}};
  loss::Dice<Cuda> gpu{{.activation = loss::Activation::sigmoid}};
  compare_loss(cpu, gpu, x, random_labels<std::uint8_t>(shape, 2, 31));
  compare_loss(cpu, gpu, x, random_labels<std::int16_t>(shape, 2, 32));
  compare_loss(cpu, gpu, x, random_labels<std::uint64_t>(shape, 2, 33));
}

TEST_CASE("CrossEntropy on the GPU equals CrossEntropy on the CPU") {
  for (const Shape& shape : {small, large}) {
    INFO("shape " << shape.to_string());
    const std::int64_t c = shape[1];
    Shape label_shape = shape;
    label_shape[1] = 1;
    const auto x = random_tensor(shape, 40);
    const auto labels = random_labels<std::int64_t>(label_shape, static_cast<int>(c), 41);
    std::vector<float> weights;
    for (std::int64_t k = 0; k < c; ++k) weights.push_back(0.5f + 0.25f * static_cast<float>(k));
    {  // defaults, every label type
      loss::CrossEntropy<Cpu> cpu;
      loss::CrossEntropy<Cuda> gpu;
      compare_loss(cpu, gpu, x, labels);
      compare_loss(cpu, gpu, x, random_labels<std::int32_t>(label_shape, static_cast<int>(c), 42));
      compare_loss(cpu, gpu, x, random_labels<std::uint8_t>(shape.erase(1), static_cast<int>(c), 43));
      compare_loss(cpu, gpu, x, random_labels<std::int8_t>(label_shape, static_cast<int>(c), 44));
      compare_loss(cpu, gpu, x, random_labels<std::uint16_t>(label_shape, static_cast<int>(c), 45));
      compare_loss(cpu, gpu, x, random_labels<std::uint32_t>(label_shape, static_cast<int>(c), 46));
      compare_loss(cpu, gpu, x, one_hot(labels, c));
    }
    {  // class weights, sum reduction, soft labels
      loss::CrossEntropy<Cpu> cpu{{.class_weights = weights}};
      loss::CrossEntropy<Cuda> gpu{{.class_weights = weights}};
      compare_loss(cpu, gpu, x, labels);
      compare_loss(cpu, gpu, x, soft_labels(shape, 47));
      loss::CrossEntropy<Cpu> cpu_sum{{.class_weights = weights, .reduction = loss::Reduction::sum}};
      loss::CrossEntropy<Cuda> gpu_sum{{.class_weights = weights, .reduction = loss::Reduction::sum}};
      compare_loss(cpu_sum, gpu_sum, x, labels);
      compare_loss(cpu_sum, gpu_sum, x, soft_labels(shape, 48));
    }
    {  // ignore_index
      auto y = random_labels<std::uint8_t>(label_shape, static_cast<int>(c), 49);
      for (std::int64_t i = 0; i < y.numel(); i += 3) y.data()[i] = 255;
      loss::CrossEntropy<Cpu> cpu{{.class_weights = weights, .ignore_index = 255}};
      loss::CrossEntropy<Cuda> gpu{{.class_weights = weights, .ignore_index = 255}};
      compare_loss(cpu, gpu, x, y);
      y.fill(255);  // every voxel ignored: loss 0, gradient 0
      compare_loss(cpu, gpu, x, y);
      CHECK(gpu.forward(x.to<Cuda>(), y.to<Cuda>()) == 0.0f);
    }
  }
}

TEST_CASE("BinaryCrossEntropy on the GPU equals BinaryCrossEntropy on the CPU") {
  for (const Shape& shape : {small, large}) {
    INFO("shape " << shape.to_string());
    const std::int64_t c = shape[1];
    const auto x = random_tensor(shape, 50, -6.0f, 6.0f);
    std::vector<float> pw, cw;
    for (std::int64_t k = 0; k < c; ++k) {
      pw.push_back(1.0f + static_cast<float>(k));
      cw.push_back(0.75f + 0.5f * static_cast<float>(k));
    }
    loss::BinaryCrossEntropy<Cpu> cpu;
    loss::BinaryCrossEntropy<Cuda> gpu;
    Shape label_shape = shape;
    label_shape[1] = 1;
    compare_loss(cpu, gpu, x, random_labels<std::int32_t>(label_shape, static_cast<int>(c), 51));
    compare_loss(cpu, gpu, x, random_tensor(shape, 52, 0.0f, 1.0f));
    loss::BinaryCrossEntropy<Cpu> cpu_w{{.pos_weight = pw, .class_weights = cw}};
    loss::BinaryCrossEntropy<Cuda> gpu_w{{.pos_weight = pw, .class_weights = cw}};
    compare_loss(cpu_w, gpu_w, x, random_tensor(shape, 53, 0.0f, 1.0f));
    loss::BinaryCrossEntropy<Cpu> cpu_sum{{.reduction = loss::Reduction::sum}};
    loss::BinaryCrossEntropy<Cuda> gpu_sum{{.reduction = loss::Reduction::sum}};
    compare_loss(cpu_sum, gpu_sum, x, random_tensor(shape, 54, 0.0f, 1.0f));
  }
}

TEST_CASE("DiceCE and DeepSupervision on the GPU equal them on the CPU") {
  const loss::DiceOptions dice{.include_background = false, .batch = true};
  auto cpu = loss::dice_ce<Cpu>(dice, {}, 1.0f, 0.5f);
  auto gpu = loss::dice_ce<Cuda>(dice, {}, 1.0f, 0.5f);
  const auto x = random_tensor(large, 60);
  Shape label_shape = large;
  label_shape[1] = 1;
  const auto labels = random_labels<std::int64_t>(label_shape, 4, 61);
  compare_loss(cpu, gpu, x, labels);
  for (std::size_t i = 0; i < 2; ++i) check_value(gpu.values()[i], cpu.values()[i]);

  // Three scales, full resolution first; the last weighs 0 and is skipped.
  loss::DeepSupervision ds_cpu{loss::dice_ce<Cpu>(dice), 3};
  loss::DeepSupervision ds_gpu{loss::dice_ce<Cuda>(dice), 3};
  std::vector<Tensor<float>> xs;
  std::vector<Tensor<std::uint8_t>> ys;
  std::vector<Tensor<float, Cuda>> xs_gpu;
  std::vector<Tensor<std::uint8_t, Cuda>> ys_gpu;
  for (std::int64_t k = 0; k < 3; ++k) {
    const std::int64_t f = std::int64_t{1} << k;
    xs.push_back(random_tensor({2, 4, 16 / f, 12 / f, 10 / f}, 62 + static_cast<std::uint64_t>(k)));
    ys.push_back(random_labels<std::uint8_t>({2, 1, 16 / f, 12 / f, 10 / f}, 4, 65 + static_cast<std::uint64_t>(k)));
    xs_gpu.push_back(xs.back().to<Cuda>());
    ys_gpu.push_back(ys.back().to<Cuda>());
  }
  check_value(ds_gpu.forward(xs_gpu, ys_gpu), ds_cpu.forward(xs, ys));
  const auto gc = ds_cpu.backward();
  const auto gg = ds_gpu.backward();
  REQUIRE(gg.size() == 3);
  for (std::size_t k = 0; k < 3; ++k) check_close(gg[k], gc[k], 1e-4f);
}

TEST_CASE("bad labels and non-finite logits raise the CPU's errors on the GPU") {
  const auto x = random_tensor(small, 70);
  Shape label_shape = small;
  label_shape[1] = 1;
  auto labels = random_labels<std::int64_t>(label_shape, 3, 71);
  labels.data()[150] = 3;  // one past the last class
  labels.data()[200] = -1;
  const auto xg = x.to<Cuda>();
  auto same_error = [&](auto&& cpu_call, auto&& gpu_call) {
    const std::string cpu_message = error_of(cpu_call), gpu_message = error_of(gpu_call);
    INFO("cpu: " << cpu_message << "\ngpu: " << gpu_message);
    CHECK(!cpu_message.empty());
    CHECK(gpu_message == cpu_message);
  };
  loss::Dice<Cpu> dice_cpu;
  loss::Dice<Cuda> dice_gpu;
  loss::CrossEntropy<Cpu> ce_cpu;
  loss::CrossEntropy<Cuda> ce_gpu;
  same_error([&] { dice_cpu.forward(x, labels); }, [&] { dice_gpu.forward(xg, labels.to<Cuda>()); });
  same_error([&] { ce_cpu.forward(x, labels); }, [&] { ce_gpu.forward(xg, labels.to<Cuda>()); });
  CHECK_THROWS_WITH(dice_gpu.backward(), Catch::Contains("a forward call first"));

  auto bytes = random_labels<std::uint8_t>(label_shape, 3, 72);
  bytes.data()[7] = 200;
  same_error([&] { ce_cpu.forward(x, bytes); }, [&] { ce_gpu.forward(xg, bytes.to<Cuda>()); });

  auto onehot = one_hot(random_labels<std::int64_t>(label_shape, 3, 73), 3);
  onehot.data()[333] = 1.5f;
  same_error([&] { dice_cpu.forward(x, onehot); }, [&] { dice_gpu.forward(xg, onehot.to<Cuda>()); });
  onehot.data()[333] = NAN;
  same_error([&] { dice_cpu.forward(x, onehot); }, [&] { dice_gpu.forward(xg, onehot.to<Cuda>()); });

  const auto good = random_labels<std::int64_t>(label_shape, 3, 74);
  auto bad_x = x.clone();
  bad_x.data()[517] = NAN;
  bad_x.data()[900] = INFINITY;
  const auto bad_xg = bad_x.to<Cuda>();
  loss::Dice<Cpu> sig_cpu{{.activation = loss::Activation::sigmoid}};
  loss::Dice<Cuda> sig_gpu{{.activation = loss::Activation::sigmoid}};
  loss::BinaryCrossEntropy<Cpu> bce_cpu;
  loss::BinaryCrossEntropy<Cuda> bce_gpu;
  same_error([&] { dice_cpu.forward(bad_x, good); }, [&] { dice_gpu.forward(bad_xg, good.to<Cuda>()); });
  same_error([&] { sig_cpu.forward(bad_x, good); }, [&] { sig_gpu.forward(bad_xg, good.to<Cuda>()); });
  same_error([&] { ce_cpu.forward(bad_x, good); }, [&] { ce_gpu.forward(bad_xg, good.to<Cuda>()); });
  same_error([&] { bce_cpu.forward(bad_x, good); }, [&] { bce_gpu.forward(bad_xg, good.to<Cuda>()); });
  CHECK_THROWS_WITH(ce_gpu.backward(), Catch::Contains("a forward call first"));
}

namespace {

const std::vector<Shape> parameter_shapes = {{1}, {7}, {1000}, {33, 17}, {70000}};

/// The same parameters on both backends; the third one is excluded from weight decay.
std::pair<nn::ParameterList<Cpu>, nn::ParameterList<Cuda>> twin_parameters(std::uint64_t stream) {
  nn::ParameterList<Cpu> cpu;
  nn::ParameterList<Cuda> gpu;
  for (std::size_t i = 0; i < parameter_shapes.size(); ++i) {
    const auto value = random_tensor(parameter_shapes[i], stream + i, -1.0f, 1.0f);
    const bool decay = i != 2;
    cpu.push_back(nn::make_parameter("layer" + std::to_string(i) + ".weight", value.clone(), decay));
    gpu.push_back(nn::make_parameter("layer" + std::to_string(i) + ".weight", value.to<Cuda>(), decay));
  }
  return {cpu, gpu};
}

/// Writes the same random gradients (step t) into both lists.
void set_gradients(const nn::ParameterList<Cpu>& cpu, const nn::ParameterList<Cuda>& gpu, int t, float scale = 1.0f) {
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    const auto g = random_tensor(cpu[i].value.shape(), 1000 + 17 * static_cast<std::uint64_t>(t) + i, -scale, scale);
    cpu[i].grad.copy_from(g);
    gpu[i].grad.copy_from(g);
  }
}

/// Parameter values within 1e-5 relative (the kernels are written to agree exactly).
void check_parameters(const nn::ParameterList<Cuda>& gpu, const nn::ParameterList<Cpu>& cpu) {
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    const auto a = gpu[i].value.to_vector(), b = cpu[i].value.to_vector();
    double worst = 0;
    std::int64_t unequal = 0;
    for (std::size_t j = 0; j < a.size(); ++j) {
      worst = std::max(worst, std::abs(double(a[j]) - b[j]) / std::max(1e-6, std::abs(double(b[j]))));
      unequal += a[j] != b[j];
    }
    INFO(cpu[i].path << ": worst relative difference " << worst << ", " << unequal << " of " << a.size() << " unequal");
    CHECK(worst <= 1e-5);
  }
}

template <class CpuOpt, class CudaOpt>
void run_trajectory(CpuOpt& cpu, CudaOpt& gpu, int steps = 10) {
  for (int t = 0; t < steps; ++t) {
    set_gradients(cpu.parameters(), gpu.parameters(), t);
    cpu.step();
    gpu.step();
  }
  check_parameters(gpu.parameters(), cpu.parameters());
}

}  // namespace

TEST_CASE("SGD on the GPU follows the CPU's trajectory") {
  const std::vector<optim::SGDOptions> configs = {
      {.lr = 0.1},
      {.lr = 0.05, .momentum = 0.9},
      {.lr = 0.05, .momentum = 0.9, .dampening = 0.3},
      {.lr = 0.01, .momentum = 0.99, .nesterov = true, .weight_decay = 3e-5},
      {.lr = 0.1, .weight_decay = 1e-2},
  };
  for (std::size_t k = 0; k < configs.size(); ++k) {
    INFO("configuration " << k);
    auto [pc, pg] = twin_parameters(100 * k);
    optim::SGD<Cpu> cpu{pc, configs[k]};
    optim::SGD<Cuda> gpu{pg, configs[k]};
    run_trajectory(cpu, gpu);
    CHECK(gpu.steps() == 10);
  }
}

TEST_CASE("Adam and AdamW on the GPU follow the CPU's trajectory") {
  SECTION("Adam") {
    auto [pc, pg] = twin_parameters(300);
    optim::Adam<Cpu> cpu{pc, {.lr = 1e-2}};
    optim::Adam<Cuda> gpu{pg, {.lr = 1e-2}};
    run_trajectory(cpu, gpu);
  }
  SECTION("Adam with L2 decay and amsgrad") {
    auto [pc, pg] = twin_parameters(310);
    const optim::AdamOptions o{.lr = 3e-3, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-6, .weight_decay = 1e-2, .amsgrad = true};
    optim::Adam<Cpu> cpu{pc, o};
    optim::Adam<Cuda> gpu{pg, o};
    run_trajectory(cpu, gpu);
  }
  SECTION("AdamW") {
    auto [pc, pg] = twin_parameters(320);
    optim::AdamW<Cpu> cpu{pc, {.lr = 1e-2}};
    optim::AdamW<Cuda> gpu{pg, {.lr = 1e-2}};
    run_trajectory(cpu, gpu);
  }
  SECTION("AdamW with amsgrad and a learning-rate change") {
    auto [pc, pg] = twin_parameters(330);
    optim::AdamW<Cpu> cpu{pc, {.lr = 1e-2, .weight_decay = 0.1, .amsgrad = true}};
    optim::AdamW<Cuda> gpu{pg, {.lr = 1e-2, .weight_decay = 0.1, .amsgrad = true}};
    run_trajectory(cpu, gpu, 5);
    cpu.set_lr(2e-3);
    gpu.set_lr(2e-3);
    run_trajectory(cpu, gpu, 5);
  }
}

TEST_CASE("clip_grad_norm on the GPU gives the CPU's norm and clipped gradients") {
  for (const double norm_type : {2.0, 1.0, 1.5, double(INFINITY)}) {
    for (const double max_norm : {0.5, 1e9}) {
      INFO("norm_type " << norm_type << ", max_norm " << max_norm);
      auto [pc, pg] = twin_parameters(400);
      set_gradients(pc, pg, 7, 3.0f);
      const double tc = optim::clip_grad_norm(pc, max_norm, {.norm_type = norm_type});
      const double tg = optim::clip_grad_norm(pg, max_norm, {.norm_type = norm_type});
      CHECK(tg == Approx(tc).epsilon(1e-10));
      for (std::size_t i = 0; i < pc.size(); ++i) check_close(pg[i].grad, pc[i].grad, 1e-6f);
    }
  }
  // One NaN gradient element: the norm is NaN (scaling then poisons every gradient, as in
  // PyTorch, so each check starts from fresh gradients).
  auto [pc, pg] = twin_parameters(410);
  auto one_nan = [&] {
    set_gradients(pc, pg, 8);
    pg[3].grad.flatten().slice(0, 100, 101).fill(NAN);
  };
  one_nan();
  CHECK(std::isnan(optim::clip_grad_norm(pg, 1.0)));
  one_nan();
  CHECK(std::isnan(optim::clip_grad_norm(pg, 1.0, {.norm_type = INFINITY})));
  one_nan();
  CHECK_THROWS_WITH(optim::clip_grad_norm(pg, 1.0, {.error_if_nonfinite = true}),
                    Catch::Contains("optim::clip_grad_norm") && Catch::Contains("layer3.weight"));
}

TEST_CASE("optimizer state moves between the backends through a checkpoint") {
  const auto dir = std::filesystem::temp_directory_path() / ("medseg_loss_optim_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  SECTION("from the GPU to the CPU (Adam with amsgrad)") {
    auto [pc, pg] = twin_parameters(500);
    const optim::AdamOptions o{.lr = 1e-2, .weight_decay = 1e-3, .amsgrad = true};
    optim::Adam<Cpu> cpu{pc, o};
    optim::Adam<Cuda> gpu{pg, o};
    run_trajectory(cpu, gpu, 3);
    safetensors::Writer w;
    gpu.save_state(w);
    w.save(dir / "adam.safetensors");
    // A fresh CPU optimizer over the GPU's current values resumes from the checkpoint.
    nn::ParameterList<Cpu> resumed;
    for (const auto& p : pg) resumed.push_back(nn::make_parameter(p.path, p.value.to<Cpu>(), p.decay));
    optim::Adam<Cpu> restored{resumed, o};
    restored.load_state(safetensors::File::read(dir / "adam.safetensors"));
    CHECK(restored.steps() == 3);
    set_gradients(resumed, pg, 42);
    restored.step();
    gpu.step();
    check_parameters(pg, resumed);
  }
  SECTION("from the CPU to the GPU (SGD with Nesterov momentum)") {
    auto [pc, pg] = twin_parameters(510);
    const optim::SGDOptions o{.lr = 0.02, .momentum = 0.9, .nesterov = true, .weight_decay = 1e-4};
    optim::SGD<Cpu> cpu{pc, o};
    optim::SGD<Cuda> gpu{pg, o};
    run_trajectory(cpu, gpu, 3);
    safetensors::Writer w;
    cpu.save_state(w);
    w.save(dir / "sgd.safetensors");
    nn::ParameterList<Cuda> resumed;
    for (const auto& p : pc) resumed.push_back(nn::make_parameter(p.path, p.value.to<Cuda>(), p.decay));
    optim::SGD<Cuda> restored{resumed, o};
    restored.load_state(safetensors::File::read(dir / "sgd.safetensors"));
    CHECK(restored.steps() == 3);
    set_gradients(pc, resumed, 43);
    cpu.step();
    restored.step();
    check_parameters(resumed, pc);
  }
  std::filesystem::remove_all(dir);
}
