"""Choose every method's settings by the tuning protocol (orchestration/tuning.py) and write them to a config.

    python tune.py [experiment=tune_default] [key=value ...]

The experiment's `tuning:` section declares each method's grid (the same number of configurations for all),
the rule's utility floor (`utility_floor`) and the output, configs/<tuning.output>.yaml, which a benchmark
experiment reads unchanged with `tuned: <tuning.output>` (configs/experiment/default.yaml does). The sweep's table
and cost go to results/<experiment>/tuning.md and tuning.json.
"""
from __future__ import annotations

import json
import sys
from typing import cast

from unlearnbench import numerics

numerics.apply()     # before torch loads: the same CPU kernels as the benchmark runs

import yaml

from evals.plots import tuning_curves
from orchestration.start import arguments, cli_errors, start
from orchestration.tuning import grids, table, tune
from unlearnbench.cache import atomic_write_text
from unlearnbench.config import ConfigError, load_config, tuned_path
from unlearnbench.tasks import Validates

HEADER = ("# Written by tune.py (experiment={experiment}): the settings the tuning protocol chose\n# on {task}'s "
          "validation split. Do not edit by hand; rerun `python tune.py experiment={experiment}`.\n"
          "# docs/tuning.md; the sweep: results/{experiment}/tuning.md. Chosen on a cpu={vendor} machine: the\n"
          "# choice holds within a CPU vendor (near-equal configurations trade places across vendors).\n")


def main(argv: list[str]) -> dict:
    if "--help" in argv or "-h" in argv:
        print(__doc__)
        return {}
    args, _ = arguments(argv, ())
    cfg = load_config(args if any(a.startswith("experiment=") for a in args) else ["experiment=tune_default", *args])
    return run(cfg)


def cli(argv: list[str] | None = None) -> int:
    return cli_errors(main, list(sys.argv[1:] if argv is None else argv))


def run(cfg) -> dict:
    """Tune as `cfg` declares; write the chosen settings, the sweep's table and its record."""
    for where, tuned in [("tuned", cfg.tuned), *((f"tasks.{label}.tuned", (section or {}).get("tuned"))
                                                 for label, section in cfg.tasks.items())]:
        if tuned:
            raise ConfigError(f"{where}={tuned!r}: a tuning experiment starts from the methods' own settings, not "
                              f"from an earlier sweep's; set {where}= (empty) in it")
    if cfg.worlds != 1 or cfg.first_world:
        raise ConfigError(f"worlds={cfg.worlds} first_world={cfg.first_world}: settings are tuned once, on world 0's "
                          f"validation split, and then applied in every world (docs/protocol.md, Worlds); unset them")
    if len(cfg.tasks) != 1:
        raise ConfigError(f"tune.py tunes on one task's validation split; this experiment has {len(cfg.tasks)}")
    # every check run_benchmark.py runs (orchestration/start.py), and the sweep's own: a grid per method
    started = start(cfg, check=grids)
    world, accelerator = started.worlds[0], started.accelerator
    (label, task), = world.tasks.items()
    result = tune(cfg, task, world.data[label], started.store, accelerator)
    result["runtime"] = {"numerics": numerics.describe()}      # the CPU vendor its choice holds on
    vendor = result["runtime"]["numerics"]["cpu"]["vendor"] or "unknown"
    if accelerator.is_main_process:
        chosen = {name: m["chosen"] for name, m in result["methods"].items()}
        # what its test runs must share with the sweep
        held = cast(Validates, task).held_out() if "held_out" in task.capabilities else {}
        body = yaml.safe_dump({"method_args": chosen, **({"task_args": held} if held else {})}, sort_keys=False,
                              default_flow_style=None)
        atomic_write_text(tuned_path(cfg.tuning.output),
                          HEADER.format(experiment=cfg.name, task=task.label, vendor=vendor) + body)
        out = cfg.resolved_output_dir()
        atomic_write_text(out / "tuning.json", json.dumps(result, indent=1))
        atomic_write_text(out / "tuning.md", table(result) + "\n")
        tuning_curves(result, out / "plots")
        print(table(result))
        print(f"\nchosen settings written to {tuned_path(cfg.tuning.output)}; the sweep to {out}/tuning.md")
    accelerator.end_training()          # closes the trackers' files, if any
    return result


if __name__ == "__main__":
    sys.exit(cli())
