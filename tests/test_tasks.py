"""The three task families in one run, probed, give a cross-task leaderboard (with each one's worst case) and
figure (a task of one's own, registered from a file, runs through the unchanged pipeline: tests/test_extensions.py)."""
import json

import pytest

import run_benchmark


@pytest.mark.pipeline
def test_three_task_families_in_one_run_compare_methods_across_tasks(tmp_path):
    out = tmp_path / "out"
    run_benchmark.main(["experiment=smoke", "tasks=tofu_micro,wmdp_micro,muse_micro", "probes=all",
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
    # every family offers probes: the table across tasks carries each one's worst-case recovery
    across = board.split("## Across tasks")[1].split("\n\n")[1].splitlines()[0]
    assert all(f"{t} worst_recovery ↓" in across for t in ("tofu_forget10", "wmdp_synthetic", "muse_synthetic"))
    assert (out / "plots" / "across_tasks.png").is_file()
    assert (out / "plots" / "wmdp_synthetic_quality_vs_utility.png").is_file()
