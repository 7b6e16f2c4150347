"""How much the CPU's floating-point paths move the numbers: one experiment (default: smoke) run from an empty cache
under each ATen CPU capability this machine supports (torch's vectorised kernels: default = none, avx2, avx512),
at 1 and 2 threads, and with MKL's conditional numerical reproducibility (MKL_CBWR), in the native mode (each
CPU's own kernels), the reproducible mode (unlearnbench/numerics.py, the default) and the portable mode (MKL's
branch for every CPU vendor); prints, per setting, the largest metric difference from the first setting of its
mode, and the time, and each mode's first setting against the reproducible one's (time ratio, differences).

    python scripts/check_numerics.py [--settings NAME ...] [key=value ...]

Each setting runs in its own process (the variables are read when torch loads). Different numbers under these
settings on one machine are what another CPU would give: the same code and versions, other kernels.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

NATIVE = {"UNLEARNBENCH_NUMERICS": "native"}
PORTABLE = {"UNLEARNBENCH_NUMERICS": "portable", "threads": "1"}        # the mode computes on one thread
# Native: each setting is what another CPU would pick. Reproducible (the default mode, unlearnbench/numerics.py):
# the same settings must then give the same numbers, since the mode pins the kernels whatever the machine picks.
SETTINGS = {
    "native, 2 threads": NATIVE,
    "native, 1 thread": {**NATIVE, "threads": "1"},
    "native, ATEN_CPU_CAPABILITY=default": {**NATIVE, "ATEN_CPU_CAPABILITY": "default"},
    "native, ATEN_CPU_CAPABILITY=avx2": {**NATIVE, "ATEN_CPU_CAPABILITY": "avx2"},
    "native, ATEN_CPU_CAPABILITY=avx512": {**NATIVE, "ATEN_CPU_CAPABILITY": "avx512"},
    "native, MKL_CBWR=AVX2": {**NATIVE, "MKL_CBWR": "AVX2"},
    "reproducible, 2 threads": {},
    "reproducible, 1 thread": {"threads": "1"},
    "reproducible, ATEN_CPU_CAPABILITY=default": {"ATEN_CPU_CAPABILITY": "default"},
    "reproducible, ATEN_CPU_CAPABILITY=avx512": {"ATEN_CPU_CAPABILITY": "avx512"},
    "reproducible, ATEN_CPU_CAPABILITY=avx512, 1 thread": {"ATEN_CPU_CAPABILITY": "avx512", "threads": "1"},
    # portable: MKL's COMPATIBLE branch, documented to give the same results on Intel and non-Intel CPUs
    "portable, 1 thread": PORTABLE,
    "portable, ATEN_CPU_CAPABILITY=avx512": {**PORTABLE, "ATEN_CPU_CAPABILITY": "avx512"},
}


def supported() -> set[str]:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return {"default"} | ({"avx2"} if " avx2" in flags else set()) | ({"avx512"} if " avx512f" in flags else set())


def run(name: str, setting: dict, overrides: list[str], work: Path) -> tuple[dict, float]:
    env = {**os.environ, **{k: v for k, v in setting.items() if k != "threads"}}
    out = work / name.replace(" ", "_").replace("=", "-").replace(",", "").replace("+", "")
    start = time.perf_counter()
    subprocess.run([sys.executable, "run_benchmark.py", *overrides, f"threads={setting.get('threads', 2)}",
                    f"output_dir={out}", f"cache_dir={out / 'cache'}"], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = json.loads((out / "results.json").read_text())["results"]
    return ({(r["task"], r["model"], k): v for r in results for k, v in r["metrics"].items()
             if isinstance(v, (int, float))}, time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), help="which settings (names above)")
    args, overrides = parser.parse_known_args()
    # key=value overrides given after --settings land in its list: whatever is no setting's name is an override
    overrides += [a for a in args.settings if a not in SETTINGS]
    args.settings = [a for a in args.settings if a in SETTINGS]
    unknown = [a for a in overrides if "=" not in a]
    if unknown:
        parser.error(f"unknown setting(s) {unknown}; choose from {list(SETTINGS)}")
    overrides = overrides or ["experiment=smoke"]
    have = supported()
    names = [n for n in args.settings if SETTINGS[n].get("ATEN_CPU_CAPABILITY", "default") in have]
    print(f"{' '.join(overrides)}; this CPU supports ATEN_CPU_CAPABILITY {sorted(have)}")
    print("each setting against the first of its mode (native: what this CPU picks itself; reproducible and "
          "portable: the mode must give the same numbers whatever is set)")
    references: dict[str, tuple[dict, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            group = name.split(",")[0]
            got, seconds = run(name, SETTINGS[name], overrides, Path(tmp))
            if group not in references:
                references[group] = (got, seconds)
                print(f"{name:<52} {seconds:6.1f} s  (the {group} reference)")
                continue
            print(f"{name:<52} {seconds:6.1f} s  {compare(references[group][0], got)}")
        base = "reproducible"
        for group, (got, seconds) in references.items() if base in references else ():
            if group != base:
                print(f"{group + ' against reproducible (its first setting)':<52} {seconds / references[base][1]:6.2f} "
                      f"x time  {compare(references[base][0], got)}")


def compare(reference: dict, got: dict) -> str:
    diffs = {key: abs(got[key] - v) for key, v in reference.items() if key in got}
    worst = max(diffs, key=lambda key: diffs[key])
    return (f"largest metric difference {diffs[worst]:.3g} ({worst[1]} {worst[2]}); "
            f"{sum(d > 0 for d in diffs.values())} of {len(diffs)} metrics differ")


if __name__ == "__main__":
    main()
