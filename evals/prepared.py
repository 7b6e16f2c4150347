"""What the evaluation engine (evals/engine.py) puts through a model, tokenized once: each question's prompt and its
answers' token tree, and the prompts that share a long leading run of tokens.

A run evaluates many models (target, retain model, every row, every attacked variant) on the same questions with
the same tokenizer, so the prepared items are kept per process, keyed by the prompt format's fingerprint (its
tokenizer's full serialisation, template, answer start and length cut) and the items' text: tokenizing them
again gave the same tokens and took about 1.5 s of each probed evaluation of the default world.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from unlearnbench.models import PromptFormat

MEMO_SIZE = 64          # prepared item lists kept per process (the default run asks 23 per model)
MIN_SHARED = 16         # tokens a run of prompts must share for its prefix to run once ...
MIN_SAVED = 512         # ... and the tokens that must save: a smaller saving is not worth a forward pass of its own


class Tree:
    """A question's answers after the shared prefix as a token tree: a token common to several answers (same
    token after the same tokens) is one node, put through the model once. Node i has parents[i] (-1: the
    prefix) and depth[i] (its position after the prefix); an answer is a path of nodes and its labels."""

    def __init__(self, rows: list[dict], shared: int):
        self.children: dict[tuple[int, int], int] = {}     # (parent, token) -> node
        self.tokens: list[int] = []
        self.parents: list[int] = []
        self.depth: list[int] = []
        self.paths: list[list[int]] = []         # per answer: the node of each fed token (its last token is not fed)
        self.labels: list[list[int]] = []        # per answer: labels after the prefix; label 0 is predicted by
        for row in rows:                         # the prefix's last logits, label t + 1 by node paths[t]
            node, path = -1, []
            for depth, token in enumerate(row["input_ids"][shared:-1]):
                key = (node, token)
                if key not in self.children:
                    self.children[key] = len(self.tokens)
                    self.tokens.append(token)
                    self.parents.append(node)
                    self.depth.append(depth)
                node = self.children[key]
                path.append(node)
            self.paths.append(path)
            self.labels.append(row["labels"][shared:])
        # node i sees node j iff j is i or one of its ancestors (a parent is made before its children)
        self.seen = np.zeros((len(self.tokens), len(self.tokens)), dtype=bool)
        for i, parent in enumerate(self.parents):
            if parent >= 0:
                self.seen[i] = self.seen[parent]
            self.seen[i, i] = True

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True)
class Item:
    prompt: list[int]               # the generation prompt
    shared: int                     # leading tokens common to the prompt and every answer's row
    rows: list[dict]                # fmt.encode(question, answer) for each answer
    tree: Tree                      # the answers after the shared prefix


_memo: OrderedDict[tuple, list[Item]] = OrderedDict()


def items(fmt: PromptFormat, pairs: list[tuple[str, list[str]]]) -> list[Item]:
    """The engine's items for these (question, answers), from the memo when this format prepared them before (a
    format without a fingerprint, e.g. a slow tokenizer, prepares them every time)."""
    fingerprint = fmt.fingerprint()
    if fingerprint is None:
        return _prepare(fmt, pairs)
    key = (fingerprint, tuple((q, tuple(answers)) for q, answers in pairs))
    if key in _memo:
        _memo.move_to_end(key)
        return _memo[key]
    _memo[key] = _prepare(fmt, pairs)
    if len(_memo) > MEMO_SIZE:
        _memo.popitem(last=False)
    return _memo[key]


def _prepare(fmt: PromptFormat, pairs: list[tuple[str, list[str]]]) -> list[Item]:
    prompts = fmt.prompts_ids([q for q, _ in pairs])
    rows = iter(fmt.encode_pairs([(q, a) for q, answers in pairs for a in answers]))
    out = []
    for (question, answers), prompt in zip(pairs, prompts):
        encoded, shared = [next(rows) for _ in answers], len(prompt)
        for row in encoded:     # labels start at the prompt's length; keep a token (at least EOS) after the prefix
            shared = min(shared, _common(prompt, row["input_ids"]), len(row["input_ids"]) - 1)
        if shared < 1:
            raise ValueError(f"question {question!r}: its prompt encodes to no token shared with its answers' rows")
        out.append(Item(prompt, shared, encoded, Tree(encoded, shared)))
    return out


def prefix_groups(items: list[Item]) -> list[tuple[int, list[int]]]:
    """(prefix length, item indices): groups of items whose scored prompts (`prompt[:shared]`) share their first
    prefix-length tokens, at least MIN_SHARED of them, saving at least MIN_SAVED tokens (in-context examples, an
    adversarial frame, a chat template's system turn); the rest in one group of prefix length 0, first. Where a
    group holds a subgroup sharing more (five in-context examples begin with the first one), the split that saves
    more tokens is taken. A prefix leaves each item at least one token of its own. Deterministic in the items."""
    scored = [it.prompt[:it.shared] for it in items]
    order = sorted(range(len(items)), key=scored.__getitem__)       # a shared run makes neighbours
    common = [min(_common(scored[a], scored[b]), len(scored[a]) - 1, len(scored[b]) - 1)
              for a, b in zip(order, order[1:])]
    shared = sorted(_split(order, common), key=lambda g: min(g[1]))
    grouped = {i for _, members in shared for i in members}
    rest = [i for i in range(len(items)) if i not in grouped]
    return ([(0, rest)] if rest else []) + [(p, sorted(m)) for p, m in shared]


def _kept(prefix: int, members: list[int]) -> bool:
    return prefix >= MIN_SHARED and (len(members) - 1) * prefix >= MIN_SAVED


def _split(members: list[int], common: list[int]) -> list[tuple[int, list[int]]]:
    """The groups of a run of neighbours (`common`: each adjacent pair's shared length) that save the most: the run
    as one group at its least shared length, or its parts cut where that least length is, each split again, with
    the members no part's group took as one group at the least length."""
    if len(members) < 2:
        return []
    least = min(common)
    cuts = [i for i, c in enumerate(common) if c == least]
    bounds = zip([0] + [c + 1 for c in cuts], cuts + [len(members) - 1])
    parts = [g for lo, hi in bounds for g in _split(members[lo:hi + 1], common[lo:hi])]
    taken = {i for _, m in parts for i in m}
    left = [i for i in members if i not in taken]
    parts += [(least, left)] if _kept(least, left) else []
    whole = [(least, members)] if _kept(least, members) else []
    saved = lambda groups: sum((len(m) - 1) * p for p, m in groups)
    return whole if saved(whole) > saved(parts) else parts


def _common(a: list[int], b: list[int]) -> int:
    """How many leading tokens the two sequences share."""
    return next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
