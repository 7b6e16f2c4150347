"""One task's benchmark run through the pipeline's cached units: base -> target and retain (per seed with
`seed_models`), every method from every seed, the privacy evaluations that need many models, and the records the
report prints (means and spread over seeds, the significance marks, the utility floor, how each row was set)."""
from __future__ import annotations

from orchestration import guarantees, populations, robustness
from orchestration.export import export_models
from evals import spread
from evals.plots import REFERENCE_ROWS
from evals.report import contender
from methods import METHODS
from pipeline import Pipeline
from unlearnbench.cache import UnitStore
from unlearnbench.config import ExperimentConfig, tuned_args
from unlearnbench.cost import COST_FIELDS
from unlearnbench.tasks import TaskData

NO_RETAIN = ("no retain model: the target is the given model itself and model.retain names no checkpoint, so "
             "metrics that compare with retraining are not reported")


def run_task(cfg: ExperimentConfig, task, data: TaskData, store: UnitStore, accelerator) -> dict:
    """One task end to end from its loaded (and checked: preflight.py) data.

    Returns {"records": [...], "dataset": {...}, "per_item": {row: stats}}."""
    pipe = Pipeline(cfg, task, data, store, accelerator)
    privacy = cfg.privacy.population or cfg.privacy.shadow_models
    if privacy:
        populations.require_holdout(pipe)       # before any training, not after the main rows
    # the base only where something trains from it (given target and retain: an evaluation-only run trains nothing)
    base = pipe.base() if privacy or guarantees.enabled(cfg) or not (cfg.model.target and cfg.model.retain) else None
    seeds = [cfg.seed + k for k in range(cfg.seeds)]   # the first is the record's own, the others its spread
    # target and retain per seed: one fine-tune each (the first seed's), or one per seed with seed_models
    models = {s: (pipe.finetuned(base, "target", cfg.model.target, seed=s),
                  pipe.finetuned(base, "retain", cfg.model.retain, seed=s))
              for s in (seeds if cfg.seed_models else seeds[:1])}
    target, retain = models[cfg.seed]
    target_of = lambda s: models.get(s, models[cfg.seed])[0]  # noqa: E731
    evaluated = {s: ({"status": "ok", **pipe.evaluated(t, "target"), "cost": t.cost},
                     {"status": "ok", **pipe.evaluated(r, "retain"), "cost": r.cost} if r else
                     {"status": "absent", "error": NO_RETAIN}) for s, (t, r) in models.items()}
    retain_stats = {s: pair[1].get("stats") for s, pair in evaluated.items()}
    retain_of = lambda s: retain_stats.get(s, retain_stats[cfg.seed])  # noqa: E731

    units = {}
    if base is not None and cfg.model.name != "embedded" and not cfg.model.target and target is not base:
        # a pretrained model the suite fine-tuned into the target: its untouched self is a row, the utility to keep
        units["base"] = {"status": "ok", **pipe.evaluated(base, "base"), "cost": None}
    units["target"], units["retain"] = evaluated[cfg.seed]
    repeats: dict[str, list[tuple[int, dict]]] = {}      # row -> [(seed, unit)] of its further seeds
    if cfg.seed_models and len(seeds) > 1:
        repeats["target"] = [(s, evaluated[s][0]) for s in seeds[1:]]
        repeats["retain"] = [(s, evaluated[s][1]) for s in seeds[1:]]
    for name in cfg.methods:
        spec = METHODS.get_or_raise(name)
        if spec.is_retrain:
            units[name] = units["retain"]
            if "retain" in repeats:
                repeats[name] = repeats["retain"]
        else:
            row = name + ("+lora" if cfg.lora and spec.loss else "")
            units[row] = pipe.unlearned(target, name, keep_model=bool(cfg.save_models) or robustness.enabled(cfg))
            if len(seeds) > 1:
                repeats[row] = [(s, pipe.unlearned(target_of(s), name, seed=s)) for s in seeds[1:]]

    # rows with a guarantee (SISA, DP): trained from the base, one set per seed (orchestration/guarantees.py)
    for s in seeds if guarantees.enabled(cfg) else []:
        for row, unit in guarantees.guarantee_units(pipe, base, s).items():
            if s == cfg.seed:
                units[row] = unit
            else:
                repeats.setdefault(row, []).append((s, unit))

    # rows the user unlearned elsewhere: evaluation only (a folder's digest is its key: computed once)
    checkpoints = {name: pipe.given(ref, lambda: target) for name, ref in cfg.checkpoints.items()}
    for name, ref in checkpoints.items():
        units[name] = {"status": "ok", **pipe.evaluated(ref, name), "cost": None}
    extra: dict[str, dict] = {}         # the privacy evaluations that need many models (populations.py)
    if cfg.privacy.population or cfg.privacy.shadow_models:
        populations.build_members(pipe, base, target, units)
    if cfg.privacy.shadow_models:
        for row, values in populations.lira_metrics(pipe, base, units).items():
            extra.setdefault(row, {}).update(values)
    if cfg.privacy.population:
        for row, values in populations.population_metrics(pipe, base, target, units).items():
            extra.setdefault(row, {}).update(values)
    attack_costs: dict[str, dict] = {}  # does the knowledge come back? (robustness.py)
    if robustness.enabled(cfg):
        refs = {"target": target, **({"retain": retain} if retain else {})}
        for row, unit in units.items():
            if row in checkpoints:
                refs[row] = checkpoints[row]
            elif unit.get("model") and unit["status"] == "ok":
                refs[row] = robustness.row_ref(unit["model"], target, lora=row.endswith("+lora"))
            elif unit.get("model_ref"):         # a DP row's own fine-tuned model
                refs[row] = unit["model_ref"]
        values, attack_costs = robustness.attack_all(pipe, refs, {row: units[row]["stats"] for row in refs})
        for row, v in values.items():
            extra.setdefault(row, {}).update(v)
    for name in cfg.methods:            # the Retrain row is the retain model: the same columns
        if METHODS.get_or_raise(name).is_retrain and "retain" in extra:
            extra[name] = {**extra["retain"], **extra.get(name, {})}
            if "retain" in attack_costs:
                attack_costs[name] = attack_costs["retain"]

    retain_cost = (retain.cost or {}).get("wall_seconds") if retain else None
    chosen = tuned_args(cfg.tuned) if cfg.tuned else {}
    records = []
    for row, unit in units.items():
        # a given checkpoint's training cost is unknown: its fields stay present, as null
        cost = {**dict.fromkeys(COST_FIELDS), **(unit.get("cost") or {})}
        cost.pop("train_log", None)
        cost["relative_cost"] = (cost["wall_seconds"] / retain_cost if retain_cost and cost["wall_seconds"] is not None
                                 else None)
        record = {"task": task.label, "model": row, "status": unit["status"], "metrics": {}, "cost": cost,
                  "eval_cost": unit.get("eval_cost"), **({"attack_cost": attack_costs[row]} if row in attack_costs
                                                          else {})}
        record.update({k: unit[k] for k in ("training_cost", "guarantee", "reference") if k in unit})
        method = row.split("+")[0]
        if method in cfg.methods and not METHODS[method].is_retrain:
            record["settings"] = settings_origin(pipe, method, chosen.get(method))
            if (unit.get("train_log") or {}).get("untrained"):
                record["untrained"] = unit["train_log"]["untrained"]
        elif row in cfg.checkpoints:
            record["checkpoint"] = cfg.checkpoints[row]
        failed = next((u for u in [unit] + [u for _, u in repeats.get(row, [])] if u["status"] != "ok"), None)
        if failed is None:
            record["metrics"] = {**task.metrics(unit["stats"], retain_of(cfg.seed)), **extra.get(row, {})}
            if row in repeats:
                spread.over_seeds(record, [(cfg.seed, record["metrics"])] + [
                    (s, task.metrics(u["stats"], retain_of(s))) for s, u in repeats[row]], task.log_scale)
        else:
            record["status"], record["error"] = failed["status"], failed["error"]
        records.append(record)
    gate_utility(records, task.utility, cfg.utility_floor)
    if len(seeds) > 1:
        spread.mark_rows([r for r in records if contender(r)],
                         task.forget_score, task.higher_is_better[task.forget_score],
                         task.forget_score in task.log_scale)
    dataset = describe(task, data, cfg)
    if cfg.save_models:
        models = {"target": target.path, "retain": retain.path if retain else None,
                  **{row: unit.get("model") for row, unit in units.items() if unit.get("model")}}
        export_models(cfg, task.label, models, lora_rows=[r for r in models if r.endswith("+lora")],
                      main=accelerator.is_main_process)
    return {"records": records, "dataset": dataset, "per_item": {row: unit.get("stats") for row, unit in units.items()}}


def describe(task, data: TaskData, cfg: ExperimentConfig) -> dict:
    """A task's section of results.json (`datasets`): its data, and which metrics it reports and how to read them."""
    return {"fingerprint": data.fingerprint, "task_version": task.version, "family": task.cfg.name,
            **data.describe, "forget_score": task.forget_score, "utility": task.utility, "headline": task.headline,
            "higher_is_better": task.higher_is_better, "log_scale": sorted(task.log_scale),
            "utility_floor": cfg.utility_floor}


def gate_utility(records: list[dict], utility: str, floor: float) -> None:
    """Flag (`below_utility_floor`) every unlearned row whose mean utility is below `floor` x the retain model's: a
    collapsed model can score a perfect forget quality (a KS test cannot tell it from a retrained one), so such a
    row is never marked best (SemEval-2025's unlearning task gated on MMLU the same way)."""
    retain = next((r for r in records if r["model"] == "retain" and r["status"] == "ok"), None)
    if retain is None or retain["metrics"].get(utility) is None:
        return
    for r in records:
        value = r["metrics"].get(utility)
        reference = r["model"] in REFERENCE_ROWS or r.get("reference")
        if not reference and value is not None and value < floor * retain["metrics"][utility]:
            r["below_utility_floor"] = True


def settings_origin(pipe: Pipeline, name: str, chosen: dict | None) -> str:
    """How a method row's settings were chosen: `tuned` (tune.py's `chosen` settings, unchanged), `set by hand`
    (method_args, or a tuned setting overridden), `paper defaults` (methods/<method>.py, configs/method/), or a
    method file's own defaults (method_files=)."""
    hp = pipe.method_hparams(name)
    if chosen and all(getattr(hp, k) == v for k, v in chosen.items()):
        return "tuned"
    if pipe.cfg.method_args.get(name) or pipe.task.cfg.method_args.get(name):
        return "set by hand"
    return "its file's defaults" if METHODS[name].source else "paper defaults"
