"""Evaluation speed: one model on one TOFU task's four evaluation splits through the engine (evals/engine.py), and
with --compare the straightforward reference (evals/reference.py) on the same model and data in the same run.

Prints tokens scored and generated, wall seconds, throughput, and the ratio to the hardware's floor: the forward
FLOPs of the tokens each implementation processed (2 x parameters x tokens; the engine runs a shared prompt once)
over the matmul throughput measured in this run. --compile times the engine again with the model's forward
through torch.compile, against the eager pass of the same run.

    python scripts/bench_eval.py [--compare] [--compile] [--role target|retain|base] [--limit N]
                                 [--max-new-tokens N] [key=value ...]

Default: the default experiment's fine-tuned target (trained first if the cache lacks it). A real model, e.g.
SmolLM2-135M from its GGUF file, as it is (no fine-tuning): `--role base model=smollm2 model.name=<folder>`.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from accelerate import Accelerator

from benchmarks.tofu import EVAL_SPLITS
from evals.engine import Work
from evals.stats import split_stats
from orchestration.pipeline import Pipeline
from orchestration.units import ModelRef
from unlearnbench.cache import UnitStore
from unlearnbench.config import load_config
from unlearnbench.cost import matmul_flops
from unlearnbench.runtime import configure_threads
from unlearnbench.tasks import build_task


def evaluate(model, fmt, task, limit: int, max_new_tokens: int, use_engine: bool) -> tuple[dict, Work]:
    work, stats = Work(), {}
    for split, role in EVAL_SPLITS.items():
        rows = task.rows[role][:limit] if limit else task.rows[role]
        stats[split] = split_stats(model, fmt, rows, task.cfg.eval.batch_size, max_new_tokens, name=split,
                                   paraphrased=split in ("forget", "retain"), token_budget=task.cfg.eval.token_budget,
                                   use_engine=use_engine, work=work)
    return stats, work


def scored_pairs(task, limit: int, answers: bool = True) -> list[tuple[str, str]]:
    """The (question, answer) pairs the reference scores one by one (answers=False: one pair per question)."""
    out: list[tuple[str, str]] = []
    for split, role in EVAL_SPLITS.items():
        for r in task.rows[role][:limit] if limit else task.rows[role]:
            texts = [r["answer"]] + ([r["paraphrased_answer"]] if split in ("forget", "retain") else [])
            texts += list(r["perturbed_answer"])
            out += [(r["question"], a) for a in texts] if answers else [(r["question"], "")]
    return out


def largest_difference(a: dict, b: dict) -> tuple[float, int]:
    """(largest NLL difference relative to max(1, |NLL|), generations that differ) between two evaluations."""
    diff, gens = 0.0, 0
    for split in a:
        for key in ("nll_answer", "nll_paraphrased", "nll_perturbed"):
            flat = lambda v: [x for row in v for x in (row if isinstance(row, list) else [row])]
            if key in a[split]:
                diff = max([diff] + [abs(x - y) / max(1.0, abs(y))
                                     for x, y in zip(flat(a[split][key]), flat(b[split][key]))])
        gens += sum(x != y for x, y in zip(a[split]["generation"], b[split]["generation"]))
    return diff, gens


def report(name: str, work: Work, n_params: int, flops: float) -> None:
    """Wall time and the ratio to the floor of the tokens this implementation put through the model."""
    floor = lambda tokens: 2 * n_params * tokens / flops
    gen_tokens = work.prompt_tokens + work.tokens_generated - work.tokens_drafted     # drafted: already scored
    scored = work.scoring_seconds
    print(f"{name:<10} {work.tokens_scored:>8,} tokens scored in {scored:6.2f} s ({work.tokens_scored / scored:7.0f} "
          f"tok/s, {scored / floor(work.tokens_scored):5.2f} x floor);  {gen_tokens:>7,} prompt + generated in "
          f"{work.generation_seconds:6.2f} s ({work.generation_seconds / floor(gen_tokens):5.1f} x floor);  total "
          f"{work.seconds:6.2f} s ({work.seconds / floor(work.tokens_scored + gen_tokens):4.2f} x floor)")


def compiled_work(model, fmt, task, args, max_new: int, eager: dict, eager_work: Work, n_params: int,
                  flops: float) -> None:
    """The engine again with model.forward compiled (torch.compile, dynamic shapes): a first pass that compiles,
    a timed second pass, and its differences from the eager pass."""
    forward = model.forward
    model.forward = torch.compile(forward, dynamic=True)
    try:
        start = time.perf_counter()
        evaluate(model, fmt, task, args.limit, max_new, use_engine=True)
        print(f"first compiled pass (compiling): {time.perf_counter() - start:.1f} s")
        compiled, work = evaluate(model, fmt, task, args.limit, max_new, use_engine=True)
    finally:
        model.forward = forward
    report("compiled", work, n_params, flops)
    compare("compiled / eager", compiled, work, eager, eager_work)


def compare(label: str, fast: dict, fast_work: Work, slow: dict, slow_work: Work) -> None:
    """How much faster `fast` ran than `slow`, part by part, and how far apart their results are."""
    diff, gens = largest_difference(fast, slow)
    print(f"{label}: total x{slow_work.seconds / fast_work.seconds:.2f}, scoring "
          f"x{slow_work.scoring_seconds / fast_work.scoring_seconds:.2f}, generation "
          f"x{slow_work.generation_seconds / fast_work.generation_seconds:.2f}; largest NLL difference {diff:.2e} "
          f"(relative), generations that differ: {gens}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", action="store_true", help="also run the reference implementation")
    parser.add_argument("--role", choices=["target", "retain", "base"], default="target",
                        help="the fine-tuned target, the retain model (never saw the forget set: a perfect "
                             "unlearner's generations), or the base")
    parser.add_argument("--compile", action="store_true",
                        help="also time the engine with the model's forward through torch.compile (dynamic shapes; "
                             "the first pass, which compiles, timed apart)")
    parser.add_argument("--limit", type=int, default=0, help="rows per split (0: all)")
    parser.add_argument("--max-new-tokens", type=int, default=0, help="generation cap (0: the task's)")
    args, overrides = parser.parse_known_args()
    cfg = load_config(overrides)
    threads = configure_threads(cfg.threads)
    label, section = next(iter(cfg.tasks.items()))
    task = build_task(label, section)
    if task.cfg.name != "tofu":
        raise SystemExit("bench_eval measures the TOFU evaluation (the WMDP task's scoring is lm-eval's)")
    pipe = Pipeline(cfg, task, task.load(cfg.resolved_cache_dir() / "tasks"), UnitStore(cfg.resolved_cache_dir()),
                    Accelerator())
    base = pipe.base()
    ref: ModelRef | None = base
    if args.role == "target":
        ref = pipe.target_model(base, given=cfg.model.target)
    elif args.role == "retain":
        ref = pipe.retain_model(base, given=cfg.model.retain)
    if ref is None:
        raise SystemExit(f"{task.label} has no {args.role} model")
    model, fmt = pipe.units.load(ref), pipe.units.fmt(pipe.units.tokenizer(ref))
    max_new = args.max_new_tokens or task.cfg.eval.max_new_tokens
    n_params = sum(p.numel() for p in model.parameters())
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    flops = matmul_flops(device, dtype)
    print(f"model {ref.path} ({n_params / 1e6:.1f}M parameters, {dtype}, {device}, {threads} threads); "
          f"matmul {flops / 1e9:.1f} GFLOP/s measured; generation cap {max_new} tokens")

    evaluate(model, fmt, task, 2, 4, use_engine=True)                      # warm-up
    fast, work = evaluate(model, fmt, task, args.limit, max_new, use_engine=True)
    print(f"{work.tokens_generated:,} tokens generated, {work.tokens_drafted:,} of them read off the scoring pass "
          f"(the answers as drafts, evals/greedy.py)")
    report("engine", work, n_params, flops)
    if args.compile:
        compiled_work(model, fmt, task, args, max_new, fast, work, n_params, flops)
    if args.compare:
        slow, ref_work = evaluate(model, fmt, task, args.limit, max_new, use_engine=False)
        ref_work.tokens_scored = sum(len(fmt.encode(q, a)["input_ids"]) for q, a in scored_pairs(task, args.limit))
        ref_work.prompt_tokens = sum(len(fmt.prompt_ids(q)) for q, _ in scored_pairs(task, args.limit, answers=False))
        ref_work.tokens_generated = work.tokens_generated      # the same generations (checked below)
        report("reference", ref_work, n_params, flops)
        compare("speed-up", fast, work, slow, ref_work)


if __name__ == "__main__":
    main()
