"""Per-item statistics of one model on one split, computed once and stored; every TOFU metric derives from them."""
from __future__ import annotations

import time

from accelerate.utils import gather_object
from rouge_score import rouge_scorer

from evals import engine, reference
from unlearnbench.models import PromptFormat

_SCORER = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)


def rouge_recall(gold: str, generated: str) -> dict[str, float]:
    scores = _SCORER.score(gold, generated)
    return {"rouge1_recall": scores["rouge1"].recall, "rougeL_recall": scores["rougeL"].recall}


def split_stats(model, fmt: PromptFormat, rows: list[dict], batch_size: int, max_new_tokens: int,
                name: str, paraphrased: bool, token_budget: int = 4096, use_engine: bool = True,
                work: engine.Work | None = None, accelerator=None) -> dict[str, list]:
    """Everything the metrics need for one split: answer/paraphrase/perturbed NLLs and ROUGE of generations.

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
    start = time.perf_counter()
    if use_engine:
        items = [(r["question"], [r[f] for f in fields.values()] + list(r["perturbed_answer"])) for r in rows]
        world = accelerator.num_processes if accelerator is not None else 1
        shard = (accelerator.process_index, world) if world > 1 else (0, 1)
        done = engine.evaluate(model, fmt, items, token_budget, batch_size, max_new_tokens, work, shard)
        if world > 1:
            done = {i: v for part in gather_object([done]) for i, v in part.items()}
        nll = {key: [done[i].nll[j] for i in range(len(rows))] for j, key in enumerate(fields)}
        nll["nll_perturbed"] = [done[i].nll[len(fields):] for i in range(len(rows))]
        generation = [done[i].generation for i in range(len(rows))]
    else:
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
    stats = {**nll, "generation": generation}
    scores = [rouge_recall(r["answer"], g) for r, g in zip(rows, generation)]
    stats["rougeL_recall"] = [s["rougeL_recall"] for s in scores]
    stats["rouge1_recall"] = [s["rouge1_recall"] for s in scores]
    return stats
