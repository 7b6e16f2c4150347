"""Plots of a results table: forget quality (log) vs model utility, relative cost vs forget quality, per task; and
tune.py's unlearning curves."""
from __future__ import annotations

import os
import re
from pathlib import Path

from evals.records import succeeded
from unlearnbench.heavy import matplotlib_ticker
from unlearnbench.heavy import pyplot as plt

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


def _axis_value(r: dict, metric: str, log: bool) -> float:
    value = r["metrics"][metric]
    return max(value, FLOOR) if log else value


def _label(metric: str, meta: dict) -> str:
    direction = "→" if meta["higher_is_better"].get(metric, True) else "← (lower is better)"
    return f"{metric}{' (log)' if metric in meta['log_scale'] else ''} {direction}"


def write_plots(records: list[dict], folder: Path, meta_of) -> list[Path]:
    """One PNG per task and plot (forget score vs utility; relative cost vs forget score), plus one figure with
    every task side by side when there are several. `meta_of(task)` gives the task's forget score, utility,
    directions and log-scale metrics. Returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    palette = plt.get_cmap("tab20").colors  # type: ignore[attr-defined]  # a ListedColormap
    models = list(dict.fromkeys(r["model"] for r in records))
    colours = {m: palette[i % len(palette)] for i, m in enumerate(models)}   # one colour per model, every plot
    written = request_plots([r for r in records if "request" in r], folder, meta_of, colours)
    records = [r for r in records if "request" not in r]
    tasks = [t for t in dict.fromkeys(r["task"] for r in records)
             if succeeded(records, t)]
    for task in tasks:
        meta = meta_of(task)
        fs, ut = meta["forget_score"], meta["utility"]
        fs_log = fs in meta["log_scale"]
        ok = succeeded(records, task)
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for r in (r for r in ok if r.get("per_seed")):       # each seed's own point, faint, beside the mean
            ax.scatter([max(s["metrics"][fs], FLOOR) if fs_log else s["metrics"][fs] for s in r["per_seed"]],
                       [s["metrics"][ut] for s in r["per_seed"]], s=12, alpha=0.35, color=colours[r["model"]])
        _scatter(ax, [(r["model"], _axis_value(r, fs, fs_log), r["metrics"][ut]) for r in ok], colours, xlog=fs_log)
        ax.set_xlabel(_label(fs, meta))
        ax.set_ylabel(_label(ut, meta))
        ax.set_title(f"{task}: forgetting vs utility")
        written.append(_save(fig, folder / f"{_slug(task)}_quality_vs_utility.png"))
        costed = [r for r in ok if r["cost"].get("relative_cost") is not None and r["model"] not in ("target",)]
        if costed:
            fig, ax = plt.subplots(figsize=(6.5, 4.5))
            _scatter(ax, [(r["model"], max(r["cost"]["relative_cost"], 1e-6), _axis_value(r, fs, fs_log))
                          for r in costed], colours, xlog=True, ylog=fs_log)
            ax.axvline(0.2, color="grey", linestyle="--", linewidth=1)
            ax.text(0.2, ax.get_ylim()[0], " 20% of retraining", color="grey", fontsize=8, va="bottom")
            ax.set_xlabel("relative cost (unlearning wall time / retain-model training, log)")
            ax.set_ylabel(_label(fs, meta))
            ax.set_title(f"{task}: cost vs forgetting")
            written.append(_save(fig, folder / f"{_slug(task)}_cost_vs_quality.png"))
        populated = [r for r in ok if "dist_forgetting" in r["metrics"]]
        if populated:       # the challenge's distributional score (orchestration/populations.py) against utility
            fig, ax = plt.subplots(figsize=(6.5, 4.5))
            _scatter(ax, [(r["model"], r["metrics"]["dist_forgetting"], r["metrics"][ut]) for r in populated],
                     colours)
            ax.set_xlabel(f"distributional forgetting F, N = {populated[0]['metrics']['dist_models']} "
                          f"models a side (1 = indistinguishable from retraining) →")
            ax.set_ylabel(_label(ut, meta))
            ax.set_title(f"{task}: populations against retraining")
            written.append(_save(fig, folder / f"{_slug(task)}_distributional_vs_utility.png"))
        attacked = [r for r in ok if r["metrics"].get("relearn_recovery") is not None]
        if attacked:        # does the knowledge come back? lower right: forgets, and stays forgotten
            fig, ax = plt.subplots(figsize=(6.5, 4.5))
            _scatter(ax, [(r["model"], _axis_value(r, fs, fs_log), r["metrics"]["relearn_recovery"])
                          for r in attacked], colours, xlog=fs_log)
            ax.axhline(0.0, color="grey", linestyle="--", linewidth=1)
            ax.set_xlabel(_label(fs, meta))
            ax.set_ylabel("relearn recovery (0 = the retain model's, 1 = the target's) ↓")
            ax.set_title(f"{task}: forgetting vs relearning")
            written.append(_save(fig, folder / f"{_slug(task)}_quality_vs_recovery.png"))
    if len(tasks) > 1:
        fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.5))
        for ax, task in zip(axes, tasks):
            meta = meta_of(task)
            fs, ut = meta["forget_score"], meta["utility"]
            ok = succeeded(records, task)
            _scatter(ax, [(r["model"], _axis_value(r, fs, fs in meta["log_scale"]), r["metrics"][ut]) for r in ok],
                     colours, xlog=fs in meta["log_scale"])
            ax.set_xlabel(_label(fs, meta))
            ax.set_ylabel(_label(ut, meta))
            ax.set_title(task)
        fig.suptitle("every method on every task (same colour = same method)")
        written.append(_save(fig, folder / "across_tasks.png"))
    return written


def request_plots(records: list[dict], folder: Path, meta_of, colours: dict) -> list[Path]:
    """Per task and mode: the forget score and the utility after each request, one line per row (target and the
    gold standard dashed). Sequential: against the request number; cumulative: against the forget set's size."""
    written = []
    for task in dict.fromkeys(r["task"] for r in records):
        meta = meta_of(task)
        fs, ut = meta["forget_score"], meta["utility"]
        ok = succeeded(records, task)
        for mode in dict.fromkeys(r["mode"] for r in ok if r["mode"] != "reference"):
            fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
            rows = [r for r in ok if r["mode"] in (mode, "reference")]
            size = {r["request"]: r["forget_rows"] for r in rows if "forget_rows" in r}
            cumulative = mode == "cumulative"
            x_of = lambda r: size.get(r["request"], r["request"]) if cumulative else r["request"]
            for model in dict.fromkeys(r["model"] for r in rows):
                line = sorted((r for r in rows if r["model"] == model), key=lambda r: r["request"])
                style = "--" if model in REFERENCE_ROWS else "-"
                for ax, metric in zip(axes, (fs, ut)):
                    ax.plot([x_of(r) for r in line], [_axis_value(r, metric, metric in meta["log_scale"])
                                                      for r in line], style, marker="o", color=colours[model],
                            label=model)
            for ax, metric in zip(axes, (fs, ut)):
                ax.set_xlabel("forget rows unlearned at once" if cumulative else "request")
                ax.set_ylabel(_label(metric, meta))
                if metric in meta["log_scale"]:
                    ax.set_yscale("log")
                ax.xaxis.set_major_locator(matplotlib_ticker.MaxNLocator(integer=True))
                ax.grid(alpha=0.3)
            axes[1].legend(fontsize=7, loc="best")
            fig.suptitle(f"{task}: {mode} requests (scored on every fold forgotten so far)")
            written.append(_save(fig, folder / f"{_slug(task)}_requests_{mode}.png"))
    return written


def tuning_curves(result: dict, folder: Path) -> Path | None:
    """tune.py's unlearning curves (orchestration/tuning.py): per method, its chosen configuration's validation
    objective (forget quality on TOFU) and utility (seed means) after each curve point, the chosen stopping point
    ringed and the utility floor dashed. None when the sweep had no curve."""
    methods = {n: m for n, m in result["methods"].items()
               if any(len(c.get("curve", [])) > 1 for c in m["configurations"])}
    if not methods:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    palette = plt.get_cmap("tab10").colors  # type: ignore[attr-defined]  # a ListedColormap
    objective = result["objective"]
    log = objective["log"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for i, (name, m) in enumerate(methods.items()):
        row = m["configurations"][m["chosen_configuration"]]
        steps = [p["updates"] for p in row["curve"]]
        for ax, key in zip(axes, ("forget_score", "utility")):
            values = [max(p[key], FLOOR) if log else p[key] for p in row["curve"]]
            ax.plot(steps, values, "-o", markersize=3, color=palette[i % len(palette)], label=name)
            ax.scatter([row["updates"]], [max(row[key], FLOOR) if log else row[key]], s=110, facecolors="none",
                       edgecolors=palette[i % len(palette)])
    if log:
        axes[0].set_yscale("log")
    axes[0].set_ylabel(f"validation {objective['metric'].replace('_', ' ')}{' (log)' if log else ''} "
                       f"{'→' if objective['higher_is_better'] else '(lower is better)'}")
    axes[1].axhline(result["floor"], color="grey", linestyle="--", linewidth=1)
    axes[1].set_ylabel("validation model utility →")
    for ax in axes:
        ax.set_xlabel("unlearning updates")
        ax.xaxis.set_major_locator(matplotlib_ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="best")
    fig.suptitle(f"{result['task']}: the unlearning curve of each method's chosen configuration (ringed: where it "
                 f"stops)")
    return _save(fig, folder / "tuning_curves.png")
