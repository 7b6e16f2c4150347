"""Requests that arrive one at a time (docs/requests.md; MUSE's sustainability and scalability): the
forget set split into K disjoint folds along the task's natural unit (`request_folds`, unlearnbench/tasks.py).

- sequential: request k unlearns fold k, starting from the method's own model after request k-1;
- cumulative: request k unlearns folds 1..k at once, starting from the target.

The gold standard of request k is the base fine-tuned on the target's rows without folds 1..k: one cached
fine-tune per request, shared by every method and both modes (the last one is the task's own retain model when
the folds cover the forget set). Every model is evaluated once on the task's whole evaluation; request k's
numbers restrict the forget split to the folds forgotten so far (and `fold_*` to fold k alone) and compare with
that gold standard restricted the same way. Each step is a cached unit (a sequential step's model is kept as one,
and the next step starts from it), so an interrupted run resumes at the step where it stopped.
"""
from __future__ import annotations

import dataclasses
from typing import Any, cast

from evals import spread
from evals.robustness import restrict, union
from methods import METHODS
from orchestration.pipeline import Pipeline, Recipe
from orchestration.rows import RowId, describe, record
from orchestration.units import ModelRef, Unit
from unlearnbench.cache import UnitStore, kept
from unlearnbench.config import ExperimentConfig
from unlearnbench.tasks import Requests, Task, TaskData, require

NO_GOLD = "no gold standard: the task has no retain rows to retrain on (a given target), so nothing compares with it"


def folds_of(task: Task, k: int, seed: int, data: TaskData) -> list[tuple[list[int], Any]]:
    """The task's k folds, checked: disjoint, non-empty, covering the forget set."""
    require(task, "request_folds", "requests.folds (the forget set split into requests)")
    folds = cast(Requests, task).request_folds(k, seed)
    rows = [i for f, _ in folds for i in f]
    if sorted(rows) != list(range(len(data.forget))) or any(not f for f, _ in folds):
        raise AssertionError(f"task {task.label}'s request_folds are not {k} disjoint non-empty folds covering the "
                             f"forget set")
    return folds


def covered(folds, ks: range) -> tuple[list[int], Any]:
    """(forget rows, forget items) of the folds ks (0-based), in the forget split's own order."""
    return sorted(i for k in ks for i in folds[k][0]), union([folds[k][1] for k in ks])


def step_pipeline(pipe: Pipeline, rows: list[int]) -> Pipeline:
    """The pipeline of one request: the task's data with those forget rows (the retain set as it is)."""
    data = dataclasses.replace(pipe.data, forget=[pipe.data.forget[i] for i in rows])
    return Pipeline(pipe.cfg, pipe.task, data, pipe.store, pipe.acc)


def gold_standards(pipe: Pipeline, base: ModelRef | None, folds) -> list[ModelRef | None]:
    """Request k's gold standard: the base fine-tuned on the target's rows without folds 1..k (None without
    retain rows: a given target)."""
    if pipe.data.train.get("retain") is None:
        return [None] * len(folds)
    if base is None:
        raise ValueError(f"task {pipe.task.label}: no base model to train the gold standards from")
    out: list[ModelRef | None] = []
    for k in range(len(folds)):
        target = pipe.data.train["target"]
        rows = [target[i] for i in kept(target, [pipe.data.forget[i] for i in covered(folds, range(k + 1))[0]])]
        out.append(pipe.finetuned(base, "retain", recipe=Recipe(rows=rows)))
    return out


def chain(pipe: Pipeline, target: ModelRef, folds, name: str, mode: str, seed: int) -> list[Unit]:
    """One method's answers to requests 1..K in `mode` from one seed: each step's unit (Pipeline.unlearned) with its
    forget rows. A failed step ends the chain: later requests are marked failed too."""
    start, units = target, []
    for k in range(len(folds)):
        rows = folds[k][0] if mode == "sequential" else covered(folds, range(k + 1))[0]
        keep = "merged" if mode == "sequential" and k + 1 < len(folds) else False    # the next step starts from it
        step = step_pipeline(pipe, rows)
        unit = step.unlearned(step.plan(start, name, seed=seed), keep_model=keep)
        unit.forget_rows = len(rows)
        units.append(unit)
        if not unit.ok:
            units += [Unit(unit.status, error=f"request {k + 1} failed: {unit.error}")
                      for _ in range(k + 1, len(folds))]
            break
        if keep:
            assert unit.model is not None       # kept: unlearned(keep_model=...) made it
            start = unit.model
    return units


def step_metrics(task: Task, stats: dict, gold: dict | None, folds, k: int) -> dict:
    """Request k's numbers (0-based k): on the folds forgotten so far against its gold standard, and `fold_*` (the
    forget score and measure) on fold k alone."""
    so_far, alone = covered(folds, range(k + 1))[1], folds[k][1]
    cut = lambda s, items: None if s is None else restrict(s, items)
    out = task.metrics(restrict(stats, so_far), cut(gold, so_far))
    fold = task.metrics(restrict(stats, alone), cut(gold, alone))
    return {**out, **{f"fold_{m}": fold[m] for m in dict.fromkeys([task.forget_score, task.forget_measure])
                      if m in fold}}


def run_requests(cfg: ExperimentConfig, task: Task, data: TaskData, store: UnitStore, accelerator) -> dict:
    """One task's requests protocol: {"records", "dataset", "per_item"} as run_task returns them, one record per
    row, mode and request."""
    pipe = Pipeline(cfg, task, data, store, accelerator)
    folds = folds_of(task, cfg.requests.folds, cfg.seed, data)
    base = pipe.base() if data.train.get("retain") is not None or not cfg.model.target else None
    target = pipe.target_model(base, given=cfg.model.target)
    golds = gold_standards(pipe, base, folds)
    target_unit = pipe.evaluated(target, "target", cost=target.cost)
    gold_units = [pipe.evaluated(g, f"retain (request {k + 1})", cost=g.cost) if g else Unit("absent", error=NO_GOLD)
                  for k, g in enumerate(golds)]
    seeds = cfg.seed_values()
    chains = {}
    for mode in cfg.requests.modes():
        for name in cfg.methods:
            if METHODS.get_or_raise(name).is_retrain:
                chains[mode, name] = {s: gold_units for s in seeds}     # retraining at every request
            else:
                chains[mode, name] = {s: chain(pipe, target, folds, name, mode, s) for s in seeds}

    log_scale = set(task.log_scale) | {f"fold_{m}" for m in task.log_scale}
    retrain_walls = [(g.cost or {}).get("wall_seconds") for g in gold_units]
    records, per_item = [], {"target": target_unit.stats}
    for k in range(len(folds)):
        forgotten = list(range(1, k + 2))
        gold = gold_units[k].stats
        refs = {"target": target_unit, "retain": gold_units[k]}
        for row, unit in refs.items():
            records.append(_record(task, row, "reference", k, forgotten, unit, gold, folds, retrain_walls))
        per_item[f"retain (request {k + 1})"] = gold
        for (mode, name), by_seed in chains.items():
            method_row = RowId(name, lora=bool(cfg.lora and METHODS[name].loss))
            first = by_seed[seeds[0]]
            rec = _record(task, method_row, mode, k, forgotten if mode == "cumulative" else [k + 1], first[k], gold,
                          folds, retrain_walls, steps=first[:k + 1])
            if rec["status"] == "ok" and len(seeds) > 1:
                failed = next((c[k] for c in by_seed.values() if not c[k].ok), None)
                if failed:
                    rec.update(status=failed.status, error=failed.error, metrics={})
                else:
                    spread.over_seeds(rec, [(s, step_metrics(task, c[k].measured(), gold, folds, k))
                                            for s, c in by_seed.items()], log_scale)
            records.append(rec)
            per_item[f"{method_row} ({mode} {k + 1})"] = first[k].stats
    dataset = {**describe(task, data, cfg), "log_scale": sorted(log_scale),
               "higher_is_better": {**task.higher_is_better, **{f"fold_{m}": up for m, up in
                                                               task.higher_is_better.items()}},
               "requests": {"folds": [{"request": k + 1, "forget_rows": len(f), "items": None if i is None else len(i)}
                                      for k, (f, i) in enumerate(folds)], "modes": cfg.requests.modes()}}
    return {"records": records, "dataset": dataset, "per_item": per_item}


def _record(task: Task, row: RowId | str, mode: str, k: int, folds_unlearned: list[int], unit: Unit, gold: dict | None,
            folds, retrain_walls: list, steps: list[Unit] | None = None) -> dict:
    """Request k's record of one row (0-based k): its metrics, what the step cost, and for a method what requests
    1..k cost together against retraining at each of them (`cumulative_*`)."""
    out = record(task.label, row, unit, retrain_walls[k], mode=mode, request=k + 1, folds=folds_unlearned,
                 forgotten_folds=list(range(1, k + 2)))
    if not unit.ok:
        return out
    if unit.forget_rows is not None:
        out["forget_rows"] = unit.forget_rows
    if steps is not None:
        walls = [w for w in ((s.cost or {}).get("wall_seconds") for s in steps) if w is not None]
        wall = sum(walls) if len(walls) == len(steps) else None       # None: a step's wall time is unknown
        retrain = sum(retrain_walls[:k + 1]) if all(retrain_walls[:k + 1]) else None
        out["cumulative_cost"] = {
            "wall_seconds": wall,
            "tokens": sum((s.cost or {}).get("tokens") or 0 for s in steps),
            "retrain_wall_seconds": retrain,
            "relative_cost": wall / retrain if retrain and wall is not None else None}
    out["metrics"] = step_metrics(task, unit.measured(), gold, folds, k)
    return out
