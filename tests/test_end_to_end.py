"""The whole pipeline on experiment=smoke: results files, caching, protection of finished results."""
import csv
import json

import pytest

import run_benchmark
from evals.tofu_metrics import UTILITY_COMPONENTS
from unlearnbench.config import ConfigError


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
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
    assert results["versions"]["torch"] and results["datasets"]["tofu_forget10"]["fingerprint"]
    per_item = json.loads((out / "per_item.json").read_text())
    assert len(per_item["retain"]["forget"]["nll_paraphrased"]) == len(per_item["GradAscent"]["forget"]["generation"])
    with open(out / "results.csv") as f:
        assert [r["model"] for r in csv.DictReader(f)] == list(rows)
    assert "| GradDiff |" in (out / "leaderboard.md").read_text()


def test_rerun_reuses_cache_and_gives_the_same_numbers(smoke_run):
    root, args, first = smoke_run
    units = sorted(p.name for p in (root / "cache").rglob("DONE"))
    second = run_benchmark.main(args)
    assert sorted(p.name for p in (root / "cache").rglob("DONE")) == units
    assert [r["metrics"] for r in second["results"]] == [r["metrics"] for r in first["results"]]


def test_refuses_to_overwrite_results_of_another_config(smoke_run):
    root, args, _ = smoke_run
    with pytest.raises(ConfigError, match="holds results of a different config"):
        run_benchmark.main(args + ["unlearn.epochs=3"])


def test_help_mentions_every_option(capsys):
    run_benchmark.main(["--help"])
    text = capsys.readouterr().out
    for word in ("experiment=", "output_dir=", "methods=", "model=", "--fresh", "GradAscent", "smoke"):
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
