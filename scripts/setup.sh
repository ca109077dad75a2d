#!/usr/bin/env bash
# Installs every Debian package moe.cpp's build and tests need.
# Idempotent and non-interactive; run as root (or with sudo available).
#   scripts/setup.sh           install what is missing
#   scripts/setup.sh --check   exit 0 if everything is installed, 1 if not
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libcli11-dev doctest-dev nlohmann-json3-dev libpcre2-dev
  libsentencepiece-dev libedit-dev
  python3  # scripts/bench-vs-llamacpp.sh and scripts/make-*-reference.sh read JSON with it
  clang libclang-rt-14-dev  # libFuzzer targets only (scripts/fuzz.sh); Debian 12's clang is 14
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [[ "${1:-}" == "--check" ]]; then
  if ((${#missing[@]})); then echo "missing packages: ${missing[*]}"; exit 1; fi
  exit 0
fi

if ((${#missing[@]} == 0)); then
  echo "setup: all packages present"
else
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  echo "setup: installed ${missing[*]}"
fi

if [[ ! -x /usr/local/cuda/bin/nvcc ]] && ! command -v nvcc >/dev/null; then
  echo "setup: note: nvcc not found; the CUDA backend will not be built (the CPU build is complete)"
fi
