"""MUSE's metrics (Shi et al. 2024; muse_bench's metrics/verbmem.py, knowmem.py, privleak.py) as pure functions of
per-item statistics (benchmarks/muse.py computes them through the evaluation engine).

- VerbMem: the greedy continuation of a forget document's prompt (128 new tokens) against its true continuation
  `gt` cut to 128 tokens (as muse_bench cuts it: the tokenizer's ids of gt with its special tokens, the first 128,
  decoded without them); ROUGE-L F1 (rouge_score, no stemmer), mean x 100.
- KnowMem: the ten in-context pairs as "Question: q\\nAnswer: a\\n\\n", then "Question: q\\nAnswer: "; 32 new
  tokens greedy, cut before the first blank line, "\\nQuestion" or "Question:"; ROUGE-L F1 against the answer, mean
  x 100. On the forget QA it measures forgetting, on the retain QA it is the utility.
- PrivLeak: ROC AUC of Min-40% (evals/privacy.py) between the forget and holdout documents, against the retain
  model's: (AUC' - AUC'_retain) / AUC'_retain x 100 in MUSE's orientation (evals/privacy.py's priv_leak).
"""
from __future__ import annotations

import functools

import numpy as np

from evals.privacy import auc, priv_leak
from unlearnbench.heavy import rouge_scorer

VERBMEM_TOKENS = 128
KNOWMEM_TOKENS = 32
CUT_AT = ("\n\n", "\nQuestion", "Question:")      # muse_bench's order
HIGHER_IS_BETTER = {"verbmem_forget": False, "knowmem_forget": False, "knowmem_retain": True,
                    "forget_gap_to_retain": False}


@functools.cache
def _scorer():
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l_f1(gold: str, generated: str) -> float:
    return _scorer().score(gold, generated)["rougeL"].fmeasure


def cut_gt(tokenizer, gt: str, tokens: int = VERBMEM_TOKENS) -> str:
    """The true continuation as VerbMem scores it: its first `tokens` ids (special tokens such as BOS count, as
    muse_bench encodes it) decoded without special tokens."""
    ids = tokenizer(gt, add_special_tokens=True)["input_ids"][:tokens]
    return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True)


def knowmem_answer(output: str) -> str:
    """A KnowMem generation cut where the model starts the next pair: before a blank line, "\\nQuestion" or
    "Question:" (each cut applied to what the previous left)."""
    for marker in CUT_AT:
        output = output.split(marker)[0]
    return output


def icl_prompt(icl: list[dict], question: str) -> str:
    """The KnowMem prompt of one question after its split's in-context pairs."""
    shots = "".join(f"Question: {r['question']}\nAnswer: {r['answer']}\n\n" for r in icl)
    return shots + f"Question: {question}\nAnswer: "


def mean_x100(values) -> float:
    if not len(values):
        raise ValueError("a MUSE metric over an empty split; every evaluation split needs items")
    return float(np.mean(values)) * 100.0


def metrics(stats: dict, retain_stats: dict | None) -> dict[str, float]:
    """VerbMem and KnowMem (forget; retain: the utility) x 100, the Min-40% AUC of forget vs holdout documents
    (evals/privacy.py's orientation: 1 = the forget set still looks trained on), and PrivLeak against the retain
    model where there is one, and there the forget side's mean absolute gap to it (`forget_gap_to_retain`, the mean
    of VerbMem's and KnowMem's: what tune.py's rule minimises, the retain model's values being the goal)."""
    out = {"verbmem_forget": mean_x100(stats["verbmem_forget"]["rougeL_f1"]),
           "knowmem_forget": mean_x100(stats["knowmem_forget"]["rougeL_f1"]),
           "knowmem_retain": mean_x100(stats["knowmem_retain"]["rougeL_f1"]),
           "auc_min_k": auc(stats["privleak_forget"]["min_k"], stats["privleak_holdout"]["min_k"])}
    if retain_stats is not None:
        gold = auc(retain_stats["privleak_forget"]["min_k"], retain_stats["privleak_holdout"]["min_k"])
        out["priv_leak"] = priv_leak(out["auc_min_k"], gold)
        out["forget_gap_to_retain"] = float(np.mean([abs(out[k] - mean_x100(retain_stats[k]["rougeL_f1"]))
                                                     for k in ("verbmem_forget", "knowmem_forget")]))
    return out
