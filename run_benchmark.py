"""Run an unlearning benchmark: config -> seed -> models -> data -> methods -> evaluate -> results.

    python run_benchmark.py [--fresh] [experiment=<name>] [key=value ...]
    accelerate launch run_benchmark.py [...]

Run with --help for every option.
"""
from __future__ import annotations

import platform
import sys
from importlib.metadata import PackageNotFoundError, version

import transformers
from accelerate import Accelerator
from accelerate.utils import set_seed

from benchmarks.tofu import VERSION as TOFU_VERSION
from benchmarks.tofu import load_tofu
from evals.report import leaderboard, write_results
from evals.tofu_metrics import all_metrics
from methods import METHODS, method_config
from unlearnbench.cache import UnitStore, atomic_write_text
from unlearnbench.cost import COST_FIELDS
from unlearnbench.config import ConfigError, available, dump_yaml, load_config, read_yaml, to_dict
from unlearnbench.stages import Pipeline

HELP = """usage: python run_benchmark.py [--fresh] [key=value ...]

Runs one experiment: builds (or loads) the base, target and retain models, unlearns with each method, evaluates
every model with the same metrics and writes config.yaml, results.json, results.csv and leaderboard.md.

  experiment=<name>     configs/experiment/<name>.yaml (default: default). Available: {experiments}
  output_dir=<dir>      where results go (default: results/<experiment>); a folder holding results of a
                        different config is never overwritten
  methods=A,B           which method rows run. Registered: {methods}
  model=<name|id|path>  configs/model/<name>.yaml ({models}), or any causal LM by hub id or local path
  model.target=<path>   use a given target checkpoint instead of fine-tuning one (model.retain likewise)
  task=<name>           configs/task/<name>.yaml ({tasks})
  cache_dir=<dir>       where trained models and finished units are cached (default: $UNLEARNBENCH_CACHE or
                        ~/.cache/unlearnbench); a rerun reuses them and a crashed run resumes
  a.b.c=<value>         any other config key, e.g. unlearn.epochs=3, method_args.GradDiff.alpha=2,
                        task.synthetic.n_authors=60, lora=true; unknown keys and wrong types are errors
  --fresh               ignore cached units and rebuild every stage of this run
  --help                this text

The schema of every key is in unlearnbench/config.py; the method hyperparameters in methods/<method>.py."""


def library_versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("unlearnbench", "torch", "transformers", "accelerate", "peft", "datasets", "rouge-score", "scipy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def check_output_dir(out, resolved: dict) -> None:
    """Refuse to overwrite finished results of a different config (a crashed run's folder holds none)."""
    saved = out / "config.yaml"
    if saved.is_file() and (out / "results.json").is_file():
        ignore = ("output_dir", "cache_dir")
        old = {k: v for k, v in read_yaml(saved).items() if k not in ignore}
        if old != {k: v for k, v in resolved.items() if k not in ignore}:
            raise ConfigError(f"output_dir {str(out)!r} holds results of a different config; choose another "
                              f"output_dir=<dir>, or delete that folder to replace them")


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--help" in argv or "-h" in argv:
        print(HELP.format(experiments=", ".join(available("experiment")), methods=", ".join(sorted(METHODS)),
                          models=", ".join(available("model")), tasks=", ".join(available("task"))))
        return {}
    fresh = "--fresh" in argv
    unknown = [a for a in argv if a.startswith("-") and a != "--fresh"]
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown}; see --help")

    # 1. config: resolved, validated (methods and their hyperparameters too), saved beside the results
    cfg = load_config([a for a in argv if a != "--fresh"])
    if not cfg.methods:
        raise ConfigError("methods is empty; name at least one, e.g. methods=GradAscent")
    for name in list(cfg.method_args) + cfg.methods:
        method_config(name, cfg.method_args.get(name))
    out = cfg.resolved_output_dir()
    check_output_dir(out, to_dict(cfg))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", dump_yaml(cfg))

    # 2. seed, devices, data (the suite's own progress bars replace the library's per-file ones)
    transformers.utils.logging.disable_progress_bar()
    accelerator = Accelerator()
    set_seed(cfg.seed)
    data = load_tofu(cfg.task)
    task = f"{cfg.task.name}_{cfg.task.forget_split}"
    pipe = Pipeline(cfg, data, UnitStore(cfg.resolved_cache_dir(), fresh=fresh), accelerator)

    # 3. models: base -> target (fine-tuned on full) and retain (fine-tuned on the retain set only)
    base = pipe.base()
    target = pipe.finetuned(base, "full", cfg.model.target)
    retain = pipe.finetuned(base, "retain", cfg.model.retain)

    # 4. evaluate target and retain, then unlearn and evaluate with every method
    units = {"target": {"status": "ok", **pipe.evaluated(target, "target"), "cost": target.cost},
             "retain": {"status": "ok", **pipe.evaluated(retain, "retain"), "cost": retain.cost}}
    for name in cfg.methods:
        spec = METHODS.get_or_raise(name)
        if spec.is_retrain:
            units[name] = units["retain"]
        else:
            units[name + ("+lora" if cfg.lora and spec.loss else "")] = pipe.unlearned(target, name)

    # 5. metrics from per-item statistics, results files
    retain_cost = (retain.cost or {}).get("wall_seconds")
    records = []
    for row, unit in units.items():
        # a given checkpoint's training cost is unknown: its fields stay present, as null
        cost = {**dict.fromkeys(COST_FIELDS), **(unit.get("cost") or {})}
        cost.pop("train_log", None)
        cost["relative_cost"] = cost["wall_seconds"] / retain_cost if retain_cost and cost["wall_seconds"] else None
        record = {"task": task, "model": row, "status": unit["status"], "metrics": {}, "cost": cost,
                  "eval_cost": unit.get("eval_cost")}
        if unit["status"] == "ok":
            record["metrics"] = all_metrics(unit["stats"], units["retain"]["stats"])
        else:
            record["error"] = unit["error"]
        records.append(record)
    payload = {"experiment": cfg.name, "config": to_dict(cfg), "versions": library_versions(),
               "datasets": {task: {"fingerprint": data.fingerprint, "splits": data.names,
                                   "task_version": TOFU_VERSION, "source": cfg.task.source}},
               "results": records,
               "per_item": {row: unit.get("stats") for row, unit in units.items()}}
    if accelerator.is_main_process:
        write_results(out, payload)
        print(leaderboard(records))
        print(f"\nresults written to {out}/")
    return payload


if __name__ == "__main__":
    try:
        main()
    except (ConfigError, ValueError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")
