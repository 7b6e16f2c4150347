#!/usr/bin/env bash
# Creates .venv and installs unlearnbench into it: the CPU build of torch first, then the package and its deps.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
# torch first, so that the package's torch>=2.4 is already met and pip pulls no multi-GB CUDA build on a CPU
# machine. TORCH_SPEC chooses another build (e.g. TORCH_SPEC=torch on a GPU node).
python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
python -m pip install -q -e ".[test]"
