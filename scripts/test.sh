#!/usr/bin/env bash
# The whole test suite, from a fresh clone on a fresh machine:
#   1. installs the Debian packages (scripts/setup.sh),
#   2. builds everything (CUDA translation units with nvcc when CUDA is installed) and runs
#      every test with CTest,
#   3. builds the CPU tests with AddressSanitizer + UndefinedBehaviorSanitizer and runs them,
#   4. fuzzes each file parser for a short fixed time (scripts/fuzz.sh),
#   5. installs the package and builds a consumer project against it (find_package).
# Build trees go to build/ci-*; ccache keeps rebuilds quick.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bash scripts/setup.sh --python

jobs=$(nproc)
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
  export CCACHE_BASEDIR="$root" CCACHE_MAXSIZE=5G  # cache hits across clones in other folders
fi
# Each step prints when it starts and how long the one before took: CI keeps a full run well
# under 40 minutes on 2 cores, and this shows where the time goes.
step_started=$SECONDS
step() {
  printf '(%d s)\n\n== %s\n' $((SECONDS - step_started)) "$*"
  step_started=$SECONDS
}
# CTest runs $jobs tests at once: one thread each (our pool and oneDNN's OpenMP) instead of
# every test spinning up a thread per core. Tests of thread-count invariance set their own.
export MEDSEG_NUM_THREADS=1 OMP_NUM_THREADS=1

step "release build and tests"
cmake -S . -B build/ci-release -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" >/dev/null
cmake --build build/ci-release -j "$jobs"
ctest --test-dir build/ci-release -j "$jobs" --output-on-failure

step "AddressSanitizer + UndefinedBehaviorSanitizer build of the CPU tests"
# -O1: sanitizers stay exact, and the tests run several times faster than at -O0.
# tests/models is left out here: its whole-model parity tests compose the layers that
# tests/nn checks one by one under the sanitizers, and its translation units are the slowest
# of all to build instrumented (13 minutes for one on this machine). Training with deep
# supervision (tests/train) and sliding-window inference (tests/infer) still run whole models
# under the sanitizers. The medseg command is left out too, with tests/tools and tests/io's
# command tests, which run it: it is a thin layer over the headers these suites check, and it,
# the benchmarks it links and those tests took 26 of this build's 61 CPU minutes; the release
# build above runs them. MEDSEG_NATIVE=OFF: this build checks memory,
# not speed, so it also covers the baseline-ISA code paths (and GCC 12's AVX-512 headers would
# trip -Wuninitialized at -O1).
cmake -S . -B build/ci-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-g -O1" -DMEDSEG_SANITIZE=ON -DMEDSEG_CUDA=OFF \
  -DMEDSEG_BUILD_EXAMPLES=OFF -DMEDSEG_BUILD_TOOLS=OFF -DMEDSEG_NATIVE=OFF \
  -DMEDSEG_TEST_FOLDERS="core;backends;io;data;preprocess;transforms;nn;loss;optim;metrics;train;infer;viz" \
  "${launcher[@]}" >/dev/null
cmake --build build/ci-asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build/ci-asan -j "$jobs" --output-on-failure

step "fuzz the file parsers (libFuzzer, 15 s per parser)"
bash scripts/fuzz.sh 15

step "install and build a consumer project against the installed package"
rm -rf build/ci-prefix build/ci-consumer
cmake --install build/ci-release --prefix "$root/build/ci-prefix" >/dev/null
cmake -S tests/consumer -B build/ci-consumer -G Ninja -DCMAKE_PREFIX_PATH="$root/build/ci-prefix" "${launcher[@]}" >/dev/null
cmake --build build/ci-consumer -j "$jobs"
./build/ci-consumer/consumer
[[ -x build/ci-consumer/consumer_cuda ]] && ./build/ci-consumer/consumer_cuda
"$root/build/ci-prefix/bin/medseg" --version

step "examples"
# Every example is built above; these run here (the trainers need a prepared dataset or the
# demo's data and minutes of CPU: `medseg demo` covers the brain-mask one end to end).
for example in tensor_basics readme_example custom_network; do
  "build/ci-release/examples/$example" >/dev/null  # a failure stops the script (set -e)
  echo "ok: $example"
done
step "done"
echo "all tests passed"
