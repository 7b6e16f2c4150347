"""The privacy evaluations that need many models (SPEC section 6): LiRA's shadow models and the unlearning
challenge's populations (Triantafillou et al. 2024). Every member is a cached unit of the pipeline (a fine-tuned
model, an evaluation, an unlearning row), keyed by its seed, so populations resume member by member and a second
process reuses what the first finished.

- LiRA (Carlini et al. 2022): S shadow models, each fine-tuned from the base on the retain set plus a random half
  of the candidate pool (the forget and holdout questions), so that each candidate is "in" for half of them. Every
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


def lira_metrics(pipe, base, units: dict) -> dict[str, dict]:
    """LiRA's online and offline scores for every evaluated row, from `privacy.shadow_models` shadow models."""
    n_shadow = pipe.cfg.privacy.shadow_models
    holdout = require_holdout(pipe)
    # the candidates in evaluation order (forget questions, then holdout), and the training row of each
    questions = [r["question"] for r in pipe.task.rows["forget_eval"]] + [r["question"] for r in holdout]
    train_rows = {r["question"]: r for r in list(pipe.data.forget) + holdout}
    missing = [q for q in questions if q not in train_rows]
    if missing:
        raise ValueError(f"LiRA: {len(missing)} forget questions have no training row, e.g. {missing[0]!r}")
    # each candidate in exactly half of the shadow models (rounded down), chosen at random
    rng = random.Random(pipe.cfg.seed)
    member = np.zeros((n_shadow, len(questions)), dtype=bool)
    for j in range(len(questions)):
        member[rng.sample(range(n_shadow), n_shadow // 2), j] = True
    phi = []
    for k in range(n_shadow):
        rows = list(pipe.data.retain) + [train_rows[q] for q, m in zip(questions, member[k]) if m]
        ref = pipe.finetuned(base, "shadow", "", seed=pipe.cfg.seed + 10_000 + k, rows=rows)
        phi.append(confidences(pipe.evaluated(ref, f"shadow {k}", generate=False)["stats"]))
    phi = np.stack(phi)
    n_forget = len(pipe.task.rows["forget_eval"])
    out = {}
    for row, unit in units.items():
        if unit["status"] != "ok" or "holdout" not in unit["stats"]:
            continue
        online, offline = privacy.lira(confidences(unit["stats"]), phi, member)
        metrics = {"lira_auc": privacy.auc(online[:n_forget], online[n_forget:]),
                   "lira_offline_auc": privacy.auc(offline[:n_forget], offline[n_forget:]),
                   "lira_shadow_models": n_shadow}
        for fpr in LIRA_FPRS:
            metrics[f"lira_tpr_at_{fpr:g}"] = privacy.tpr_at_fpr(online[:n_forget], online[n_forget:], fpr)
        out[row] = metrics
    return out


def population_metrics(pipe, base, target, units: dict) -> dict[str, dict]:
    """The distributional forgetting score F and the final score F x RA ratio x TA ratio of each row's population
    against the retain population, with N; plus an independent retain population's scores (row `retain`)."""
    pc, seed = pipe.cfg.privacy, pipe.cfg.seed
    require_holdout(pipe)
    seeds = [seed + 1 + k for k in range(pc.population)]

    def stats_of(ref, name):
        return pipe.evaluated(ref, name, generate=False)["stats"]

    def summary(members: list[dict]) -> tuple[np.ndarray, float, float]:
        n_forget = len(pipe.task.rows["forget_eval"])
        stat = np.stack([confidences(m)[:n_forget] for m in members])
        ra, ta = np.mean([utilities(m) for m in members], axis=0)
        return stat, float(ra), float(ta)

    retain_stat, ra_r, ta_r = summary([stats_of(pipe.finetuned(base, "retain", "", seed=s), f"retain seed {s}")
                                       for s in seeds])
    targets = [pipe.finetuned(base, "target", "", seed=s) for s in seeds]
    populations = {"target": [stats_of(t, f"target seed {s}") for t, s in zip(targets, seeds)]}
    if pc.independent_retain:
        populations["retain"] = [stats_of(pipe.finetuned(base, "retain", "", seed=s + 1000), f"retain seed {s + 1000}")
                                 for s in seeds]
    for row in units:
        name = row.removesuffix("+lora")
        if name not in METHODS or METHODS[name].is_retrain:
            continue
        members = [pipe.unlearned(targets[k] if pc.seed_targets else target, name, seed=s, generate=False)
                   for k, s in enumerate(seeds)]
        if all(m["status"] == "ok" for m in members):
            populations[row] = [m["stats"] for m in members]
    out = {}
    for row, members in populations.items():
        stat, ra, ta = summary(members)
        f, eps = privacy.forgetting_score(stat, retain_stat)
        out[row] = {"dist_forgetting": f, "dist_score": f * ra / ra_r * ta / ta_r, "dist_models": pc.population,
                    "dist_eps_median": float(np.median(eps))}
    return out
