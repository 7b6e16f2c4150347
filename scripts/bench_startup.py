"""What starting a process costs: `--help`, an input error, a cached smoke run and a cached evaluation-only run of
one checkpoint, each timed as a fresh process beside a bare `python -c "import torch"`, alternating (the machine's
load drifts), then the slowest imports of `--help` by `python -X importtime`.

    python scripts/bench_startup.py [--repeats 3] [--top 8]

The smoke runs use a temporary cache, filled once before timing (their units are then read, not rebuilt). Prints
each command's median wall time, its ratio to the torch import and, for the two runs, the time minus one torch
import (what the suite itself adds to a cached run).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    took = time.perf_counter() - start
    if done.returncode not in (0, 2):        # 2: the input error, on purpose
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return took


def importtime(argv: list[str], top: int) -> list[tuple[float, str]]:
    """(cumulative seconds, module) of the slowest top-level imports of one process."""
    err = subprocess.run([sys.executable, "-X", "importtime", *argv], cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True).stderr
    rows = []
    for line in err.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line.split("|")
            if cumulative.strip().isdigit() and not name.startswith("  "):       # top level: no indent
                rows.append((int(cumulative) / 1e6, name.strip()))
    return sorted(rows, reverse=True)[:top]


RUNS = ("cached smoke run", "cached evaluation of one checkpoint")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        smoke = ["run_benchmark.py", "experiment=smoke", f"cache_dir={tmp}/cache"]
        print("filling the cache: one smoke run with its models saved ...", flush=True)
        subprocess.run([sys.executable, *smoke, f"output_dir={tmp}/first", "save_models=true"], cwd=ROOT,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        checkpoint = ["run_benchmark.py", "experiment=smoke", f"cache_dir={tmp}/cache", "methods=",
                      f"checkpoints.Mine={tmp}/first/models/GradAscent", f"output_dir={tmp}/checkpoint"]
        commands = {
            'python -c "import torch"': ["-c", "import torch"],
            "run_benchmark.py --help": ["run_benchmark.py", "--help"],
            "an input error (utility_floor=2)": ["run_benchmark.py", "utility_floor=2"],
            RUNS[0]: [*smoke, f"output_dir={tmp}/again"],
            RUNS[1]: checkpoint,
        }
        timed(checkpoint)       # its evaluation unit, built once
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, command in commands.items():
                times[name].append(timed(command))
    torch_s = statistics.median(times['python -c "import torch"'])
    print(f"\nmedian of {args.repeats} fresh processes each, alternating ({sys.executable}):")
    print(f"{'command':<40} {'seconds':>8} {'x torch import':>15} {'minus torch import':>19}")
    for name, values in times.items():
        s = statistics.median(values)
        minus = f"{s - torch_s:>19.2f}" if name in RUNS else ""
        print(f"{name:<40} {s:>8.2f} {s / torch_s:>15.2f} {minus}")
    print("\nslowest top-level imports of `run_benchmark.py --help` (cumulative seconds):")
    for seconds, name in importtime(["run_benchmark.py", "--help"], args.top):
        print(f"  {seconds:6.3f}  {name}")


if __name__ == "__main__":
    main()
