"""Results files of an experiment: results.json, results.csv, leaderboard.md (docs/protocol.md, "Results").
Writes are atomic.

Each task's section of results.json (`datasets`) says which metrics it reports, their directions, and which one
is its forget score and which its utility; the tables and plots are built from those. Only the intro text names
the two families, and results.json files older than that section are read as TOFU."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from evals.plots import REFERENCE_ROWS, write_plots
from evals.records import succeeded
from evals.tofu_metrics import HIGHER_IS_BETTER as TOFU_DIRECTIONS
from unlearnbench.cache import atomic_write_text, write_json

COST_COLUMNS = ["wall_seconds", "relative_cost", "tokens", "flops", "peak_memory_bytes"]
# results.json files written before tasks declared their metrics were all TOFU
TOFU_META = {"headline": ["forget_quality", "model_utility", "forget_prob", "forget_rougeL", "forget_truth_ratio"],
             "higher_is_better": TOFU_DIRECTIONS, "forget_score": "forget_quality", "utility": "model_utility",
             "log_scale": ["forget_quality"]}
INTRO = ("↑ higher is better, ↓ lower is better; **bold** marks the best unlearned row per task. TOFU: forget quality "
         "is the KS-test p-value against the retain model (1.0 = indistinguishable from retraining); model utility is "
         "the harmonic mean of nine retain / real-author / world-fact scores. On the forget set, lower Prob and ROUGE "
         "mean more forgotten, but the retain model's values are the goal: far below them is over-forgetting, which "
         "the truth ratio and forget quality expose. WMDP: accuracies (lm-eval) on the forget domain (chance 0.25 is "
         "the goal), the neighbouring domain and general knowledge. MUSE: ROUGE-L F1 x 100 of the forget documents' "
         "continuations (VerbMem) and of answers about them (KnowMem; on the retain documents: the utility); PrivLeak "
         "0 is ideal, -100 as visible as the target. `relative_cost` is the row's unlearning wall time over the retain "
         "model's training time.")


def task_meta(datasets: dict | None, task: str) -> dict:
    return {**TOFU_META, **((datasets or {}).get(task) or {})}


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def _best(records: list[dict], task: str, metric: str, directions: dict):
    """Best value of `metric` among a task's unlearned rows (target/retain are references, not contenders)."""
    values = [r["metrics"][metric] for r in succeeded(records, task)
              if contender(r) and r["metrics"].get(metric) is not None]
    if not values or metric not in directions:
        return None
    return max(values) if directions[metric] else min(values)


def contender(r: dict) -> bool:
    """Whether a row may be marked best: not a reference (target, retain, Retrain, a SISA-target), not below the
    utility floor, not left untrained (unlearn.epochs=0 or lr 0)."""
    return (r["model"] not in REFERENCE_ROWS and not r.get("reference") and not r.get("below_utility_floor")
            and not r.get("untrained"))


def _arrow(metric: str, directions: dict) -> str:
    return f"{metric} {'↑' if directions[metric] else '↓'}" if metric in directions else metric


def leaderboard(records: list[dict], datasets: dict | None = None) -> str:
    out = ["# Leaderboard", "", INTRO, ""]
    tasks = list(dict.fromkeys(r["task"] for r in records))
    for task in tasks:
        meta = task_meta(datasets, task)
        if any("request" in r for r in records if r["task"] == task):
            out += requests_section(records, task, meta)
            continue
        directions, cols = meta["higher_is_better"], meta["headline"] + ["wall_seconds", "relative_cost"]
        out += [f"## {task}", "", "| model | " + " | ".join(_arrow(c, directions) for c in cols) + " |",
                "|" + "---|" * (len(cols) + 1)]
        for r in (r for r in records if r["task"] == task):
            if r["status"] != "ok":
                out.append(f"| {r['model']} | {r['status']}: {r.get('error', '')} |" + " |" * (len(cols) - 1))
                continue
            cells = []
            for c in cols:
                value = r["metrics"].get(c, r["cost"].get(c))
                text = _fmt(value)
                if c in r.get("spread", {}):
                    low, high = r["spread"][c]["ci95"]
                    text += f" [{_fmt(low)}, {_fmt(high)}]"
                best = value is not None and contender(r) and value == _best(records, task, c, directions)
                tie = c == meta["forget_score"] and r.get("tie_with_best") and not best
                cells.append(f"**{text}**" if best else f"{text} ≈" if tie else text)
            out.append(f"| {row_label(r)} | " + " | ".join(cells) + " |")
        seeded = [r for r in records if r["task"] == task and r.get("per_seed")]
        if any(r.get("per_world") for r in records if r["task"] == task):
            out += ["", worlds_note(meta)]
        elif seeded:
            out += ["", f"Method rows: mean over {len(seeded[0]['per_seed'])} unlearning seeds [95 % t interval; "
                        f"log-scaled metrics: geometric mean, interval of log10]. ≈: forget score not significantly "
                        f"different from the best row's (paired t-test over seeds, p ≥ 0.05; evals/spread.py). One "
                        f"world: the seeds vary the unlearning run on one synthetic world and one target, so the "
                        f"marks hold for this draw; `worlds=5` replicates the whole pipeline (docs/protocol.md, "
                        f"Worlds)."]
        rows = [r for r in records if r["task"] == task]
        if any(r.get("settings") or r.get("below_utility_floor") for r in rows):
            out += ["", f"(tuned): settings chosen by tune.py on a validation split; (set by hand), (paper defaults): "
                        f"not tuned. †: utility below {meta.get('utility_floor', 0.9)} x the retain model's, never "
                        f"marked best."]
        if any(r.get("checkpoint") or r.get("untrained") for r in rows):
            out += ["", "(checkpoint): a given model (checkpoints.<row>), evaluated only; its training cost is "
                        "unknown. (untrained): unlearn.epochs=0 or lr 0 left the row the target's weights; never "
                        "marked best."]
        out.append("")
        out += privacy_table(records, task)
        out += robustness_table(records, task)
        out += probes_table(records, task, meta)
        out += guarantees_table(records, task)
    single = [t for t in tasks if not any("request" in r for r in records if r["task"] == t)]
    if len(single) > 1:
        out += cross_task_table(records, datasets, single)
    return "\n".join(out)


def worlds_note(meta: dict) -> str:
    """What a table over worlds shows, and how stable its ranking is (evals/worlds.py)."""
    w = meta["worlds"]
    seeds = f"{w['seeds']} unlearning seed{'s' if w['seeds'] > 1 else ''} per world"
    last = w["first"] + w["count"] - 1
    text = (f"Every row: mean over {w['count']} worlds (worlds {w['first']}-{last}: each its own "
            f"synthetic world, base, target, retain and unlearning run; {seeds}) [95 % t interval over worlds; "
            f"log-scaled metrics: geometric mean, interval of log10]. ≈: forget score not significantly different "
            f"from the best row's (paired t-test over worlds, p ≥ 0.05; evals/worlds.py).")
    if w.get("kendall_w") is not None:
        leads = ", ".join(f"{row} {n}" for row, n in sorted(w["leads"].items(), key=lambda kv: -kv[1]) if n)
        share = ", ".join(f"{row} {s:.2f}" for row, s in sorted(w["best_share"].items(), key=lambda kv: -kv[1]) if s)
        text += (f" Rank stability: Kendall's W = {w['kendall_w']:.2f} over {w['rows']} rows; worlds led: {leads}; "
                 f"share of bootstrap resamples of the worlds in which the row has the best mean: {share}.")
    return text


REQUESTS_INTRO = ("Requests one at a time (orchestration/requests.py). Request k: the row after answering requests "
                  "1..k, scored on every fold forgotten so far against its gold standard (the base retrained "
                  "without folds 1..k), and on fold k alone (`fold_`). sequential: each request unlearns its fold "
                  "from the row's model after the previous request; cumulative: folds 1..k at once from the "
                  "target. Cumulative cost ÷ retraining: the wall time of requests 1..k over retraining a gold "
                  "standard at each of them. target / retain: the untouched target and request k's gold standard.")


def requests_tables(records: list[dict], task: str, meta: dict) -> list[str]:
    """Per mode (named in the header's first cell), one row per model: the forget score and utility after each
    request, and what all the requests cost against retraining at each of them (the last column: wall-time
    based). Read by scripts/readme_tables.py."""
    rows = [r for r in records if r["task"] == task and "request" in r]
    n = max(r["request"] for r in rows)
    d, fs, ut = meta["higher_is_better"], meta["forget_score"], meta["utility"]
    out = []
    for mode in dict.fromkeys(r["mode"] for r in rows if r["mode"] != "reference"):
        head = [mode] + [f"{_arrow(m, d)} @{k}" for m in (fs, f"fold_{fs}", ut) for k in range(1, n + 1)
                          if not (m == f"fold_{fs}" and k == 1)] + [f"cumulative cost ÷ retraining @{n}"]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for model in dict.fromkeys(r["model"] for r in rows if r["mode"] in (mode, "reference")):
            by_k = {r["request"]: r for r in rows if r["model"] == model and r["mode"] in (mode, "reference")}
            cells = [model]
            for m in (fs, f"fold_{fs}", ut):
                cells += [_fmt(by_k[k]["metrics"].get(m)) if by_k.get(k, {}).get("status") == "ok" else
                          (by_k[k]["status"] if k in by_k else "—") for k in range(1, n + 1)
                          if not (m == f"fold_{fs}" and k == 1)]
            last = by_k.get(n, {}).get("cumulative_cost") or {}
            cells.append(_fmt(last.get("relative_cost")))
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return out


def requests_section(records: list[dict], task: str, meta: dict) -> list[str]:
    seeds = next((len(r["per_seed"]) for r in records if r["task"] == task and r.get("per_seed")), 1)
    note = f" Method rows: mean over {seeds} unlearning seeds (spread in results.json)." if seeds > 1 else ""
    return [f"## {task}: requests over time", "", REQUESTS_INTRO + note, ""] + requests_tables(records, task, meta)


def row_label(r: dict) -> str:
    """The row's name, how its settings were chosen (or that it is a given checkpoint, or untrained), and † where
    its utility fell below the floor."""
    notes = [r["settings"]] if r.get("settings") else []
    notes += ["checkpoint"] if r.get("checkpoint") else []
    notes += ["untrained"] if r.get("untrained") else []
    return r["model"] + "".join(f" ({n})" for n in notes) + (" †" if r.get("below_utility_floor") else "")


PRIVACY_COLUMNS = ["auc_loss", "auc_zlib", "auc_min_k", "auc_min_k_pp", "auc_reference", "priv_leak",
                   "exact_memorization", "extraction_strength", "lira_auc", "lira_offline_auc", "lira_tpr_at_0.01",
                   "lira_tpr_at_0.001", "dist_forgetting", "dist_score", "dist_models"]
PRIVACY_INTRO = ("Membership and memorization (evals/privacy.py). `auc_*`: ROC AUC of an attack's score on forget vs "
                 "holdout items; 1.0 = the forget set still looks trained on, 0.5 = it looks like unseen data (the "
                 "goal; read it against the retain row), below 0.5 = it stands out the other way. `priv_leak`: "
                 "MUSE's PrivLeak in MUSE's orientation, on Min-K%: 0 is ideal, about -100 = as visible as the "
                 "untouched target, positive = over-unlearned. `lira_tpr_at_*`: LiRA's true "
                 "positives at that false-positive rate, lower is better. `dist_forgetting` ↑: the unlearning "
                 "challenge's F (1 = the row's population of models is indistinguishable from retrained models), "
                 "`dist_score` ↑ = F x retain and world-fact utility ratios; `dist_models` = N a side. On the retain "
                 "row, F compares an independent retain population: the estimator's ceiling at this N.")


def privacy_table(records: list[dict], task: str) -> list[str]:
    rows = succeeded(records, task)
    return _metric_table(f"{task}: did it really forget?", PRIVACY_INTRO, rows,
                         [c for c in PRIVACY_COLUMNS if any(c in r["metrics"] for r in rows)])


def _metric_table(title: str, intro: str, rows: list[dict], cols: list[str]) -> list[str]:
    """A section of one row per model and the given metric columns (none: no section)."""
    if not cols:
        return []
    out = [f"### {title}", "", intro, "", "| model | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    out += [f"| {r['model']} | " + " | ".join(_fmt(r["metrics"].get(c)) for c in cols) + " |" for r in rows]
    return out + [""]


ROBUSTNESS_INTRO = ("Recovery attacks on each row's model (docs/recovery.md; "
                    "orchestration/attacks/). `relearn_*`: after fine-tuning on the relearn part of the forget "
                    "set, scored on the other part "
                    "only; `quant<bits>_*`: loaded with bitsandbytes at that many bits (8: LLM.int8, 4: NF4). "
                    "`*_recovery` ↓ = (m(row, attacked) - m(retain, attacked)) / (m(target) - m(retain, attacked)), "
                    "m the forget measure: 0 = what the retain model shows under the same attack, 1 = all of the "
                    "target's knowledge back; `unattacked_recovery`: the same without an attack. "
                    "`relearn_ou_score` ↑: OpenUnlearning's min(delta_retain / delta_row, 1). Method rows: their "
                    "first seed's model.")


def robustness_table(records: list[dict], task: str) -> list[str]:
    """Every attack's columns (a record's `attack_cost` names the attacks it went through: their metrics' prefixes)."""
    rows = succeeded(records, task)
    named = dict.fromkeys(a for r in rows for a in r.get("attack_cost") or {})
    attacks = tuple(["unattacked_"] + [f"{a}_" for a in named])
    rows = [r for r in rows if any(k.startswith(attacks) for k in r["metrics"])]
    return _metric_table(f"{task}: does it come back?", ROBUSTNESS_INTRO, rows,
                         list(dict.fromkeys(k for r in rows for k in r["metrics"] if k.startswith(attacks))))


PROBES_INTRO = ("Each forget item asked in other words, formats, contexts or frames (docs/probes.md). "
                "`probe_<p>_recovery` ↓ = (m(row) - m(retain)) / (m(target) - m(retain)), m the probe's mean forget "
                "score (`plain`: the task's own question): 0 = answers like the retain model under the same probe, "
                "1 = like the target. `worst_recovery`: the highest of these over the plain question and the probes "
                "that discriminate, `worst_probe` the one that attains it (the first seed's); "
                "`worst_forget_quality`: the lowest per-probe forget quality over the same probes.")


def probes_table(records: list[dict], task: str, meta: dict) -> list[str]:
    """The probes' columns (none asked: no section), after a line per probe saying what it changes and whether it
    discriminates."""
    info = meta.get("probes") or {}
    if not info.get("tests"):
        return []
    rows = [{**r, "metrics": {**r["metrics"], "worst_probe": (r.get("worst_probe") or {}).get("first")}}
            for r in records if r["task"] == task and r["status"] == "ok"]
    cols = [k for k in ("forget_quality", "worst_forget_quality", "worst_recovery") if any(k in r["metrics"]
                                                                                             for r in rows)]
    cols += ["worst_probe"] + [f"probe_{p}_recovery" for p in ["plain", *info["asked"]]]
    changes = info.get("changes", {})
    tests = "; ".join(f"{p}{f' ({changes[p]})' if p in changes else ''} "
                      f"{'discriminates' if t['discriminates'] else 'does not discriminate'} "
                      f"(target {_fmt(t['target'])}, retain {_fmt(t['retain'])}, p = {t['p_value']:.2g})"
                      for p, t in info["tests"].items())
    seeds = ("Method rows: their first seed's model (probe_seeds=all: the mean over every seed's)"
             if info.get("seeds", "all") == "first" else "Method rows: the mean over their seeds")
    return _metric_table(f"{task}: forgotten, or only hidden?",
                         f"{PROBES_INTRO} {seeds}. Test: {info['test']}. {tests}.", rows, cols)


GUARANTEES_INTRO = ("Rows with a guarantee (orchestration/guarantees.py). SISA(S=s): s shards of the target's rows "
                    "(by author or species), each a constituent trained slice by slice from the base; the model is "
                    "their aggregate (the mean of their next-token probabilities). The -target row is trained on "
                    "every row; the SISA row is after the forget request, which retrained only the slice steps shown, "
                    "and is exactly SISA trained without the forget rows. DP(eps=e): the base fine-tuned with DP-SGD "
                    "(opacus, per-row clipping, RDP accountant) at that budget; no unlearning step (cost 0). ÷ "
                    "retain: over the retain model's training; tokens are exact, wall times vary with the machine's "
                    "load (the retain model may have trained at another time). Wall-time columns: the first seed's. "
                    "SISA rows are not attacked by relearning or quantization (an aggregate of models).")
GUARANTEE_COLUMNS = ["row", "guarantee", "rows per shard", "retrained steps", "affected shards", "training tokens",
                     "unlearning tokens ÷ retain", "training wall s", "training wall ÷ retain",
                     "unlearning wall ÷ retain", "eval wall s"]
GUARANTEE_TIMED = {"training wall s", "training wall ÷ retain", "unlearning wall ÷ retain", "eval wall s"}


def guarantees_table(records: list[dict], task: str) -> list[str]:
    """The guarantee behind each SISA and DP row and what it cost (GUARANTEE_COLUMNS; none: no section)."""
    rows = [r for r in succeeded(records, task) if r.get("guarantee")]
    if not rows:
        return []
    retain: dict = next((r["cost"] for r in succeeded(records, task) if r["model"] == "retain"), {})

    def ratio(value, key: str) -> str:
        return _fmt(value / retain[key] if value is not None and retain.get(key) else None)

    out = [f"### {task}: rows with a guarantee", "", GUARANTEES_INTRO, "",
           "| " + " | ".join(GUARANTEE_COLUMNS) + " |", "|" + "---|" * len(GUARANTEE_COLUMNS)]
    for r in rows:
        g, training = r["guarantee"], r.get("training_cost") or r["cost"]
        if "epsilon" in g:
            what = (f"ε={g['epsilon']:g} (spent {g['epsilon_spent']:.3f}), δ={g['delta']:.1e}, clip {g['clip']:g}, "
                    f"σ={g['noise_multiplier']:.3f}, q={g['sample_rate']:.4f}, {g['steps']} steps")
            shards = redone = affected = "—"
        else:
            what = f"exact: {g['shards']} shards × {g['slices']} slices"
            shards = "/".join(map(str, g["rows_per_shard"]))
            redone = f"{g['retrained_steps']} of {g['slice_steps']}" if "retrained_steps" in g else "—"
            affected = ", ".join(map(str, g["affected_shards"])) if "affected_shards" in g else "—"
        unlearning = {} if r.get("reference") else r["cost"]
        cells = [r["model"], what, shards, redone, affected, f"{training['tokens']:,}",
                 ratio(unlearning.get("tokens"), "tokens"), _fmt(training["wall_seconds"]),
                 ratio(training["wall_seconds"], "wall_seconds"), ratio(unlearning.get("wall_seconds"), "wall_seconds"),
                 _fmt((r.get("eval_cost") or {}).get("wall_seconds"))]
        out.append("| " + " | ".join(cells) + " |")
    return out + [""]


def cross_task_table(records: list[dict], datasets: dict | None, tasks: list[str]) -> list[str]:
    """One row per method; per task its forget score, utility and relative cost, side by side, and where the run
    attacked or probed the rows, the relearn recovery and the probes' worst-case recovery."""
    metas = {t: task_meta(datasets, t) for t in tasks}
    extras = {t: [k for k in ("relearn_recovery", "worst_recovery")
                  if any(r["task"] == t and k in r["metrics"] for r in records)] for t in tasks}
    head = ["model"]
    for t in tasks:
        d = metas[t]["higher_is_better"]
        head += [f"{t} {_arrow(metas[t]['forget_score'], d)}", f"{t} {_arrow(metas[t]['utility'], d)}",
                 f"{t} relative_cost"] + [f"{t} {k} ↓" for k in extras[t]]
    out = ["## Across tasks", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by = {(r["task"], r["model"]): r for r in records}
    for model in dict.fromkeys(r["model"] for r in records):
        cells = [model]
        for t in tasks:
            r = by.get((t, model))
            if r is None or r["status"] != "ok":
                cells += ["—" if r is None else r["status"]] + ["—"] * (2 + len(extras[t]))
                continue
            cells += [_fmt(r["metrics"].get(metas[t]["forget_score"])), _fmt(r["metrics"].get(metas[t]["utility"])),
                      _fmt(r["cost"].get("relative_cost"))] + [_fmt(r["metrics"].get(k)) for k in extras[t]]
        out.append("| " + " | ".join(cells) + " |")
    return out + [""]


def results_csv(records: list[dict]) -> str:
    metrics = list(dict.fromkeys(k for r in records for k in r.get("metrics", {})))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["task", "model", "mode", "request", "status", *metrics, *COST_COLUMNS, "error"])
    for r in records:
        writer.writerow([r["task"], r["model"], r.get("mode", ""), r.get("request", ""), r["status"],
                         *(r.get("metrics", {}).get(m, "") for m in metrics),
                         *(r.get("cost", {}).get(c, "") for c in COST_COLUMNS), r.get("error", "")])
    return buf.getvalue()


def write_results(out: Path, payload: dict) -> None:
    """results.json, per_item.json (per-item statistics of every task and row, when given), results.csv,
    leaderboard.md and plots/, each file written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    payload = dict(payload)
    per_item = payload.pop("per_item", None)
    if per_item is not None:
        write_json(out / "per_item.json", per_item)
    write_json(out / "results.json", payload)
    datasets = payload.get("datasets")
    write_plots(payload["results"], out / "plots", lambda task: task_meta(datasets, task))
    atomic_write_text(out / "results.csv", results_csv(payload["results"]))
    atomic_write_text(out / "leaderboard.md", leaderboard(payload["results"], datasets))
