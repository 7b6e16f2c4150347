"""The portable numerics mode (unlearnbench/numerics.py: MKL's COMPATIBLE branch, which MKL documents as giving
the same results on Intel and non-Intel CPUs): the smoke experiment's metrics under it, pinned to the values a
2-core AMD EPYC (AVX-512, kernels pinned to AVX2) computed (2026-12-07, the locked environment, the mode's one
thread). Run on another CPU, an Intel one above all, this test says whether the two vendors agree in this mode: a
failure there is that finding, with the metrics that moved (docs/numerics.md), not a flaky test."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# row -> metric -> value, as computed on the AMD EPYC (repr: every bit)
PINNED = {
    "target": {"forget_quality": 0.474025974025974, "model_utility": 0.19187397542093831,
               "forget_prob": 0.07541959753522848, "forget_truth_ratio": 0.43716900054460534},
    "retain": {"forget_quality": 1.0, "model_utility": 0.18230161781631557, "forget_prob": 0.013363291906985222,
               "forget_truth_ratio": 0.65968188851152},
    "GradAscent": {"forget_quality": 0.474025974025974, "model_utility": 0.1432184152781833,
                   "forget_prob": 0.026396402843362986, "forget_truth_ratio": 0.5215286136170664},
    "GradDiff": {"forget_quality": 0.474025974025974, "model_utility": 0.07663318283382538,
                 "forget_prob": 0.03714353834845294, "forget_truth_ratio": 0.48498494224636907}}
DIGEST = "c48e12e54ba1263f"          # of every metric of every row (json, sorted keys)


def digest(metrics: dict) -> str:
    return hashlib.sha256(json.dumps(metrics, sort_keys=True).encode()).hexdigest()[:16]


@pytest.mark.pipeline
def test_the_smoke_experiment_under_the_portable_mode(tmp_path):
    env = {**os.environ, "UNLEARNBENCH_NUMERICS": "portable"}
    subprocess.run([sys.executable, "run_benchmark.py", "experiment=smoke", f"output_dir={tmp_path / 'out'}",
                    f"cache_dir={tmp_path / 'cache'}"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    numerics = results["runtime"]["numerics"]
    assert numerics["mode"] == "portable" and numerics["pinned"]["MKL_CBWR"] == "COMPATIBLE,STRICT"
    assert results["runtime"]["torch_threads"] == 1      # the mode's one thread
    metrics = {r["model"]: r["metrics"] for r in results["results"]}
    moved = {f"{row} {k}": (v, metrics[row][k]) for row, values in PINNED.items() for k, v in values.items()
             if metrics[row][k] != v}
    assert not moved, f"on {numerics['cpu']}: (pinned, computed here) {moved}"
    assert digest(metrics) == DIGEST, f"on {numerics['cpu']}: other metrics than the pinned ones moved"
