"""Replicates of the whole pipeline (orchestration/worlds.py, evals/worlds.py): worlds are distinct draws whose
forget authors never enter the tuning split, the statistics over worlds against hand computations, and a smoke
run over two worlds whose first world is the plain run."""
import math

import pytest

import benchmarks  # noqa: F401  (registers the task families)
import run_benchmark
from evals import worlds as stats
from orchestration import worlds
from unlearnbench.config import ConfigError, load_config, to_dict
from unlearnbench.tasks import build_task

T_975_1DF = 12.706204736174705


def resolved(argv):
    cfg = load_config(argv)
    cfg.tasks = {label: to_dict(build_task(label, s).cfg) for label, s in cfg.tasks.items()}
    return cfg


def test_worlds_are_distinct_draws_outside_the_tuning_split(tmp_path):
    cfg = resolved(["experiment=default", "worlds=10"])
    plan = worlds.plan(cfg)
    assert [w for w, _ in plan] == list(range(10)) and plan[0][1] is cfg        # world 0: the experiment itself
    assert [c.seed for _, c in plan] == list(range(10))
    tasks = {w: build_task("tofu_embedded", c.tasks["tofu_embedded"]) for w, c in plan}
    data = {w: t.load(tmp_path) for w, t in tasks.items()}
    assert len({d.fingerprint for d in data.values()}) == 10
    # the settings were tuned on world 0's validation split: no world's forget author or forget row is in it
    split, _ = tasks[0].validation(0)
    rows = [r for part in split.rows.values() for r in part if "question" in r]
    text = " ".join(r["question"] + " " + r["answer"] for r in rows)
    pairs = {(r["question"], r["answer"]) for r in rows}
    for w, task in tasks.items():
        names = [r["reverse_answer"].split(" was born in")[0] for r in task.rows["forget_eval"][2::20]]
        assert len(set(names)) == 5 and not [n for n in names if n in text], (w, names)
        assert not pairs & {(r["question"], r["answer"]) for r in data[w].forget}


def test_a_world_cannot_redraw_real_data_or_a_given_model():
    with pytest.raises(ConfigError, match="task tofu_local does not draw a synthetic world"):
        worlds.plan(resolved(["experiment=smoke", "task=tofu_local", "task.path=/nowhere", "worlds=2"]))
    with pytest.raises(ConfigError, match="model.target names a model trained in one world"):
        worlds.plan(resolved(["experiment=smoke", "model.target=/somewhere", "worlds=2"]))
    with pytest.raises(ConfigError, match="worlds=0 first_world=0: at least one world"):
        load_config(["experiment=smoke", "worlds=0"])


def record(model, fq, utility, status="ok", **extra):
    return {"task": "t", "model": model, "status": status, "metrics": {"forget_quality": fq, "model_utility": utility},
            "cost": {"tokens": 10, "wall_seconds": 1.0, "device": "cpu"}, "eval_cost": None, **extra}


def test_combine_by_hand():
    runs = [(0, [record("A", 1e-2, 0.5, worst_probe={"first": "icl5", "counts": {"icl5": 1}}), record("B", 0.5, 0.7)]),
            (1, [record("A", 1e-4, 0.7, worst_probe={"first": "mc", "counts": {"mc": 1}}), record("B", 0.1, 0.6)])]
    runs[1][1][0]["cost"] = {"tokens": 13, "wall_seconds": 2.0, "device": "cpu"}
    a, b = stats.combine(runs, log_scale=("forget_quality",))
    assert a["metrics"]["forget_quality"] == pytest.approx(1e-3)             # geometric: log10 -2 and -4
    assert a["spread"]["forget_quality"]["ci95"] == pytest.approx([10 ** (-3 - T_975_1DF), 10 ** (-3 + T_975_1DF)])
    assert a["metrics"]["model_utility"] == pytest.approx(0.6) and a["spread"]["model_utility"]["n"] == 2
    assert [w["world"] for w in a["per_world"]] == [0, 1] and a["per_world"][1]["metrics"]["forget_quality"] == 1e-4
    assert a["cost"] == {"tokens": 12, "wall_seconds": 1.5, "device": "cpu"}   # 11.5 rounded to even; means
    assert a["worst_probe"] == {"first": "icl5", "counts": {"icl5": 1, "mc": 1}}
    runs[1][1][1] = record("B", None, None, status="failed", error="NaN loss")
    assert stats.combine(runs)[1]["status"] == "failed" and stats.combine(runs)[1]["error"] == "world 1: NaN loss"
    with pytest.raises(ValueError, match="world 1 has rows"):
        stats.combine([runs[0], (1, runs[1][1][:1])])


def test_rank_stability_by_hand():
    agree = {"A": [0.9, 0.8, 0.7], "B": [0.5, 0.4, 0.3], "C": [0.1, 0.2, 0.05]}
    s = stats.stability(agree, higher=True, log=False)
    assert s["kendall_w"] == pytest.approx(1.0) and s["leads"] == {"A": 3, "B": 0, "C": 0}
    assert s["mean_rank"] == {"A": 1.0, "B": 2.0, "C": 3.0} and s["best_share"]["A"] == 1.0
    # world ranks (1 = best): A 1,2,3  B 2,3,1  C 3,1,2: rank sums all 6, no agreement at all
    cycle = {"A": [3.0, 2.0, 1.0], "B": [2.0, 1.0, 3.0], "C": [1.0, 3.0, 2.0]}
    s = stats.stability(cycle, higher=True, log=False)
    assert s["kendall_w"] == pytest.approx(0.0) and s["leads"] == {"A": 1, "B": 1, "C": 1}
    # ranks A 1,1  B 2,3  C 3,2 over two worlds: S = (2-4)^2 + (5-4)^2 + (5-4)^2 = 6, W = 12 S / (m^2 (n^3 - n)) = 0.75
    two = {"A": [0.9, 0.9], "B": [0.5, 0.1], "C": [0.1, 0.5]}
    assert stats.stability(two, higher=True, log=False)["kendall_w"] == pytest.approx(12 * 6 / (4 * 24))
    # a row below the utility floor in a world cannot lead it: the next row does
    s = stats.stability(agree, higher=True, log=False, excluded={"A": [True, False, False]})
    assert s["leads"] == {"A": 2, "B": 1, "C": 0}


def test_marks_are_paired_within_worlds():
    # B is below A in every world by a similar margin (paired: significant), C is A plus noise (not significant)
    rows = [record("A", None, 0.8), record("B", None, 0.8), record("C", None, 0.8)]
    values = {"A": [0.9, 0.5, 0.7, 0.3], "B": [0.8, 0.41, 0.62, 0.19], "C": [0.7, 0.6, 0.5, 0.25]}
    for r in rows:
        r["per_world"] = [{"world": k, "metrics": {"forget_quality": v}, "below_utility_floor": False}
                          for k, v in enumerate(values[r["model"]])]
    summary = stats.mark(rows, "forget_quality", higher=True, log=False)
    a, b, c = rows
    assert a["best_mean"] and a["tie_with_best"] and not b["tie_with_best"] and c["tie_with_best"]
    assert summary["pairs"]["A"]["B"] < 0.05 <= summary["pairs"]["A"]["C"]
    assert a["leads_in"] == 3 and c["leads_in"] == 1 and summary["worlds"] == 4


@pytest.mark.pipeline
def test_a_smoke_run_over_two_worlds(smoke_root, tmp_path):
    cache = f"cache_dir={smoke_root / 'cache'}"
    plain = run_benchmark.main(["experiment=smoke", "utility_floor=0", cache, f"output_dir={tmp_path / 'one'}"])
    both = run_benchmark.main(["experiment=smoke", "utility_floor=0", "worlds=2", cache,
                               f"output_dir={tmp_path / 'two'}"])
    assert both["worlds"][0]["results"] == plain["results"]           # world 0 is the experiment itself
    fingerprints = both["datasets"]["tofu_forget10"]["worlds"]["fingerprints"]
    assert len(set(fingerprints.values())) == 2
    rows = {r["model"]: r for r in both["results"]}
    second = {r["model"]: r for r in both["worlds"][1]["results"]}
    for name in ("target", "GradAscent", "GradDiff"):
        a, b = plain_metrics(plain, name), second[name]["metrics"]
        assert a["forget_prob"] != b["forget_prob"]                     # another world, other numbers
        mean, sd = (a["forget_prob"] + b["forget_prob"]) / 2, abs(a["forget_prob"] - b["forget_prob"]) / math.sqrt(2)
        assert rows[name]["metrics"]["forget_prob"] == pytest.approx(mean)
        assert rows[name]["spread"]["forget_prob"]["ci95"] == pytest.approx([mean - T_975_1DF * sd / math.sqrt(2),
                                                                             mean + T_975_1DF * sd / math.sqrt(2)])
    assert sum(rows[m]["leads_in"] for m in ("GradAscent", "GradDiff")) == 2
    assert "mean over 2 worlds" in (tmp_path / "two" / "leaderboard.md").read_text()


def plain_metrics(payload, name):
    return next(r["metrics"] for r in payload["results"] if r["model"] == name)


def test_claims_of_a_table_against_other_results(tmp_path):
    from evals.claims import claims
    header = ["row", "forget quality ↑", "model utility ↑"]
    shown = [header, ["target", "1.00e-05", "0.770"],
             ["A", "5.00e-01 [2.00e-01, 1.00e+00] (best)", "0.700 [0.690, 0.710]"],
             ["B", "1.00e-01 [5.00e-02, 2.00e-01] ≈", "0.720 [0.700, 0.740]"]]
    new = [{"model": "A", "best_mean": True, "spread": {"forget_quality": {"ci95": [0.3, 0.9]},
                                                        "model_utility": {"ci95": [0.69, 0.75]}}},
           {"model": "B", "spread": {"forget_quality": {"ci95": [0.2, 0.6]}, "model_utility": {"ci95": [0.71, 0.73]}}}]
    assert claims("x", shown, new) == ["x: B's forget_quality 1.00e-01 lies outside the new 95 % interval [0.2, 0.6]"]
    new[0]["best_mean"] = False        # A no longer best, nor tied with the new best
    assert "x: the table's best row A is significantly below the new best row" in claims("x", shown, new)
    new[0]["best_mean"], new[1]["spread"]["forget_quality"]["ci95"] = True, [0.1004, 0.6]
    assert claims("x", shown, new) == []        # 1.00e-01 as printed: within the interval at its printed digits
    one_draw = [header, ["A", "5.00e-01", "0.700"]]
    assert "shows no intervals" in claims("x", one_draw, new)[0]      # nothing to check is a failure, not a pass


def test_check_across_cpu_vendors_runs_the_claims(tmp_path):
    import json
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import readme_tables
    (tmp_path / "exp").mkdir()
    metrics = {"forget_quality": 1e-5, "model_utility": 0.7, "forget_prob": 0.9, "forget_truth_ratio": 0.6}
    cost = {"tokens": 1, "flops": 1.0, "wall_seconds": 1.0, "relative_cost": 1.0, "peak_memory_bytes": 1}
    records = [{"task": "t", "model": "target", "status": "ok", "metrics": metrics, "cost": cost}]
    results = {"datasets": {"t": {"family": "tofu"}}, "results": records,
               "runtime": {"numerics": {"cpu": {"vendor": "AuthenticAMD"}}}}
    (tmp_path / "exp" / "results.json").write_text(json.dumps(results))
    page = tmp_path / "page.md"
    page.write_text("<!-- table:exp cpu=GenuineIntel -->\n" + readme_tables.to_markdown(readme_tables.render(results))
                    + "<!-- /table -->\n")
    args = ["--check", "--results", str(tmp_path), "--readme", str(page)]
    assert readme_tables.main(args) == 1            # another vendor: claims, and a one-draw table has none
    checks = json.loads((tmp_path / "exp" / "results.json").read_text())["checks"]
    assert checks == [{"table": f"{page}: table", "as": "claims", "holds": False}]
    page.write_text(page.read_text().replace("GenuineIntel", "AuthenticAMD"))
    assert readme_tables.main(args) == 0            # the same vendor: cell for cell
    assert json.loads((tmp_path / "exp" / "results.json").read_text())["checks"][0]["as"] == "exact"
