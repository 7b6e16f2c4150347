"""The evaluation engine: teacher-forced scoring and greedy generation with the numbers of the straightforward
implementation (evals/reference.py; tests/test_engine.py compares the two) at a fraction of its cost.

Work is done per *question*, since every answer of a question (the answer, its paraphrase, the perturbed answers)
and its generation start from the same prompt:
- Questions are sorted by length and cut into batches. A batch's prompts go through the model once, left-padded
  (position ids as transformers' `generate` computes them), keeping the key/value cache and the last position's
  logits only: the prompt is scored once instead of once per answer, and no logits are computed at prompt
  positions (no answer token is predicted there).
- Each answer's tokens after the shared prompt are scored against a copy of its question's cache, in sub-batches
  of at most `token_budget` tokens sorted by length; the answer's first token is predicted by the prompt's logits.
- Greedy decoding continues from the same cache. A sequence leaves the batch at EOS (its rows are dropped from
  the cache), so a batch costs its longest *live* sequence rather than the slowest row at every step.
- With `shard=(rank, world)` a process runs every world-th question batch. Batches are built the same way whatever
  the world size, so each item's numbers are bit-identical to one process's (evals/stats.py gathers them).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from evals.reference import device_of
from unlearnbench.models import PromptFormat


@dataclass
class Work:
    """What an evaluation processed: the inputs of a hardware-floor estimate (scripts/bench_eval.py)."""
    tokens_scored: int = 0          # tokens through the model for teacher forcing (shared prompts once), no padding
    tokens_generated: int = 0       # new tokens from greedy decoding
    prompt_tokens: int = 0          # generation prompts not already run for scoring
    forward_calls: int = 0
    scoring_seconds: float = 0.0    # wall time of the teacher-forced part (the engine's includes the shared prefill)
    generation_seconds: float = 0.0
    seconds: float = 0.0            # wall time of the whole evaluation

    def add(self, **counts: int) -> None:
        for key, value in counts.items():
            setattr(self, key, getattr(self, key) + value)


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


# generation settings under which transformers' greedy `generate` is a plain argmax (the engine's loop);
# a model whose generation_config sets any of them otherwise is decoded by `generate` itself
NEUTRAL = {"repetition_penalty": (None, 1.0), "no_repeat_ngram_size": (None, 0), "bad_words_ids": (None,),
           "min_length": (None, 0), "min_new_tokens": (None, 0), "suppress_tokens": (None,),
           "begin_suppress_tokens": (None,), "forced_bos_token_id": (None,), "forced_eos_token_id": (None,),
           "sequence_bias": (None,), "encoder_repetition_penalty": (None, 1.0)}


def plain_greedy(model) -> bool:
    config = getattr(model, "generation_config", None)
    return config is None or all(getattr(config, k, None) in ok for k, ok in NEUTRAL.items())


@dataclass
class _Item:
    prompt: list[int]               # the generation prompt
    shared: int                     # leading tokens common to the prompt and every answer's row
    rows: list[dict]                # fmt.encode(question, answer) for each answer


def _items(fmt: PromptFormat, items: list[tuple[str, list[str]]]) -> list[_Item]:
    prompts = fmt.prompts_ids([q for q, _ in items])
    rows = iter(fmt.encode_pairs([(q, a) for q, answers in items for a in answers]))
    out = []
    for (question, answers), prompt in zip(items, prompts):
        item = _Item(prompt, len(prompt), [next(rows) for _ in answers])
        for row in item.rows:   # labels start at the prompt's length; keep a token (at least EOS) after the prefix
            ids = row["input_ids"]
            same = next((i for i, (a, b) in enumerate(zip(prompt, ids)) if a != b), min(len(prompt), len(ids)))
            item.shared = min(item.shared, same, len(ids) - 1)
        if item.shared < 1:
            raise ValueError(f"question {question!r}: its prompt encodes to no token shared with its answers' rows")
        out.append(item)
    return out


@torch.no_grad()
def evaluate(model, fmt: PromptFormat, items: list[tuple[str, list[str]]], token_budget: int, batch_size: int,
             max_new_tokens: int, work: Work | None = None,
             shard: tuple[int, int] = (0, 1)) -> dict[int, tuple[list[float], str]]:
    """For each (question, answers): NLLbar(a|q) of every answer (the mean per-token NLL over its tokens and EOS)
    and the greedy generation (new text only, special tokens skipped; "" when max_new_tokens is 0).

    Questions go in batches of at most batch_size, sorted by prompt length; answers are scored in batches of at
    most token_budget tokens. Returns {item index: (NLLs, generation)} for the items of this process's shard."""
    work = work if work is not None else Work()
    prepared = _items(fmt, items)
    rank, world = shard
    batches = length_batches([it.shared for it in prepared], token_budget, batch_size)
    out = {}
    for b in batches[rank::world]:
        out.update(zip(b, _question_batch(model, fmt, [prepared[i] for i in b], token_budget, max_new_tokens, work)))
    return out


def _question_batch(model, fmt: PromptFormat, items: list[_Item], token_budget: int, max_new_tokens: int,
                    work: Work) -> list[tuple[list[float], str]]:
    start, device, n, width = time.perf_counter(), device_of(model), len(items), max(it.shared for it in items)
    ids, mask = _left_pad([it.prompt[:it.shared] for it in items], fmt.tokenizer.pad_token_id, device)
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    cache = DynamicCache(config=model.config)
    last = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                 logits_to_keep=1).logits[:, -1].float()
    work.add(tokens_scored=int(mask.sum()), forward_calls=1)

    # every answer's tokens after the shared prefix, scored against its question's cache
    owners = [(i, row) for i, it in enumerate(items) for row in it.rows]
    conts = [(row["input_ids"][items[i].shared:], row["labels"][items[i].shared:]) for i, row in owners]
    nll = [0.0] * len(owners)
    for sub in length_batches([width + len(c[0]) - 1 for c in conts], token_budget, len(conts)):
        owner = torch.tensor([owners[j][0] for j in sub], device=device)
        # a row's last token (EOS) predicts nothing, so it is never put through the model: input position t
        # predicts label t + 1, and the prompt's last logits predict label 0
        c_ids, c_mask = _right_pad([conts[j][0][:-1] for j in sub], fmt.tokenizer.pad_token_id, device)
        labels = _right_pad([conts[j][1] for j in sub], -100, device)[0]
        total = F.cross_entropy(last[owner], labels[:, 0], ignore_index=-100, reduction="none")
        if c_ids.shape[1]:
            sub_cache = DynamicCache(ddp_cache_data=[(layer.keys[owner], layer.values[owner])
                                                     for layer in cache.layers], config=model.config)
            c_pos = positions[owner, -1:] + 1 + torch.arange(c_ids.shape[1], device=device)
            logits = model(input_ids=c_ids, attention_mask=torch.cat([mask[owner], c_mask], 1), position_ids=c_pos,
                           past_key_values=sub_cache).logits.float()
            token = F.cross_entropy(logits.transpose(1, 2), labels[:, 1:], ignore_index=-100, reduction="none")
            total = total + token.sum(1)            # -100 labels give 0
            work.add(tokens_scored=int(c_mask.sum()), forward_calls=1)
        for j, value in zip(sub, (total / (labels != -100).sum(1).clamp(min=1)).tolist()):
            nll[j] = value

    generations, mid = [""] * n, time.perf_counter()
    work.scoring_seconds += mid - start
    if max_new_tokens > 0:
        if plain_greedy(model) and all(it.shared == len(it.prompt) for it in items):
            new = _decode(model, cache, mask, positions[:, -1], last.argmax(-1), max_new_tokens,
                          fmt.tokenizer.eos_token_id, work)
        else:       # a prompt that does not prefix its answers' rows, or a model with logits processors
            new = _generate(model, [it.prompt for it in items], max_new_tokens, fmt.tokenizer, work)
        generations = [fmt.tokenizer.decode(g, skip_special_tokens=True) for g in new]
    work.generation_seconds += time.perf_counter() - mid
    per_item = [[] for _ in range(n)]
    for (i, _), value in zip(owners, nll):
        per_item[i].append(value)
    return list(zip(per_item, generations))


def _left_pad(seqs: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s)
        mask[i, width - len(s):] = 1
    return ids.to(device), mask.to(device)


def _right_pad(seqs: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(seqs), max(map(len, seqs))), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, :len(s)], mask[i, :len(s)] = torch.tensor(s, dtype=torch.long), 1
    return ids.to(device), mask.to(device)


def _generate(model, prompts: list[list[int]], max_new_tokens: int, tok, work: Work) -> list[list[int]]:
    """Greedy decoding from the prompts alone: the engine's loop, or `generate` where the model needs its
    logits processors."""
    ids, mask = _left_pad(prompts, tok.pad_token_id, device_of(model))
    work.add(prompt_tokens=int(mask.sum()), forward_calls=1)
    if not plain_greedy(model):
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=max_new_tokens,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)[:, ids.shape[1]:]
        work.add(tokens_generated=out.numel())
        return out.tolist()             # decoded with special tokens skipped, as the reference does
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    cache = DynamicCache(config=model.config)
    last = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                 logits_to_keep=1).logits[:, -1].float()
    return _decode(model, cache, mask, positions[:, -1], last.argmax(-1), max_new_tokens, tok.eos_token_id, work)


def _decode(model, cache: DynamicCache, mask: torch.Tensor, last: torch.Tensor, next_token: torch.Tensor,
            max_new_tokens: int, eos: int, work: Work) -> list[list[int]]:
    """Greedy steps after a prefill (`cache`, its attention `mask`, each row's last position and first token)."""
    live = torch.arange(len(next_token), device=next_token.device)
    generated: list[list[int]] = [[] for _ in range(len(next_token))]
    for step in range(max_new_tokens):
        for row, token in zip(live.tolist(), next_token.tolist()):
            generated[row].append(token)
        work.add(tokens_generated=len(live))
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
                       past_key_values=cache, logits_to_keep=1).logits
        next_token = logits[:, -1].float().argmax(-1)
        work.add(forward_calls=1)
    return [g[:g.index(eos)] if eos in g else g for g in generated]
