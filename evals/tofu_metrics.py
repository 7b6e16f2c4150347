"""TOFU metrics (Maini et al. 2024; locuslab/tofu, locuslab/open-unlearning) as pure functions of per-item stats.

Inputs are per-item mean negative log-likelihoods over the answer tokens plus EOS (NLLbar, docs/metrics.md).
"""
from __future__ import annotations

import numpy as np

from evals.privacy import membership_metrics
from unlearnbench.heavy import scipy_stats

# name -> higher is better?
HIGHER_IS_BETTER = {
    "forget_quality": True, "model_utility": True,
    "forget_prob": False, "forget_rougeL": False, "forget_truth_ratio": True,
    "retain_prob": True, "retain_rougeL": True, "retain_truth_ratio": True,
    "real_authors_prob": True, "real_authors_rougeL": True, "real_authors_truth_ratio": True,
    "world_facts_prob": True, "world_facts_rougeL": True, "world_facts_truth_ratio": True,
}
UTILITY_COMPONENTS = [f"{split}_{m}" for split in ("retain", "real_authors", "world_facts")
                      for m in ("prob", "rougeL", "truth_ratio")]


def prob(nll_answer) -> float:
    """Mean over items of p(a|q) = exp(-NLLbar(a|q))."""
    return float(np.mean(np.exp(-np.asarray(nll_answer, dtype=np.float64))))


def normalised_prob(nll_answer, nll_perturbed) -> float:
    """Mean of p(a|q) / (p(a|q) + sum_i p(perturbed_i|q) + 1e-10): real authors / world facts."""
    p = np.exp(-np.asarray(nll_answer, dtype=np.float64))
    p_wrong = np.exp(-np.asarray(nll_perturbed, dtype=np.float64)).sum(axis=1)
    return float(np.mean(p / (p + p_wrong + 1e-10)))


# The reference code's numerical guard (open-unlearning, truth_ratio): R = wrong / (correct + EPS) and
# min(R, 1 / (R + EPS)). It matters only where p(correct) is tiny (a collapsed model): there it caps R near
# wrong / EPS instead of letting it grow without bound, and moves the forget truth ratio by up to ~1e-3.
EPS = 1e-10


def truth_ratios(nll_correct, nll_perturbed) -> np.ndarray:
    """Per item R = exp(-mean_i NLLbar(perturbed_i)) / (exp(-NLLbar(correct)) + 1e-10): wrong over right."""
    wrong = np.exp(-np.asarray(nll_perturbed, dtype=np.float64).mean(axis=1))
    return wrong / (np.exp(-np.asarray(nll_correct, dtype=np.float64)) + EPS)


def forget_truth_ratio(ratios) -> float:
    """Mean min(R, 1/(R + 1e-10)) on the forget set: 1 when the model cannot tell right from wrong."""
    r = np.asarray(ratios, dtype=np.float64)
    return float(np.mean(np.minimum(r, 1.0 / (r + EPS))))


def kept_truth_ratio(ratios) -> float:
    """Mean max(0, 1 - R) on retain / real authors / world facts: higher means the model prefers the truth."""
    return float(np.mean(np.maximum(0.0, 1.0 - np.asarray(ratios, dtype=np.float64))))


def forget_quality(model_forget_ratios, retain_model_forget_ratios) -> float:
    """p-value of the two-sample KS test between the two models' forget-set truth ratios."""
    return float(scipy_stats.ks_2samp(np.asarray(model_forget_ratios), np.asarray(retain_model_forget_ratios)).pvalue)


def model_utility(components: dict[str, float]) -> float:
    """Harmonic mean of the nine utility numbers; 0 if any is 0."""
    missing = [k for k in UTILITY_COMPONENTS if k not in components]
    if missing:
        raise ValueError(f"model utility needs {missing}")
    values = np.array([components[k] for k in UTILITY_COMPONENTS], dtype=np.float64)
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"utility components must be finite and non-negative: {dict(zip(UTILITY_COMPONENTS, values))}")
    return 0.0 if np.any(values == 0) else float(scipy_stats.hmean(values))


def split_metrics(split: str, stats: dict) -> dict[str, float]:
    """Prob, ROUGE-L recall and truth ratio of one split from its per-item statistics."""
    if split == "forget":
        ratios = truth_ratios(stats["nll_paraphrased"], stats["nll_perturbed"])
        return {"forget_prob": prob(stats["nll_answer"]), "forget_rougeL": float(np.mean(stats["rougeL_recall"])),
                "forget_truth_ratio": forget_truth_ratio(ratios)}
    if split == "retain":
        ratios = truth_ratios(stats["nll_paraphrased"], stats["nll_perturbed"])
        p = prob(stats["nll_answer"])
    else:  # real_authors, world_facts: the original answer is the correct one, Prob is normalised
        ratios = truth_ratios(stats["nll_answer"], stats["nll_perturbed"])
        p = normalised_prob(stats["nll_answer"], stats["nll_perturbed"])
    return {f"{split}_prob": p, f"{split}_rougeL": float(np.mean(stats["rougeL_recall"])),
            f"{split}_truth_ratio": kept_truth_ratio(ratios)}


def all_metrics(stats: dict[str, dict], retain_model_stats: dict[str, dict]) -> dict[str, float]:
    """Every TOFU number of one model, given its per-split stats and the retain model's forget-set stats."""
    out = {}
    for split in ("forget", "retain", "real_authors", "world_facts"):
        out.update(split_metrics(split, stats[split]))
    out["model_utility"] = model_utility(out)
    mine = truth_ratios(stats["forget"]["nll_paraphrased"], stats["forget"]["nll_perturbed"])
    gold = truth_ratios(retain_model_stats["forget"]["nll_paraphrased"], retain_model_stats["forget"]["nll_perturbed"])
    out["forget_quality"] = forget_quality(mine, gold)
    if "holdout" in stats and "holdout" in retain_model_stats:      # membership attacks (evals/privacy.py)
        out.update(membership_metrics(stats, retain_model_stats))
    return out
