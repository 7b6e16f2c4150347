#!/usr/bin/env bash
# The newest releases check: a throw-away venv with the newest release of every direct dependency (torch kept at
# the lock's CPU build), then the smoke experiment and the fast tests in it; prints the versions it tried.
# The locked environment (scripts/setup.sh) is what the README's numbers and CI use; this says whether a newcomer
# who installs today's releases instead still gets a working suite.
#   KEEP=1 keeps the venv (.venv-latest) for a look afterwards
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-latest
rm -rf "$venv"
python3 -m venv "$venv"
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$venv" .cache/check-latest' EXIT
. "$venv/bin/activate"
torch=$(grep -E '^torch==' requirements/cpu.txt)
echo "$torch" > "$venv/constraints.txt"
python -m pip install -q ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} "$torch"
# --upgrade-strategy eager: every dependency, direct or not, at its newest release that fits the others
python -m pip install -q --upgrade --upgrade-strategy eager -c "$venv/constraints.txt" -e ".[test,gguf]"
direct=$(python - <<'PY'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]
names = deps["dependencies"] + [d for extra in deps["optional-dependencies"].values() for d in extra]
print(" ".join(re.match(r"[A-Za-z0-9_.-]+", d).group(0) for d in names))
PY
)
echo "check_latest $(date +%F): newest releases tried (direct dependencies):"
for pkg in $direct; do printf '  %s==%s\n' "$pkg" "$(python -c "from importlib.metadata import version; print(version('$pkg'))")"; done
python scripts/check_env.py >/dev/null 2>&1 && echo "  (identical to requirements/cpu.txt)" \
    || echo "  differs from requirements/cpu.txt: $(python scripts/check_env.py 2>&1 | head -1 | cut -d: -f2-)"
export UNLEARNBENCH_UNLOCKED=1 UNLEARNBENCH_CACHE="$PWD/.cache/check-latest"
python run_benchmark.py experiment=smoke output_dir=.cache/check-latest/smoke > /dev/null 2> "$venv/smoke.err" \
    || { tail -n 20 "$venv/smoke.err"; echo "smoke experiment: FAILED"; exit 1; }
echo "smoke experiment: ok"
python -m pytest -q -p no:cacheprovider
python -m pytest -q -p no:cacheprovider -m pipeline          # both tiers, as CI runs them
