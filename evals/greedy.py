"""Greedy decoding for the evaluation engine (evals/engine.py), exact to transformers' greedy `generate`.

- Decoding continues from the prompts' cache. A sequence leaves the batch at EOS or at its token cap (its rows are
  dropped from the cache), so a batch costs its longest *live* sequence rather than the slowest row at every step.
- **Answers as drafts.** The scoring pass has already run each question's answers (its token tree) and computed
  the model's argmax after every answer token. Greedy decoding's first tokens can be read off it: start from the
  argmax after the prompt and, while that token is a child in the tree, step into the child and take the argmax
  there. Where the walk leaves the tree, decoding goes on from the prompt's cache plus the keys and values of the
  walked nodes (taken from the scoring pass), so no token runs twice. This is speculative decoding with the
  question's own answers as the draft, and it is exact: a token is only taken where it is the model's argmax. A
  model that still knows its answers (a target, a retain model on retained authors) decodes almost nothing; a model
  that has forgotten them leaves the tree early and decodes as before.
"""
from __future__ import annotations

from dataclasses import dataclass

from evals import kvcache
from unlearnbench.heavy import torch, transformers
from unlearnbench.models import left_pad

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
class Draft:
    """The greedy tokens of one question read off the scoring pass. Unless `done`, the last token is still to be
    fed, and `kv` holds each layer's keys and values (heads, len(tokens) - 1, dim) of the ones before it."""
    tokens: list[int]
    done: bool
    kv: list[tuple[torch.Tensor, torch.Tensor]]


def walk(children: dict[tuple[int, int], int], first: int, argmax: list[int], cap: int, eos: int
         ) -> tuple[list[int], list[int]]:
    """Greedy tokens along a token tree: `first` is the argmax after the prompt, argmax[n] the argmax after node n,
    children[(node, token)] the child of node (-1: the prompt) with that token. Returns the tokens (at most `cap`;
    the walk stops after EOS or at a token with no child) and the nodes walked (one fewer unless the cap cut it)."""
    tokens: list[int] = []
    nodes: list[int] = []
    node, token = -1, first
    while len(tokens) < cap:
        tokens.append(token)
        child = children.get((node, token))
        if token == eos or child is None:
            break
        node = child
        nodes.append(node)
        token = argmax[node]
    return tokens, nodes


def finish(model, cache: transformers.DynamicCache, mask: torch.Tensor, last: torch.Tensor, drafts: list[Draft],
           max_new_tokens: int, eos: int, work) -> list[list[int]]:
    """Each question's greedy generation (EOS and after cut): its draft, decoded further from the prompts' `cache`
    (attention `mask`, each row's `last` position) plus the draft's keys and values where the draft is not done."""
    todo = [i for i, d in enumerate(drafts) if not d.done]
    drafted = sum(len(d.tokens) for d in drafts) - len(todo)    # a draft's last token, if not done, is decoded
    work.add(tokens_generated=drafted, tokens_drafted=drafted)
    out = [d.tokens for d in drafts]
    if todo:
        rows, fed = torch.tensor(todo, device=mask.device), [len(drafts[i].tokens) - 1 for i in todo]
        width = max(fed)
        grown = []      # per layer: the prompt's keys/values, then the draft's, right-padded (masked out)
        for (keys, values), parts in zip(kvcache.layers(cache), zip(*(drafts[i].kv for i in todo))):
            kv = []
            for prompt, draft_kv in zip((keys[rows], values[rows]), zip(*parts)):
                room = prompt.new_zeros(*prompt.shape[:2], width, prompt.shape[-1])
                for j, d in enumerate(draft_kv):
                    room[j, :, :d.shape[1]] = d
                kv.append(torch.cat([prompt, room], 2))
            grown.append((kv[0], kv[1]))
        drafted_mask = (torch.arange(width, device=mask.device) < torch.tensor(fed, device=mask.device)[:, None])
        more = decode(model, kvcache.from_layers(model, grown),
                      torch.cat([mask[rows], drafted_mask.to(mask.dtype)], 1),
                      last[rows] + torch.tensor(fed, device=last.device),
                      torch.tensor([drafts[i].tokens[-1] for i in todo], device=last.device),
                      [max_new_tokens - n for n in fed], eos, work)
        for i, n, m in zip(todo, fed, more):
            out[i] = out[i][:n] + m
    return [g[:g.index(eos)] if eos in g else g for g in out]


def generate(model, prompts: list[list[int]], max_new_tokens: int, tok, work) -> list[list[int]]:
    """Greedy decoding from the prompts alone: the engine's loop, or `generate` where the model needs its
    logits processors."""
    ids, mask = left_pad(prompts, tok.pad_token_id, next(model.parameters()).device)
    work.add(prompt_tokens=int(mask.sum()), forward_calls=1)
    if not plain_greedy(model):
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=max_new_tokens,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)[:, ids.shape[1]:]
        work.add(tokens_generated=out.numel())
        return out.tolist()             # decoded with special tokens skipped, as the reference does
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    cache = kvcache.new(model)
    last = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache,
                 logits_to_keep=1).logits[:, -1].float()
    new = decode(model, cache, mask, positions[:, -1], last.argmax(-1), [max_new_tokens] * len(prompts),
                 tok.eos_token_id, work)
    return [g[:g.index(tok.eos_token_id)] if tok.eos_token_id in g else g for g in new]


def decode(model, cache: transformers.DynamicCache, mask: torch.Tensor, last: torch.Tensor, next_token: torch.Tensor,
           caps: list[int], eos: int, work) -> list[list[int]]:
    """Greedy steps after a prefill (`cache`, its attention `mask`, each row's last position and first token):
    row i's tokens, its first token included, until EOS (kept) or caps[i] tokens."""
    live = torch.arange(len(next_token), device=next_token.device)
    left = torch.tensor(caps, device=next_token.device)            # tokens each row may still take
    generated: list[list[int]] = [[] for _ in range(len(next_token))]
    while True:
        for row, token in zip(live.tolist(), next_token.tolist()):
            generated[row].append(token)
        work.add(tokens_generated=len(live))
        left = left - 1
        running = (next_token != eos) & (left > 0)
        if not running.any():
            return generated
        if not running.all():                                   # finished sequences leave the batch
            keep = running.nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            live, mask, last, next_token, left = live[keep], mask[keep], last[keep], next_token[keep], left[keep]
        mask = torch.cat([mask, mask.new_ones(len(live), 1)], 1)
        last = last + 1
        logits = model(input_ids=next_token[:, None], attention_mask=mask, position_ids=last[:, None],
                       cache=cache, logits_to_keep=1).logits
        next_token = logits[:, -1].float().argmax(-1)
        work.add(forward_calls=1)
