"""How much the CPU's floating-point paths move the numbers: one experiment (default: smoke) run from an empty cache
under each ATen CPU capability this machine supports (torch's vectorised kernels: default = none, avx2, avx512),
at 1 and 2 threads, and with MKL's conditional numerical reproducibility (MKL_CBWR) pinned; prints the largest
metric difference from the first setting, per setting.

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

SETTINGS = {
    "baseline (2 threads)": {},
    "1 thread": {"threads": "1"},
    "ATEN_CPU_CAPABILITY=default": {"ATEN_CPU_CAPABILITY": "default"},
    "ATEN_CPU_CAPABILITY=avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "ATEN_CPU_CAPABILITY=avx512": {"ATEN_CPU_CAPABILITY": "avx512"},
    "MKL_CBWR=AVX2": {"MKL_CBWR": "AVX2"},
    "MKL_CBWR=AVX2 + ATEN avx2": {"MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
    "MKL_CBWR=AVX2 + ATEN avx2, 1 thread": {"MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "threads": "1"},
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
    overrides = overrides or ["experiment=smoke"]
    have = supported()
    names = [n for n in args.settings if SETTINGS[n].get("ATEN_CPU_CAPABILITY", "default") in have]
    print(f"{' '.join(overrides)}; this CPU supports ATEN_CPU_CAPABILITY {sorted(have)}")
    with tempfile.TemporaryDirectory() as tmp:
        base, base_seconds = run(names[0], SETTINGS[names[0]], overrides, Path(tmp))
        print(f"{names[0]:<40} {base_seconds:6.1f} s  (the reference)")
        for name in names[1:]:
            got, seconds = run(name, SETTINGS[name], overrides, Path(tmp))
            diffs = {key: abs(got[key] - v) for key, v in base.items() if key in got}
            worst = max(diffs, key=diffs.get)
            print(f"{name:<40} {seconds:6.1f} s  largest metric difference {diffs[worst]:.3g} "
                  f"({worst[1]} {worst[2]}); {sum(d > 0 for d in diffs.values())} of {len(diffs)} metrics differ")


if __name__ == "__main__":
    main()
