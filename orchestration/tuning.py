"""The tuning protocol (docs/tuning.md): every method swept over a declared grid with the same budget (the
same number of configurations, the same unlearning schedule and seeds), on a validation split whose forget and
retain authors exclude the test forget set (the task's `validation()`), each configuration scored against that
split's own retain model, and one rule, declared before the sweep, choosing each method's settings.

With `tuning.curve_every` > 0 each run is also evaluated every that many updates (the unlearning curve), at no
extra training, and the rule chooses among configurations x stopping points: when to stop is a setting too
(`method_args.<name>.stop_after`, written only where the choice stops before the schedule's end).

Every configuration and seed is a cached unlearning unit keyed by its settings, so a sweep resumes where it
stopped and a wider grid reuses the configurations of a narrower one.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import cast

from evals import spread
from methods import METHODS, STOP, method_config
from orchestration.pipeline import Pipeline
from orchestration.units import Unit
from unlearnbench.cache import UnitStore
from unlearnbench.config import ConfigError, ExperimentConfig
from unlearnbench.tasks import Task, TaskData, Validates, require


def grids(cfg: ExperimentConfig) -> dict[str, list[dict]]:
    """Each method row's configurations (the product of its grid, in declared order), checked: every method gets a
    grid, every grid exactly `tuning.budget` configurations, every value a valid hyperparameter."""
    t = cfg.tuning
    if t.budget < 1:
        raise ConfigError(f"tuning.budget={t.budget}: the configurations every method gets; set it, e.g. 6")
    if t.floor_of not in FLOOR_OF:
        raise ConfigError(f"tuning.floor_of={t.floor_of!r}: the utility the floor is a fraction of; one of "
                          f"{', '.join(FLOOR_OF)}")
    if t.curve_every < 0:
        raise ConfigError(f"tuning.curve_every={t.curve_every}: updates between the unlearning curve's points; "
                          f"0 (the schedule's end only) or more")
    if not t.output:
        raise ConfigError("tuning.output is empty; name the file the chosen settings go to, e.g. tuned/default "
                          "(configs/tuned/default.yaml), which an experiment then reads with tuned=tuned/default")
    trained = [m for m in cfg.methods if not METHODS.get_or_raise(m).is_retrain]
    # a grid of a method the run leaves out is not swept (an experiment built on a sweep with more methods)
    unknown = [name for name in t.grid if name not in METHODS]
    if unknown:
        raise ConfigError(f"tuning.grid names {', '.join(unknown)}, which is no method; choose from "
                          f"{', '.join(sorted(METHODS))}")
    missing = [m for m in trained if m not in t.grid]
    if missing:
        raise ConfigError(f"tuning.grid has no grid for {', '.join(missing)}: every method the run tunes needs one "
                          f"(Retrain has nothing to tune)")
    out = {}
    for name in trained:
        axes = t.grid[name]
        if not isinstance(axes, dict) or not axes or not all(isinstance(v, list) and v for v in axes.values()):
            raise ConfigError(f"tuning.grid.{name} must map hyperparameters to non-empty lists of values, e.g. "
                              f"{{lr: [3.0e-4, 1.0e-3], alpha: [1.0, 5.0]}}; got {axes!r}")
        points = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
        if len(points) != t.budget:
            raise ConfigError(f"tuning.grid.{name} has {len(points)} configurations, the budget is {t.budget}: "
                              f"every method gets the same number, so a wider sweep cannot favour one")
        for point in points:
            method_config(name, {**(cfg.method_args.get(name) or {}), **point})     # names and types, strictly
        out[name] = points
    return out


def with_args(cfg: ExperimentConfig, name: str, point: dict) -> ExperimentConfig:
    """The experiment with one configuration of one method (on top of its fixed method_args)."""
    return dataclasses.replace(cfg, method_args={**cfg.method_args, name: {**(cfg.method_args.get(name) or {}),
                                                                           **point}})


def tune(cfg: ExperimentConfig, task: Task, data: TaskData, store: UnitStore, accelerator) -> dict:
    """Sweep every method's grid on the task's validation split; returns what tune.py writes and prints."""
    points = grids(cfg)
    if cfg.model.target or cfg.model.retain:
        raise ConfigError("tuning fine-tunes its own validation target and retain models, without the test forget "
                          "authors; a given model.target / model.retain has seen them: drop them for tune.py")
    require(task, "validation", "the tuning protocol (a validation split: the synthetic TOFU-, WMDP- and MUSE-style "
                                "worlds, real TOFU and real WMDP's local copies have one)")
    base = Pipeline(cfg, task, data, store, accelerator).base()       # the test run's own base model
    vtask, vdata = cast(Validates, task).validation(cfg.tuning.validation_authors)
    vpipe = Pipeline(cfg, vtask, vdata, store, accelerator)
    target, retain = vpipe.target_model(base), vpipe.retain_model(base)
    floor_of = cfg.tuning.floor_of
    if retain is None and floor_of != "target":         # real WMDP: the given model is the target, nothing retrained
        raise ConfigError(f"tuning.floor_of={floor_of}: {vtask.label} has no retain model (the given model is its "
                          f"target); set tuning.floor_of=target, a floor under the target's own utility")
    retain_stats = vpipe.evaluated(retain, "validation retain").measured() if retain else None
    reference = {}
    if floor_of in ("retain", "lower"):
        assert retain_stats is not None     # checked above: only floor_of=target goes without a retain model
        reference["validation_retain_utility"] = vtask.metrics(retain_stats, retain_stats)[vtask.utility]
    if floor_of in ("lower", "target"):     # lower: a target below the retain model, where no run would meet it
        target_stats = vpipe.evaluated(target, "validation target").measured()
        reference["validation_target_utility"] = vtask.metrics(target_stats, retain_stats)[vtask.utility]
    floor = cfg.utility_floor * min(reference.values())
    seeds, every, objective = cfg.seed_values(), cfg.tuning.curve_every, Objective.of(vtask)
    methods = {}
    for name, configs in points.items():
        rows = []
        for point in configs:
            pipe = Pipeline(with_args(cfg, name, point), vtask, vdata, store, accelerator)
            units = [pipe.unlearned(pipe.plan(target, name, seed=s, curve_every=every)) for s in seeds]
            rows.append(score(point, units, vtask, retain_stats, floor, objective))
            log_curve(accelerator, f"tuning/{name}/{describe(point)}", rows[-1])
        ok = [r for r in rows if r["status"] == "ok"]
        if not ok:
            raise ValueError(f"every configuration of {name} diverged on the validation split; widen its grid "
                             f"towards smaller learning rates")
        best = max(ok, key=ranked)
        methods[name] = {"chosen": chosen_args(best), "chosen_configuration": rows.index(best),
                         "met_floor": best["met_floor"], "configurations": rows,
                         "stop": {"updates": best["updates"], "of": best["scheduled"]},
                         "wall_seconds": sum(r["wall_seconds"] for r in rows), "runs": len(rows) * len(seeds)}
    return {"task": task.label, "validation": {**vdata.describe, "fingerprint": vdata.fingerprint},
            "seeds": seeds, "budget": cfg.tuning.budget, "curve_every": every, "utility_floor": cfg.utility_floor,
            **reference, "floor": floor, "unlearn": dataclasses.asdict(vpipe.unlearn),
            "objective": dataclasses.asdict(objective),
            "rule": RULE.format(floor=cfg.utility_floor, where=" and stopping point" if every else "",
                                best=objective.describe(), of=FLOOR_OF[cfg.tuning.floor_of]),
            "methods": methods}


RULE = ("per method, the configuration{where} with {best} among those whose mean model utility is at least {floor} x "
        "{of}; if none is, the one with the highest utility")
FLOOR_OF = {"retain": "the validation retain model's",
            "lower": "the lower of the validation target's and retain model's",
            "target": "the validation target's (a task without a retain model: real WMDP)"}


@dataclasses.dataclass(frozen=True)
class Objective:
    """What the rule optimises: the task's `tuning_score` (its forget score where it declares none), in its
    direction, averaged over the seeds as a geometric mean where the task reads it on a log scale (TOFU's forget
    quality, a p-value), else as a mean (WMDP's and MUSE's gaps to the retain model)."""
    metric: str
    higher_is_better: bool
    log: bool

    @classmethod
    def of(cls, task: Task) -> Objective:
        metric = getattr(task, "tuning_score", task.forget_score)
        return cls(metric, task.higher_is_better[metric], metric in task.log_scale)

    def describe(self) -> str:
        return (f"the {'best' if self.higher_is_better else 'lowest'} {self.metric.replace('_', ' ')} "
                f"({'geometric ' if self.log else ''}mean over the seeds)")

    def better(self, value: float) -> float:
        return value if self.higher_is_better else -value


def ranked(point: dict):
    """The rule as a sort key over scored points (a configuration's, or one of its curve's): meeting the floor
    first, then the objective among those that do, utility among those that do not."""
    return point["met_floor"], point["objective"] if point["met_floor"] else point["utility"]


def describe(args: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in args.items())


def log_curve(accelerator, tag: str, row: dict) -> None:
    """A configuration's validation curve (seed means) to the accelerator's trackers, if it has any."""
    if not accelerator.trackers or row["status"] != "ok":
        return
    for p in row["curve"]:
        accelerator.log({f"{tag}/validation_{row['metric']}": p["forget_score"],
                         f"{tag}/validation_utility": p["utility"]}, step=p["updates"])


def chosen_args(row: dict) -> dict:
    """A configuration's settings as the tuned file holds them: stop_after where it stops before the end."""
    return {**row["args"], **({STOP: row["updates"]} if row["updates"] < row["scheduled"] else {})}


def score(point: dict, units: list[Unit], vtask: Task, retain_stats: dict | None, floor: float,
          objective: Objective) -> dict:
    """One configuration over its seeds, at every point of its unlearning curve (the run's end last): the
    objective's seed mean (`forget_score`; geometric for a log-scale one) and utility's mean per point, and the point
    the rule takes within the configuration (its `forget_score`, `utility`, `updates` of `scheduled`, `met_floor`);
    its cost, the curve's evaluations included."""
    costs = [c for u in units for c in [u.cost, u.eval_cost] + [p["eval_cost"] for p in u.curve]]
    wall = sum((c or {}).get("wall_seconds") or 0 for c in costs)
    failed = next((u for u in units if not u.ok), None)
    if failed:
        return {"args": point, "status": failed.status, "error": failed.error, "wall_seconds": wall}
    log = units[0].train_log or {}
    scheduled = log.get("stopped_after") or log.get("updates", 0)
    curve = []
    for i, updates in enumerate([p["updates"] for p in units[0].curve] + [scheduled]):
        stats = [(u.curve[i]["stats"] if updates < scheduled else u.measured()) for u in units]
        metrics = [vtask.metrics(st, retain_stats) for st in stats]
        value = spread.summarize([m[objective.metric] for m in metrics], log=objective.log)["mean"]
        utility = spread.summarize([m[vtask.utility] for m in metrics])["mean"]
        curve.append({"updates": updates, "forget_score": value, "objective": objective.better(value),
                      "utility": utility, "met_floor": utility >= floor,
                      "per_seed": [{objective.metric: m[objective.metric], vtask.utility: m[vtask.utility]}
                                   for m in metrics]})
    best = max(curve, key=ranked)
    return {"args": point, "status": "ok", "metric": objective.metric,
            **{k: best[k] for k in ("forget_score", "objective", "utility", "met_floor", "per_seed", "updates")},
            "scheduled": scheduled, "curve": curve, "wall_seconds": wall}


def table(result: dict) -> str:
    """The sweep as markdown: one line per method and configuration, the chosen one marked."""
    every = result.get("curve_every", 0)
    curve = (f"; the unlearning curve every {every} updates, each configuration at the stopping point the rule "
             f"takes within it" if every else "")
    out = [f"Tuning on {result['task']}'s validation split: {result['budget']} configurations per method, seeds "
           f"{result['seeds']}{curve}; rule: {result['rule']} (floor {result['floor']:.3f}).", "",
           f"| method | configuration | {heading(result)} | model utility | updates | chosen | sweep wall s |",
           "|---|---|---|---|---|---|---|"]
    for name, m in result["methods"].items():
        for i, r in enumerate(m["configurations"]):
            args = describe(r["args"])
            if r["status"] != "ok":
                cells = [f"{r['status']}", "", "", ""]
            else:
                mark = ("✓" if m["met_floor"] else "✓ (none met the floor)") if i == m["chosen_configuration"] else ""
                updates = f"{r['updates']} of {r['scheduled']}" if r["scheduled"] else "—"    # Noise: no updates
                cells = [f"{r['forget_score']:.3g}", f"{r['utility']:.3f}", updates, mark]
            name_cell, wall_cell = (name, f"{m['wall_seconds']:.0f}") if i == 0 else ("", "")
            out.append(f"| {name_cell} | {args} | {' | '.join(cells)} | {wall_cell} |")
    return "\n".join(out)


def heading(result: dict) -> str:
    """The objective's column heading, e.g. `forget quality (geo. mean)`, `forget gap to retain ↓ (mean)`."""
    o = result["objective"]
    return f"{o['metric'].replace('_', ' ')}{'' if o['higher_is_better'] else ' ↓'} ({'geo. ' if o['log'] else ''}mean)"
