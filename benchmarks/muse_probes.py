"""The MUSE-style task's probes (docs/probes.md): its forget documents asked in ways the evaluation does not ask
them, generated and scored by ROUGE-L F1 like the task's own questions (one per-item score per probe).

- `shifted` (VerbMem): the prompt ends one sentence later (the true continuation's first sentence moved into it)
  and the rest is the reference: does the model continue the article from another point than the one scored?
  Its items are the plain VerbMem items, so it enters the worst case.
- `icl0` (KnowMem): the question with none of KnowMem's ten in-context pairs before it;
- `paraphrase` (KnowMem): the question in a second phrasing, after the ten pairs (the synthetic world writes it
  as `paraphrased_question`; MUSE's release has none, so it is not offered there).
The KnowMem probes ask the KnowMem items, not the plain question's (VerbMem, the task's forget measure); each is
read against the retain model under its own items, so it enters the worst case like `shifted`. `shifted` reuses
the forget article's own text (its prompt is a longer stretch of it): a format probe, not an unseen one.
Each KnowMem probe is asked on the forget questions and, for the utility under it, on the retain questions.
"""
from __future__ import annotations

import re

from evals import muse_metrics

PROBES = ("shifted", "icl0", "paraphrase")
KNOWMEM = ("icl0", "paraphrase")            # on the KnowMem items
CHANGES = {"shifted": "format", "icl0": "format", "paraphrase": "unseen wording"}   # docs/probes.md
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def shift(prompt: str, gt: str) -> tuple[str, str] | None:
    """(prompt with the continuation's first sentence, the rest), or None when the continuation has one sentence."""
    parts = SENTENCE_END.split(gt.strip(), maxsplit=1)
    if len(parts) < 2 or not parts[1].strip():
        return None
    return prompt + parts[0] + " ", parts[1]


def shifted(row: dict) -> tuple[str, list[str]]:
    """The `shifted` probe's (prompt, [reference]) of a VerbMem row it was offered for (`offered` checks every row)."""
    cut = shift(row["prompt"], row["gt"])
    if cut is None:
        raise ValueError(f"the continuation {row['gt'][:60]!r}... has one sentence: nothing to shift")
    return cut[0], [cut[1]]


def offered(sets: dict) -> tuple[str, ...]:
    """The probes these evaluation sets can serve: `shifted` needs continuations of two sentences at least,
    `paraphrase` the synthetic world's second phrasing of every KnowMem question."""
    can = {"shifted": all(shift(r["prompt"], r["gt"]) for r in sets["verbmem_forget"]),
           "icl0": True,
           "paraphrase": all(r.get("paraphrased_question") for s in ("knowmem_forget", "knowmem_retain")
                             for r in sets[s])}
    return tuple(p for p in PROBES if can[p])


def items(probe: str, sets: dict, icl: dict) -> dict[str, list[tuple[str, list[str]]]]:
    """Per split ("forget", and for the KnowMem probes "retain"), the (prompt, [reference]) items of `probe`;
    icl: each KnowMem split's in-context pairs."""
    if probe == "shifted":
        return {"forget": [shifted(r) for r in sets["verbmem_forget"]]}
    if probe in KNOWMEM:
        ask = (lambda split, r: muse_metrics.icl_prompt([], r["question"])) if probe == "icl0" else \
            (lambda split, r: muse_metrics.icl_prompt(icl[split], r["paraphrased_question"]))
        return {side: [(ask(split, r), [r["answer"]]) for r in sets[split]]
                for side, split in (("forget", "knowmem_forget"), ("retain", "knowmem_retain"))}
    raise ValueError(f"unknown MUSE probe {probe!r}; choose from {list(PROBES)}")


def new_tokens(probe: str) -> int:
    return muse_metrics.KNOWMEM_TOKENS if probe in KNOWMEM else muse_metrics.VERBMEM_TOKENS
