"""Process-level settings that decide speed but not results: how many CPU threads torch may use, and how
independent units are spread over processes."""
from __future__ import annotations

import os
from contextlib import nullcontext

from unlearnbench.heavy import accelerate_utils, torch


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
    2-core machine do not each start two threads that spin against each other. Thread count changes speed, not
    the numbers: the default run's metrics are bit-identical at 1 and 2 threads (docs/options.md, "Threads")."""
    if requested < 0:
        raise ValueError(f"threads must be 0 (auto) or a positive count, got {requested}")
    if requested == 0:
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        if env.isdigit() and int(env) > 0:
            requested = int(env)
        else:
            local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
            requested = max(1, usable_cpus() // local)
    torch.set_num_threads(requested)
    return requested


class Solo:
    """The accelerator for work one process does alone while the others do theirs (a population member each,
    orchestration/populations.py): this process's device and autocast, and no collective operation (no DDP wrapper, no gathering,
    no barrier), so the processes never wait for one another inside a unit. `rank` is the real process index."""
    num_processes, process_index, is_main_process, distributed_type = 1, 0, True, "NO"

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
