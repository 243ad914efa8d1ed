#include "medseg/nn/safetensors.hpp"

#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "medseg/nn/parameter.hpp"

using namespace medseg;
namespace fs = std::filesystem;

namespace {
fs::path temp_dir() {
  auto d = fs::temp_directory_path() / ("medseg_safetensors_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}
int python(const std::string& code) {
  const std::string cmd = "cd " + std::string(MEDSEG_SOURCE_DIR) + "/tests/python && /usr/bin/python3 -c '" + code + "'";
  return std::system(cmd.c_str());
}
}  // namespace

TEST_CASE("safetensors round-trips every dtype and the metadata") {
  const auto path = temp_dir() / "all.safetensors";
  auto f32 = Tensor<float>::empty({2, 3, 4});
  std::iota(f32.data(), f32.data() + f32.numel(), -5.0f);
  auto i64 = Tensor<std::int64_t>::from({-1, 0, 1ll << 40}, {3});
  auto u8 = Tensor<std::uint8_t>::from({0, 255}, {2, 1});
  auto h = f32.astype<float16>();
  auto b = f32.astype<bfloat16>();
  auto empty = Tensor<double>::empty({0, 3});
  safetensors::Writer w;
  w.add("f32", f32);
  w.add("i64", i64);
  w.add("u8", u8);
  w.add("half", h);
  w.add("bf16", b);
  w.add("empty", empty);
  w.add("view", f32.slice(1, 1, 2));  // a channel view is written densely
  w.set_metadata("format", "pt");
  w.save(path);

  const auto r = safetensors::File::read(path);
  CHECK(r.names().size() == 7);
  CHECK(r.metadata().at("format") == "pt");
  CHECK(r.get<float>("f32").to_vector() == f32.to_vector());
  CHECK(r.get<std::int64_t>("i64").to_vector() == i64.to_vector());
  CHECK(r.get<std::uint8_t>("u8").shape() == Shape{2, 1});
  CHECK(r.get<float16>("half").astype<float>().to_vector() == f32.to_vector());
  CHECK(r.get<bfloat16>("bf16").astype<float>().to_vector() == f32.to_vector());
  CHECK(r.get<double>("empty").shape() == Shape{0, 3});
  CHECK(r.get<float>("view").to_vector() == f32.slice(1, 1, 2).to_vector());
  CHECK(r.info("half").dtype == DType::float16);
  CHECK_FALSE(fs::exists(path.string() + ".tmp"));
}

TEST_CASE("safetensors errors name the file and the tensor") {
  const auto path = temp_dir() / "one.safetensors";
  safetensors::Writer w;
  w.add("conv.weight", Tensor<float>::zeros({4, 2, 3, 3, 3}));
  w.save(path);
  const auto r = safetensors::File::read(path);
  CHECK_THROWS_WITH(r.get<double>("conv.weight"), Catch::Contains("one.safetensors") &&
                                                      Catch::Contains("dtype of \"conv.weight\"") &&
                                                      Catch::Contains("expected float64") && Catch::Contains("got float32"));
  CHECK_THROWS_WITH(r.get<float>("conv.weight", {4, 2, 3, 3}),
                    Catch::Contains("expected [4,2,3,3]") && Catch::Contains("got [4,2,3,3,3]"));
  CHECK_THROWS_WITH(r.get<float>("conv.bias"), Catch::Contains("tensor \"conv.bias\"") && Catch::Contains("missing"));

  // A truncated file, a header that claims more bytes than the file has, and garbage.
  const auto size = fs::file_size(path);
  fs::copy_file(path, temp_dir() / "cut.safetensors", fs::copy_options::overwrite_existing);
  fs::resize_file(temp_dir() / "cut.safetensors", size - 10);
  CHECK_THROWS_WITH(safetensors::File::read(temp_dir() / "cut.safetensors"), Catch::Contains("data_offsets"));
  std::ofstream(temp_dir() / "bad.safetensors", std::ios::binary) << std::string("\xff\xff\xff\x00\x00\x00\x00\x00{}", 10);
  CHECK_THROWS_WITH(safetensors::File::read(temp_dir() / "bad.safetensors"), Catch::Contains("header length"));
  std::ofstream(temp_dir() / "json.safetensors", std::ios::binary) << std::string("\x04\0\0\0\0\0\0\0{{{{", 12);
  CHECK_THROWS_WITH(safetensors::File::read(temp_dir() / "json.safetensors"), Catch::Contains("expected JSON"));
  CHECK_THROWS_WITH(safetensors::File::read(temp_dir() / "absent.safetensors"), Catch::Contains("cannot open"));
}

TEST_CASE("safetensors files move between medseg and Python") {
  const auto dir = temp_dir();
  safetensors::Writer w;
  w.add("x", Tensor<float>::from({1.5f, -2.0f, 3.25f, 4.0f}, {2, 2}));
  w.add("n", Tensor<std::int32_t>::from({7, 8, 9}, {3}));
  w.save(dir / "from_cpp.safetensors");
  const std::string d = dir.string();
  REQUIRE(python("import numpy as np, safetensors_lite as s; t = s.load(\"" + d +
                 "/from_cpp.safetensors\"); assert t[\"x\"].tolist() == [[1.5, -2.0], [3.25, 4.0]], t; "
                 "assert t[\"n\"].dtype == np.int32 and t[\"n\"].tolist() == [7, 8, 9]; "
                 "s.save(\"" + d + "/from_py.safetensors\", {\"y\": np.arange(6, dtype=np.float64).reshape(3, 2), "
                 "\"h\": np.array([0.5, 2], dtype=np.float16)})") == 0);
  const auto r = safetensors::File::read(dir / "from_py.safetensors");
  CHECK(r.get<double>("y", {3, 2}).to_vector() == std::vector<double>{0, 1, 2, 3, 4, 5});
  CHECK(static_cast<float>(r.get<float16>("h").to_vector()[1]) == 2.0f);
}

TEST_CASE("parameters share storage with the tensors they name") {
  auto w = Tensor<float>::ones({3, 2});
  auto p = nn::make_parameter("layer.weight", w);
  p.value(0, 0) = 5.0f;
  CHECK(w(0, 0) == 5.0f);
  p.grad.fill(2.0f);
  nn::ParameterList<Cpu> list{p, nn::make_parameter("layer.bias", Tensor<float>::zeros({3}), false)};
  CHECK(nn::count_parameters(list) == 9);
  nn::zero_grad(list);
  CHECK(p.grad(2, 1) == 0.0f);
}
