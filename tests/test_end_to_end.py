"""The whole pipeline on experiment=smoke: results files, caching, protection of finished results."""
import csv
import json
import math

import pytest
from tofu_release import write_release

import run_benchmark
from evals.tofu_metrics import UTILITY_COMPONENTS
from unlearnbench import environment
from unlearnbench.config import ConfigError


@pytest.fixture(scope="module")
def smoke_run(smoke_root):
    root = smoke_root
    args = ["experiment=smoke", f"output_dir={root / 'out'}", f"cache_dir={root / 'cache'}"]
    payload = run_benchmark.main(args)
    return root, args, payload


def test_results_files(smoke_run):
    root, _, _ = smoke_run
    out = root / "out"
    for name in ("config.yaml", "results.json", "results.csv", "leaderboard.md", "per_item.json"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    rows = {r["model"]: r for r in results["results"]}
    assert list(rows) == ["target", "retain", "GradAscent", "GradDiff"]
    for r in rows.values():
        assert r["task"] == "tofu_forget10" and r["status"] == "ok"
        for key in ("forget_quality", "model_utility", *UTILITY_COMPONENTS):
            assert 0.0 <= r["metrics"][key] <= 1.0, key
        assert r["cost"]["wall_seconds"] > 0
        for key in ("tokens", "flops", "peak_memory_bytes", "relative_cost"):
            assert r["cost"][key] > 0, key
        assert r["cost"]["flops_method"].startswith("analytic") and r["cost"]["device"] == "cpu"
        assert r["eval_cost"]["wall_seconds"] > 0 and r["eval_cost"]["tokens"] > 0
    # the cost is measured, not assumed: unlearning a few steps costs less than fine-tuning the retain model
    assert rows["GradAscent"]["cost"]["relative_cost"] < 1.0
    assert rows["retain"]["cost"]["relative_cost"] == 1.0
    assert rows["GradAscent"]["cost"]["flops"] == pytest.approx(
        6 * rows["GradAscent"]["cost"]["n_params"] * rows["GradAscent"]["cost"]["grad_tokens"]
        + 2 * rows["GradAscent"]["cost"]["n_params"] * rows["GradAscent"]["cost"]["forward_tokens"])
    assert sorted(p.name for p in (out / "plots").iterdir()) == [
        "tofu_forget10_cost_vs_quality.png", "tofu_forget10_quality_vs_utility.png"]
    assert rows["retain"]["metrics"]["forget_quality"] == 1.0
    # the membership attacks from the same evaluation pass (forget vs holdout): the target still holds its forget set
    for r in rows.values():
        for key in ("auc_loss", "auc_zlib", "auc_min_k", "auc_min_k_pp", "auc_reference", "exact_memorization",
                    "extraction_strength"):
            assert 0.0 <= r["metrics"][key] <= 1.0, key
    assert rows["target"]["metrics"]["auc_loss"] > rows["retain"]["metrics"]["auc_loss"]
    assert rows["retain"]["metrics"]["priv_leak"] == 0.0 and rows["retain"]["metrics"]["auc_reference"] == 0.5
    assert results["versions"]["torch"] and results["datasets"]["tofu_forget10"]["fingerprint"]
    # the environment it came from: a lock, its hash, and whether (and how) the installed packages differ from it
    versions = results["versions"]
    assert versions["lock_sha256"] == environment.sha256(environment.LOCKS.parent / versions["lock"])
    assert versions["matches_lock"] == (not versions["lock_drift"])
    per_item = json.loads((out / "per_item.json").read_text())["tofu_forget10"]
    assert len(per_item["retain"]["forget"]["nll_paraphrased"]) == len(per_item["GradAscent"]["forget"]["generation"])
    assert results["runtime"]["torch_threads"] >= 1
    with open(out / "results.csv") as f:
        assert [r["model"] for r in csv.DictReader(f)] == list(rows)
    assert "| GradDiff |" in (out / "leaderboard.md").read_text()


def test_rerun_reuses_cache_and_gives_the_same_numbers(smoke_run):
    root, args, first = smoke_run
    units = sorted(p.name for p in (root / "cache").rglob("DONE"))
    second = run_benchmark.main(args)
    assert sorted(p.name for p in (root / "cache").rglob("DONE")) == units
    assert [r["metrics"] for r in second["results"]] == [r["metrics"] for r in first["results"]]


def test_a_method_row_keeps_its_state_over_the_run(smoke_run, tmp_path):
    """PDU's dual variable at every micro-batch reaches the row's record (the smoke run's models, cached)."""
    root, _, _ = smoke_run
    payload = run_benchmark.main(["experiment=smoke", f"output_dir={tmp_path}", f"cache_dir={root / 'cache'}",
                                  "methods=PDU", "method_args.PDU.dual_warmup=0.0"])
    state = payload["results"][-1]["method_state"]
    # lambda starts at the reference's 100 and climbs: the micro model's retain NLL is above eps 0.3
    assert state["dual_variable"][0] == 100.0 and state["dual_moves_from"] == 0
    assert state["dual_final"] > state["dual_variable"][-1] > 100.0


def test_refuses_to_overwrite_results_of_another_config(smoke_run):
    root, args, _ = smoke_run
    with pytest.raises(ConfigError, match="holds results of a different config"):
        run_benchmark.main(args + ["unlearn.epochs=3"])


def test_help_mentions_every_option(capsys):
    run_benchmark.main(["--help"])
    text = capsys.readouterr().out
    for word in ("experiment=", "output_dir=", "methods=", "model=", "--fresh", "GradAscent", "smoke", "privacy."):
        assert word in text


def test_report_script_rebuilds_and_merges(smoke_run, tmp_path):
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("report_script", Path(run_benchmark.__file__).parent /
                                                  "scripts" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    root, _, _ = smoke_run
    out = root / "out"
    before = (out / "leaderboard.md").read_text()
    (out / "leaderboard.md").unlink()
    report.main([str(out)])
    assert (out / "leaderboard.md").read_text() == before
    report.main([str(out), str(out), "--out", str(tmp_path / "merged")])
    merged = json.loads((tmp_path / "merged" / "results.json").read_text())
    names = [r["model"] for r in merged["results"]]
    assert len(names) == 8 and "GradDiff (smoke)" in names
    assert (tmp_path / "merged" / "plots" / "tofu_forget10_quality_vs_utility.png").is_file()


def reference_forget_truth_ratio(stats: dict) -> float:
    """open-unlearning's truth_ratio (closer_to_1_better), written out from its definition."""
    values = []
    for correct_nll, wrong_nlls in zip(stats["nll_paraphrased"], stats["nll_perturbed"]):
        wrong = math.exp(-sum(wrong_nlls) / len(wrong_nlls))
        tr = wrong / (math.exp(-correct_nll) + 1e-10)
        values.append(min(tr, 1 / (tr + 1e-10)))
    return sum(values) / len(values)


def test_gradascent_forget_truth_ratio_equals_the_reference_formula(smoke_run):
    root, _, payload = smoke_run
    per_item = json.loads((root / "out" / "per_item.json").read_text())["tofu_forget10"]
    rows = {r["model"]: r for r in payload["results"]}
    for name in ("GradAscent", "target", "retain"):
        assert abs(rows[name]["metrics"]["forget_truth_ratio"]
                   - reference_forget_truth_ratio(per_item[name]["forget"])) < 1e-6


@pytest.mark.pipeline
def test_real_tofu_release_layout_runs_end_to_end(tmp_path):
    """A folder shaped exactly like the public locuslab/TOFU files (JSON Lines under .json, no holdout, fact rows
    without paraphrases, non-ASCII names) through the whole smoke pipeline."""
    folder = write_release(tmp_path / "TOFU")
    payload = run_benchmark.main(["experiment=smoke", "task=tofu_local", f"task.path={folder}",
                                  "task.finetune.epochs=4", f"output_dir={tmp_path / 'out'}",
                                  f"cache_dir={tmp_path / 'cache'}"])
    rows = {r["model"]: r for r in payload["results"]}
    assert all(r["status"] == "ok" and r["task"] == "tofu_forget10" for r in rows.values())
    assert 0.0 <= rows["target"]["metrics"]["model_utility"] <= 1.0
    assert payload["datasets"]["tofu_forget10"]["source"] == "local"
    assert "holdout" not in payload["datasets"]["tofu_forget10"]["sizes"]
