"""Results over seeds (evals/spread.py): summaries against hand computations, the significance mark on
constructed rows, and a smoke run with two unlearning seeds whose reported means and intervals are recomputed
by hand from its per-seed values."""
import math

import pytest

import run_benchmark
from evals import spread
from unlearnbench.config import ConfigError

T_975_2DF = 4.302652729911275          # scipy.stats.t.ppf(0.975, 2), from tables: 4.303
T_975_1DF = 12.706204736174705


def test_summary_by_hand():
    s = spread.summarize([0.2, 0.4, 0.9])
    mean, sd = 0.5, math.sqrt(((0.3) ** 2 + (0.1) ** 2 + (0.4) ** 2) / 2)
    assert s["mean"] == pytest.approx(mean) and s["std"] == pytest.approx(sd) and s["n"] == 3
    assert s["ci95"] == pytest.approx([mean - T_975_2DF * sd / math.sqrt(3), mean + T_975_2DF * sd / math.sqrt(3)])
    one = spread.summarize([0.7])
    assert one["mean"] == 0.7 and one["ci95"] == [0.7, 0.7] and one["std"] == 0.0


def test_log_scaled_summary_is_geometric():
    s = spread.summarize([1e-6, 1e-2], log=True)
    assert s["mean"] == pytest.approx(1e-4)            # log10 mean -4, not the arithmetic 5e-3
    half = T_975_1DF * math.sqrt(8) / math.sqrt(2)     # log10 values -6 and -2: sample sd sqrt(8)
    assert s["ci95"] == pytest.approx([10 ** (-4 - half), 10 ** (-4 + half)])
    assert spread.summarize([0.0, 1.0], log=True)["mean"] == pytest.approx(1e-150)   # p = 0 floored, not -inf


def test_significance_marks_on_constructed_rows():
    rows = {"A": [0.90, 0.80, 0.85, 0.88], "B": [0.88, 0.82, 0.83, 0.87],    # within noise of A
            "C": [0.10, 0.20, 0.15, 0.12]}                                     # clearly worse
    assert spread.mark_ties(rows, higher_is_better=True) == {"A": True, "B": True, "C": False}
    # lower is better: C is now the best, and A and B are both significantly worse
    assert spread.mark_ties(rows, higher_is_better=False) == {"A": False, "B": False, "C": True}
    assert spread.paired_p([1, 2, 3], [1, 2, 3]) == 1.0 and spread.paired_p([2, 3, 4], [1, 2, 3]) == 0.0
    assert spread.paired_p([1.0], [2.0]) is None
    with pytest.raises(ValueError, match="same seeds"):
        spread.paired_p([1, 2], [1, 2, 3])


def test_two_seeds_report_mean_and_interval_of_their_values(smoke_root, tmp_path):
    # utility_floor=0: the micro world's rows are all far below 0.9 of the retain model's utility, and a row under
    # the floor gets no significance mark
    payload = run_benchmark.main(["experiment=smoke", "seeds=2", "utility_floor=0", f"cache_dir={smoke_root / 'cache'}",
                                  f"output_dir={tmp_path / 'out'}"])
    rows = {r["model"]: r for r in payload["results"]}
    assert "per_seed" not in rows["target"] and "per_seed" not in rows["retain"]     # references: one model each
    for name in ("GradAscent", "GradDiff"):
        r = rows[name]
        assert [s["seed"] for s in r["per_seed"]] == [0, 1]
        a, b = (s["metrics"] for s in r["per_seed"])
        assert a["forget_prob"] != b["forget_prob"]          # another seed: another data order, other numbers
        for key in ("forget_prob", "model_utility"):
            mean, sd = (a[key] + b[key]) / 2, abs(a[key] - b[key]) / math.sqrt(2)
            assert r["metrics"][key] == pytest.approx(mean) and r["spread"][key]["std"] == pytest.approx(sd)
            half = T_975_1DF * sd / math.sqrt(2)
            assert r["spread"][key]["ci95"] == pytest.approx([mean - half, mean + half])
        fq = r["spread"]["forget_quality"]
        assert fq["scale"] == "log10" and r["metrics"]["forget_quality"] == pytest.approx(
            math.sqrt(a["forget_quality"] * b["forget_quality"]))
        assert isinstance(r["tie_with_best"], bool)
    text = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "mean over 2 unlearning seeds" in text and " [" in text


def test_seeds_must_be_positive():
    with pytest.raises(ConfigError, match="seeds=0"):
        run_benchmark.main(["experiment=smoke", "seeds=0"])


def test_seed_models_score_each_seed_against_its_own_retain_model(smoke_root, tmp_path):
    payload = run_benchmark.main(["experiment=smoke", "seeds=2", "seed_models=true", "methods=GradDiff",
                                  f"cache_dir={smoke_root / 'cache'}", f"output_dir={tmp_path / 'out'}"])
    rows = {r["model"]: r for r in payload["results"]}
    for name in ("target", "retain", "GradDiff"):
        assert [s["seed"] for s in rows[name]["per_seed"]] == [0, 1], name
    t0, t1 = (s["metrics"] for s in rows["target"]["per_seed"])
    assert t0["model_utility"] != t1["model_utility"]        # another fine-tuning seed, another target
    r0, r1 = (s["metrics"] for s in rows["retain"]["per_seed"])
    assert r0["forget_quality"] == r1["forget_quality"] == 1.0   # each seed's retain model against itself
    # seed 0's row is the plain run's (the same target, retain model and unlearning unit)
    plain = run_benchmark.main(["experiment=smoke", "methods=GradDiff", f"cache_dir={smoke_root / 'cache'}",
                                f"output_dir={tmp_path / 'plain'}"])
    assert rows["GradDiff"]["per_seed"][0]["metrics"] == plain["results"][-1]["metrics"]


def test_a_row_below_the_utility_floor_is_flagged_and_never_best():
    from evals.report import leaderboard
    from orchestration.benchmark import gate_utility
    records = [{"task": "t", "model": "retain", "status": "ok", "metrics": {"fq": 1.0, "u": 0.8}, "cost": {}},
               {"task": "t", "model": "Collapsed", "status": "ok", "metrics": {"fq": 0.99, "u": 0.1}, "cost": {}},
               {"task": "t", "model": "Kept", "status": "ok", "metrics": {"fq": 0.3, "u": 0.75}, "cost": {}}]
    gate_utility(records, "u", 0.9)                             # floor 0.72
    assert [r.get("below_utility_floor", False) for r in records] == [False, True, False]
    meta = {"t": {"forget_score": "fq", "utility": "u", "headline": ["fq", "u"], "utility_floor": 0.9,
                  "higher_is_better": {"fq": True, "u": True}, "log_scale": ["fq"]}}
    text = leaderboard(records, meta)
    assert "| Collapsed † | 0.9900 |" in text and "| Kept | **0.3000** |" in text
