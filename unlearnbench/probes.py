"""Prompt probes by name (docs/probes.md, docs/extending.md): `@probe(name, changes=...)` on a function that turns
one item of the TOFU schema (a perturbed row: question, answer, paraphrased and perturbed answers, and whatever
else the rows carry) into the probe's prompt. The task scores the item's answers after that prompt as it scores
its built-in prompt probes (p(answer | prompt), and the truth ratio under it), runs the discrimination test on it
and takes it into the worst case when it discriminates. A file passed with `extensions=` registers its own
probes this way; its digest goes into the key of every evaluation that asks them.

`changes` says what the probe changes about the asked question, one of CHANGES. A probe whose prompt is
`unseen wording` claims that no model trained on its text: every unlearning run checks that claim against the
texts it consumed, and fails the row that trained on it (orchestration/pipeline.py).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from unlearnbench.registry import Registry

CHANGES = ("unseen wording", "format", "added context", "adversarial frame")
PROBES = Registry("probe")


@dataclass(frozen=True)
class ProbeSpec:
    name: str
    ask: Callable[[dict], str]      # an item of the TOFU schema -> the probe's prompt
    changes: str                    # one of CHANGES
    needs: tuple[str, ...] = ()     # fields every item must carry for the probe to be offered
    source: str = ""                # registered from a user's file (extensions=): "<path>@<digest>"

    @property
    def unseen(self) -> bool:
        """Whether the probe claims its prompt's text is in no row any model trains on."""
        return self.changes == "unseen wording"


def probe(name: str, changes: str, needs: tuple[str, ...] = ()):
    """Register `ask(item) -> prompt` as the prompt probe `name` of TOFU-style tasks; `needs`: the item fields it
    reads beyond the TOFU schema's (a task whose rows lack one does not offer it)."""
    if changes not in CHANGES:
        raise ValueError(f"probe {name!r}: changes={changes!r}; choose from {list(CHANGES)}")

    def wrap(ask):
        PROBES.register(name, ProbeSpec(name, ask, changes, tuple(needs)))
        return ask
    return wrap
