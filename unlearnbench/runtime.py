"""Process-level settings that decide speed but not results: how many CPU threads torch may use, and how
independent units are spread over processes."""
from __future__ import annotations

import os
from contextlib import nullcontext

from unlearnbench import numerics
from unlearnbench.heavy import accelerate, accelerate_utils, torch
from unlearnbench.strict import ConfigError


def usable_cpus() -> int:
    """CPUs this process may run on (respects taskset / cgroup CPU sets, unlike os.cpu_count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def configure_threads(requested: int) -> int:
    """Set torch's intra-op thread count and return it.

    `requested` > 0 is used as given. 0 (auto) takes OMP_NUM_THREADS when the user set it, else the usable CPUs
    divided among the processes of this machine (accelerate sets LOCAL_WORLD_SIZE), so that two processes on a
    2-core machine do not each start two threads that spin against each other. In the reproducible mode the thread
    count changes speed, not the numbers: the default run's metrics are bit-identical at 1 and 2 threads
    (docs/options.md, "Threads"); the portable mode computes on one thread (unlearnbench/numerics.py)."""
    if requested < 0:
        raise ValueError(f"threads must be 0 (auto) or a positive count, got {requested}")
    fixed = numerics.THREADS.get(numerics.mode())
    if fixed and requested not in (0, fixed):
        raise ValueError(f"threads={requested}: the {numerics.mode()} numerics compute on {fixed} thread(s) (MKL's "
                         f"branch for every CPU vendor gives other last bits at other thread counts); drop threads= "
                         f"or use the reproducible mode (docs/numerics.md)")
    requested = fixed or requested
    if requested == 0:
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        if env.isdigit() and int(env) > 0:
            requested = int(env)
        else:
            local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
            requested = max(1, usable_cpus() // local)
    torch.set_num_threads(requested)
    return requested


def make_accelerator(cfg):
    """The run's accelerator; with `log_with` (experiment config) it logs to those trackers (accelerate's: the
    training losses and the unlearning curve), their files under <output_dir>/trackers. A tracker whose package is
    missing is an error (accelerate itself would drop it silently)."""
    if not cfg.log_with:
        return accelerate.Accelerator()
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers
    from accelerate.utils import LoggerType
    installed = {str(t.value if hasattr(t, "value") else t) for t in get_available_trackers()}
    for name in cfg.log_with:
        if name not in LOGGER_TYPE_TO_CLASS:
            raise ConfigError(f"log_with={name}: accelerate has no such tracker; choose from "
                              f"{', '.join(sorted(LOGGER_TYPE_TO_CLASS))} (or register your own class with "
                              f"accelerate.tracking.register_tracker_class)")
        if name in LoggerType.list() and name not in installed:
            raise ConfigError(f"log_with={name}: its package is not installed; `pip install {name}` (not part of the "
                              f"locked environment), or drop log_with")
    acc = accelerate.Accelerator(log_with=list(cfg.log_with), project_dir=str(cfg.resolved_output_dir() / "trackers"))
    acc.init_trackers(cfg.name, config={"experiment": cfg.name, "seed": cfg.seed, "seeds": cfg.seeds,
                                        "methods": ",".join(cfg.methods)})
    return acc


class Solo:
    """The accelerator for work one process does alone while the others do theirs (a population member each,
    orchestration/populations.py): this process's device and autocast, and no collective operation (no DDP wrapper,
    no gathering, no barrier), so the processes never wait for one another inside a unit. `rank` is the real process
    index."""
    num_processes, process_index, is_main_process, distributed_type = 1, 0, True, "NO"
    trackers = ()       # a population member's training is not logged

    def __init__(self, accelerator):
        self.device, self.rank, self._autocast = accelerator.device, accelerator.process_index, accelerator.autocast

    def prepare(self, *objects):
        return objects

    def no_sync(self, model):
        return nullcontext()

    def autocast(self):
        return self._autocast()

    def backward(self, loss):
        loss.backward()

    def clip_grad_norm_(self, params, max_norm):
        return torch.nn.utils.clip_grad_norm_(params, max_norm)

    def unwrap_model(self, model):
        return model

    def free_memory(self):
        pass

    def wait_for_everyone(self):
        pass


def spreads(accelerator) -> bool:
    """Whether independent units (population members) can be spread one per process: several processes, each
    holding whole models (DDP or multi-CPU), and no fp16 loss scaling, which lives in accelerate's own backward.
    Under FSDP or DeepSpeed a model may not fit one process, so members train one after another, sharded."""
    kind = accelerate_utils.DistributedType
    whole = (kind.MULTI_GPU, kind.MULTI_CPU, kind.MULTI_XPU, kind.MULTI_NPU)
    return (accelerator.num_processes > 1 and accelerator.mixed_precision != "fp16"
            and accelerator.distributed_type in whole)
