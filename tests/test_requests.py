"""Requests over time (orchestration/requests.py): the folds, the sequential chain, step 1 against a single request,
the gold standards, and an interrupted run resuming where it stopped."""
import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from accelerate import Accelerator

import benchmarks  # noqa: F401  (registers the task families)
import run_benchmark
from benchmarks.wmdp import WmdpConfig, WmdpTask
from orchestration.pipeline import Pipeline
from orchestration.requests import covered, gold_standards, step_pipeline
from unlearnbench.cache import UnitStore, row_digests
from unlearnbench.config import load_config
from unlearnbench.models import load_model
from unlearnbench.tasks import build_task

ROOT = Path(__file__).resolve().parent.parent

# the micro world with 4 forget authors (6 rows each) as 2 requests, one method, both modes
ARGS = ["experiment=smoke", "task.synthetic.forget_percentages=40", "task.forget_split=forget40",
        "requests.folds=2", "requests.mode=both", "methods=GradAscent"]


def digest(model) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode() + tensor.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def loaded_task(args, tmp_path):
    cfg = load_config(args)
    label, section = next(iter(cfg.tasks.items()))
    task = build_task(label, section)
    return cfg, task, task.load(tmp_path)


def test_folds_are_disjoint_whole_authors_covering_the_forget_set(tmp_path):
    cfg, tofu, data = loaded_task(ARGS, tmp_path)
    per = tofu.cfg.synthetic.qa_per_author
    for k in (2, 3, 4):
        folds = tofu.request_folds(k, seed=0)
        rows = [i for f, _ in folds for i in f]
        assert sorted(rows) == list(range(len(data.forget))) and len(set(rows)) == len(rows)
        assert all(len(f) % per == 0 and f for f, _ in folds)                  # whole authors
        assert max(map(len, (f for f, _ in folds))) - min(map(len, (f for f, _ in folds))) <= per
        for f, items in folds:      # each fold scores exactly its own authors' questions
            assert sorted(tofu.rows["forget_eval"][i]["question"] for i in items) == \
                sorted(data.forget[i]["question"] for i in f)
    assert tofu.request_folds(2, 0) == tofu.request_folds(2, 0) != tofu.request_folds(2, 3)
    with pytest.raises(ValueError, match="has 4 author"):
        tofu.request_folds(5, 0)
    # WMDP-style: whole species, their paragraphs and the questions about them
    wmdp = WmdpTask(WmdpConfig(name="wmdp"))
    wdata = wmdp.load(tmp_path)
    folds = wmdp.request_folds(4, seed=0)
    assert sorted(i for f, _ in folds for i in f) == list(range(len(wdata.forget)))
    assert sorted(i for _, q in folds for i in q) == list(range(len(wmdp.questions["forget"])))
    n = wmdp.cfg.synthetic.n_forget
    assert all(len(f) == len(wdata.forget) // n * len(q) // (len(wmdp.questions["forget"]) // n) for f, q in folds)
    assert covered(folds, range(2)) == (sorted(folds[0][0] + folds[1][0]), sorted(folds[0][1] + folds[1][1]))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The micro requests run from an empty cache: its results and the cache."""
    root = tmp_path_factory.mktemp("requests")
    payload = run_benchmark.main([*ARGS, f"cache_dir={root / 'cache'}", f"output_dir={root / 'out'}"])
    return root, payload


@pytest.mark.pipeline
def test_records_per_method_mode_and_request_with_costs_against_retraining(run):
    root, payload = run
    records = payload["results"]
    method = [r for r in records if r["model"] == "GradAscent"]
    assert sorted((r["mode"], r["request"]) for r in method) == [("cumulative", 1), ("cumulative", 2),
                                                                  ("sequential", 1), ("sequential", 2)]
    seq2 = next(r for r in method if r["mode"] == "sequential" and r["request"] == 2)
    cum2 = next(r for r in method if r["mode"] == "cumulative" and r["request"] == 2)
    assert seq2["folds"] == [2] and cum2["folds"] == [1, 2] and seq2["forgotten_folds"] == [1, 2]
    assert cum2["forget_rows"] == 2 * seq2["forget_rows"] == 24
    for r in method:
        c = r["cumulative_cost"]
        assert c["wall_seconds"] > 0 and c["retrain_wall_seconds"] > 0 and c["tokens"] > 0
        assert c["relative_cost"] == pytest.approx(c["wall_seconds"] / c["retrain_wall_seconds"])
        assert {"forget_quality", "fold_forget_quality", "model_utility"} <= set(r["metrics"])
    # the gold standard scores itself as retrained, and the target's request 2 covers both folds' items
    assert all(r["metrics"]["forget_quality"] == 1.0 for r in records if r["model"] == "retain")
    assert (root / "out" / "plots" / "tofu_forget40_requests_sequential.png").is_file()
    assert "requests over time" in (root / "out" / "leaderboard.md").read_text()


@pytest.mark.pipeline
def test_sequential_step_starts_from_the_previous_steps_model(run, tmp_path, monkeypatch):
    root, _ = run
    cfg, task, data = loaded_task([*ARGS, f"cache_dir={root / 'cache'}"], tmp_path)
    pipe = Pipeline(cfg, task, data, UnitStore(root / "cache"), Accelerator(cpu=True))
    target = pipe.finetuned(pipe.base(), "target")
    folds = task.request_folds(2, cfg.seed)
    first = step_pipeline(pipe, folds[0][0])
    step1 = first.unlearned(first.plan(target, "GradAscent"), keep_model="merged")   # cached
    after_step1 = digest(load_model(step1.model.path, cfg.model))
    started = []
    real = Pipeline._trained

    def spy(self, plan, *a, **k):
        started.append((len(self.data.forget), digest(self.units.load(plan.target))))
        return real(self, plan, *a, **k)
    monkeypatch.setattr(Pipeline, "_trained", spy)
    store = UnitStore(root / "cache")
    for kind in ("row", "weights"):         # every unlearning step again, from the cached target
        shutil.rmtree(store.root / kind, ignore_errors=True)
    run_benchmark.main([*ARGS, f"cache_dir={root / 'cache'}", f"output_dir={tmp_path / 'again'}"])
    target_digest = digest(pipe.units.load(target))
    # sequential 1 and 2, cumulative 2 (cumulative 1 is sequential 1's unit)
    assert [n for n, _ in started] == [12, 12, 24]
    assert started[0][1] == target_digest and started[2][1] == target_digest
    assert started[1][1] == after_step1 != target_digest


@pytest.mark.pipeline
def test_step_one_of_both_modes_equals_a_single_request_bit_for_bit(run, tmp_path):
    root, payload = run
    per_item = payload["per_item"]["tofu_forget40"]
    assert per_item["GradAscent (sequential 1)"] == per_item["GradAscent (cumulative 1)"]
    # the same fold as one ordinary request, unlearned again in a cache holding only the base and target
    cache = tmp_path / "cache"
    for kind in ("base", "finetuned"):
        shutil.copytree(root / "cache" / kind, cache / kind)
    cfg, task, data = loaded_task([*ARGS, f"cache_dir={cache}"], tmp_path)
    pipe = Pipeline(cfg, task, data, UnitStore(cache), Accelerator(cpu=True))
    target = pipe.finetuned(pipe.base(), "target")
    rows = task.request_folds(2, cfg.seed)[0][0]
    single = Pipeline(cfg, task, dataclasses.replace(data, forget=[data.forget[i] for i in rows]),
                      UnitStore(cache), Accelerator(cpu=True))
    assert not (cache / "row").exists()
    unit = single.unlearned(single.plan(target, "GradAscent"))
    assert json.loads(json.dumps(unit.stats)) == per_item["GradAscent (sequential 1)"]


@pytest.mark.pipeline
def test_each_gold_standard_never_saw_the_folds_forgotten_so_far(run, tmp_path):
    root, _ = run
    cfg, task, data = loaded_task([*ARGS, f"cache_dir={root / 'cache'}"], tmp_path)
    pipe = Pipeline(cfg, task, data, UnitStore(root / "cache"), Accelerator(cpu=True))
    base = pipe.base()
    folds = task.request_folds(2, cfg.seed)
    golds = gold_standards(pipe, base, folds)
    for k, gold in enumerate(golds):
        seen = set(json.loads((root / "cache" / "finetuned" / gold.key / "rows_seen.json").read_text()))
        gone = [data.forget[i] for i in covered(folds, range(k + 1))[0]]
        kept = [data.forget[i] for f, _ in folds[k + 1:] for i in f]
        assert not seen & set(row_digests(gone))
        assert set(row_digests(kept + data.retain)) <= seen
    # the last request forgets everything: its gold standard is the task's own retain model
    assert golds[-1].key == pipe.finetuned(base, "retain").key


@pytest.mark.pipeline
def test_an_interrupted_run_resumes_at_the_step_where_it_stopped(run, tmp_path, monkeypatch):
    root, payload = run
    cache = tmp_path / "cache"
    for kind in ("base", "finetuned", "eval"):      # the models before any request, as a crash would leave them
        shutil.copytree(root / "cache" / kind, cache / kind)
    args = [*ARGS, f"cache_dir={cache}", f"output_dir={tmp_path / 'out'}"]
    calls = []
    real = Pipeline._trained

    def crash_on_third(self, *a, **k):
        calls.append(len(self.data.forget))
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        return real(self, *a, **k)
    monkeypatch.setattr(Pipeline, "_trained", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark.main(args)
    assert not (tmp_path / "out" / "results.json").exists()
    calls.clear()
    monkeypatch.setattr(Pipeline, "_trained", lambda self, *a, **k: calls.append(len(self.data.forget))
                        or real(self, *a, **k))
    again = run_benchmark.main(args)
    assert calls == [24]        # only the step that was killed: cumulative request 2
    strip = lambda recs: [{k: v for k, v in r.items() if k not in ("cost", "eval_cost", "cumulative_cost")}
                          for r in recs]
    assert strip(again["results"]) == strip(payload["results"])
    assert again["per_item"] == payload["per_item"]


@pytest.mark.pipeline
def test_readme_requests_tables_are_written_and_checked(run, tmp_path):
    import sys
    sys.path.insert(0, str(ROOT / "scripts"))
    import readme_tables
    root, payload = run
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- requests:out -->\nstale\n<!-- /requests -->\nend\n")
    assert readme_tables.main(["--write", "--results", str(root), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.count("| sequential |") == 1 and text.count("| cumulative |") == 1 and "stale" not in text
    assert readme_tables.main(["--check", "--results", str(root), "--readme", str(readme)]) == 0
    readme.write_text(text.replace("| GradAscent | ", "| GradAscent | 0.9999 | ", 1))
    assert readme_tables.main(["--check", "--results", str(root), "--readme", str(readme)]) == 1
