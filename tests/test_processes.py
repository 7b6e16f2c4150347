"""Numbers do not depend on how many processes ran them: the smoke experiment on 2 CPU processes (gloo, through
`accelerate launch`) and on 1 gives the same metrics, and every training unit saw the same example sequence. With
privacy populations, the 2 processes share the members out (each trains its own alone) instead of training each
member data-parallel.

Tolerance 1e-4 on every metric: with 2 processes an update's gradient is the average of two micro-batch gradients
computed in separate processes and summed by all-reduce, instead of accumulated in one process, so the float32
sums run in another order; those ulp-level differences are carried through every later step of training."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import run_benchmark

ROOT = Path(__file__).resolve().parent.parent
# an update is 2 micro-batches, shared by the processes (grad_accum must be a multiple of the process count)
ARGS = ["experiment=smoke", "model.embedded.pretrain.grad_accum=2", "task.finetune.grad_accum=2",
        "unlearn.grad_accum=2", "privacy.population=4", "privacy.shadow_models=2"]
MAIN_UNITS = 5          # pretraining, target, retain, GradAscent, GradDiff: data-parallel over the processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_logs(cache: Path) -> dict[str, dict]:
    """Every training unit's log, by unit folder (the same cache keys whatever the process count)."""
    logs = {}
    for done in cache.rglob("DONE"):
        unit = done.parent
        for name in ("cost.json", "unit.json"):
            if (unit / name).is_file():
                log = json.loads((unit / name).read_text()).get("train_log")
                if isinstance(log, dict) and "examples" in log:
                    logs[str(unit.relative_to(cache))] = log
    return logs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("procs")
    one = run_benchmark.main([*ARGS, f"output_dir={root / 'one'}", f"cache_dir={root / 'cache1'}"])
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), "run_benchmark.py", *ARGS,
           f"output_dir={root / 'two'}", f"cache_dir={root / 'cache2'}"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads((root / "two" / "results.json").read_text())
    return root, one, two


@pytest.mark.pipeline
def test_two_processes_really_ran(runs):
    _, one, two = runs
    assert one["runtime"]["processes"] == 1 and two["runtime"]["processes"] == 2


@pytest.mark.pipeline
def test_same_metrics_with_one_and_two_processes(runs):
    _, one, two = runs
    rows1 = {r["model"]: r["metrics"] for r in one["results"]}
    rows2 = {r["model"]: r["metrics"] for r in two["results"]}
    assert list(rows1) == list(rows2) == ["target", "retain", "GradAscent", "GradDiff"]
    for model, metrics in rows1.items():
        assert metrics.keys() == rows2[model].keys()
        for key, value in metrics.items():
            assert abs(value - rows2[model][key]) <= 1e-4, (model, key, value, rows2[model][key])


@pytest.mark.pipeline
def test_same_training_examples_with_one_and_two_processes(runs):
    root, _, _ = runs
    one, two = train_logs(root / "cache1"), train_logs(root / "cache2")
    # and 2 shadow models, 4 members of each population: retain, independent retain, target, GradAscent, GradDiff
    assert len(one) == MAIN_UNITS + 2 + 4 * 5
    assert one.keys() == two.keys()
    assert sum(log["processes"] == 2 for log in two.values()) == MAIN_UNITS     # the rest: one process each
    for unit, log in one.items():
        assert log["processes"] == 1 and two[unit]["processes"] in (1, 2)
        assert log["examples"] == two[unit]["examples"], unit
        assert log["micro_batches"] == two[unit]["micro_batches"] and log["updates"] == two[unit]["updates"]


def test_grad_accum_must_be_shared_among_the_processes():
    """An update whose micro-batches cannot be shared equally among the processes is refused, with the fix."""
    from types import SimpleNamespace

    from methods.trainer import Run, train
    from unlearnbench.config import TrainConfig
    accelerator = SimpleNamespace(num_processes=2, process_index=0)
    with pytest.raises(ValueError, match="grad_accum=1 is not a multiple of the 2 processes.*set grad_accum to 2"):
        train(None, {"main": [{}]}, None, Run(TrainConfig(grad_accum=1), 1e-3, 0), accelerator, 0)
