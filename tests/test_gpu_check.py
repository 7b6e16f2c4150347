"""scripts/gpu_check.py's dry run: every step of the prepared GPU check, on the CPU at tiny size."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.pipeline
def test_gpu_check_dry_run_runs_every_step(tmp_path, smoke_root):
    out = tmp_path / "gpu_check.json"
    done = subprocess.run([sys.executable, "scripts/gpu_check.py", "--dry-run", f"--out={out}",
                           f"--cache-dir={smoke_root / 'cache'}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    report = json.loads(out.read_text())
    steps = {s["step"]: s for s in report["steps"]}
    assert done.returncode == 0, {k: (s["status"], s.get("output_tail", "")[-800:]) for k, s in steps.items()}
    assert list(steps) == ["device", "gpu tests", "smoke", "default", "bench_eval"]
    assert all(s["status"] == "ok" for s in steps.values())
    assert steps["device"]["device"]["cuda_available"] is False and steps["device"]["device"]["environment"]["lock"]
    for name in ("smoke", "default"):
        rows = steps[name]["rows"]
        assert {"target", "retain", "GradDiff"} <= set(rows) and steps[name]["peak_memory_mib"] > 0
        assert all(r["device"] == "cpu" for r in rows.values() if r["device"])
    assert "x floor" in steps["bench_eval"]["output_tail"]
    assert "skipped" in steps["gpu tests"]["output_tail"]          # no CUDA here: the GPU tests skip
