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
# spend the device time of the rest; the default steps' limits add up to about 9 minutes.
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
  profile_train() {
    local ncu
    ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1 || true)
    [[ -n "$ncu" ]] || { echo "profile_train: ncu not found"; return 1; }
    # The first 1500 kernels: the first case (DynamicUNet fp32) through its warm-up steps.
    timeout 80 "$ncu" --target-processes all --launch-count 1500 --metrics gpu__time_duration.sum --csv --page raw \
      "$bin/medseg" bench train --device cuda --quick >"$out/profile_train.csv" 2>"$out/profile_train.err" || true
    python3 - "$out/profile_train.csv" <<'PY'
import csv, collections, sys
rows = [l for l in open(sys.argv[1]) if l.startswith('"')]
total, count = collections.Counter(), collections.Counter()
for r in csv.DictReader(rows):
    try: t = float(r["gpu__time_duration.sum"].replace(",", ""))
    except (KeyError, ValueError): continue
    name = r.get("Kernel Name", "?")[:90]
    total[name] += t; count[name] += 1
s = sum(total.values())
print(f"{sum(count.values())} kernels, {s / 1e6:.1f} ms of kernel time in all (ns units from ncu)")
for name, t in total.most_common(40):
    print(f"{t / 1e6:9.2f} ms {100 * t / max(s, 1):5.1f}% x{count[name]:<5} {name}")
PY
  }
  # The preprocessing, augmentation and loader tests again under compute-sanitizer's memcheck:
  # out-of-bounds and misaligned device accesses, and CUDA calls that fail silently. Their
  # volumes are small, so the instrumented run stays short. Caching off: every block is then
  # exactly its tensor, so an access just past the end is caught.
  sanitize() {
    local cs
    cs=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1 || true)
    [[ -n "$cs" ]] || { echo "sanitize: compute-sanitizer not found"; return 1; }
    MEDSEG_CUDA_CACHING=0 "$cs" --tool memcheck --error-exitcode 3 "$bin/cuda_tests" -# \
      "[#augment_test],[#prepare_test],[#preprocess_test],[#loader_test]"
  }
  # Steps to run: the default set, or those named after `run` (e.g. `run cuda_tests bench_train`).
  # The default set's limits add up to 555 s; each step usually ends well before its limit.
  # profile_train runs when named.
  wanted=" ${*:2} "
  [[ "$wanted" == "  " ]] && wanted=" cuda_tests sanitize bench_preprocess bench_train bench_infer "
  want() { [[ "$wanted" == *" $1 "* ]]; }
  want cuda_tests && step cuda_tests 60 "$bin/cuda_tests" --durations yes
  export bin
  export -f sanitize
  want sanitize && step sanitize 90 bash -c sanitize
  want bench_preprocess && step bench_preprocess 150 "$bin/medseg" bench preprocess --device cuda --json
  # cuDNN's algorithms by its heuristics on both sides (MEDSEG_CUDNN_BENCHMARK=1 switches both
  # to the timed search, PyTorch's cudnn.benchmark: slow to warm up at 128^3, where it tries every
  # algorithm of every convolution).
  want bench_train && step bench_train 200 "$bin/medseg" bench train --device cuda --json
  want bench_infer && step bench_infer 55 "$bin/medseg" bench infer --device cuda --json
  # Where a training step's GPU time goes, kernel by kernel: Nsight Compute times each kernel of
  # the quick (64^3) DynamicUNet training case, and the summary adds them up by kernel name. Kernel times
  # only: host gaps show as the difference to bench_train's phase times.
  export out
  export -f profile_train
  want profile_train && step profile_train 100 bash -c profile_train
  summary="{"
  for k in cuda_tests sanitize bench_train bench_infer bench_preprocess profile_train; do
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
