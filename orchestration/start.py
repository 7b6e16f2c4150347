"""What both entry points (run_benchmark.py, tune.py) do before the first training step, and how they answer an
input error.

`start` builds the tasks, runs every check (orchestration/preflight.py) on every world's config and data, and
then sets up threads, the accelerator and the unit cache; nothing is written before it returns. `cli_errors` turns
an input error into one line on stderr and exit status 2.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from orchestration import extensions, worlds
from orchestration.preflight import check_config, check_pipelines, check_run
from unlearnbench.cache import UnitStore
from unlearnbench.config import ConfigError, ExperimentConfig, to_dict
from unlearnbench.heavy import accelerate, accelerate_utils, transformers
from unlearnbench.runtime import configure_threads, make_accelerator
from unlearnbench.tasks import Task, TaskData, build_task


@dataclass
class World:
    """One replicate of the experiment (orchestration/worlds.py; world 0 is the experiment itself): its config, its
    tasks and their checked data."""
    index: int
    cfg: ExperimentConfig
    tasks: dict[str, Task]
    data: dict[str, TaskData]


@dataclass
class Started:
    worlds: list[World]
    store: UnitStore
    accelerator: accelerate.Accelerator
    threads: int


def start(cfg: ExperimentConfig, fresh: bool = False, check: Callable | None = None) -> Started:
    """Every check before training, in every world, then the run's threads, accelerator (with its trackers, if
    log_with names any) and unit cache (fresh: finished units rebuilt). check(cfg): the entry point's own config
    checks (tune.py's sweep), after the shared ones and before any file is read. cfg.tasks comes back resolved:
    every key of every task section, as config.yaml records it."""
    extensions.load(cfg.extensions)
    tasks = {label: build_task(label, section) for label, section in cfg.tasks.items()}
    cfg.tasks = {label: to_dict(t.cfg) for label, t in tasks.items()}
    check_config(cfg, tasks)
    if check is not None:
        check(cfg)
    runs = [(w, wcfg, tasks if wcfg is cfg else {label: build_task(label, s) for label, s in wcfg.tasks.items()})
            for w, wcfg in worlds.plan(cfg)]
    checked = [World(w, wcfg, wtasks, check_run(wcfg, wtasks)) for w, wcfg, wtasks in runs]

    transformers.utils.logging.disable_progress_bar()     # the suite's own progress bars replace the library's
    threads = configure_threads(cfg.threads)
    accelerator = make_accelerator(cfg)
    accelerate_utils.set_seed(cfg.seed)
    store = UnitStore(cfg.resolved_cache_dir(), fresh=fresh)
    for world in checked:
        check_pipelines(world.cfg, world.tasks, world.data, store, accelerator)
    return Started(checked, store, accelerator, threads)


def arguments(argv: list[str], flags: tuple[str, ...]) -> tuple[list[str], set[str]]:
    """(the config arguments, the flags given) of a command line; an option that is not one of `flags` (or
    --debug, which cli_errors reads) is an input error."""
    unknown = [a for a in argv if a.startswith("-") and a not in (*flags, "--debug")]
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown}; see --help")
    return [a for a in argv if not a.startswith("-")], {a for a in argv if a.startswith("-")}


# bad input: a config, a data file, a checkpoint or a folder (messages name the file, the field and the fix)
INPUT_ERRORS = (ConfigError, ValueError, OSError)


def cli_errors(entry, argv: list[str]) -> int:
    """entry(argv) with input errors as one line on stderr and exit status 2; --debug (or UNLEARNBENCH_DEBUG=1)
    re-raises them with their traceback. Anything else is a bug and keeps its traceback."""
    try:
        entry(argv)
    except INPUT_ERRORS as err:
        if "--debug" in argv or os.environ.get("UNLEARNBENCH_DEBUG", "") not in ("", "0"):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
