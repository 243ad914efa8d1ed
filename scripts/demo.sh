#!/usr/bin/env bash
# The main job, from a fresh clone on a fresh machine: install what it needs (Debian's
# mricron-data brings the real MRI), build the medseg command, and run `medseg demo`: a
# reduced-width VNet learns to mask the brain in the Colin27 T1 on the CPU and is evaluated
# on held-out deformed cases and on the original volume. Output goes to demo-output/.
# Extra arguments go to `medseg demo` (e.g. --minutes 3, --out DIR; see medseg demo --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --demo
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B build/demo -G Ninja -DCMAKE_BUILD_TYPE=Release -DMEDSEG_BUILD_TESTS=OFF -DMEDSEG_BUILD_EXAMPLES=OFF \
  -DMEDSEG_CUDA=OFF "${launcher[@]}" >/dev/null
echo "demo: building the medseg command (the first build takes a few minutes)"
cmake --build build/demo -j "$(nproc)" --target medseg_tool
./build/demo/tools/medseg/medseg demo "$@"
