"""Where an evaluation's time goes, in four figures, each measured side by side in one run:

1. the probes' overhead: one model's evaluation with and without the experiment's probes, alternating (the
   machine's load drifts), on the target and the retain model; per evaluation, and per method row of the
   experiment (its first seed probed, its other seeds not: `probe_seeds=first`);
2. the imports: `python -c "import torch, transformers"` against a whole evaluation-only process (start-up,
   imports, the target loaded and evaluated with its probes), and that process's own evaluation seconds;
3. the teacher-forced part against the forward-FLOP floor: the probes' and the plain splits' tokens put through
   the model (2 x parameters x tokens over the matmul throughput measured in this run; evals/engine.py's Work);
4. with --results, a run's stages as its results.json records them (`runtime.timing`).

    python scripts/bench_speed.py [--repeats 3] [--only probes,imports,floor] [--results results/default/results.json]
                                  [key=value ...]

Models come from the cache (trained first if missing). A real model: `model=smollm2 model.name=<folder>`.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
began = time.perf_counter()

from unlearnbench import numerics  # noqa: E402

numerics.apply()

from accelerate import Accelerator  # noqa: E402

from evals.engine import Work  # noqa: E402
from orchestration.pipeline import Pipeline  # noqa: E402
from unlearnbench.cache import UnitStore  # noqa: E402
from unlearnbench.config import load_config  # noqa: E402
from unlearnbench.cost import matmul_flops  # noqa: E402
from unlearnbench.runtime import configure_threads  # noqa: E402
from unlearnbench.tasks import build_task  # noqa: E402


def pipeline(overrides: list[str]) -> Pipeline:
    cfg = load_config(["experiment=default", *overrides])
    configure_threads(cfg.threads)
    label, section = next(iter(cfg.tasks.items()))
    task = build_task(label, section)
    return Pipeline(cfg, task, task.load(cfg.resolved_cache_dir() / "tasks"), UnitStore(cfg.resolved_cache_dir()),
                    Accelerator())


def probes_overhead(pipe: Pipeline, repeats: int) -> None:
    seeds = pipe.cfg.seeds
    print(f"1. probes {list(pipe.probes)}; medians of {repeats} alternating runs")
    for role in ("target", "retain"):
        ref = pipe.finetuned(pipe.base(), role)
        model, tokenizer = pipe.units.load(ref), pipe.units.tokenizer(ref)
        pipe.evaluate(model, tokenizer, role)          # warm-up: the first evaluation prepares the items
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(repeats):
            for asked in (False, True):
                start = time.perf_counter()
                pipe.evaluate(model, tokenizer, role, probes=asked)
                times[asked].append(time.perf_counter() - start)
        plain, probed = (statistics.median(times[k]) for k in (False, True))
        row = (probed + (seeds - 1) * plain) / (seeds * plain)
        print(f"   {role}: {plain:.2f} s without probes, {probed:.2f} s with them: x{probed / plain:.2f} per "
              f"evaluation, x{row:.2f} per method row of {seeds} seeds (the first probed)")


def evaluate_once(overrides: list[str]) -> None:
    """The child of `imports`: the target loaded and evaluated once with the probes, its seconds printed as JSON."""
    imported = time.perf_counter()
    pipe = pipeline(overrides)
    ref = pipe.finetuned(pipe.base(), "target")
    model, tokenizer = pipe.units.load(ref), pipe.units.tokenizer(ref)
    start = time.perf_counter()
    pipe.evaluate(model, tokenizer, "target")
    done = time.perf_counter()
    print(json.dumps({"imports": imported - began, "setup": start - imported, "evaluation": done - start}))


def imports(overrides: list[str], repeats: int) -> None:
    def wall(command: list[str]) -> tuple[float, str]:
        start = time.perf_counter()
        out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout
        return time.perf_counter() - start, out
    bare = statistics.median(wall([sys.executable, "-c", "import torch, transformers"])[0] for _ in range(repeats))
    runs = [wall([sys.executable, __file__, "--evaluate-once", *overrides]) for _ in range(repeats)]
    parts = [json.loads(out.strip().splitlines()[-1]) for _, out in runs]
    total = statistics.median(t for t, _ in runs)
    own = {k: statistics.median(p[k] for p in parts) for k in parts[0]}
    ratio = total / (bare + own["evaluation"])
    print(f"2. `import torch, transformers` {bare:.2f} s; an evaluation-only process {total:.2f} s: imports "
          f"{own['imports']:.2f} s, data and model {own['setup']:.2f} s, evaluation {own['evaluation']:.2f} s "
          f"(first-use imports included, e.g. rouge-score's nltk): x{ratio:.2f} of torch's and transformers' "
          f"imports plus the evaluation")


def floor(pipe: Pipeline) -> None:
    from benchmarks import tofu_probes
    from benchmarks.tofu import EVAL_SPLITS, TofuTask
    from evals.engine import evaluate_groups
    ref = pipe.finetuned(pipe.base(), "target")
    model, fmt = pipe.units.load(ref), pipe.units.fmt(pipe.units.tokenizer(ref))
    n_params = sum(p.numel() for p in model.parameters())
    param = next(model.parameters())
    flops = matmul_flops(param.device, param.dtype)
    if not isinstance(pipe.task, TofuTask):
        raise SystemExit("the floor is measured on a TOFU-style task (the WMDP task's scoring is lm-eval's)")
    ev, task = pipe.task.cfg.eval, pipe.task
    plain = [(fmt, [(r["question"], [r["answer"], *([r["paraphrased_answer"]] if s in ("forget", "retain") else []),
                                     *r["perturbed_answer"]]) for r in task.rows[role]])
             for s, role in EVAL_SPLITS.items()]
    probed = [(tofu_probes.prompt_format(p, fmt), items) for p, _, items in task._probe_items(pipe.probes)]
    print(f"3. {n_params / 1e6:.1f}M parameters, matmul {flops / 1e9:.0f} GFLOP/s measured")
    for name, groups in (("plain splits", plain), ("probes", probed)):
        evaluate_groups(model, groups, ev.token_budget, ev.batch_size, 0, Work())        # warm-up
        work = Work()
        evaluate_groups(model, groups, ev.token_budget, ev.batch_size, 0, work)
        least = 2 * n_params * work.tokens_scored / flops
        print(f"   {name}: {work.tokens_scored:,} tokens in {work.scoring_seconds:.2f} s, "
              f"x{work.scoring_seconds / least:.2f} the floor ({work.forward_calls} forward passes)")


def stages(path: Path) -> None:
    runtime = json.loads(path.read_text())["runtime"]
    timing = runtime.get("timing")
    if not timing:
        raise SystemExit(f"{path} records no stage timing (written by runs since 2026-12-08)")
    print(f"4. {path}: {runtime['wall_seconds'] / 60:.1f} min from start-up to the results written")

    def show(where: str, t: dict) -> None:
        if "stages" not in t:           # {task: ...}, or with several worlds {world: {task: ...}}
            for key, inner in t.items():
                show(f"{where} {key}".strip(), inner)
            return
        for stage, seconds in t["stages"].items():
            print(f"   {where:<24} {stage:<32} {seconds:8.1f} s")
        units = ", ".join(f"{k} {v:.0f} s" for k, v in t["units"].items())
        print(f"   {where:<24} its units' own costs, every seed: {units}")
    show("", timing)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results", type=Path, help="a run's results.json: its stages")
    parser.add_argument("--only", default="probes,imports,floor", help="the figures to measure (default: all three)")
    parser.add_argument("--evaluate-once", action="store_true", help=argparse.SUPPRESS)
    args, overrides = parser.parse_known_args()
    if args.evaluate_once:
        return evaluate_once(overrides)
    only = set(args.only.split(","))
    pipe = pipeline(overrides)
    if "probes" in only:
        probes_overhead(pipe, args.repeats)
    if "imports" in only:
        imports(overrides, args.repeats)
    if "floor" in only:
        floor(pipe)
    if args.results:
        stages(args.results)


if __name__ == "__main__":
    main()
