#!/usr/bin/env bash
# Installs medseg's build and test dependencies from Debian's archive.
# Idempotent and quiet: when every package is present it prints nothing and touches nothing.
# Usage: scripts/setup.sh [--python] [--demo]   (--python adds the packages the parity tests
# and benchmarks use as peers: python3-torch, python3-scipy, python3-nibabel; --demo adds the
# real MRI the demo trains on: mricron-data's Colin27 template)
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libeigen3-dev xtensor-dev libxsimd-dev nlohmann-json3-dev catch2
  libdnnl-dev libdeflate-dev zlib1g-dev libpng-dev
  libgdcm-dev                      # optional medseg::dicom_codecs: JPEG/JPEG-LS/JPEG 2000 DICOM
  clang libclang-rt-14-dev         # libFuzzer and the sanitizer runtimes
)
for flag in "$@"; do
  case "$flag" in
    --python) with_python=1 ;;
    --demo) packages+=(mricron-data) ;;  # /usr/share/mricron/templates/ch2.nii.gz, ch2bet.nii.gz
    *) echo "setup: unknown option $flag (expected --python or --demo)" >&2; exit 2 ;;
  esac
done
if [[ -n "${with_python:-}" ]]; then
  packages+=(python3-numpy python3-scipy python3-nibabel python3-torch
             insighttoolkit5-examples  # ITK's MetaImage example files: tests/io golden data
             python3-pydicom           # DICOM test files and their golden values: tests/io
             python3-gdcm              # pydicom's decoder for the compressed ones (the same GDCM)
            )
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]} == 0)) && exit 0

echo "setup: installing ${missing[*]}"
SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
