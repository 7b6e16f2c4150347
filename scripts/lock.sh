#!/usr/bin/env bash
# Regenerates the locks from pyproject.toml with pip-tools' pip-compile, in a throw-away venv:
#   requirements/cpu.txt  every package, torch's CPU build (requirements/cpu.in pins it)
#   requirements/gpu.txt  the same versions with PyPI's default (CUDA) torch and what it brings
# TORCH_INDEX=<url> adds an index that holds the CPU build (e.g. the PyTorch CPU index) where pip's own
# configuration does not find it. Then run scripts/setup.sh and the tests, and commit both files.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q pip-tools==7.6.2
compile=("$tmp/venv/bin/pip-compile" -q --allow-unsafe --strip-extras --no-emit-find-links --no-emit-index-url
         --extra test --extra gguf)
"${compile[@]}" ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} -o requirements/cpu.txt pyproject.toml \
    requirements/cpu.in
# the GPU lock keeps every CPU pin, torch without its local "+cpu" label; pip's configuration is left out so
# that a local folder of CPU wheels cannot supply torch
sed -E 's/^(torch==[^+]+)\+cpu$/\1/' requirements/cpu.txt > "$tmp/same-versions.txt"
printf -- '-c %s\ntorch==%s\n' "$tmp/same-versions.txt" "$(sed -nE 's/^torch==([^+]+).*/\1/p' requirements/cpu.txt)" \
    > "$tmp/gpu.in"
env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null "${compile[@]}" -o requirements/gpu.txt pyproject.toml "$tmp/gpu.in"
sed -i "s#$tmp/same-versions.txt#cpu.txt's versions#g; s#$tmp/gpu.in#<the CPU lock's torch>#g" requirements/gpu.txt
echo "wrote requirements/cpu.txt and requirements/gpu.txt"
