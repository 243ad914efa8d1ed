#!/usr/bin/env bash
# The GPU check: every GPU test and GPU benchmark in one call on a bare GPU machine.
#
#   scripts/gpu-check.sh prepare   # here, on the CPU machine: build the GPU binaries (same CUDA 13,
#                                  # x86-64) into .gpu-carry/, with libstdc++ linked statically
#   scripts/gpu-check.sh run       # there, on the GPU machine (the device tool carries .gpu-carry):
#                                  # runs them, writes results to $OUT (or gpu-results/) as JSON
#
# The GPU machine has the NVIDIA driver, nvcc, PyTorch and cuDNN (inside PyTorch's wheels), but
# none of our Debian packages; the carried binaries need only the driver and, later, cuDNN.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
carry=.gpu-carry

case "$mode" in
prepare)
  bash scripts/setup.sh
  launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
  cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMEDSEG_CUDA=ON -DMEDSEG_NATIVE=OFF -DMEDSEG_BUILD_EXAMPLES=OFF -DMEDSEG_BUILD_TOOLS=OFF -DMEDSEG_TEST_FOLDERS="" \
    -DCMAKE_CUDA_ARCHITECTURES="90" -DCMAKE_EXE_LINKER_FLAGS="-static-libstdc++ -static-libgcc" \
    "${launcher[@]}" >/dev/null
  targets=(cuda_tests)
  cmake --build build/gpu -j "$(nproc)" --target "${targets[@]}"
  rm -rf "$carry" && mkdir -p "$carry"
  cp build/gpu/tests/cuda/cuda_tests "$carry/"
  cp scripts/gpu-check.sh "$carry/"
  du -sh "$carry"
  ;;
run)
  out=${OUT:-gpu-results}
  mkdir -p "$out"
  # cuDNN lives in PyTorch's nvidia-cudnn wheel there.
  cudnn=$(python3 -c 'import nvidia.cudnn, os; print(os.path.join(list(nvidia.cudnn.__path__)[0], "lib"))' 2>/dev/null || true)
  [[ -n "$cudnn" ]] && export LD_LIBRARY_PATH="$cudnn:${LD_LIBRARY_PATH:-}"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
  status=0
  summary="{"
  for t in "$carry"/*_tests; do
    name=$(basename "$t")
    echo "== $name"
    set +e
    "$t" --durations yes 2>&1 | tee "$out/$name.txt" | tail -25
    code=${PIPESTATUS[0]}
    set -e
    [[ $code -ne 0 ]] && status=1
    summary+="\"$name\": $code, "
  done
  echo "${summary%, }}" | tee "$out/summary.json"
  exit $status
  ;;
*)
  echo "usage: scripts/gpu-check.sh prepare|run" >&2
  exit 2
  ;;
esac
