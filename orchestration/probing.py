"""Probes as columns of every row (docs/probes.md): the discrimination test of each probe on the run's target and
retain model, then each row's probe columns for its first seed (probe_seeds=all: for every seed, so that they
carry intervals like the rest): per probe its forget score, retained score and recovery, and the worst case over
the probes that discriminate. The numbers are evals/probes.py's; the per-item scores are the task's
(`probe_scores`) from statistics its evaluation computed with the probes (Pipeline.probes).
"""
from __future__ import annotations

from evals import probes


def discrimination(pipe, target_stats: dict, retain_stats: dict | None) -> dict:
    """Per probe the discrimination test on the run's first seed's target and retain model; {} without a retain
    model (nothing to compare with) or without probes."""
    if not pipe.probes or retain_stats is None:
        return {}
    task = pipe.task
    return probes.discrimination(task.probe_scores(target_stats), task.probe_scores(retain_stats))


def columns(pipe, stats: dict, retain_stats: dict | None, target_stats: dict, tests: dict) -> dict:
    """A row's probe columns (its seed's statistics, against that seed's retain model and target); none for a seed
    evaluated without the probes (probe_seeds=first)."""
    if not tests or "probes" not in stats:
        return {}
    task = pipe.task
    used = [p for p, t in tests.items() if t["discriminates"]]
    return probes.probe_metrics(task.probe_scores(stats), task.probe_scores(retain_stats),
                                task.probe_scores(target_stats), used, task.forget_measure)


def describe(pipe, tests: dict) -> dict:
    """The dataset section's `probes`: what was asked, what the task offers, and each probe's test."""
    offered = pipe.task.offered_probes() if "offered_probes" in pipe.task.capabilities else ()
    return {"asked": list(pipe.probes), "offered": list(offered), "test": probes.TEST, "tests": tests,
            "seeds": pipe.cfg.probe_seeds}
