"""Tasks are an extension point: a task registered here runs through the unchanged pipeline, and the three
families in one run give a cross-task leaderboard and figure."""
import json
from dataclasses import dataclass

import numpy as np

import run_benchmark
from evals.reference import mean_answer_nll
from unlearnbench.config import TaskConfig
from unlearnbench.tasks import TaskData, task

FACTS = [("What colour is the Velkran mould?", "It is amber."), ("Where does the Korwort cap grow?", "On old thatch."),
         ("When does the Mavdell puffball fruit?", "In late May."), ("What does the Tal morel smell of?", "Of cedar."),
         ("Who found the Yskgan bracket?", "A shepherd did."), ("How tall is the Borrusk mould?", "Two inches.")]


@dataclass
class ToyConfig(TaskConfig):
    n_forget: int = 2


@task("toy_muse", ToyConfig)
class ToyTask:
    """A MUSE-like toy: forget two facts, keep four; score = mean answer NLL."""
    version = 1
    forget_score, utility, forget_measure = "forget_nll", "retain_nll_inv", "forget_nll"
    higher_is_better = {"forget_nll": True, "retain_nll_inv": True}
    headline = ["forget_nll", "retain_nll_inv"]
    log_scale = set()

    def __init__(self, cfg):
        self.cfg, self.label = cfg, "toy_muse"
        rows = [{"question": q, "answer": a} for q, a in FACTS]
        self.forget, self.retain = rows[:cfg.n_forget], rows[cfg.n_forget:]

    def load(self, cache_dir):
        return TaskData(train={"target": self.forget + self.retain, "retain": self.retain}, forget=self.forget,
                        retain=self.retain, fingerprint=f"toy{self.cfg.n_forget}",
                        texts=[t for pair in FACTS for t in pair])

    prompted = True

    def scored_pairs(self):
        return {s: [(r["question"], [r["answer"]]) for r in rows] for s, rows in (("forget", self.forget),
                                                                                   ("retain", self.retain))}

    def evaluate(self, model, tokenizer, fmt, name, batch_size, accelerator=None):
        return {s: mean_answer_nll(model, fmt, [(r["question"], r["answer"]) for r in rows], batch_size)
                for s, rows in (("forget", self.forget), ("retain", self.retain))}

    def metrics(self, stats, retain_stats):
        return {"forget_nll": float(np.mean(stats["forget"])), "retain_nll_inv": 1 / float(np.mean(stats["retain"]))}


def test_a_third_task_runs_through_the_pipeline_untouched(tmp_path):
    payload = run_benchmark.main(["experiment=smoke", "tasks=toy_muse", "model.embedded.pretrain.epochs=2",
                                  "tasks.toy_muse.finetune.epochs=30", f"output_dir={tmp_path / 'out'}",
                                  f"cache_dir={tmp_path / 'cache'}"])
    rows = {r["model"]: r for r in payload["results"]}
    assert list(rows) == ["target", "retain", "GradAscent", "GradDiff"]
    assert all(r["task"] == "toy_muse" and r["status"] == "ok" for r in rows.values())
    # the target was trained on the forget facts, the retain model not: the toy's own metric sees it
    assert rows["target"]["metrics"]["forget_nll"] < rows["retain"]["metrics"]["forget_nll"]
    assert rows["GradAscent"]["metrics"]["forget_nll"] > rows["target"]["metrics"]["forget_nll"]
    assert "forget_nll ↑" in (tmp_path / "out" / "leaderboard.md").read_text()


def test_three_task_families_in_one_run_compare_methods_across_tasks(tmp_path):
    out = tmp_path / "out"
    run_benchmark.main(["experiment=smoke", "tasks=tofu_micro,wmdp_micro,muse_micro",
                        "model.embedded.max_position=512", f"output_dir={out}", f"cache_dir={tmp_path / 'cache'}"])
    results = json.loads((out / "results.json").read_text())
    assert {(r["task"], r["model"]) for r in results["results"]} == {
        (t, m) for t in ("tofu_forget10", "wmdp_synthetic", "muse_synthetic")
        for m in ("target", "retain", "GradAscent", "GradDiff")}
    assert results["datasets"]["wmdp_synthetic"]["forget_score"] == "forget_acc"
    assert results["datasets"]["muse_synthetic"]["utility"] == "knowmem_retain"
    board = (out / "leaderboard.md").read_text()
    assert "## Across tasks" in board and "wmdp_synthetic forget_acc ↓" in board
    assert "tofu_forget10 forget_quality ↑" in board and "muse_synthetic verbmem_forget ↓" in board
    assert (out / "plots" / "across_tasks.png").is_file()
    assert (out / "plots" / "wmdp_synthetic_quality_vs_utility.png").is_file()
