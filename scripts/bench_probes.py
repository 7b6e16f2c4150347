"""What the probes cost an evaluation: one model's evaluation with and without `probes=all`, side by side in one
process, alternating (the machine's load drifts), on the experiment's target and retain models.

    python scripts/bench_probes.py [experiment=default] [--repeats 2] [key=value ...]

Prints each evaluation's wall time and the ratio; the models come from the cache (trained first if missing).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from unlearnbench import numerics  # noqa: E402

numerics.apply()

from accelerate import Accelerator  # noqa: E402

from orchestration.pipeline import Pipeline  # noqa: E402
from unlearnbench.cache import UnitStore  # noqa: E402
from unlearnbench.config import load_config  # noqa: E402
from unlearnbench.runtime import configure_threads  # noqa: E402
from unlearnbench.tasks import build_task  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    args, overrides = parser.parse_known_args(argv)
    cfg = load_config(["experiment=default", *overrides, "probes=all"])
    configure_threads(cfg.threads)
    label, section = next(iter(cfg.tasks.items()))
    task = build_task(label, section)
    data = task.load(cfg.resolved_cache_dir() / "tasks")
    pipe = Pipeline(cfg, task, data, UnitStore(cfg.resolved_cache_dir()), Accelerator())
    base = pipe.base()
    print(f"{task.label}: probes {list(pipe.probes)}")
    for role in ("target", "retain"):
        ref = pipe.finetuned(base, role)
        model, tokenizer = pipe.units.load(ref), pipe.units.tokenizer(ref)
        times: dict[str, list[float]] = {"without probes": [], "with probes": []}
        for _ in range(args.repeats):
            for name, probes in (("without probes", False), ("with probes", True)):
                start = time.perf_counter()
                pipe.evaluate(model, tokenizer, role, probes=probes)
                times[name].append(time.perf_counter() - start)
        plain, probed = (statistics.median(times[k]) for k in ("without probes", "with probes"))
        print(f"{role}: evaluation {plain:.1f} s without probes, {probed:.1f} s with them "
              f"(x{probed / plain:.2f}; runs {', '.join(f'{t:.1f}' for t in times['with probes'])} s)")


if __name__ == "__main__":
    main()
