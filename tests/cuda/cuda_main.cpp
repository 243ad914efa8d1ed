// Main of the GPU tests: skips cleanly (exit code 77, "skipped" in CTest) without a GPU,
// but still lists its tests so CTest knows them.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <string_view>

#include "medseg/backends/cuda/device.hpp"

int main(int argc, char** argv) {
  bool listing = false;
  for (int i = 1; i < argc; ++i) listing = listing || std::string_view(argv[i]).starts_with("--list");
  if (!listing && !medseg::cuda::available()) {
    std::puts("cuda_tests: no CUDA device on this machine: GPU tests skipped");
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
