"""Process-level settings that decide speed but not results: how many CPU threads torch may use."""
from __future__ import annotations

import os

import torch


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
    the numbers: the default run's metrics are bit-identical at 1 and 2 threads (README, "Threads")."""
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
