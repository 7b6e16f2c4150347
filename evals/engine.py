"""The evaluation engine: teacher-forced scoring and greedy generation with the numbers of the straightforward
implementation (evals/reference.py; tests/test_engine.py compares the two) at a fraction of its cost.

Work is done per *question*, since every answer of a question (the answer, its paraphrase, the perturbed answers)
and its generation start from the same prompt:
- Questions are sorted by length and cut into batches. A batch's prompts go through the model once, left-padded
  (position ids as transformers' `generate` computes them), keeping the key/value cache and the last position's
  logits only: the prompt is scored once instead of once per answer, and no logits are computed at prompt
  positions (no answer token is predicted there). Prompts that share a long leading run of tokens (in-context
  examples, an adversarial frame, a chat template's system turn) are batched together and the run goes through
  the model once for all of them (evals/prepared.py says when); each row continues from a copy of its keys and
  values. Items asked in several prompt formats (a task's probes) share one batch schedule (`evaluate_groups`).
  Tokenization is done once per process for each format and list of items (evals/prepared.py).
- A question's answers after the prompt form a token tree (answers that start alike share their first nodes).
  The trees of several questions go through the model in one pass against a copy of their prompts' cache, a 4-D
  attention mask letting each node see its prompt, its ancestors and itself, in batches of at most
  `token_budget` tokens of trees of similar size (padding stays under a quarter). A shared token runs once; an
  answer's last token (EOS) predicts nothing and never runs. On the default world this puts 23,012 tokens
  through the model where one row per answer took 29,758 and the reference 75,394.
- Log-probabilities are (x - max) - log sum exp(x - max) (evals/reference.py), exact to float32 rounding.
  The same pass gives per-token statistics for the membership attacks on request (`detail`).
- Greedy decoding (evals/greedy.py) reads its first tokens off the scoring pass where the answers' trees hold the
  model's own argmax (the answers as an exact draft), then continues from the prompts' cache plus the walked nodes'
  keys and values; a sequence leaves the batch at EOS.
- With `shard=(rank, world)` a process runs every world-th question batch. Batches are built the same way whatever
  the world size, so each item's numbers are bit-identical to one process's (evals/stats.py gathers them).
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from evals import greedy, kvcache, prepared
from evals.prepared import Item
from evals.reference import device_of, log_softmax
from unlearnbench.heavy import no_grad, torch, transformers
from unlearnbench.models import PromptFormat, left_pad

# part of every evaluation's cache key: bumped when what an evaluation stores changes (2: token trees,
# log-probabilities as (x - max) - log sum exp(x - max), up to 2.5e-5 on confident tokens' NLL; 3: per-token
# statistics of the forget answers and the holdout split, for the membership attacks; 4: generation reads its
# first tokens off the scoring pass: the same numbers, a smaller evaluation cost; 5: shared prompt prefixes run
# once and a task's probes in one batch schedule: the probes' numbers move by float32 rounding)
ENGINE_VERSION = 5


@dataclass
class Work:
    """What an evaluation processed: the inputs of a hardware-floor estimate (scripts/bench_eval.py)."""
    tokens_scored: int = 0          # tokens through the model for teacher forcing (shared prompts once), no padding
    tokens_generated: int = 0       # new tokens from greedy decoding
    tokens_drafted: int = 0         # of them, read off the scoring pass (evals/greedy.py), not decoded
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
    batches: list[list[int]] = []
    current: list[int] = []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        if current and ((len(current) + 1) * lengths[i] > token_budget or len(current) >= max_rows):
            batches.append(current)
            current = []
        current.append(i)
    return batches + [current] if current else batches


@dataclass
class Scored:
    """One question's results: NLLbar of each answer, the greedy generation, and, for its first `detail`
    answers, per-token statistics of each label token under teacher forcing (docs/metrics.md, for the
    membership attacks): log p(token), the mean and standard deviation of log p over the model's own next-token
    distribution at that position (Min-K%++), and whether the token is the argmax (exact memorization)."""
    nll: list[float]
    generation: str
    token_logp: list[list[float]]
    token_mu: list[list[float]]
    token_sigma: list[list[float]]
    token_argmax: list[list[bool]]


@no_grad
def evaluate(model, fmt: PromptFormat, items: list[tuple[str, list[str]]], token_budget: int, batch_size: int,
             max_new_tokens: int, work: Work | None = None, shard: tuple[int, int] = (0, 1),
             detail: int = 0) -> dict[int, Scored]:
    """For each (question, answers): NLLbar(a|q) of every answer (the mean per-token NLL over its tokens and EOS),
    the greedy generation (new text only, special tokens skipped; "" when max_new_tokens is 0), and per-token
    statistics of its first `detail` answers. Returns {item index: Scored} for the items of this process's shard."""
    return evaluate_groups(model, [(fmt, items)], token_budget, batch_size, max_new_tokens, work, shard, detail)


@no_grad
def evaluate_groups(model, groups: list[tuple[PromptFormat, list[tuple[str, list[str]]]]], token_budget: int,
                    batch_size: int, max_new_tokens: int, work: Work | None = None, shard: tuple[int, int] = (0, 1),
                    detail: int = 0) -> dict[int, Scored]:
    """`evaluate` over items asked in several prompt formats of one tokenizer (a task's probes), in one batch
    schedule: {index in the groups' concatenation: Scored}.

    Questions go in batches of at most batch_size, sorted by prompt length; prompts that share a long leading run
    of tokens (evals/prepared.py) are batched together and the run goes through the model once, its keys and
    values copied to each row; answers are scored in batches of at most token_budget tokens."""
    if model.config._attn_implementation not in ("sdpa", "eager"):
        raise ValueError(f"the evaluation engine scores answer trees through a 4-D attention mask, which "
                         f"{model.config._attn_implementation!r} attention does not take; load the model with "
                         f"attn_implementation='sdpa' (the default) or 'eager'")
    tokenizer = groups[0][0].tokenizer
    if any(fmt.tokenizer is not tokenizer for fmt, _ in groups):
        raise ValueError("evaluate_groups: every group's format must use one tokenizer")
    work = work if work is not None else Work()
    items = [it for fmt, pairs in groups for it in prepared.items(fmt, pairs)]
    rank, world = shard
    batches = [(g, prefix, [members[i] for i in b])
               for g, (prefix, members) in enumerate(prepared.prefix_groups(items))
               for b in length_batches([items[i].shared - prefix for i in members], token_budget, batch_size)]
    head: tuple[int, list] = (-1, [])       # the current group's shared prefix: its keys and values
    out: dict[int, Scored] = {}
    for g, prefix, b in batches[rank::world]:
        batch = [items[i] for i in b]
        if prefix and head[0] != g:
            head = (g, _prefill_shared(model, batch[0].prompt[:prefix], work))
        out.update(zip(b, _question_batch(model, tokenizer, batch, token_budget, max_new_tokens, work, detail,
                                          prefix, head[1] if prefix else [])))
    return out


def _prefill_shared(model, tokens: list[int], work: Work) -> list:
    """The keys and values of a prefix that a group of prompts shares, run once (positions 0...)."""
    cache = kvcache.new(model)
    model(input_ids=torch.tensor([tokens], device=device_of(model)), cache=cache, logits_to_keep=1)
    work.add(tokens_scored=len(tokens), forward_calls=1)
    return kvcache.layers(cache)


def _question_batch(model, tokenizer, items: list[Item], token_budget: int, max_new_tokens: int, work: Work,
                    detail: int, prefix: int = 0, head: Sequence = ()) -> list[Scored]:
    """One batch of questions: their prompts through the model (after `head`, the keys and values of the first
    `prefix` tokens, which every prompt here shares), then their answers' trees, then their generations."""
    start, device, width = time.perf_counter(), device_of(model), max(it.shared for it in items)
    ids, own = left_pad([it.prompt[prefix:it.shared] for it in items], tokenizer.pad_token_id, device)
    mask = torch.cat([torch.ones(len(items), prefix, dtype=own.dtype, device=device), own], -1)
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    rows = len(items)
    cache = (kvcache.from_layers(model, [(k.expand(rows, -1, -1, -1).contiguous(), v.expand(rows, -1, -1, -1)
                                          .contiguous()) for k, v in head]) if prefix else kvcache.new(model))
    last = model(input_ids=ids, attention_mask=mask, position_ids=positions[:, prefix:], cache=cache,
                 logits_to_keep=1).logits[:, -1].float()
    work.add(tokens_scored=int(own.sum()), forward_calls=1)
    scored = [Scored([], "", [], [], [], []) for _ in items]
    # greedy decoding starts from the answers' drafts (evals/greedy.py) where the engine's own loop is exact
    drafting = (max_new_tokens > 0 and greedy.plain_greedy(model) and all(it.shared == len(it.prompt) for it in items)
                and kvcache.full_attention(cache))
    drafts, first, eos = {}, last.argmax(-1).tolist(), tokenizer.eos_token_id
    for sub in _tree_batches([len(it.tree) for it in items], width, token_budget):
        after, sub_cache = _score_trees(model, [items[i] for i in sub], [scored[i] for i in sub], cache, sub, mask,
                                        positions, last, work, detail)
        sub_kv = kvcache.layers(sub_cache) if drafting else []
        for j, i in enumerate(sub if drafting else []):
            tokens, nodes = greedy.walk(items[i].tree.children, first[i], after[j], max_new_tokens, eos)
            done = tokens[-1] == eos or len(tokens) == max_new_tokens
            at = width + torch.tensor(nodes, dtype=torch.long, device=device)
            kv = [] if done else [(keys[j][:, at], values[j][:, at]) for keys, values in sub_kv]
            drafts[i] = greedy.Draft(tokens, done, kv)
    mid = time.perf_counter()
    work.scoring_seconds += mid - start
    if max_new_tokens > 0:
        if drafting:
            new = greedy.finish(model, cache, mask, positions[:, -1], [drafts[i] for i in range(len(items))],
                                max_new_tokens, eos, work)
        else:       # a prompt that does not prefix its answers' rows, or a model with logits processors
            new = greedy.generate(model, [it.prompt for it in items], max_new_tokens, tokenizer, work)
        for s, g in zip(scored, new):
            s.generation = tokenizer.decode(g, skip_special_tokens=True)
    work.generation_seconds += time.perf_counter() - mid
    return scored


def _tree_batches(sizes: list[int], width: int, token_budget: int, spread: float = 1.25) -> list[list[int]]:
    """Questions sorted by tree size, cut so that rows x (prompt width + largest tree) <= token_budget and no tree
    is more than `spread` times the batch's smallest: trees are padded to the largest of their batch, and sizes
    vary a lot (SmolLM2's: 74 % padding without the second rule, against more, smaller passes with it)."""
    batches: list[list[int]] = []
    current: list[int] = []
    for i in sorted(range(len(sizes)), key=sizes.__getitem__):
        if current and ((len(current) + 1) * (width + sizes[i]) > token_budget
                        or sizes[i] > spread * max(sizes[current[0]], 1)):
            batches.append(current)
            current = []
        current.append(i)
    return batches + [current] if current else batches


def _score_trees(model, items: list[Item], scored: list[Scored], cache: transformers.DynamicCache, rows: list[int],
                 mask: torch.Tensor, positions: torch.Tensor, last: torch.Tensor, work: Work, detail: int
                 ) -> tuple[list[list[int]], transformers.DynamicCache]:
    """Every answer of these questions from one forward pass of their token trees against (a copy of) their
    prompts' cache: a 4-D mask lets each node see its prompt, its ancestors and itself, at position
    prompt end + 1 + depth. Returns each question's argmax after each node and the cache, trees included (greedy
    decoding's drafts)."""
    device, owner = last.device, torch.tensor(rows, device=last.device)
    # every label of every answer: its question's row here, the node whose logits predict it (-1: the prompt's
    # last position), the label, and the answer's index
    flat = [(r, node, label, a)
            for r, it in enumerate(items) for a, (path, labels) in enumerate(zip(it.tree.paths, it.tree.labels))
            for node, label in zip([-1] + path, labels) if label != -100]
    r, node, label, answer = (torch.tensor(v, device=device) for v in zip(*flat))
    deep = node >= 0
    values = [torch.zeros(len(r), device=device) for _ in range(4 if detail else 1)]
    for v, part in zip(values, _label_stats(last[owner], (r[~deep],), label[~deep], detail)):
        v[~deep] = part.to(v.dtype)
    size = max(len(it.tree) for it in items)
    after: list[list[int]] = [[] for _ in items]
    sub_cache = kvcache.from_layers(model, [(keys[owner], values[owner]) for keys, values in kvcache.layers(cache)])
    if size:
        tokens = _right_pad([it.tree.tokens for it in items], 0, device)[0]      # padding: any token
        depth = _right_pad([it.tree.depth for it in items], 0, device)[0]
        seen = torch.zeros(len(items), size, size, dtype=torch.bool)     # a padding node sees no node
        for b, it in enumerate(items):
            seen[b, :len(it.tree), :len(it.tree)] = torch.from_numpy(it.tree.seen)
        seen = seen.to(device)
        allowed = torch.cat([mask[owner][:, None, :].expand(-1, size, -1).bool(), seen], -1)[:, None]
        dtype = next(model.parameters()).dtype
        bias = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)
        logits = model(input_ids=tokens, attention_mask=bias, position_ids=positions[owner, -1:] + 1 + depth,
                       cache=sub_cache).logits
        work.add(tokens_scored=sum(len(it.tree) for it in items), forward_calls=1)
        for v, part in zip(values, _label_stats(logits, (r[deep], node[deep]), label[deep], detail)):
            v[deep] = part.to(v.dtype)
        after = logits.argmax(-1).tolist()
    slots = max(len(it.rows) for it in items)                         # one slot per (question, answer)
    total = torch.zeros(len(items) * slots, device=device).index_add_(0, r * slots + answer, -values[0])
    count = torch.zeros_like(total).index_add_(0, r * slots + answer, torch.ones_like(values[0]))
    per = (total / count.clamp(min=1)).view(len(items), slots).tolist()
    for s, it, nll in zip(scored, items, per):
        s.nll = nll[:len(it.rows)]
    if detail:      # per-token lists of each question's first `detail` answers, in label order
        columns = [v.tolist() for v in values[:3]] + [[bool(x) for x in values[3].tolist()]]
        for j, (i, a) in enumerate(zip(r.tolist(), answer.tolist())):
            if a < detail:
                s = scored[i]
                for field, column in zip((s.token_logp, s.token_mu, s.token_sigma, s.token_argmax), columns):
                    while len(field) <= a:
                        field.append([])
                    field[a].append(column[j])
    return after, sub_cache


def _label_stats(logits: torch.Tensor, where: tuple, labels: torch.Tensor, detail: int) -> list[torch.Tensor]:
    """log p(label) at the positions `where` indexes in logits (..., vocab), through evals/reference.py's
    log_softmax (both implementations use it); with detail, also the mean and standard deviation of log p(v) under
    p itself (Min-K%++) and whether the label is the argmax."""
    logp = log_softmax(logits)      # over every position: gathering the label positions first measured slower
    picked = logp[where + (labels,)]  # (SmolLM2, 49,152 logits a position: 11.7 s against 8.9 s of scoring)
    if not detail:
        return [picked]
    logp = logp[where]
    p = logp.exp()
    mu = (p * logp).sum(-1)
    sigma = ((p * logp.square()).sum(-1) - mu.square()).clamp(min=0).sqrt()
    return [picked, mu, sigma, (logp.argmax(-1) == labels).to(picked.dtype)]


def _right_pad(seqs: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(seqs), max(map(len, seqs))), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, :len(s)], mask[i, :len(s)] = torch.tensor(s, dtype=torch.long), 1
    return ids.to(device), mask.to(device)
