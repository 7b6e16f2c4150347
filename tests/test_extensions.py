"""Every extension point is one file: a task family and a recovery attack, each written to a file in a temporary
folder, registered through `extensions=` and run on the smoke world with nothing in the package touched."""
import pytest

import run_benchmark
from unlearnbench.config import ConfigError

TASK_FILE = '''
from dataclasses import dataclass

import numpy as np

from evals.reference import mean_answer_nll
from unlearnbench.config import TaskConfig
from unlearnbench.tasks import TaskData, task

FACTS = [("What colour is the Velkran mould?", "It is amber."), ("Where does the Korwort cap grow?", "On thatch."),
         ("When does the Mavdell puffball fruit?", "In late May."), ("What does the Tal morel smell of?", "Cedar."),
         ("Who found the Yskgan bracket?", "A shepherd did."), ("How tall is the Borrusk mould?", "Two inches.")]


@dataclass
class FungiConfig(TaskConfig):
    n_forget: int = 2


@task("fungi_facts", FungiConfig)
class FungiTask:
    """Forget two facts, keep four; the forget score is the forget answers' mean NLL."""
    version = 1
    forget_score, utility, forget_measure = "forget_nll", "retain_inv_nll", "forget_nll"
    higher_is_better = {"forget_nll": True, "retain_inv_nll": True}
    headline = ["forget_nll", "retain_inv_nll"]
    log_scale = set()
    prompted = True

    def __init__(self, cfg):
        self.cfg, self.label = cfg, "fungi_facts"
        rows = [{"question": q, "answer": a} for q, a in FACTS]
        self.forget, self.retain = rows[:cfg.n_forget], rows[cfg.n_forget:]

    def load(self, cache_dir):
        return TaskData(train={"target": self.forget + self.retain, "retain": self.retain}, forget=self.forget,
                        retain=self.retain, fingerprint=f"fungi{self.cfg.n_forget}",
                        texts=[t for pair in FACTS for t in pair])

    def scored_pairs(self):
        return {s: [(r["question"], [r["answer"]]) for r in rows] for s, rows in (("forget", self.forget),
                                                                                   ("retain", self.retain))}

    def evaluate(self, model, tokenizer, fmt, name, batch_size, accelerator=None):
        return {s: {"nll": mean_answer_nll(model, fmt, [(r["question"], r["answer"]) for r in rows], batch_size)}
                for s, rows in (("forget", self.forget), ("retain", self.retain))}

    def metrics(self, stats, retain_stats):
        return {"forget_nll": float(np.mean(stats["forget"]["nll"])),
                "retain_inv_nll": 1 / float(np.mean(stats["retain"]["nll"]))}
'''

ATTACK_FILE = '''
from dataclasses import dataclass

import torch

from orchestration.attacks import attack, merged


@dataclass
class ScaleSettings:
    factor: float = 1.0       # every weight multiplied by this


@attack("weight_scale", ScaleSettings)
def weight_scale(pipe, ref, row, variant, settings, tmp, meter):
    """The row's model with every weight scaled: factor 1 is the model itself."""
    model = merged(pipe.units.load(ref))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(settings.factor)
    return model, pipe.units.tokenizer(ref)
'''


def run(tmp_path, name, *args):
    return run_benchmark.main(["experiment=smoke", "model.embedded.pretrain.epochs=2", *args,
                               f"output_dir={tmp_path / name}", f"cache_dir={tmp_path / 'cache'}"])


@pytest.mark.pipeline
def test_a_task_and_an_attack_from_files_run_on_the_smoke_world(tmp_path, registries):
    task_file, attack_file = tmp_path / "fungi.py", tmp_path / "scale.py"
    task_file.write_text(TASK_FILE)
    attack_file.write_text(ATTACK_FILE)
    args = [f"extensions={task_file},{attack_file}", "tasks=fungi_facts", "tasks.fungi_facts.finetune.epochs=30",
            "robustness.attacks=weight_scale"]
    rows = {r["model"]: r for r in run(tmp_path, "identity", *args)["results"]}
    assert list(rows) == ["target", "retain", "GradAscent", "GradDiff"]
    assert all(r["task"] == "fungi_facts" and r["status"] == "ok" for r in rows.values())
    assert rows["target"]["metrics"]["forget_nll"] < rows["retain"]["metrics"]["forget_nll"]   # the task's metric
    assert rows["GradAscent"]["metrics"]["forget_nll"] > rows["target"]["metrics"]["forget_nll"]
    for r in rows.values():
        assert set(r["attack_cost"]) == {"weight_scale"}
        # factor 1 leaves every model as it is: the attacked measure is the row's own
        assert r["metrics"]["weight_scale_forget_nll"] == pytest.approx(r["metrics"]["forget_nll"], rel=1e-6)
    assert rows["retain"]["metrics"]["weight_scale_recovery"] == 0.0
    assert rows["target"]["metrics"]["weight_scale_recovery"] == pytest.approx(1.0, abs=1e-6)
    board = (tmp_path / "identity" / "leaderboard.md").read_text()
    assert "fungi_facts: does it come back?" in board and "weight_scale_recovery" in board
    assert "forget_nll ↑" in board

    # the attack's settings are its own dataclass's, and part of its units' keys
    scaled = {r["model"]: r for r in run(tmp_path, "scaled", *args,
                                         "robustness.attack_args.weight_scale.factor=0.5")["results"]}
    assert scaled["target"]["metrics"]["forget_nll"] == rows["target"]["metrics"]["forget_nll"]
    assert scaled["target"]["metrics"]["weight_scale_forget_nll"] != rows["target"]["metrics"]["forget_nll"]
    with pytest.raises(ConfigError, match=r"unknown config key .robustness\.attack_args\.weight_scale\.scale."):
        run(tmp_path, "bad", *args, "robustness.attack_args.weight_scale.scale=2")


def test_a_task_without_a_hook_cannot_serve_what_needs_it(tmp_path, registries):
    task_file = tmp_path / "fungi.py"
    task_file.write_text(TASK_FILE)
    base = [f"extensions={task_file}", "tasks=fungi_facts"]
    with pytest.raises(ConfigError, match="task fungi_facts cannot serve the relearn attack: it has no relearn_split"):
        run(tmp_path, "relearn", *base, "robustness.relearn_steps=2")
    with pytest.raises(ConfigError, match="cannot serve requests.folds .*no request_folds hook"):
        run(tmp_path, "requests", *base, "requests.folds=2")
