"""A table over replicates of the whole pipeline (worlds): each row's numbers over independently drawn worlds,
comparisons paired within worlds, and how stable the ranking is (docs/protocol.md, "Worlds").

A world is one draw of everything a table rests on: the synthetic world (names, facts, templates), the base
model's pretraining, the target's and the retain model's fine-tunes, and the unlearning run. A row's value in a
world is its mean over that world's unlearning seeds; across worlds:
- mean and 95 % t interval over worlds per metric (evals/spread.py's `summarize`); log-scaled metrics (TOFU's
  forget quality, a KS p-value spanning decades) on log10: the geometric mean, the interval of log10 mapped back,
  as the literature averages log10 p-values (the arithmetic mean of p-values is set by the largest one);
- significance: a paired t-test over worlds (two rows in one world share its data and target), on log10 where the
  forget score is log-scaled: `tie_with_best` where p >= 0.05 against the best mean, `best_mean` on the best;
- rank stability: Kendall's W of the contenders' forget-score ranks across worlds (1 = every world ranks them
  alike, 0 = no agreement), each row's mean rank, the worlds in which it leads (the best forget score among that
  world's rows above the utility floor), and its share of 2000 bootstrap resamples of the worlds in which it has
  the best mean (how sure "this row leads" is);
- `pairs`: the paired p-value of every two contenders, for any comparison a reader wants to make.
"""
from __future__ import annotations

import numpy as np

from evals import spread
from evals.records import succeeded
from evals.report import contender
from unlearnbench.heavy import scipy_stats

BOOTSTRAP = 2000


def combine(runs: list[tuple[int, list[dict]]], log_scale=()) -> list[dict]:
    """One task's records over worlds. runs: [(world, that world's records)], every world the same rows in the
    same order. Returns one record per row: the first world's fields, `metrics` the means over worlds (geometric
    where log-scaled), `spread` their summaries, `per_world` each world's metrics, cost the mean cost, and the
    status and error of the first world in which the row failed."""
    names = [r["model"] for r in runs[0][1]]
    for world, records in runs[1:]:
        if [r["model"] for r in records] != names:
            raise ValueError(f"world {world} has rows {[r['model'] for r in records]}, the first world {names}")
    return [_combine_row([(w, records[i]) for w, records in runs], log_scale) for i in range(len(names))]


def _combine_row(per_world: list[tuple[int, dict]], log_scale) -> dict:
    first = per_world[0][1]
    out = {k: v for k, v in first.items() if k not in ("spread", "per_seed", "tie_with_best", "best_mean",
                                                       "below_utility_floor", "error")}
    failed = next(((w, r) for w, r in per_world if r["status"] != "ok"), None)
    if failed is not None:
        out["status"], out["error"] = failed[1]["status"], f"world {failed[0]}: {failed[1].get('error', '')}"
        out["metrics"] = {}
        return out
    metrics = [r["metrics"] for _, r in per_world]
    keys = [k for k in metrics[0] if all(_numeric(m.get(k)) for m in metrics)]
    out["per_world"] = [{"world": w, "metrics": r["metrics"], "below_utility_floor": bool(r.get("below_utility_floor"))}
                        for w, r in per_world]
    out["spread"] = {k: spread.summarize([m[k] for m in metrics], log=k in log_scale) for k in keys}
    out["metrics"] = {**first["metrics"], **{k: s["mean"] for k, s in out["spread"].items()}}
    out["cost"] = _mean_fields([r["cost"] for _, r in per_world])
    if first.get("eval_cost"):
        out["eval_cost"] = _mean_fields([r.get("eval_cost") or {} for _, r in per_world])
    counts: dict[str, int] = {}
    for _, r in per_world:
        for probe, n in ((r.get("worst_probe") or {}).get("counts") or {}).items():
            counts[probe] = counts.get(probe, 0) + n
    if counts:
        out["worst_probe"] = {"first": first["worst_probe"]["first"], "counts": counts}
    return out


def _numeric(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _mean_fields(dicts: list[dict]) -> dict:
    """Numeric fields averaged (integers stay integers, rounded), others the first's."""
    out = dict(dicts[0])
    for k in dicts[0]:
        values = [d.get(k) for d in dicts]
        if all(_numeric(x) for x in values):
            mean = float(np.mean([float(x) for x in values if x is not None]))
            out[k] = round(mean) if all(isinstance(x, int) for x in values) else mean
    return out


def mark(records: list[dict], forget_score: str, higher: bool, log: bool) -> dict:
    """The marks and the ranking's stability over worlds, on the contenders (records of `combine`, after the
    utility gate). Sets `best_mean` / `tie_with_best` / `leads_in` on the records; returns the task's summary:
    {"worlds", "rows", "kendall_w", "mean_rank", "leads", "best_share", "pairs"}."""
    rows = [r for r in succeeded(records) if contender(r) and r.get("per_world")]
    if len(rows) < 2:
        return {}
    values = {r["model"]: [w["metrics"][forget_score] for w in r["per_world"]] for r in rows}
    ties, best = spread.mark_ties(values, higher, log), spread.best_row(values, higher, log)
    floor = {r["model"]: [w["below_utility_floor"] for w in r["per_world"]] for r in rows}
    summary = stability(values, higher, log, floor)
    for r in rows:
        r["tie_with_best"], r["best_mean"] = ties[r["model"]], r["model"] == best
        r["leads_in"] = summary["leads"][r["model"]]
    names = list(values)
    summary["pairs"] = {a: {b: spread.paired_p(values[a], values[b], log) for b in names if b != a} for a in names}
    return summary


def stability(values: dict[str, list[float]], higher: bool, log: bool, excluded: dict | None = None) -> dict:
    """Kendall's W of the rows' ranks across worlds, each row's mean rank (1 = best), the worlds in which it leads
    (excluded[row][k]: the row may not lead world k, e.g. below the utility floor there) and its bootstrap share
    of resampled world sets in which its mean is best. values: {row: per-world values, the same worlds}."""
    names = list(values)
    x = np.array([spread.on_scale(values[n], log) for n in names])         # rows x worlds
    x = -x if higher else x                                                # lower is better from here on
    n, m = x.shape
    ranks = np.array([scipy_stats.rankdata(x[:, k]) for k in range(m)]).T  # rows x worlds, 1 = best
    ties = sum(((c ** 3 - c).sum() for c in (np.unique(x[:, k], return_counts=True)[1] for k in range(m))), 0.0)
    s = float(((ranks.sum(axis=1) - m * (n + 1) / 2) ** 2).sum())
    denominator = m ** 2 * (n ** 3 - n) - m * ties
    kendall_w = 12 * s / denominator if m > 1 and denominator > 0 else None
    barred = np.array([(excluded or {}).get(name, [False] * m) for name in names], dtype=bool)
    masked = np.where(barred, np.inf, x)
    leaders = masked.argmin(axis=0)
    rng = np.random.default_rng(0)
    picks = rng.integers(0, m, size=(BOOTSTRAP, m))
    best = x[:, picks].mean(axis=2).argmin(axis=0)                          # per resample, the row of best mean
    return {"worlds": m, "rows": n, "kendall_w": kendall_w,
            "mean_rank": {name: float(ranks[i].mean()) for i, name in enumerate(names)},
            "leads": {name: int((leaders == i).sum()) for i, name in enumerate(names)},
            "best_share": {name: float((best == i).mean()) for i, name in enumerate(names)}}
