"""Replicates of the whole pipeline: `worlds=K` runs the experiment in K independently drawn worlds and reports
every row over them (evals/worlds.py: means, intervals, paired marks, rank stability).

World w (first_world .. first_world + K - 1) is the experiment with every task's synthetic world drawn from
`synthetic.seed + w` (other names, facts, question templates, articles) and every model seed shifted by w: the
base's pretraining, the target's and the retain model's fine-tunes and the unlearning seeds (`seed + w` ..
`seed + w + seeds - 1`). World 0 is the experiment itself, so a `worlds` run reuses its cached units. The method
settings are the ones tuned once (tune.py, on world 0's validation split, which holds none of world 0's forget
authors; the other worlds are independent draws), applied in every world, as a user picks settings once.
"""
from __future__ import annotations

import copy

from evals import worlds as stats
from orchestration.benchmark import gate_utility
from unlearnbench.config import ConfigError, ExperimentConfig


def plan(cfg: ExperimentConfig) -> list[tuple[int, ExperimentConfig]]:
    """[(world, the experiment's config in that world)], after the task sections are resolved (cfg.tasks). One
    world at index 0 is the experiment unchanged."""
    check(cfg)
    return [(w, world_config(cfg, w)) for w in range(cfg.first_world, cfg.first_world + cfg.worlds)]


def world_config(cfg: ExperimentConfig, world: int) -> ExperimentConfig:
    if world == 0:
        return cfg
    out = copy.deepcopy(cfg)
    out.seed = cfg.seed + world
    for section in out.tasks.values():
        section["synthetic"]["seed"] += world
    return out


def check(cfg: ExperimentConfig) -> None:
    """Worlds redraw synthetic data and the models trained on it: a real dataset or a given model cannot be
    redrawn."""
    if cfg.worlds == 1 and cfg.first_world == 0:
        return
    real = [label for label, s in cfg.tasks.items() if s.get("source") != "synthetic" or "synthetic" not in s]
    if real:
        raise ConfigError(f"worlds={cfg.worlds} first_world={cfg.first_world}: task {real[0]} does not draw a "
                          f"synthetic world (task.source={cfg.tasks[real[0]].get('source')!r}); worlds replicate "
                          f"synthetic tasks only; for a real dataset, seeds=<n> seed_models=true redraws the "
                          f"fine-tunes and the unlearning runs")
    given = [k for k, on in (("model.target", cfg.model.target), ("model.retain", cfg.model.retain),
                             ("checkpoints", cfg.checkpoints)) if on]
    if given:
        raise ConfigError(f"worlds={cfg.worlds}: {given[0]} names a model trained in one world; unset it, or run "
                          f"without worlds")


def summarize(cfg: ExperimentConfig, runs: list[tuple[int, dict]]) -> dict:
    """One run's results from its worlds' (each {"records", "datasets", "per_item", "timing"}): with one world,
    that world's; with several, every task's rows over the worlds (evals/worlds.py), each world's own records and
    timing kept beside."""
    if len(runs) == 1:
        return {**runs[0][1], "worlds": None}
    first = runs[0][1]
    records, datasets = [], {}
    for task, meta in first["datasets"].items():
        per_world = [(w, [r for r in run["records"] if r["task"] == task]) for w, run in runs]
        combined = stats.combine(per_world, meta.get("log_scale", ()))
        gate_utility(combined, meta["utility"], cfg.utility_floor)
        summary = stats.mark(combined, meta["forget_score"], meta["higher_is_better"][meta["forget_score"]],
                             meta["forget_score"] in meta.get("log_scale", ()))
        records += combined
        datasets[task] = {**meta, "worlds": {"first": runs[0][0], "count": len(runs), "seeds": cfg.seeds, **summary,
                                             "fingerprints": {w: run["datasets"][task]["fingerprint"]
                                                              for w, run in runs}}}
    return {"records": records, "datasets": datasets,
            "per_item": {f"world {w}": run["per_item"] for w, run in runs},
            "timing": {f"world {w}": run["timing"] for w, run in runs},
            "worlds": [{"world": w, "seed": cfg.seed + w, "results": run["records"], "datasets": run["datasets"]}
                       for w, run in runs]}
