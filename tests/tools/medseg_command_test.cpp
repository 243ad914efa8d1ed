// The medseg command as a user runs it: exit codes, help, version, bench.
#include <catch2/catch.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <unistd.h>

#include "medseg/io.hpp"
#include "medseg/version.hpp"
#include "run_medseg.hpp"

using tools_test::run_medseg;

TEST_CASE("medseg --version and --help") {
  auto v = run_medseg("--version");
  CHECK(v.code == 0);
  CHECK(v.out == std::string("medseg ") + medseg::version + "\n");
  auto h = run_medseg("--help");
  CHECK(h.code == 0);
  CHECK_THAT(h.out, Catch::Contains("usage: medseg COMMAND") && Catch::Contains("bench"));
  CHECK(run_medseg("").code == 0);
}

TEST_CASE("an unknown command fails with a hint") {
  auto r = run_medseg("frobnicate");
  CHECK(r.code == 2);
  CHECK_THAT(r.out, Catch::Contains("unknown command \"frobnicate\"") && Catch::Contains("--help"));
}

TEST_CASE("medseg bench lists benchmarks and refuses unknown ones") {
  auto l = run_medseg("bench");
  CHECK(l.code == 0);
  CHECK_THAT(l.out, Catch::Contains("core"));
  auto u = run_medseg("bench nosuch");
  CHECK(u.code == 1);
  CHECK_THAT(u.out, Catch::Contains("one of core") && Catch::Contains("\"nosuch\""));
  CHECK(run_medseg("bench core --bogus").code == 1);
}

TEST_CASE("medseg bench --json prints one object with the peer measured in the same run") {
  auto r = run_medseg("bench core --json --quick --threads 2");
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["benchmark"] == "core");
  CHECK(j["machine"]["threads"] == 2);
  REQUIRE(j["results"].size() == 4);
  for (const auto& row : j["results"]) {
    CHECK(row["ours_ms"].get<double>() > 0);
    INFO(row.dump());
    REQUIRE(row["peer_ms"].is_number());  // numpy is installed by scripts/setup.sh --python
    CHECK(row["speedup"].get<double>() == Approx(row["peer_ms"].get<double>() / row["ours_ms"].get<double>()));
  }
}

TEST_CASE("medseg bench preprocess --input measures the given volume; benchmarks without one refuse it") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("medseg_bench_input_" + std::to_string(getpid()));
  fs::create_directories(dir);
  // A small CT-like volume: air around a water-like body with a lung-like hole.
  auto ct = medseg::Tensor<std::int16_t>::empty({20, 40, 36});
  for (std::int64_t k = 0; k < 20; ++k)
    for (std::int64_t j = 0; j < 40; ++j)
      for (std::int64_t i = 0; i < 36; ++i) {
        const bool body = j > 4 && j < 35 && i > 3 && i < 32, lung = body && j > 12 && j < 25 && i > 10 && i < 25;
        ct.data()[(k * 40 + j) * 36 + i] = static_cast<std::int16_t>(lung ? -800 : body ? 40 : -1024);
      }
  const fs::path scan = dir / "scan.nii.gz";
  medseg::io::write_image(medseg::io::AnyImage{medseg::io::Image<std::int16_t>{ct, {}}}, scan);

  auto r = run_medseg("bench preprocess --quick --json --threads 1 --input " + scan.string());
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["benchmark"] == "preprocess");
  CHECK_THAT(j["results"][0]["note"].get<std::string>(), Catch::Contains(scan.string() + " [20,40,36]"));

  auto refused = run_medseg("bench core --quick --input " + scan.string());
  CHECK(refused.code == 1);
  CHECK_THAT(refused.out, Catch::Contains("--input") && Catch::Contains("preprocess"));
  auto missing = run_medseg("bench preprocess --quick --input " + (dir / "nosuch.nii.gz").string());
  CHECK(missing.code == 1);
  CHECK_THAT(missing.out, Catch::Contains("nosuch.nii.gz"));
  fs::remove_all(dir);
}

TEST_CASE("medseg prepare --device: cpu or cuda, and cuda says what it lacks") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("medseg_prepare_device_" + std::to_string(getpid()));
  fs::create_directories(dir / "raw/images");
  auto ct = medseg::Tensor<std::int16_t>::zeros({6, 7, 8});
  ct.data()[100] = 300;
  medseg::io::write_image(medseg::io::AnyImage{medseg::io::Image<std::int16_t>{ct, {}}}, dir / "raw/images/a.nii");
  std::ofstream(dir / "prep.json") << R"({"input": {"images": "raw/images"}, "output": "out",
                                          "image_ops": [{"op": "resample", "shape": [4, 4, 4]}]})";
  auto bad = run_medseg("prepare --quiet --device tpu --config " + (dir / "prep.json").string());
  CHECK(bad.code == 1);
  CHECK_THAT(bad.out, Catch::Contains("cpu or cuda") && Catch::Contains("tpu"));

  auto cuda = run_medseg("prepare --quiet --device cuda --config " + (dir / "prep.json").string());
  INFO(cuda.out);
  if (cuda.code == 0) {
    CHECK(fs::exists(dir / "out/images/a.npy"));  // a CUDA build on a machine with a GPU
  } else {
    // One clear error, before any output: a build without CUDA, or no GPU here.
    CHECK(cuda.code == 1);
    CHECK((cuda.out.find("built without CUDA") != std::string::npos ||
           cuda.out.find("no NVIDIA driver or no visible GPU") != std::string::npos));
    CHECK_FALSE(fs::exists(dir / "out"));
  }
  auto cpu = run_medseg("prepare --quiet --device cpu --config " + (dir / "prep.json").string());
  CHECK(cpu.code == 0);
  CHECK(fs::exists(dir / "out/images/a.npy"));
  fs::remove_all(dir);
}
