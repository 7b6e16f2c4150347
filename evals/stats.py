"""Per-item statistics of one model on one split, computed once and stored; every TOFU metric derives from them."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from rouge_score import rouge_scorer
from tqdm.auto import tqdm

from unlearnbench.models import PromptFormat, collate


def _device(model) -> torch.device:
    return next(model.parameters()).device


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence summed NLL and label-token count (labels -100 are ignored), next-token shifted."""
    shift_logits, shift_labels = logits[:, :-1].float(), labels[:, 1:]
    nll = F.cross_entropy(shift_logits.transpose(1, 2), shift_labels, ignore_index=-100, reduction="none")
    mask = shift_labels != -100
    return (nll * mask).sum(1), mask.sum(1)


@torch.no_grad()
def mean_answer_nll(model, fmt: PromptFormat, pairs: list[tuple[str, str]], batch_size: int,
                    desc: str = "") -> list[float]:
    """NLLbar(a|q): mean per-token NLL over the answer's tokens and EOS, for each (question, answer)."""
    rows = [fmt.encode(q, a) for q, a in pairs]
    device, out = _device(model), []
    for start in tqdm(range(0, len(rows), batch_size), desc=desc, leave=False, disable=not desc):
        batch = {k: v.to(device) for k, v in collate(rows[start:start + batch_size], fmt.tokenizer.pad_token_id).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        total, count = token_nll(logits, batch["labels"])
        out.extend((total / count.clamp(min=1)).tolist())
    return out


@torch.no_grad()
def greedy_generate(model, fmt: PromptFormat, questions: list[str], batch_size: int, max_new_tokens: int,
                    desc: str = "") -> list[str]:
    """Batched greedy decoding from left-padded prompts, stopped at EOS; returns the new text only."""
    tok, device, out = fmt.tokenizer, _device(model), []
    for start in tqdm(range(0, len(questions), batch_size), desc=desc, leave=False, disable=not desc):
        prompts = [fmt.prompt_ids(q) for q in questions[start:start + batch_size]]
        width = max(map(len, prompts))
        ids = torch.full((len(prompts), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompts):
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                             max_new_tokens=max_new_tokens, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id)
        out.extend(tok.batch_decode(gen[:, width:], skip_special_tokens=True))
    return out


_SCORER = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)


def rouge_recall(gold: str, generated: str) -> dict[str, float]:
    scores = _SCORER.score(gold, generated)
    return {"rouge1_recall": scores["rouge1"].recall, "rougeL_recall": scores["rougeL"].recall}


def split_stats(model, fmt: PromptFormat, rows: list[dict], batch_size: int, max_new_tokens: int,
                name: str, paraphrased: bool) -> dict[str, list]:
    """Everything the metrics need for one split: answer/paraphrase/perturbed NLLs and ROUGE of generations."""
    if not rows:
        raise ValueError(f"evaluation split {name!r} is empty")
    questions = [r["question"] for r in rows]
    n_wrong = {len(r["perturbed_answer"]) for r in rows}
    if len(n_wrong) != 1:
        raise ValueError(f"split {name!r}: every row needs the same number of perturbed answers, got {n_wrong}")
    k = n_wrong.pop()
    stats = {"nll_answer": mean_answer_nll(model, fmt, [(r["question"], r["answer"]) for r in rows], batch_size,
                                           desc=f"{name}: answers")}
    if paraphrased:
        stats["nll_paraphrased"] = mean_answer_nll(
            model, fmt, [(r["question"], r["paraphrased_answer"]) for r in rows], batch_size)
    flat = mean_answer_nll(model, fmt, [(r["question"], w) for r in rows for w in r["perturbed_answer"]],
                           batch_size, desc=f"{name}: perturbed")
    stats["nll_perturbed"] = [flat[i * k:(i + 1) * k] for i in range(len(rows))]
    stats["generation"] = greedy_generate(model, fmt, questions, batch_size, max_new_tokens, desc=f"{name}: generate")
    scores = [rouge_recall(r["answer"], g) for r, g in zip(rows, stats["generation"])]
    stats["rougeL_recall"] = [s["rougeL_recall"] for s in scores]
    stats["rouge1_recall"] = [s["rouge1_recall"] for s in scores]
    return stats
