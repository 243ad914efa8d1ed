#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz/ with clang (AddressSanitizer and
# UndefinedBehaviorSanitizer) and runs each for a fixed time from a seed corpus of valid
# files. A crash, leak, sanitizer report or an exception other than medseg::Error fails.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET (default 15)] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-15}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(nifti npy metaimage gzip dicom nnunet_json)
out=build/fuzz
mkdir -p "$out"
cxx=$(command -v clang++ || command -v clang++-14)
/usr/bin/python3 tests/fuzz/make_seeds.py "$out/seeds"
for t in "${targets[@]}"; do
  "$cxx" -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Iinclude -isystem /usr/include/eigen3 "tests/fuzz/${t}_fuzz.cpp" -o "$out/${t}_fuzz" -ldeflate -lz -lpthread
  mkdir -p "$out/corpus/$t"
  echo "== fuzz $t for ${seconds}s"
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 "$out/${t}_fuzz" -max_total_time="$seconds" -rss_limit_mb=2048 \
    -malloc_limit_mb=1024 -timeout=10 -print_final_stats=1 -artifact_prefix="$out/${t}-" \
    "$out/corpus/$t" "$out/seeds/$t" 2>&1 | tail -n 12
done
echo "fuzz: all targets ran without findings"
