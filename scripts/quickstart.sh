#!/usr/bin/env bash
# The main job on the embedded default (sim provider), from a fresh machine: install, then the four commands.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export L4STB_WORKDIR=${L4STB_WORKDIR:-$PWD/l4stb-work}
l4stb up
l4stb run --scenario dctcp-8mbps
l4stb fetch-logs
l4stb train-and-report
