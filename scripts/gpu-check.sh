#!/usr/bin/env bash
# The GPU check: every GPU test and GPU benchmark in one call on a bare GPU machine.
#
#   scripts/gpu-check.sh prepare   # here, on the CPU machine: builds cuda_tests and the medseg
#                                  # command with CUDA (same CUDA 13, x86-64, libstdc++ static)
#                                  # and packs them with the shared libraries they need that a
#                                  # bare GPU machine lacks (oneDNN, libdeflate, libpng) into
#                                  # .gpu-carry/bundle.tar.xz
#   scripts/gpu-check.sh run [STEP...]  # there (the device tool carries .gpu-carry): unpacks, runs
#                                  # every GPU test, then `medseg bench train|infer|preprocess
#                                  # --device cuda` against PyTorch and CuPy on the same GPU;
#                                  # writes logs and results.json to $OUT (or gpu-results/)
#
# The GPU machine has the NVIDIA driver, nvcc, PyTorch, CuPy and SciPy; cuDNN 9 and cuBLAS 13
# come from PyTorch's nvidia-* wheels there. Each step has a time limit, so one hang cannot
# spend the device time of the rest; the default steps' limits add up to under 10 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
carry=.gpu-carry

case "$mode" in
prepare)
  bash scripts/setup.sh
  launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
  # Baseline x86-64 (the GPU machine's CPU is another), GDCM off (one library less to carry),
  # Hopper code for the H100/H200.
  cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMEDSEG_CUDA=ON -DMEDSEG_NATIVE=OFF -DMEDSEG_GDCM=OFF \
    -DMEDSEG_BUILD_EXAMPLES=OFF -DMEDSEG_BUILD_TOOLS=ON -DMEDSEG_TEST_FOLDERS="" -DCMAKE_CUDA_ARCHITECTURES="90" \
    -DCMAKE_EXE_LINKER_FLAGS="-static-libstdc++ -static-libgcc" "${launcher[@]}" >/dev/null
  cmake --build build/gpu -j "$(nproc)" --target cuda_tests medseg_tool
  rm -rf "$carry" && mkdir -p "$carry/bundle/bin" "$carry/bundle/lib"
  cp build/gpu/tests/cuda/cuda_tests build/gpu/tools/medseg/medseg "$carry/bundle/bin/"
  strip "$carry"/bundle/bin/*
  # Shared libraries from Debian that the binaries load, less the C library, the driver's and
  # cuDNN/cuBLAS (the GPU machine's own, from PyTorch's wheels).
  for b in "$carry"/bundle/bin/*; do
    ldd "$b" | awk '$3 ~ /^\// {print $3}'
  done | sort -u | grep -vE '/(libc|libm|libdl|librt|libpthread|ld-linux[^/]*|libgcc_s|libstdc\+\+|libcuda|libcudnn[^/]*|libcublas[^/]*)\.so' |
    while read -r lib; do cp -L "$lib" "$carry/bundle/lib/"; done
  tar -C "$carry" -cJf "$carry/bundle.tar.xz" bundle
  rm -rf "$carry/bundle"
  ls -la "$carry"
  ;;
run)
  out=${OUT:-gpu-results}
  mkdir -p "$out"
  work=$(mktemp -d)
  tar -C "$work" -xJf "$carry/bundle.tar.xz"
  bin=$work/bundle/bin
  # cuDNN 9 and cuBLAS 13 from PyTorch's wheels.
  site=$(python3 -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]))' 2>/dev/null || true)
  libs=$work/bundle/lib
  for name in libcudnn.so.9 libcublas.so.13 libcublasLt.so.13; do
    found=$(find "${site:-/nonexistent}" /usr/local/cuda*/lib64 -name "$name" 2>/dev/null | head -1 || true)
    [[ -n "$found" ]] && libs="$libs:$(dirname "$found")"
  done
  export LD_LIBRARY_PATH="$libs:${LD_LIBRARY_PATH:-}"
  export MEDSEG_PEERS_DIR=$PWD/benchmarks/peers MEDSEG_PEER_PYTHON=$(command -v python3) PYTHONUNBUFFERED=1
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
  declare -A status
  step() {  # step NAME LIMIT_S COMMAND...: runs it, logs to $out/NAME.txt, records its exit code
    local name=$1 limit=$2
    shift 2
    echo "== $name"
    set +e
    timeout "$limit" "$@" >"$out/$name.txt" 2>&1
    status[$name]=$?
    set -e
    tail -40 "$out/$name.txt"
  }
  # cuDNN's algorithm for every convolution of one 128^3 DynamicUNet training step, float32 and
  # TF32, with the candidates it offered and their workspace (MEDSEG_CUDNN_VERBOSE), by its
  # heuristics and by the timed search. Session 8 found the step's slow backward this way (a
  # 1 GiB workspace cap); Nsight Compute had failed on one of our kernels there.
  cudnn_choices() {
    local name idx env
    for name in heuristics_fp32:0: timed_fp32:0:MEDSEG_CUDNN_BENCHMARK=1 timed_tf32:2:MEDSEG_CUDNN_BENCHMARK=1; do
      IFS=: read -r name idx env <<<"$name"
      env ${env:+"$env"} MEDSEG_CUDNN_VERBOSE=1 MEDSEG_BENCH_CHILD="$idx:$out/cudnn_$name.result" \
        timeout 60 "$bin/medseg" bench train --device cuda >"$out/cudnn_$name.log" 2>&1
      echo "$name: ms peak hwm cache forward loss backward optimizer = $(cat "$out/cudnn_$name.result" 2>/dev/null)"
    done
  }
  # The op table (tests/backends/ops_test.cpp: every op, small shapes) and the preprocessing,
  # augmentation, loader, norm/pooling/upsampling, point-wise and loss/optimizer tests again
  # under compute-sanitizer's memcheck: out-of-bounds and misaligned device accesses,
  # and CUDA calls that fail silently. Their tensors are small, so the instrumented run stays
  # short (the first four files took about 15 s on an H100). The convolution and model tests are
  # left out: they are mostly cuDNN, and slow under instrumentation. Caching off: every block is
  # then exactly its tensor, so an access just past the end is caught.
  sanitize() {
    local cs
    cs=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1 || true)
    [[ -n "$cs" ]] || { echo "sanitize: compute-sanitizer not found"; return 1; }
    MEDSEG_CUDA_CACHING=0 "$cs" --tool memcheck --error-exitcode 3 "$bin/cuda_tests" -# \
      "[#ops_test],[#augment_test],[#prepare_test],[#preprocess_test],[#loader_test],[#norm_pool_upsample_test],[#pointwise_test],[#loss_optim_test]"
  }
  # Steps to run: the default set, or those named after `run` (e.g. `run cuda_tests bench_train`).
  # The default set's limits add up to 590 s; each step usually ends well before its limit
  # (session 8, H100: about 250 s in all). cudnn_choices runs when named.
  wanted=" ${*:2} "
  [[ "$wanted" == "  " ]] && wanted=" cuda_tests sanitize bench_preprocess bench_train bench_infer "
  want() { [[ "$wanted" == *" $1 "* ]]; }
  want cuda_tests && step cuda_tests 60 "$bin/cuda_tests" --durations yes
  export bin
  export -f sanitize
  want sanitize && step sanitize 120 bash -c sanitize
  want bench_preprocess && step bench_preprocess 150 "$bin/medseg" bench preprocess --device cuda --json
  # cuDNN's algorithms by its heuristics on both sides (MEDSEG_CUDNN_BENCHMARK=1 switches both
  # to the timed search, PyTorch's cudnn.benchmark: slow to warm up at 128^3, where it tries every
  # algorithm of every convolution).
  want bench_train && step bench_train 170 "$bin/medseg" bench train --device cuda --json
  want bench_infer && step bench_infer 90 "$bin/medseg" bench infer --device cuda --json
  export out
  export -f cudnn_choices
  want cudnn_choices && step cudnn_choices 190 bash -c cudnn_choices
  summary="{"
  for k in cuda_tests sanitize bench_preprocess bench_train bench_infer cudnn_choices; do
    want "$k" && summary+="\"$k\": ${status[$k]:-null}, "
  done
  echo "${summary%, }}" | tee "$out/results.json"
  for k in "${!status[@]}"; do [[ ${status[$k]} -eq 0 ]] || exit 1; done
  ;;
*)
  echo "usage: scripts/gpu-check.sh prepare | run [STEP...]" >&2
  exit 2
  ;;
esac
