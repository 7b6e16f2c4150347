"""Results files of an experiment: results.json, results.csv, leaderboard.md (SPEC section 7). Writes are atomic."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from evals.plots import REFERENCE_ROWS, write_plots
from evals.tofu_metrics import HIGHER_IS_BETTER, UTILITY_COMPONENTS
from unlearnbench.cache import atomic_write_text, write_json

HEADLINE = ["forget_quality", "model_utility", "forget_prob", "forget_rougeL", "forget_truth_ratio"]
COST_COLUMNS = ["wall_seconds", "relative_cost", "tokens", "flops", "peak_memory_bytes"]


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def _best(records: list[dict], task: str, metric: str):
    """Best value of `metric` among a task's unlearned rows (target/retain are references, not contenders)."""
    values = [r["metrics"][metric] for r in records if r["task"] == task and r["status"] == "ok"
              and r["model"] not in REFERENCE_ROWS and metric in r["metrics"]]
    if not values or metric not in HIGHER_IS_BETTER:
        return None
    return max(values) if HIGHER_IS_BETTER[metric] else min(values)


def leaderboard(records: list[dict]) -> str:
    out = ["# Leaderboard", "",
           "↑ higher is better, ↓ lower is better; **bold** marks the best unlearned row per task. Forget quality "
           "is the KS-test p-value against the retain model (1.0 = indistinguishable from retraining); model utility "
           "is the harmonic mean of nine retain / real-author / world-fact scores (TOFU). `relative_cost` is the "
           "row's unlearning wall time over the retain model's training time. On the forget set, lower Prob and ROUGE "
           "mean more forgotten, but the retain model's values are the goal: far below them is over-forgetting, "
           "which the truth ratio and forget quality expose.", ""]
    for task in dict.fromkeys(r["task"] for r in records):
        arrow = lambda m: "↑" if HIGHER_IS_BETTER.get(m, True) else "↓"  # noqa: E731
        cols = HEADLINE + ["wall_seconds", "relative_cost"]
        out += [f"## {task}", "", "| model | " + " | ".join(
            f"{c} {arrow(c)}" if c in HIGHER_IS_BETTER else c for c in cols) + " |",
            "|" + "---|" * (len(cols) + 1)]
        for r in (r for r in records if r["task"] == task):
            if r["status"] != "ok":
                out.append(f"| {r['model']} | failed: {r.get('error', '')} |" + " |" * (len(cols) - 1))
                continue
            cells = []
            for c in cols:
                value = r["metrics"].get(c, r["cost"].get(c))
                text = _fmt(value)
                best = value is not None and r["model"] not in REFERENCE_ROWS and value == _best(records, task, c)
                cells.append(f"**{text}**" if best else text)
            out.append(f"| {r['model']} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def results_csv(records: list[dict]) -> str:
    ordered = HEADLINE + UTILITY_COMPONENTS + [k for r in records for k in r.get("metrics", {})]
    metrics = list(dict.fromkeys(ordered))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["task", "model", "status", *metrics, *COST_COLUMNS, "error"])
    for r in records:
        writer.writerow([r["task"], r["model"], r["status"], *(r.get("metrics", {}).get(m, "") for m in metrics),
                         *(r.get("cost", {}).get(c, "") for c in COST_COLUMNS), r.get("error", "")])
    return buf.getvalue()


def write_results(out: Path, payload: dict) -> None:
    """results.json, per_item.json (per-item statistics of every row, when given), results.csv, leaderboard.md
    and plots/, each file written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    payload = dict(payload)
    per_item = payload.pop("per_item", None)
    if per_item is not None:
        write_json(out / "per_item.json", per_item)
    write_json(out / "results.json", payload)
    write_plots(payload["results"], out / "plots")
    atomic_write_text(out / "results.csv", results_csv(payload["results"]))
    atomic_write_text(out / "leaderboard.md", leaderboard(payload["results"]))
