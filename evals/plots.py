"""Plots of a results table: forget quality (log) vs model utility, relative cost vs forget quality, per task."""
from __future__ import annotations

import os
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

REFERENCE_ROWS = ("target", "retain", "Retrain")   # baselines to read against, not contenders
FLOOR = 1e-300   # a KS p-value can underflow to 0; it is drawn at the floor of the log axis


def _slug(task: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", task)


def _scatter(ax, points, colours: dict, xlog=False, ylog=False):
    for i, (label, x, y) in enumerate(points):
        marker = "*" if label in REFERENCE_ROWS else "o"
        ax.scatter(x, y, marker=marker, s=90 if marker == "*" else 40, color=colours[label])
        # alternate label offsets so that neighbouring points stay readable
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, (4, -11, 12)[i % 3]), fontsize=8)
    if xlog:
        ax.set_xscale("log")
    if ylog:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)


def _save(fig, path: Path) -> Path:
    """Write the figure atomically (a temporary file renamed into place) and close it."""
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def write_plots(records: list[dict], folder: Path) -> list[Path]:
    """One PNG per task and plot; returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for task in dict.fromkeys(r["task"] for r in records):
        ok = [r for r in records if r["task"] == task and r["status"] == "ok"]
        if not ok:
            continue
        fq = lambda r: max(r["metrics"]["forget_quality"], FLOOR)  # noqa: E731
        palette = plt.get_cmap("tab20").colors
        colours = {r["model"]: palette[i % len(palette)] for i, r in enumerate(ok)}  # one colour per model
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        _scatter(ax, [(r["model"], fq(r), r["metrics"]["model_utility"]) for r in ok], colours, xlog=True)
        ax.set_xlabel("forget quality (KS p-value vs retain model, log) →")
        ax.set_ylabel("model utility →")
        ax.set_title(f"{task}: forgetting vs utility (top right is best)")
        written.append(_save(fig, folder / f"{_slug(task)}_quality_vs_utility.png"))
        costed = [r for r in ok if r["cost"].get("relative_cost") is not None and r["model"] not in ("target",)]
        if costed:
            fig, ax = plt.subplots(figsize=(6.5, 4.5))
            _scatter(ax, [(r["model"], max(r["cost"]["relative_cost"], 1e-6), fq(r)) for r in costed],
                     colours, xlog=True, ylog=True)
            ax.axvline(0.2, color="grey", linestyle="--", linewidth=1)
            ax.text(0.2, ax.get_ylim()[0], " 20% of retraining", color="grey", fontsize=8, va="bottom")
            ax.set_xlabel("relative cost (unlearning wall time / retain-model training, log)")
            ax.set_ylabel("forget quality (log) →")
            ax.set_title(f"{task}: cost vs forgetting (top left is best)")
            written.append(_save(fig, folder / f"{_slug(task)}_cost_vs_quality.png"))
    return written
