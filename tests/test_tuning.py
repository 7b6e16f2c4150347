"""The tuning protocol (orchestration/tuning.py, tune.py): the validation split shares no author with the test
forget set, no test forget row reaches a tuning run, every method gets the same budget, and the chosen settings
reach the benchmark unchanged and marked as tuned."""
import json

import pytest
import yaml
from accelerate.tracking import GeneralTracker, register_tracker_class

import run_benchmark
import tune
from orchestration.tuning import grids
from unlearnbench.cache import row_digests
from unlearnbench.config import ConfigError, load_config
from unlearnbench.tasks import build_task


def _task(*overrides):
    cfg = load_config(["experiment=default", "tuned=", *overrides])
    label, section = next(iter(cfg.tasks.items()))
    task = build_task(label, section)
    task.load()
    return task


def _qa(rows):
    return {(r["question"], r["answer"]) for r in rows}


def test_validation_split_is_disjoint_from_the_test_forget_set():
    task = _task()
    split, data = task.validation()
    test_forget = _qa(task.rows["forget"])
    assert len(split.rows["forget"]) == len(task.rows["forget"])        # as many authors as the test forget set
    for role in ("full", "forget", "retain", "forget_eval", "retain_eval"):
        assert not test_forget & _qa(split.rows[role]), role
    assert not _qa(split.rows["forget"]) & _qa(split.rows["retain"])
    assert _qa(split.rows["forget"]) <= _qa(split.rows["full"])          # its target saw its forget authors
    assert _qa(split.rows["retain_eval"]) <= _qa(split.rows["retain"])
    assert _qa(split.rows["forget_eval"]) == _qa(split.rows["forget"])
    assert data.train["target"] == task.rows["retain"] and data.fingerprint != task.load().fingerprint


def test_validation_without_perturbed_authors_takes_half_of_retain_perturbed():
    """The real release has perturbed rows only for retain_perturbed's authors: half become validation forget."""
    task = _task()
    del task.rows["full_eval"]
    split, _ = task.validation()
    per = task.cfg.synthetic.qa_per_author
    evaluated = _qa(task.rows["retain_eval"])
    assert _qa(split.rows["forget"]) <= evaluated and len(split.rows["forget"]) == 2 * per     # 2 of its 5 authors
    assert _qa(split.rows["retain_eval"]) == evaluated - _qa(split.rows["forget"])
    task.cfg.rows_per_author = 7
    task.cfg.source = "local"
    with pytest.raises(ValueError, match="rows_per_author"):
        task.validation()


def test_every_method_gets_the_same_budget():
    cfg = load_config(["experiment=tune_default"])
    assert all(len(points) == cfg.tuning.budget for points in grids(cfg).values())
    cfg = load_config(["experiment=tune_smoke"])
    cfg.tuning.grid["GradDiff"]["alpha"] = [1.0, 2.0, 5.0]
    with pytest.raises(ConfigError, match="GradDiff has 3 configurations, the budget is 2"):
        grids(cfg)
    with pytest.raises(ConfigError, match="no grid for KL"):
        grids(load_config(["experiment=tune_smoke", "methods=GradAscent,GradDiff,KL"]))
    # a sweep of fewer methods than its base's grid sweeps those; a grid under a name that is no method is a typo
    assert list(grids(load_config(["experiment=tune_smoke", "methods=GradDiff"]))) == ["GradDiff"]
    assert len(grids(load_config(["experiment=tune_curve"]))) == 10
    cfg = load_config(["experiment=tune_smoke"])
    cfg.tuning.grid["GradDif"] = cfg.tuning.grid.pop("GradDiff")
    with pytest.raises(ConfigError, match="tuning.grid names GradDif, which is no method"):
        grids(cfg)
    with pytest.raises(ConfigError, match="tuning.floor_of='test'"):
        grids(load_config(["experiment=tune_smoke", "tuning.floor_of=test"]))
    cfg = load_config(["experiment=tune_smoke"])
    cfg.tuning.grid["GradAscent"] = {"alhpa": [1.0, 2.0]}
    with pytest.raises(ConfigError, match="unknown config key 'method_args.GradAscent.alhpa'"):
        grids(cfg)


@pytest.mark.pipeline
def test_tuning_never_sees_the_test_forget_set_and_its_choice_runs_unchanged(tmp_path):
    cache, tuned = tmp_path / "cache", tmp_path / "tuned.yaml"
    args = ["experiment=tune_smoke", f"cache_dir={cache}", f"output_dir={tmp_path / 'tune'}",
            f"tuning.output={tuned}"]
    result = tune.main(args)
    task = _task("experiment=tune_smoke")
    split, _ = task.validation()
    seen = set()
    for path in cache.rglob("rows_seen.json"):                      # fine-tuned models
        seen |= set(json.loads(path.read_text()))
    for path in cache.rglob("unit.json"):                           # unlearning runs
        seen |= set(json.loads(path.read_text()).get("rows_seen", []))
    assert set(row_digests(split.rows["forget"])) <= seen           # the check can fail: tuning rows are there
    assert not set(row_digests(task.rows["forget"])) & seen         # and the test forget rows are not
    chosen = yaml.safe_load(tuned.read_text())["method_args"]
    assert chosen == {name: m["chosen"] for name, m in result["methods"].items()}
    assert set(chosen) == {"GradAscent", "GradDiff"}
    for m in result["methods"].values():
        assert m["runs"] == 2 * 1 and len(m["configurations"]) == 2 and m["wall_seconds"] > 0
        best = max((r for r in m["configurations"] if r["utility"] >= result["floor"]),
                   key=lambda r: r["forget_score"], default=None)
        assert best is None or best["args"] == m["chosen"]          # the declared rule, recomputed

    # a wider grid reuses every configuration already run: only the new ones are built
    before = {p.parent for p in cache.rglob("unit.json")}
    wider = load_config(args)
    wider.tuning.budget = 3
    wider.tuning.grid["GradAscent"]["lr"].append(2.0e-3)
    wider.tuning.grid["GradDiff"]["alpha"].append(10.0)
    again = tune.run(wider)
    built = {p.parent for p in cache.rglob("unit.json")} - before
    assert len(built) == 2 and all(len(m["configurations"]) == 3 for m in again["methods"].values())
    assert again["methods"]["GradDiff"]["configurations"][:2] == result["methods"]["GradDiff"]["configurations"]
    tune.run(load_config(args))                 # the budget of 2 again, and its choice back in the file

    # the smoke experiment sets lr itself (its own method_args win over the tuned file's): here to the tuned value
    payload = run_benchmark.main(["experiment=smoke", f"tuned={tuned}", f"cache_dir={cache}",
                                  f"output_dir={tmp_path / 'run'}", "methods=GradAscent,GradDiff,IdkSFT",
                                  f"method_args.GradAscent.lr={chosen['GradAscent']['lr']}"])
    rows = {r["model"]: r for r in payload["results"]}
    assert rows["GradAscent"]["settings"] == rows["GradDiff"]["settings"] == "tuned"
    assert rows["IdkSFT"]["settings"] == "paper defaults" and "settings" not in rows["target"]
    assert payload["config"]["method_args"]["GradDiff"] == chosen["GradDiff"]
    hand = run_benchmark.main(["experiment=smoke", f"tuned={tuned}", f"cache_dir={cache}", "methods=GradAscent",
                               f"output_dir={tmp_path / 'hand'}", "method_args.GradAscent.lr=0.002"])
    assert hand["results"][-1]["settings"] == "set by hand"
    # a task's own tuned file (a run of several tasks, each tuned on its own): under the task, over the experiment's
    per_task = run_benchmark.main(["experiment=smoke", f"task.tuned={tuned}", f"cache_dir={cache}",
                                   f"output_dir={tmp_path / 'task'}", "methods=GradAscent,GradDiff"])
    assert [r["settings"] for r in per_task["results"] if "settings" in r] == ["tuned", "tuned"]
    with pytest.raises(ConfigError, match=r"tasks\..*\.tuned="):       # a sweep never starts from one
        tune.run(load_config([*args, f"task.tuned={tuned}"]))


@pytest.mark.parametrize("task", [["task=wmdp_micro"],
                                  ["task=muse_micro", "model.embedded.max_position=512", "tuning.floor_of=lower"]],
                         ids=["wmdp", "muse"])
@pytest.mark.pipeline
def test_every_family_tunes_on_a_validation_split_without_its_test_forget_set(tmp_path, task):
    """The WMDP- and MUSE-style validation splits (their own worlds' target and retain models): no test forget row
    reaches a tuning run, and the rule minimises the gap to the validation retain model (the task's tuning score)
    over configurations x points of the unlearning curve (every 2 updates)."""
    cache, tuned = tmp_path / "cache", tmp_path / "tuned.yaml"
    args = ["experiment=tune_smoke", *task, f"cache_dir={cache}", f"output_dir={tmp_path / 'tune'}",
            f"tuning.output={tuned}", "tuning.curve_every=2"]
    result = tune.main(args)
    cfg = load_config(args)
    label, section = next(iter(cfg.tasks.items()))
    test = build_task(label, section)
    data = test.load(cache)
    _, vdata = test.validation()
    seen = set()
    for path in cache.rglob("rows_seen.json"):
        seen |= set(json.loads(path.read_text()))
    for path in cache.rglob("unit.json"):
        seen |= set(json.loads(path.read_text()).get("rows_seen", []))
    assert set(row_digests(vdata.forget)) <= seen and set(row_digests(vdata.train["target"])) <= seen
    assert not set(row_digests(data.forget)) & seen
    assert not {r["text"] for r in data.forget} & {r["text"] for r in vdata.train["target"]}
    assert result["objective"] == {"metric": "forget_gap_to_retain", "higher_is_better": False, "log": False}
    references = [result["validation_retain_utility"]]
    if cfg.tuning.floor_of == "lower":          # the validation target's utility is read, and the lower one taken
        references.append(result["validation_target_utility"])
    else:
        assert "validation_target_utility" not in result
    assert result["floor"] == pytest.approx(cfg.utility_floor * min(references))
    for name, m in result["methods"].items():
        points = [(c["args"], p) for c in m["configurations"] for p in c["curve"]]
        assert all(len(c["curve"]) > 1 for c in m["configurations"])      # a point before the end, at least
        ok = [(a, p) for a, p in points if p["utility"] >= result["floor"]]
        args, best = (min(ok, key=lambda x: x[1]["forget_score"]) if ok else
                      max(points, key=lambda x: x[1]["utility"]))
        assert m["chosen"] == {**args, **({"stop_after": best["updates"]} if best["updates"] < m["stop"]["of"]
                                          else {})}, name
        per_seed = [s["forget_gap_to_retain"] for s in best["per_seed"]]
        assert best["forget_score"] == pytest.approx(sum(per_seed) / len(per_seed))
    assert "forget gap to retain ↓ (mean)" in (tmp_path / "tune" / "tuning.md").read_text()


@pytest.mark.pipeline
def test_lora_rows_are_tuned_through_the_adapter_and_marked_tuned(tmp_path):
    """lora=true tunes every configuration through the adapter (units of their own, not the full-weight runs'), and
    a LoRA row run at the choice says `tuned`."""
    cache, tuned = tmp_path / "cache", tmp_path / "tuned.yaml"

    def sweep(*extra):
        cfg = load_config(["experiment=tune_smoke", f"cache_dir={cache}", f"output_dir={tmp_path / 'tune'}",
                           "methods=GradAscent", *extra])
        cfg.tuning.grid = {"GradAscent": {"lr": [1.0e-3, 3.0e-3]}}
        return tune.run(cfg)
    sweep(f"tuning.output={tmp_path / 'full.yaml'}")
    full = {p.parent for p in cache.rglob("unit.json")}
    result = sweep("lora=true", f"tuning.output={tuned}")
    assert len({p.parent for p in cache.rglob("unit.json")} - full) == 2       # its 2 configurations, adapter runs
    lr = result["methods"]["GradAscent"]["chosen"]["lr"]        # the smoke experiment sets lr by hand: to the choice
    payload = run_benchmark.main(["experiment=smoke", "lora=true", f"tuned={tuned}", f"cache_dir={cache}",
                                  "methods=GradAscent", f"method_args.GradAscent.lr={lr}",
                                  f"output_dir={tmp_path / 'run'}"])
    row = payload["results"][-1]
    assert row["model"] == "GradAscent+lora" and row["settings"] == "tuned"      # every chosen value, unchanged


def test_when_to_stop_is_part_of_the_tuned_settings(tmp_path):
    """A tuned file's stop_after marks the row tuned only where the run stops there (experiment=default_curve)."""
    from accelerate import Accelerator

    from orchestration.benchmark import settings_origin
    from orchestration.pipeline import Pipeline
    from unlearnbench.cache import UnitStore
    tuned = tmp_path / "tuned.yaml"
    tuned.write_text(yaml.safe_dump({"method_args": {"GradAscent": {"lr": 1.0e-3, "stop_after": 1}}}))

    def origin(*overrides):
        cfg = load_config(["experiment=smoke", f"tuned={tuned}", *overrides])
        label, section = next(iter(cfg.tasks.items()))
        task = build_task(label, section)
        pipe = Pipeline(cfg, task, task.load(), UnitStore(tmp_path / "cache"), Accelerator())
        return settings_origin(pipe, "GradAscent", {"lr": 1.0e-3, "stop_after": 1})
    assert origin() == "tuned"
    assert origin("method_args.GradAscent.stop_after=2") == "set by hand"
    assert origin("method_args.GradAscent.stop_after=0") == "set by hand"


def test_a_tuning_experiment_refuses_tuned_settings_and_given_models(tmp_path):
    with pytest.raises(ConfigError, match="starts from the methods' own settings"):
        tune.main(["experiment=tune_smoke", "tuned=tuned/default"])


class Memory(GeneralTracker):
    """A tracker that keeps what it is given (accelerate's interface, as tensorboard's or wandb's)."""
    name, requires_logging_directory, logged = "memory", False, []

    def __init__(self, run_name: str, **kwargs):
        super().__init__()

    @property
    def tracker(self):
        return self.logged

    def log(self, values: dict, step=None, **kwargs):
        self.logged.append((step, values))


@pytest.mark.pipeline
def test_the_unlearning_curve_chooses_when_to_stop_and_a_stopped_run_equals_its_point(tmp_path):
    """tuning.curve_every=1 on the smoke world (2 updates a run): each configuration is scored after 1 update and at
    the end; the choice is the rule read by hand over configurations x points; a run stopped after 1 update
    (method_args.<name>.stop_after=1) gives exactly the statistics the curve recorded there, and the curve's
    evaluations leave the run's end exactly as a run without them. The losses and the curves reach accelerate's
    trackers (log_with)."""
    register_tracker_class(Memory)
    cache, tuned = tmp_path / "cache", tmp_path / "tuned.yaml"
    args = ["experiment=tune_smoke", f"cache_dir={cache}", f"output_dir={tmp_path / 'tune'}",
            f"tuning.output={tuned}", "tuning.curve_every=1", "log_with=memory"]
    result = tune.main(args)
    assert (tmp_path / "tune" / "plots" / "tuning_curves.png").is_file()
    losses = [(step, k) for step, v in Memory.logged for k in v if k.endswith("/loss")]
    assert {step for step, _ in losses} == {1, 2} and len(losses) == 2 * 4      # 2 updates x 4 configurations
    curve = {(step, k): v for step, values in Memory.logged for k, v in values.items() if "validation" in k}
    first = result["methods"]["GradDiff"]["configurations"][0]
    tag = "tuning/GradDiff/lr=0.001, alpha=1/validation_forget_quality"
    assert [curve[(p["updates"], tag)] for p in first["curve"]] == [p["forget_score"] for p in first["curve"]]
    for name, m in result["methods"].items():
        points = [(c["args"], p) for c in m["configurations"] for p in c["curve"]]
        assert all([p["updates"] for p in c["curve"]] == [1, 2] for c in m["configurations"])
        eligible = [(a, p) for a, p in points if p["utility"] >= result["floor"]]
        a, p = (max(eligible, key=lambda x: x[1]["forget_score"]) if eligible else
                max(points, key=lambda x: x[1]["utility"]))
        assert m["chosen"] == {**a, **({"stop_after": 1} if p["updates"] == 1 else {})}, name
        assert m["stop"] == {"updates": p["updates"], "of": 2}
    assert yaml.safe_load(tuned.read_text())["method_args"] == {n: m["chosen"] for n, m in result["methods"].items()}

    # the pipeline tune() ran, and its validation split: a stopped run, a run without the curve
    from accelerate import Accelerator

    from orchestration.pipeline import Pipeline
    from orchestration.preflight import check_run
    from unlearnbench.cache import UnitStore
    cfg = load_config(args)
    label, section = next(iter(cfg.tasks.items()))
    task = build_task(label, section)
    data = check_run(cfg, {label: task})[label]
    store, acc = UnitStore(cache), Accelerator()
    base = Pipeline(cfg, task, data, store, acc).base()
    vtask, vdata = task.validation()
    vpipe = Pipeline(cfg, vtask, vdata, store, acc)
    target = vpipe.finetuned(base, "target")
    lr = cfg.tuning.grid["GradAscent"]["lr"][0]
    at = lambda **extra: Pipeline(load_config(args + [f"method_args.GradAscent.lr={lr}",
                                                     *(f"method_args.GradAscent.{k}={v}" for k, v in extra.items())]),
                                  vtask, vdata, store, acc)
    row = lambda pipe, **k: pipe.unlearned(pipe.plan(target, "GradAscent", **k))
    curved, stopped, plain = row(at(), curve_every=1), row(at(stop_after=1)), row(at())
    assert stopped.train_log["stopped_after"] == 1 and stopped.train_log["updates"] == 2
    assert stopped.stats == curved.curve[0]["stats"] and curved.curve[0]["updates"] == 1
    assert plain.stats == curved.stats and stopped.stats != plain.stats
    assert stopped.cost["grad_tokens"] * 2 == plain.cost["grad_tokens"]       # half the training, counted
    assert curved.cost["forward_tokens"] == plain.cost["forward_tokens"]      # the curve's passes are not

    with pytest.raises(ConfigError, match="schedule has 2 updates"):
        run_benchmark.main(["experiment=smoke", f"cache_dir={cache}", f"output_dir={tmp_path / 'bad'}",
                            "method_args.GradAscent.stop_after=3"])
    with pytest.raises(ConfigError, match="whole number of updates"):
        run_benchmark.main(["experiment=smoke", "method_args.GradAscent.stop_after=-1"])


def test_log_with_names_a_tracker_that_can_log(tmp_path, monkeypatch):
    import accelerate.tracking

    from unlearnbench.runtime import make_accelerator
    with pytest.raises(ConfigError, match="log_with=nonesuch: accelerate has no such tracker"):
        make_accelerator(load_config(["experiment=smoke", "log_with=nonesuch"]))
    monkeypatch.setattr(accelerate.tracking, "get_available_trackers", lambda: [])      # none installed
    with pytest.raises(ConfigError, match="log_with=tensorboard: its package is not installed; `pip install"):
        make_accelerator(load_config(["experiment=smoke", "log_with=tensorboard"]))
