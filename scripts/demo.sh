#!/usr/bin/env bash
# The main job, from a fresh clone on a fresh machine: set up, build, and run the demo.
# Until `medseg demo` (training and evaluation on real MRI) exists, this builds the medseg
# command and runs the tensor tutorial and the core benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --python
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B build/demo -G Ninja -DCMAKE_BUILD_TYPE=Release -DMEDSEG_BUILD_TESTS=OFF -DMEDSEG_CUDA=OFF \
  "${launcher[@]}" >/dev/null
cmake --build build/demo -j "$(nproc)"
./build/demo/examples/tensor_basics
./build/demo/tools/medseg/medseg bench core
