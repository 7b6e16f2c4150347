"""Per-item statistics of one model on one split, computed once and stored; every TOFU metric derives from them."""
from __future__ import annotations

import functools
import time
from typing import Any

from evals import engine, reference
from unlearnbench.heavy import accelerate_utils, rouge_scorer
from unlearnbench.models import PromptFormat


@functools.cache
def _scorer():
    return rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)


def rouge_recall(gold: str, generated: str) -> dict[str, float]:
    scores = _scorer().score(gold, generated)
    return {"rouge1_recall": scores["rouge1"].recall, "rougeL_recall": scores["rougeL"].recall}


def scored_items(model, fmt: PromptFormat, items: list, batch_size: int, max_new_tokens: int, token_budget: int,
                 work: engine.Work, accelerator, detail: int = 0) -> list[engine.Scored]:
    """The engine on this process's share of the items (question, answers), gathered: one Scored per item, in
    order. A task that continues raw text (MUSE-style) passes `fmt.raw()`."""
    return scored_groups(model, [(fmt, items)], batch_size, max_new_tokens, token_budget, work, accelerator,
                         detail)[0]


def scored_groups(model, groups: list[tuple[PromptFormat, list]], batch_size: int, max_new_tokens: int,
                  token_budget: int, work: engine.Work, accelerator, detail: int = 0) -> list[list[engine.Scored]]:
    """scored_items over several (format, items) groups of one tokenizer in one batch schedule (a task's probes):
    one list of Scored per group."""
    world = accelerator.num_processes if accelerator is not None else 1
    shard = (accelerator.process_index, world) if world > 1 else (0, 1)
    done = engine.evaluate_groups(model, groups, token_budget, batch_size, max_new_tokens, work, shard, detail)
    if world > 1:
        done = {i: v for part in accelerate_utils.gather_object([done]) for i, v in part.items()}
    out, start = [], 0
    for _, items in groups:
        out.append([done[start + i] for i in range(len(items))])
        start += len(items)
    return out


def _token_fields(rows: list[dict], scored: list[engine.Scored]) -> dict[str, list]:
    """The first answer's per-token statistics (evals/privacy.py reads them) and its text (for Zlib)."""
    return {"answer": [r["answer"] for r in rows], "token_logp": [s.token_logp[0] for s in scored],
            "token_mu": [s.token_mu[0] for s in scored], "token_sigma": [s.token_sigma[0] for s in scored],
            "token_argmax": [s.token_argmax[0] for s in scored]}


def split_stats(model, fmt: PromptFormat, rows: list[dict], batch_size: int, max_new_tokens: int,
                name: str, paraphrased: bool, token_budget: int = 4096, use_engine: bool = True,
                work: engine.Work | None = None, accelerator=None, detail: bool = False) -> dict[str, Any]:
    """Everything the metrics need for one split: answer/paraphrase/perturbed NLLs and ROUGE of generations, and
    with detail the answer's per-token statistics from the same pass (membership attacks).

    The engine (evals/engine.py) runs each question's prompt once for all its answers and its generation; with an
    accelerator of several processes, each runs a share of the questions and the shares are gathered (the numbers
    equal one process's). use_engine=False runs the straightforward reference instead (batches of batch_size in
    row order, one pass per quantity, transformers' generate): the same numbers."""
    if not rows:
        raise ValueError(f"evaluation split {name!r} is empty")
    n_wrong = {len(r["perturbed_answer"]) for r in rows}
    if len(n_wrong) != 1:
        raise ValueError(f"split {name!r}: every row needs the same number of perturbed answers, got {n_wrong}")
    k = n_wrong.pop()
    fields = {"nll_answer": "answer", **({"nll_paraphrased": "paraphrased_answer"} if paraphrased else {})}
    work = work if work is not None else engine.Work()
    start, extra = time.perf_counter(), {}
    if use_engine:
        items = [(r["question"], [r[f] for f in fields.values()] + list(r["perturbed_answer"])) for r in rows]
        done = scored_items(model, fmt, items, batch_size, max_new_tokens, token_budget, work, accelerator, int(detail))
        nll: dict[str, list] = {key: [d.nll[j] for d in done] for j, key in enumerate(fields)}
        nll["nll_perturbed"] = [d.nll[len(fields):] for d in done]
        generation = [d.generation for d in done]
        extra = _token_fields(rows, done) if detail else {}
    else:
        if detail:
            raise ValueError("per-token statistics come from the engine only (use_engine=True)")
        nll = {key: reference.mean_answer_nll(model, fmt, [(r["question"], r[f]) for r in rows], batch_size,
                                              desc=f"{name}: {key}") for key, f in fields.items()}
        flat = reference.mean_answer_nll(model, fmt, [(r["question"], w) for r in rows for w in r["perturbed_answer"]],
                                         batch_size, desc=f"{name}: nll_perturbed")
        nll["nll_perturbed"] = [flat[i * k:(i + 1) * k] for i in range(len(rows))]
        work.scoring_seconds += time.perf_counter() - start
        mid = time.perf_counter()
        generation = reference.greedy_generate(model, fmt, [r["question"] for r in rows], batch_size,
                                               max_new_tokens, desc=f"{name}: generate")
        work.generation_seconds += time.perf_counter() - mid
    work.seconds += time.perf_counter() - start
    stats = {**nll, "generation": generation, **extra}
    scores = [rouge_recall(r["answer"], g) for r, g in zip(rows, generation)]
    stats["rougeL_recall"] = [s["rougeL_recall"] for s in scores]
    stats["rouge1_recall"] = [s["rouge1_recall"] for s in scores]
    return stats


def membership_stats(model, fmt: PromptFormat, rows: list[dict], batch_size: int, name: str,
                     token_budget: int = 4096, work: engine.Work | None = None, accelerator=None) -> dict[str, list]:
    """A split scored for the membership attacks only (the holdout set: questions and answers, never trained on):
    each answer's NLL and per-token statistics, no generation."""
    if not rows:
        raise ValueError(f"evaluation split {name!r} is empty")
    done = scored_items(model, fmt, [(r["question"], [r["answer"]]) for r in rows], batch_size, 0, token_budget,
                   work if work is not None else engine.Work(), accelerator, detail=1)
    return {"nll_answer": [d.nll[0] for d in done], **_token_fields(rows, done)}
