"""One task's benchmark run through the pipeline's cached units.

Row sources build rows and return them (`Row`: the units of every seed, the model an attack reads): the
references (base, target and retain per seed), every method from every seed, the rows with a guarantee (SISA,
DP), and the checkpoints a user names. Column sources then add metrics to those rows: the privacy evaluations
that need many models (populations.py) and the recovery attacks (attacks/). Last, one record per row
(rows.record): means and spread over seeds, the significance marks, the utility floor, how each row was set.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

from evals import spread
from evals.plots import REFERENCE_ROWS
from evals.records import succeeded
from evals.report import contender
from methods import METHODS, STOP, stop_after
from orchestration import attacks, guarantees, populations, probing
from orchestration.export import export_models
from orchestration.pipeline import Pipeline
from orchestration.rows import Row, RowId, describe, record
from orchestration.units import ModelRef, Unit
from unlearnbench.cache import UnitStore
from unlearnbench.config import ExperimentConfig, read_tuned
from unlearnbench.tasks import Task, TaskData

NO_RETAIN = ("no retain model: the target is the given model itself and model.retain names no checkpoint, so "
             "metrics that compare with retraining are not reported")


@dataclass
class Models:
    """The models every row is read against: the base (None where nothing trains from it), and per seed the
    target and the retain model (None: no retain model) with their evaluated units."""
    base: ModelRef | None
    by_seed: dict               # seed -> (target ref, retain ref | None)
    evaluated: dict             # seed -> (target Unit, retain Unit)
    seed: int                   # the record's own seed

    def target(self, seed: int | None = None) -> ModelRef:
        return self.by_seed.get(self.seed if seed is None else seed, self.by_seed[self.seed])[0]

    @property
    def retain(self) -> ModelRef | None:
        return self.by_seed[self.seed][1]

    def retain_stats(self, seed: int) -> dict | None:
        return self.evaluated.get(seed, self.evaluated[self.seed])[1].stats

    def target_stats(self, seed: int) -> dict:
        return self.evaluated.get(seed, self.evaluated[self.seed])[0].stats


def run_task(cfg: ExperimentConfig, task: Task, data: TaskData, store: UnitStore, accelerator) -> dict:
    """One task end to end from its loaded (and checked: orchestration/preflight.py) data.

    Returns {"records": [...], "dataset": {...}, "per_item": {row: stats}, "timing": {"stages", "units"}}."""
    pipe, clock = Pipeline(cfg, task, data, store, accelerator), Stages()
    if cfg.privacy.population or cfg.privacy.shadow_models:
        populations.require_holdout(pipe)       # before any training, not after the main rows
    with clock("base, target and retain models"):
        models = reference_models(pipe)
        tests = probing.discrimination(pipe, models.target_stats(cfg.seed), models.retain_stats(cfg.seed))
        rows = reference_rows(pipe, models)
    with clock("method rows"):
        rows += method_rows(pipe, models)
    with clock("guarantee and checkpoint rows"):
        rows += [*guarantee_rows(pipe, models), *checkpoint_rows(pipe, models)]
    with clock("privacy populations"):
        privacy_columns(pipe, models, rows)
    with clock("recovery attacks"):
        attack_columns(pipe, models, rows)
    for row in rows:        # a row that is another row's model gets that row's columns
        if row.same_as is not None:
            other = next(r for r in rows if r.id == row.same_as)
            row.columns = {**other.columns, **row.columns}
            row.attack_cost = row.attack_cost or other.attack_cost
            row.seed_columns = row.seed_columns or other.seed_columns

    chosen = {**(read_tuned(cfg.tuned)[0] if cfg.tuned else {}),      # tune.py's settings, read once: the
              **(read_tuned(task.cfg.tuned)[0] if task.cfg.tuned else {})}   # experiment's, this task's on top
    records = [row_record(pipe, models, row, chosen, tests) for row in rows]
    gate_utility(records, task.utility, cfg.utility_floor)
    if cfg.seeds > 1:
        spread.mark_rows([r for r in records if contender(r)],
                         task.forget_score, task.higher_is_better[task.forget_score],
                         task.forget_score in task.log_scale)
    if cfg.save_models:
        retain = models.retain
        kept = {"target": models.target().path, "retain": retain.path if retain else None,
                **{str(r.id): r.unit.model.adapter or r.unit.model.path for r in rows
                   if r.kind == "method" and r.same_as is None and r.unit.model}}
        export_models(cfg, task.label, kept, lora_rows=[str(r.id) for r in rows if r.id.lora],
                      main=accelerator.is_main_process)
    dataset = {**describe(task, data, cfg), **({"probes": probing.describe(pipe, tests)} if cfg.probes else {})}
    return {"records": records, "dataset": dataset, "per_item": {str(r.id): r.unit.stats for r in rows},
            "timing": {"stages": clock.seconds, "units": unit_seconds(rows)}}


class Stages:
    """Wall seconds of a run's stages, as they happened (a cached unit costs its reading only)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def unit_seconds(rows: list[Row]) -> dict[str, float]:
    """The wall seconds the rows' units cost when they were built, every seed's: training (fine-tuning a target or
    retain model, unlearning, a guarantee row's), evaluation, and the attacks (attacking, then evaluating)."""
    units = {id(u): u for r in rows for u in [r.unit, *(u for _, u in r.repeats)] if u.ok}
    wall = lambda cost: (cost or {}).get("wall_seconds") or 0.0
    attacks = [v for r in rows if r.same_as is None for v in (r.attack_cost or {}).values()]
    return {"training": sum(wall(u.cost) for u in units.values()),
            "evaluation": sum(wall(u.eval_cost) for u in units.values()),
            "attacks": sum(wall(v.get("attack")) + wall(v.get("eval")) for v in attacks)}


# -- row sources ------------------------------------------------------------------------------------------------
def reference_models(pipe: Pipeline) -> Models:
    """The base where something trains from it (given target and retain, an evaluation-only run trains nothing),
    and target and retain per seed: one fine-tune each (the first seed's), or one per seed with seed_models."""
    cfg = pipe.cfg
    privacy = cfg.privacy.population or cfg.privacy.shadow_models
    needs_base = privacy or guarantees.enabled(cfg) or not (cfg.model.target and cfg.model.retain)
    base = pipe.base() if needs_base else None
    seeds = cfg.seed_values() if cfg.seed_models else cfg.seed_values()[:1]
    by_seed = {s: (pipe.target_model(base, given=cfg.model.target, seed=s),
                   pipe.retain_model(base, given=cfg.model.retain, seed=s)) for s in seeds}
    evaluated = {s: (pipe.evaluated(t, "target", cost=t.cost),
                     pipe.evaluated(r, "retain", cost=r.cost) if r else Unit("absent", error=NO_RETAIN))
                 for s, (t, r) in by_seed.items()}
    return Models(base, by_seed, evaluated, cfg.seed)


def reference_rows(pipe: Pipeline, models: Models) -> list[Row]:
    """base (a pretrained model the suite fine-tuned into the target: the utility to keep), target, retain."""
    cfg, out = pipe.cfg, []
    base, target, retain = models.base, models.target(), models.retain
    if base is not None and cfg.model.name != "embedded" and not cfg.model.target and target is not base:
        out.append(Row(RowId("base"), "reference", pipe.evaluated(base, "base")))
    others = cfg.seed_values()[1:] if cfg.seed_models else []
    for i, (name, ref) in enumerate((("target", target), ("retain", retain))):
        repeats = [(s, models.evaluated[s][i]) for s in others]
        out.append(Row(RowId(name), "reference", models.evaluated[cfg.seed][i], repeats, model=ref))
    return out


def method_rows(pipe: Pipeline, models: Models) -> list[Row]:
    """Every method from every seed (seed s's row unlearns seed s's target); Retrain is the retain model."""
    cfg, out = pipe.cfg, []
    keep = bool(cfg.save_models) or attacks.enabled(cfg)        # the row's model, for export or for the attacks
    every_seed = attacks.enabled(cfg) and cfg.robustness.seeds == "all"       # every seed's model attacked
    for name in cfg.methods:
        spec = METHODS.get_or_raise(name)
        if spec.is_retrain:
            retain = models.evaluated[cfg.seed][1]
            repeats = [(s, models.evaluated[s][1]) for s in cfg.seed_values()[1:]] if cfg.seed_models else []
            out.append(Row(RowId(name), "method", retain, repeats, same_as=RowId("retain")))
            continue
        row = RowId(name, lora=bool(cfg.lora and spec.loss))
        unit = pipe.unlearned(pipe.plan(models.target(), name), keep_model=keep)
        repeats = [(s, pipe.unlearned(pipe.plan(models.target(s), name, seed=s, probes=cfg.probe_seeds == "all"),
                                      keep_model=every_seed)) for s in cfg.seed_values()[1:]]
        kept = {s: u.model for s, u in repeats if u.model is not None}
        out.append(Row(row, "method", unit, repeats, model=unit.model, seed_models=kept))
    return out


def guarantee_rows(pipe: Pipeline, models: Models) -> list[Row]:
    """SISA and DP rows, trained from the base, one set per seed (orchestration/guarantees.py)."""
    if not guarantees.enabled(pipe.cfg):
        return []
    seeds, base = pipe.cfg.seed_values(), models.base
    assert base is not None         # reference_models builds the base where guarantees train from it
    per_seed = {s: guarantees.guarantee_units(pipe, base, s) for s in seeds}
    return [Row(RowId(name), "guarantee", unit, [(s, per_seed[s][name]) for s in seeds[1:]],
                model=None if unit.model is None or unit.model.members else unit.model)    # an aggregate: no attack
            for name, unit in per_seed[seeds[0]].items()]


def checkpoint_rows(pipe: Pipeline, models: Models) -> list[Row]:
    """Rows the user unlearned elsewhere: evaluation only (a folder's digest is its key: computed once)."""
    out = []
    for name, given in pipe.cfg.checkpoints.items():
        ref = pipe.given(given, lambda: models.target())
        out.append(Row(RowId(name), "checkpoint", pipe.evaluated(ref, name), model=ref))
    return out


# -- column sources ---------------------------------------------------------------------------------------------
def privacy_columns(pipe: Pipeline, models: Models, rows: list[Row]) -> None:
    """LiRA and the distributional score (populations.py), on every row they can read."""
    pc = pipe.cfg.privacy
    if not (pc.population or pc.shadow_models):
        return
    units, by_id = {r.id: r.unit for r in rows}, {r.id: r for r in rows}
    populations.build_members(pipe, models.base, models.target(), units)
    found: dict[RowId, dict] = {}
    if pc.shadow_models:
        found = populations.lira_metrics(pipe, models.base, units)
    if pc.population:
        for row, values in populations.population_metrics(pipe, models.base, models.target(), units).items():
            found.setdefault(row, {}).update(values)
    for row, values in found.items():
        by_id[row].columns.update(values)


def attack_columns(pipe: Pipeline, models: Models, rows: list[Row]) -> None:
    """Does the knowledge come back? Every attack on every row that has a model (attacks/)."""
    if not attacks.enabled(pipe.cfg):
        return
    attacked = [r for r in rows if r.model is not None and r.unit.ok and r.same_as is None]
    attacked.sort(key=lambda r: r.id.name not in ("target", "retain"))     # the references first, as read
    values, costs = attacks.attack_all(pipe, {str(r.id): r.model for r in attacked},
                                       {str(r.id): r.unit.stats for r in attacked})
    for r in attacked:
        r.columns.update(values[str(r.id)])
        r.attack_cost = costs[str(r.id)]
    for s in pipe.cfg.seed_values()[1:] if pipe.cfg.robustness.seeds == "all" else []:
        # a further seed's models against that seed's target and retain model under the same attacks
        retain = models.by_seed.get(s, models.by_seed[models.seed])[1]
        references = {"target": models.target(s), **({"retain": retain} if retain else {})}
        before = {"target": models.target_stats(s), **({"retain": models.retain_stats(s)} if models.retain else {})}
        seeded = [r for r in rows if s in r.seed_models]
        refs = {**references, **{str(r.id): r.seed_models[s] for r in seeded}}
        stats = {**before, **{str(r.id): dict(r.repeats)[s].stats for r in seeded}}
        values, _ = attacks.attack_all(pipe, refs, stats)
        for r in seeded:
            r.seed_columns[s] = values[str(r.id)]


# -- records ----------------------------------------------------------------------------------------------------
def row_record(pipe: Pipeline, models: Models, row: Row, chosen: dict, tests: dict) -> dict:
    """One row's results.json record: its first seed's metrics with its columns, and its spread over seeds;
    chosen: the tuned settings per method (tune.py), which say how a method row was set; tests: the probes'
    discrimination tests (its probe columns are computed per seed, like the task's metrics)."""
    cfg, task = pipe.cfg, pipe.task
    retain = models.retain
    retrain_wall = (retain.cost or {}).get("wall_seconds") if retain else None
    unit = row.unit
    out = record(task.label, row.id, unit, retrain_wall)
    out.pop("error", None)                  # set below, where a further seed may have failed instead
    if row.attack_cost:
        out["attack_cost"] = row.attack_cost
    out.update({k: v for k, v in [("training_cost", unit.training_cost), ("guarantee", unit.guarantee),
                                   ("reference", unit.reference)] if v})
    if row.kind == "method" and not METHODS[row.id.name].is_retrain:
        out["settings"] = settings_origin(pipe, row.id.name, chosen.get(row.id.name))
        log = unit.train_log or {}
        if log.get("untrained"):
            out["untrained"] = log["untrained"]
        if log.get("state"):      # a method's own state over the run (PDU's dual variable at every micro-batch)
            out["method_state"] = log["state"]
    elif row.kind == "checkpoint":
        out["checkpoint"] = cfg.checkpoints[row.id.name]
    failed = next((u for u in [unit] + [u for _, u in row.repeats] if not u.ok), None)
    if failed is not None:
        out["status"], out["error"] = failed.status, failed.error
        return out
    def score(stats: dict, seed: int) -> dict:
        return {**task.metrics(stats, models.retain_stats(seed)),
                **probing.columns(pipe, stats, models.retain_stats(seed), models.target_stats(seed), tests),
                **row.seed_columns.get(seed, {})}
    out["metrics"] = {**score(unit.measured(), cfg.seed), **row.columns}
    seeds = [(cfg.seed, out["metrics"])] + [(s, score(u.measured(), s)) for s, u in row.repeats]
    worst = probing.worst_probes([m for _, m in seeds])        # a name per probed seed, beside the metrics
    if worst:
        out["worst_probe"] = worst
    if row.repeats:
        spread.over_seeds(out, seeds, task.log_scale)
    return out


def gate_utility(records: list[dict], utility: str, floor: float) -> None:
    """Flag (`below_utility_floor`) every unlearned row whose mean utility is below `floor` x the retain model's: a
    collapsed model can score a perfect forget quality (a KS test cannot tell it from a retrained one), so such a
    row is never marked best (SemEval-2025's unlearning task gated on MMLU the same way)."""
    retain = next((r for r in succeeded(records) if r["model"] == "retain"), None)
    if retain is None or retain["metrics"].get(utility) is None:
        return
    for r in records:
        value = r["metrics"].get(utility)
        reference = r["model"] in REFERENCE_ROWS or r.get("reference")
        if not reference and value is not None and value < floor * retain["metrics"][utility]:
            r["below_utility_floor"] = True


def settings_origin(pipe: Pipeline, name: str, chosen: dict | None) -> str:
    """How a method row's settings were chosen: `tuned` (tune.py's `chosen` settings, when to stop included,
    unchanged), `set by hand` (method_args, or a tuned setting overridden), `paper defaults` (methods/<method>.py,
    configs/method/), or a method file's own defaults (extensions=)."""
    hp, stop = pipe.method_hparams(name), stop_after(name, pipe.cfg.method_args_for(name, pipe.task.cfg))
    if chosen and stop == chosen.get(STOP, 0) and all(getattr(hp, k) == v for k, v in chosen.items() if k != STOP):
        return "tuned"
    if pipe.cfg.method_args.get(name) or pipe.task.cfg.method_args.get(name):
        return "set by hand"
    return "its file's defaults" if METHODS[name].source else "paper defaults"
