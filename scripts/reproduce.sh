#!/usr/bin/env bash
# Rerun everything the README's checked tables show, from an empty cache, and check them all (about 3.8 hours on
# a 2-core CPU): the tuning protocol (its choice must equal the committed configs/tuned/default.yaml), the
# default, wmdp, all_methods_lora, requests, requests_wmdp, guarantees, guarantees_wmdp and muse experiments. CI
# (.ci/run) reruns the default and wmdp experiments only.
#   bash scripts/reproduce.sh            # its cache is .cache/reproduce, emptied first
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .venv ] || bash scripts/setup.sh
. .venv/bin/activate
export UNLEARNBENCH_CACHE="$PWD/.cache/reproduce"   # its own folder, never the user's cache
rm -rf "$UNLEARNBENCH_CACHE"
python tune.py experiment=tune_default > /dev/null
git diff --exit-code configs/tuned/default.yaml  # the protocol regenerates the default experiment's settings
python run_benchmark.py > /dev/null
python run_benchmark.py experiment=wmdp > /dev/null
python run_benchmark.py experiment=all_methods_lora > /dev/null
python run_benchmark.py experiment=requests > /dev/null
python run_benchmark.py experiment=requests_wmdp > /dev/null
python run_benchmark.py experiment=guarantees > /dev/null
python run_benchmark.py experiment=guarantees_wmdp > /dev/null
python run_benchmark.py experiment=muse > /dev/null
python scripts/readme_tables.py --check
