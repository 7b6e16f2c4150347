"""A row's numbers over seeds: mean, spread and a 95 % interval per metric, and whether a row's forget score is
significantly worse than the best row's (docs/protocol.md: a ranking is claimed only where the data supports it).

- Interval: Student's t, mean ± t(0.975, n - 1) · s / sqrt(n), s the sample standard deviation (ddof 1).
- Metrics a task draws on a log axis (TOFU's forget quality, a p-value spanning decades) are summarised on log10:
  the reported mean is the geometric mean and the interval is the t interval of log10, mapped back. A p-value's
  arithmetic mean would be set by its largest seed alone.
- Significance: a paired t-test over seeds (the same seed of two rows shares the data order and noise draws),
  two-sided, on the forget score (log10 where it is log-scaled); a row whose p-value is at least 0.05 against the
  best row is marked as not distinguishable from it. With one seed nothing is marked.
"""
from __future__ import annotations

import math

import numpy as np

from unlearnbench.heavy import scipy_stats

ALPHA = 0.05
FLOOR = 1e-300          # log10 of a p-value of 0 (a fully separated KS test): the smallest positive double


def on_scale(values, log: bool) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    return np.log10(np.maximum(v, FLOOR)) if log else v


def summarize(values, log: bool = False) -> dict:
    """{"mean", "std", "ci95": [low, high], "n"} of one metric's per-seed values (std and interval of log10 where
    `log`; the mean then is the geometric mean)."""
    v = on_scale(values, log)
    n = len(v)
    if n == 0:
        raise ValueError("no per-seed values to summarise")
    mean = float(v.mean())
    std = float(v.std(ddof=1)) if n > 1 else 0.0
    half = float(scipy_stats.t.ppf(1 - ALPHA / 2, n - 1) * std / math.sqrt(n)) if n > 1 else 0.0
    back = (lambda x: 10.0 ** min(x, 300.0)) if log else (lambda x: x)      # a wide interval stays finite
    return {"mean": back(mean), "std": std, "ci95": [back(mean - half), back(mean + half)], "n": n,
            "scale": "log10" if log else "linear"}


def paired_p(a, b, log: bool = False) -> float | None:
    """Two-sided paired t-test p-value of two rows' per-seed values (same seeds, same order); None with fewer than
    two seeds; 1.0 where the two are identical on every seed."""
    x, y = on_scale(a, log), on_scale(b, log)
    if len(x) != len(y):
        raise ValueError(f"paired test needs the same seeds on both rows, got {len(x)} and {len(y)} values")
    if len(x) < 2:
        return None
    d = x - y
    if np.all(d == d[0]) and d[0] == 0:
        return 1.0
    if np.all(d == d[0]):            # a constant non-zero difference: as significant as it gets
        return 0.0
    return float(scipy_stats.ttest_rel(x, y).pvalue)


def best_row(rows: dict[str, list[float]], higher_is_better: bool, log: bool = False) -> str:
    """The row with the best mean (on log10 where `log`)."""
    means = {name: float(on_scale(v, log).mean()) for name, v in rows.items()}
    return (max if higher_is_better else min)(means, key=lambda name: means[name])


def mark_ties(rows: dict[str, list[float]], higher_is_better: bool, log: bool = False) -> dict[str, bool]:
    """Per row: True where its forget score is not significantly different from the best row's (by mean; the best
    row itself is True). `rows`: {row: per-seed values, all on the same seeds}."""
    best = best_row(rows, higher_is_better, log)
    out = {}
    for name, values in rows.items():
        p = paired_p(values, rows[best], log)
        out[name] = name == best or (p is not None and p >= ALPHA)
    return out


def over_seeds(record: dict, per_seed: list[tuple[int, dict]], log_scale) -> None:
    """Turn a row's record into its summary over seeds: `metrics` become the means (geometric for log-scaled
    metrics), `spread` holds each metric's summary, `per_seed` each seed's own metrics. per_seed: [(seed, metrics)],
    the record's own seed first."""
    keys = [k for k in per_seed[0][1] if all(isinstance(m.get(k), (int, float)) for _, m in per_seed)]
    record["spread"] = {k: summarize([m[k] for _, m in per_seed], log=k in log_scale) for k in keys}
    record["metrics"] = {**record["metrics"], **{k: s["mean"] for k, s in record["spread"].items()}}
    record["per_seed"] = [{"seed": seed, "metrics": m} for seed, m in per_seed]


def mark_rows(records: list[dict], forget_score: str, higher_is_better: bool, log: bool) -> None:
    """Set `tie_with_best` on every record that has per-seed values: whether its forget score is not
    significantly different from the best such row's (mark_ties); the best row also gets `best_mean`."""
    rows = {r["model"]: [s["metrics"][forget_score] for s in r["per_seed"]] for r in records if r.get("per_seed")}
    if len(rows) < 2:
        return
    ties, best = mark_ties(rows, higher_is_better, log), best_row(rows, higher_is_better, log)
    for r in records:
        if r["model"] in ties:
            r["tie_with_best"], r["best_mean"] = ties[r["model"]], r["model"] == best
