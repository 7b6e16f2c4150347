"""Probes as columns of every row (docs/probes.md): the discrimination test of each probe on the run's target and
retain model, then each row's probe columns for its first seed (probe_seeds=all: for every seed, so that they
carry intervals like the rest): per probe its forget score, retained score and recovery, and the worst case over
the plain question and the probes that discriminate, with the probe that attains it. The numbers are
evals/probes.py's; the per-item scores are the task's (`probe_scores`) from statistics its evaluation computed
with the probes (Pipeline.probes).
"""
from __future__ import annotations

from collections import Counter

from evals import probes


def discrimination(pipe, target_stats: dict, retain_stats: dict | None) -> dict:
    """Per probe the discrimination test on the run's first seed's target and retain model; {} without a retain
    model (nothing to compare with) or without probes."""
    if not pipe.probes or retain_stats is None:
        return {}
    task = pipe.task
    return probes.discrimination(task.probe_scores(target_stats), task.probe_scores(retain_stats))


def used(tests: dict) -> list[str]:
    """The probes the worst case covers besides the plain question: those that discriminate."""
    return [p for p, t in tests.items() if t["discriminates"] and p != probes.PLAIN]


def columns(pipe, stats: dict, retain_stats: dict | None, target_stats: dict, tests: dict) -> dict:
    """A row's probe columns (its seed's statistics, against that seed's retain model and target), `worst_probe`
    among them; none for a seed evaluated without the probes (probe_seeds=first)."""
    if not tests or "probes" not in stats:
        return {}
    task = pipe.task
    return probes.probe_metrics(task.probe_scores(stats), task.probe_scores(retain_stats),
                                task.probe_scores(target_stats), used(tests))


def worst_probes(per_seed: list[dict]) -> dict | None:
    """Take `worst_probe` (a name, not a number) out of each seed's columns: {"first": the record's own seed's,
    "counts": {probe: seeds}}; None where no seed was probed."""
    names = [n for n in (m.pop("worst_probe", None) for m in per_seed) if n is not None]
    return {"first": names[0], "counts": dict(Counter(names))} if names else None


def describe(pipe, tests: dict) -> dict:
    """The dataset section's `probes`: what was asked, what the task offers, what each probe changes, and each
    probe's test."""
    offered = pipe.task.offered_probes() if "offered_probes" in pipe.task.capabilities else ()
    return {"asked": list(pipe.probes), "offered": list(offered), "test": probes.TEST, "tests": tests,
            "changes": {p: c["changes"] for p, c in pipe.claims.items()}, "seeds": pipe.cfg.probe_seeds}


class ProbeLeakError(RuntimeError):
    """An unlearning run trained on a text that one of the run's probes claims no model trained on."""


def _squashed(text: str) -> str:
    """The text without whitespace: a decoded token sequence may space words differently than they were written."""
    return "".join(text.split())


def check_unseen(method: str, claims: dict[str, dict], consumed: set, tokenizer) -> None:
    """Raise ProbeLeakError if a text an asked probe claims unseen (`claims`, the task's `probe_claims`) occurs in
    a row the run consumed (token ids, decoded): such a probe would read as knowledge the method kept where it only
    learned the probe's own text."""
    unseen = {p: c["unseen"] for p, c in claims.items() if c["unseen"]}
    if not unseen or not consumed:
        return
    trained = "\0".join(_squashed(tokenizer.decode(list(ids), skip_special_tokens=True)) for ids in consumed)
    for probe, texts in unseen.items():
        hit = next((t for t in texts if _squashed(t) in trained), None)
        if hit is not None:
            raise ProbeLeakError(f"ProbeLeakError: {method} trained on the text of probe {probe!r} ({hit!r}), which "
                                 f"claims that no model trained on it; a method must not unlearn on a probe's "
                                 f"held-out text (or leave that probe out: probes=all,-{probe})")
