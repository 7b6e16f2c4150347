"""Runs survive crashes (kill -9 after the first finished unit, then resume) and a diverging method fails alone."""
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import run_benchmark
from methods import METHODS, method
from methods.common import nll

ROOT = Path(__file__).resolve().parent.parent


def run_cli(args, **kwargs):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "run_benchmark.py", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)


def metrics(path: Path) -> list:
    return [(r["model"], r["status"], r["metrics"]) for r in json.loads((path / "results.json").read_text())["results"]]


@pytest.mark.pipeline
def test_kill_minus_9_then_resume_gives_the_uninterrupted_results(tmp_path):
    uninterrupted = ["experiment=smoke", f"output_dir={tmp_path / 'a'}", f"cache_dir={tmp_path / 'cache_a'}"]
    assert run_cli(uninterrupted).wait(timeout=600) == 0

    crashed = ["experiment=smoke", f"output_dir={tmp_path / 'b'}", f"cache_dir={tmp_path / 'cache_b'}"]
    proc = run_cli(crashed)
    deadline = time.time() + 300
    while not list((tmp_path / "cache_b").rglob("DONE")):
        assert proc.poll() is None, "the run ended before its first unit finished"
        assert time.time() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "b" / "results.json").exists()
    finished = {p.parent for p in (tmp_path / "cache_b").rglob("DONE")}
    assert finished, "no unit survived the kill"

    assert run_cli(crashed).wait(timeout=600) == 0
    assert finished <= {p.parent for p in (tmp_path / "cache_b").rglob("DONE")}   # finished units were kept
    a, b = metrics(tmp_path / "a"), metrics(tmp_path / "b")
    assert [(m, s) for m, s, _ in a] == [(m, s) for m, s, _ in b]
    for (_, _, x), (_, _, y) in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            assert y[key] == pytest.approx(x[key], abs=1e-6), key
    # no temporary leftovers that a later run could mistake for finished units
    assert not [p for p in (tmp_path / "cache_b").rglob("*.tmp") if p.is_dir()]


@dataclass
class ExplodingConfig:
    lr: float = 1e-3


@pytest.mark.pipeline
def test_nan_loss_fails_that_row_only(tmp_path):
    calls = []

    @method("Exploding", ExplodingConfig)
    def exploding(model, batch, ref, cfg):
        calls.append(1)
        loss = nll(model, batch["forget"])
        return (loss * torch.tensor(float("nan")) if len(calls) > 1 else loss), {}
    try:
        payload = run_benchmark.main(["experiment=smoke", "methods=GradAscent,Exploding",
                                      f"output_dir={tmp_path / 'out'}", f"cache_dir={tmp_path / 'cache'}"])
    finally:
        METHODS.pop("Exploding")
    rows = {r["model"]: r for r in payload["results"]}
    assert rows["Exploding"]["status"] == "failed"
    assert "loss became nan at step 2" in rows["Exploding"]["error"]
    assert "lower the learning rate" in rows["Exploding"]["error"]
    assert rows["Exploding"]["cost"]["wall_seconds"] > 0
    for name in ("target", "retain", "GradAscent"):
        assert rows[name]["status"] == "ok" and rows[name]["metrics"]["model_utility"] > 0
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["model"] for r in saved["results"]] == ["target", "retain", "GradAscent", "Exploding"]
    assert "failed: " in (tmp_path / "out" / "leaderboard.md").read_text()
