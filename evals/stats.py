"""Per-item statistics of one model on one split, computed once and stored; every TOFU metric derives from them."""
from __future__ import annotations

import time

from rouge_score import rouge_scorer

from evals import engine, reference
from unlearnbench.models import PromptFormat

_SCORER = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)


def rouge_recall(gold: str, generated: str) -> dict[str, float]:
    scores = _SCORER.score(gold, generated)
    return {"rouge1_recall": scores["rouge1"].recall, "rougeL_recall": scores["rougeL"].recall}


def split_stats(model, fmt: PromptFormat, rows: list[dict], batch_size: int, max_new_tokens: int,
                name: str, paraphrased: bool, token_budget: int = 4096, use_engine: bool = True,
                work: engine.Work | None = None) -> dict[str, list]:
    """Everything the metrics need for one split: answer/paraphrase/perturbed NLLs and ROUGE of generations.

    The engine scores all teacher-forced sequences in one length-sorted pass (batches of at most token_budget
    padded tokens) and decodes with early exit; use_engine=False runs the straightforward reference instead
    (batches of batch_size in row order, one pass per quantity, transformers' generate): same numbers."""
    if not rows:
        raise ValueError(f"evaluation split {name!r} is empty")
    n_wrong = {len(r["perturbed_answer"]) for r in rows}
    if len(n_wrong) != 1:
        raise ValueError(f"split {name!r}: every row needs the same number of perturbed answers, got {n_wrong}")
    k = n_wrong.pop()
    groups = {"nll_answer": [(r["question"], r["answer"]) for r in rows]}
    if paraphrased:
        groups["nll_paraphrased"] = [(r["question"], r["paraphrased_answer"]) for r in rows]
    groups["nll_perturbed"] = [(r["question"], w) for r in rows for w in r["perturbed_answer"]]
    questions = [r["question"] for r in rows]
    work = work or engine.Work()
    start = time.perf_counter()
    if use_engine:
        flat = engine.answer_nll(model, fmt, [p for pairs in groups.values() for p in pairs], token_budget, work)
        nll, at = {}, 0
        for key, pairs in groups.items():
            nll[key], at = flat[at:at + len(pairs)], at + len(pairs)
    else:
        nll = {key: reference.mean_answer_nll(model, fmt, pairs, batch_size, desc=f"{name}: {key}")
               for key, pairs in groups.items()}
    work.scoring_seconds += time.perf_counter() - start
    start = time.perf_counter()
    if use_engine:
        generation = engine.greedy_generate(model, fmt, questions, batch_size, max_new_tokens, work)
    else:
        generation = reference.greedy_generate(model, fmt, questions, batch_size, max_new_tokens,
                                               desc=f"{name}: generate")
    work.generation_seconds += time.perf_counter() - start
    stats = {**nll, "nll_perturbed": [nll["nll_perturbed"][i * k:(i + 1) * k] for i in range(len(rows))],
             "generation": generation}
    scores = [rouge_recall(r["answer"], g) for r, g in zip(rows, generation)]
    stats["rougeL_recall"] = [s["rougeL_recall"] for s in scores]
    stats["rouge1_recall"] = [s["rouge1_recall"] for s in scores]
    return stats
