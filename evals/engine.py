"""The evaluation engine: teacher-forced scoring and greedy generation with the numbers of the straightforward
implementation (evals/reference.py; tests/test_engine.py compares the two) at a fraction of its cost.

- Teacher-forced: every sequence of a split (answers, paraphrases, perturbed answers) goes through one pass,
  sorted by length and cut into batches of at most `token_budget` padded tokens. Batches carry little padding,
  and a small model makes few, large forward calls. Rows are right-padded, so a row's logits do not depend on
  the rows beside it (up to float rounding).
- Greedy generation: prompts sorted by length, left-padded (position ids as transformers' generate computes
  them) and decoded with the KV cache. A sequence leaves the batch at EOS (its rows are dropped from the cache),
  so a batch costs its longest *live* sequence rather than the slowest row at every step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache

from evals import reference
from evals.reference import device_of, token_nll
from unlearnbench.models import PromptFormat, collate


@dataclass
class Work:
    """What an evaluation processed: the inputs of a hardware-floor estimate (scripts/bench_eval.py)."""
    tokens_scored: int = 0          # teacher-forced tokens, padding excluded
    tokens_generated: int = 0       # new tokens from greedy decoding
    prompt_tokens: int = 0          # generation prompts' tokens (one forward each)
    forward_calls: int = 0
    scoring_seconds: float = 0.0    # wall time of the teacher-forced part (either implementation)
    generation_seconds: float = 0.0


def length_batches(lengths: list[int], token_budget: int, max_rows: int) -> list[list[int]]:
    """Indices sorted by length (stable), cut so that rows x longest length <= token_budget and rows <= max_rows
    (a single row longer than the budget gets a batch of its own)."""
    batches, current = [], []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        if current and ((len(current) + 1) * lengths[i] > token_budget or len(current) >= max_rows):
            batches.append(current)
            current = []
        current.append(i)
    return batches + [current] if current else batches


@torch.no_grad()
def answer_nll(model, fmt: PromptFormat, pairs: list[tuple[str, str]], token_budget: int,
               work: Work | None = None) -> list[float]:
    """NLLbar(a|q) for every (question, answer): the mean per-token NLL over the answer's tokens and EOS."""
    rows = [fmt.encode(q, a) for q, a in pairs]
    device, out = device_of(model), [0.0] * len(rows)
    for idx in length_batches([len(r["input_ids"]) for r in rows], token_budget, len(rows)):
        batch = {k: v.to(device) for k, v in collate([rows[i] for i in idx], fmt.tokenizer.pad_token_id).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        total, count = token_nll(logits, batch["labels"])
        for i, value in zip(idx, (total / count.clamp(min=1)).tolist()):
            out[i] = value
        if work:
            work.tokens_scored += int(batch["attention_mask"].sum())
            work.forward_calls += 1
    return out


# generation settings under which transformers' greedy `generate` is a plain argmax (the engine's loop);
# a model whose generation_config sets any of them otherwise is decoded by `generate` itself
NEUTRAL = {"repetition_penalty": (None, 1.0), "no_repeat_ngram_size": (None, 0), "bad_words_ids": (None,),
           "min_length": (None, 0), "min_new_tokens": (None, 0), "suppress_tokens": (None,),
           "begin_suppress_tokens": (None,), "forced_bos_token_id": (None,), "forced_eos_token_id": (None,),
           "sequence_bias": (None,), "encoder_repetition_penalty": (None, 1.0)}


def plain_greedy(model) -> bool:
    config = getattr(model, "generation_config", None)
    return config is None or all(getattr(config, k, None) in ok for k, ok in NEUTRAL.items())


@torch.no_grad()
def greedy_generate(model, fmt: PromptFormat, questions: list[str], batch_size: int, max_new_tokens: int,
                    work: Work | None = None) -> list[str]:
    """Greedy decoding of every question's prompt, stopped at EOS; the new text only (special tokens skipped)."""
    if not plain_greedy(model):
        return reference.greedy_generate(model, fmt, questions, batch_size, max_new_tokens)
    tok = fmt.tokenizer
    prompts = [fmt.prompt_ids(q) for q in questions]
    out = [""] * len(prompts)
    for idx in length_batches([len(p) for p in prompts], max(len(p) for p in prompts) * batch_size, batch_size):
        new = _greedy_batch(model, [prompts[i] for i in idx], max_new_tokens, tok.eos_token_id, tok.pad_token_id,
                            work)
        for i, ids in zip(idx, new):
            out[i] = tok.decode(ids, skip_special_tokens=True)
    return out


def _greedy_batch(model, prompts: list[list[int]], max_new_tokens: int, eos: int, pad: int,
                  work: Work | None) -> list[list[int]]:
    device, n, width = device_of(model), len(prompts), max(map(len, prompts))
    ids = torch.full((n, width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)     # as generate(): left padding shifts nothing
    cache = DynamicCache(config=model.config)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache).logits
    next_token = logits[:, -1].float().argmax(-1)
    live, last = torch.arange(n, device=device), positions[:, -1]
    generated: list[list[int]] = [[] for _ in range(n)]
    if work:
        work.prompt_tokens += int(mask.sum())
        work.forward_calls += 1
    for step in range(max_new_tokens):
        for row, token in zip(live.tolist(), next_token.tolist()):
            generated[row].append(token)
        if work:
            work.tokens_generated += len(live)
        running = next_token != eos
        if step == max_new_tokens - 1 or not running.any():
            break
        if not running.all():                                   # finished sequences leave the batch
            keep = running.nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            live, mask, last, next_token = live[keep], mask[keep], last[keep], next_token[keep]
        mask = torch.cat([mask, mask.new_ones(len(live), 1)], 1)
        last = last + 1
        logits = model(input_ids=next_token[:, None], attention_mask=mask, position_ids=last[:, None],
                       past_key_values=cache).logits
        next_token = logits[:, -1].float().argmax(-1)
        if work:
            work.forward_calls += 1
    return [g[:g.index(eos)] if eos in g else g for g in generated]
