#!/usr/bin/env bash
# Creates .venv with exactly the locked environment (requirements/cpu.txt, every package pinned), then installs
# this package without letting pip resolve anything else, and checks that what is installed equals the lock.
#   LOCK=requirements/gpu.txt   the CUDA build of torch (a GPU node)
#   TORCH_INDEX=<url>           where the lock's torch build is found, if not on the default index (e.g. the
#                               PyTorch CPU index for torch==2.13.0+cpu on a machine that has not got it)
# Regenerate the locks with scripts/lock.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
lock="${LOCK:-requirements/cpu.txt}"
python3 -m venv .venv
. .venv/bin/activate
# --no-deps: the lock is the whole environment; pip installs what it names and resolves nothing of its own
python -m pip install -q --no-deps ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} -r "$lock"
python -m pip install -q --no-deps -e .
python scripts/check_env.py "$lock"
