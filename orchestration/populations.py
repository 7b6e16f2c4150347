"""The privacy evaluations that need many models (docs/privacy.md): LiRA's shadow models and the unlearning
challenge's populations (Triantafillou et al. 2024). Every member is a cached unit of the pipeline (a fine-tuned
model, an evaluation, an unlearning row), keyed by its seed, so populations resume member by member and a second
process reuses what the first finished. With several processes the members are spread over them, one member per
process at a time (`build_members`).

- LiRA (Carlini et al. 2022): S shadow models, each fine-tuned from the base on the retain set plus a random half
  of the candidate pool (the forget and holdout questions), so that each candidate is "in" for half of them
  (through LoRA with `privacy.shadow_lora_lr`: cheaper, and further from how the target was trained). Every
  row (target, retain, each method) is then attacked on forget (members of the target's training) vs holdout.
- Distributional score: N retain models and, per row, N models of that row (the target fine-tuned from N seeds;
  a method run from N seeds, on the one target or on target k), compared example by example on the forget set
  (evals/privacy.py). A second, independent retain population checks the estimator: it should score near 1.
"""
from __future__ import annotations

import random

import numpy as np

from evals import privacy
from evals.tofu_metrics import normalised_prob, prob
from methods import METHODS
from orchestration.pipeline import Recipe
from orchestration.rows import RowId
from unlearnbench.runtime import spreads

LIRA_FPRS = (0.01, 0.001)


def confidences(stats: dict) -> np.ndarray:
    """Per forget example then per holdout example: the logit-scaled confidence of its answer's sequence."""
    totals = [sum(t) for split in ("forget", "holdout") for t in stats[split]["token_logp"]]
    return privacy.logit_confidence(totals)


def utilities(stats: dict) -> tuple[float, float]:
    """The challenge's retain and test accuracy, as TOFU numbers: retain-set Prob, and world facts' normalised
    Prob (knowledge the model should keep and that no fine-tuning here taught it)."""
    return (prob(stats["retain"]["nll_answer"]),
            normalised_prob(stats["world_facts"]["nll_answer"], stats["world_facts"]["nll_perturbed"]))


def require_holdout(pipe) -> list[dict]:
    """The holdout rows (the non-members), or an error naming the fix."""
    rows = getattr(pipe.task, "rows", {})
    if "holdout" not in rows:
        raise ValueError(f"privacy.population / privacy.shadow_models need a TOFU task with a holdout split (forget "
                         f"vs holdout); task {pipe.task.label!r} has none: use task.source=synthetic, add "
                         f"holdoutNN.json to task.path, or set privacy.population=0 privacy.shadow_models=0")
    return rows["holdout"]


def _shadow_rows(pipe) -> tuple[np.ndarray, list[list[dict]]]:
    """Which candidates (forget questions, then holdout, in evaluation order) each shadow model trains on, and its
    training rows: the retain set plus its candidates. Each candidate is in half of the shadows (rounded down)."""
    n_shadow, holdout = pipe.cfg.privacy.shadow_models, require_holdout(pipe)
    questions = [r["question"] for r in pipe.task.rows["forget_eval"]] + [r["question"] for r in holdout]
    train_rows = {r["question"]: r for r in list(pipe.data.forget) + holdout}
    missing = [q for q in questions if q not in train_rows]
    if missing:
        raise ValueError(f"LiRA: {len(missing)} forget questions have no training row, e.g. {missing[0]!r}")
    rng = random.Random(pipe.cfg.seed)
    member = np.zeros((n_shadow, len(questions)), dtype=bool)
    for j in range(len(questions)):
        member[rng.sample(range(n_shadow), n_shadow // 2), j] = True
    rows = [list(pipe.data.retain) + [train_rows[q] for q, m in zip(questions, member[k]) if m]
            for k in range(n_shadow)]
    return member, rows


def _shadow(pipe, base, k: int, rows: list[dict]) -> dict:
    """Shadow model k's teacher-forced statistics (built if not cached)."""
    ref = pipe.finetuned(base, "shadow", seed=pipe.cfg.seed + 10_000 + k,
                         recipe=Recipe(rows=rows, lora_lr=pipe.cfg.privacy.shadow_lora_lr))
    return pipe.evaluated(ref, f"shadow {k}", generate=False).measured()


def _member(pipe, base, target, k: int, methods: list[RowId]) -> dict[str | RowId, dict | None]:
    """Member k of every population (built if not cached), from seed s = seed + 1 + k: {"retrained": retain
    model, "retain": the independent retain population's, "target": target, method row: that method from seed s},
    each as teacher-forced statistics (None: the method failed)."""
    pc, s = pipe.cfg.privacy, pipe.cfg.seed + 1 + k

    def stats_of(ref, name):
        return pipe.evaluated(ref, name, generate=False).measured()

    seeded_target = pipe.finetuned(base, "target", seed=s)
    out: dict[str | RowId, dict | None] = {
        "retrained": stats_of(pipe.finetuned(base, "retain", seed=s), f"retain seed {s}"),
        "target": stats_of(seeded_target, f"target seed {s}")}
    if pc.independent_retain:
        out["retain"] = stats_of(pipe.finetuned(base, "retain", seed=s + 1000), f"retain seed {s + 1000}")
    for row in methods:
        unit = pipe.unlearned(pipe.plan(seeded_target if pc.seed_targets else target, row.name, seed=s,
                                        generate=False))
        out[row] = unit.stats if unit.ok else None
    return out


def _method_rows(units: dict) -> list[RowId]:
    """The rows that get a population of their own: every unlearning method's (Retrain is the retain model)."""
    return [row for row in units if row.name in METHODS and not METHODS[row.name].is_retrain]


def build_members(pipe, base, target, units: dict) -> None:
    """Spread shadow models and population members over the processes: with N processes (DDP or multi-CPU),
    process r builds members r, r + N, ... alone (runtime.Solo: no gradient all-reduce, no gathering), each a
    cached unit, then all wait. lira_metrics and population_metrics then find every member cached. With one
    process, or under FSDP / DeepSpeed (a model may not fit one process), they build members one after another."""
    if not spreads(pipe.acc):
        return
    pc, solo = pipe.cfg.privacy, pipe.solo()
    shadow_rows = _shadow_rows(pipe)[1] if pc.shadow_models else []
    for k in range(pipe.acc.process_index, max(pc.shadow_models, pc.population), pipe.acc.num_processes):
        if k < pc.shadow_models:
            _shadow(solo, base, k, shadow_rows[k])
        if k < pc.population:
            _member(solo, base, target, k, _method_rows(units))
    pipe.acc.wait_for_everyone()


def lira_metrics(pipe, base, units: dict) -> dict[RowId, dict]:
    """LiRA's online and offline scores for every evaluated row, from `privacy.shadow_models` shadow models."""
    n_shadow = pipe.cfg.privacy.shadow_models
    member, rows = _shadow_rows(pipe)
    phi = np.stack([confidences(_shadow(pipe, base, k, rows[k])) for k in range(n_shadow)])
    n_forget = len(pipe.task.rows["forget_eval"])
    out = {}
    for row, unit in units.items():
        if not unit.ok or "holdout" not in unit.stats:
            continue
        online, offline = privacy.lira(confidences(unit.stats), phi, member)
        metrics = {"lira_auc": privacy.auc(online[:n_forget], online[n_forget:]),
                   "lira_offline_auc": privacy.auc(offline[:n_forget], offline[n_forget:]),
                   "lira_shadow_models": n_shadow}
        for fpr in LIRA_FPRS:
            metrics[f"lira_tpr_at_{fpr:g}"] = privacy.tpr_at_fpr(online[:n_forget], online[n_forget:], fpr)
        out[row] = metrics
    return out


def population_metrics(pipe, base, target, units: dict) -> dict[RowId, dict]:
    """The distributional forgetting score F and the final score F x RA ratio x TA ratio of each row's population
    against the retain population, with N; plus an independent retain population's scores (row `retain`)."""
    pc = pipe.cfg.privacy
    require_holdout(pipe)
    methods = _method_rows(units)
    members = [_member(pipe, base, target, k, methods) for k in range(pc.population)]

    def summary(group: list) -> tuple[np.ndarray, float, float]:
        n_forget = len(pipe.task.rows["forget_eval"])
        stat = np.stack([confidences(m)[:n_forget] for m in group])
        ra, ta = np.mean([utilities(m) for m in group], axis=0)
        return stat, float(ra), float(ta)

    retain_stat, ra_r, ta_r = summary([m["retrained"] for m in members])
    out = {}
    populations: dict[RowId, str | RowId] = {
        RowId("target"): "target", **({RowId("retain"): "retain"} if pc.independent_retain else {}),
        **{row: row for row in methods}}
    for row, member in populations.items():
        group = [g for g in (m[member] for m in members) if g is not None]
        if len(group) < len(members):       # a member's unlearning failed: no population to score
            continue
        stat, ra, ta = summary(group)
        f, eps = privacy.forgetting_score(stat, retain_stat)
        out[row] = {"dist_forgetting": f, "dist_score": f * ra / ra_r * ta / ta_r, "dist_models": pc.population,
                    "dist_eps_median": float(np.median(eps))}
    return out
