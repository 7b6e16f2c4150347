"""Deterministic generator of a TOFU-style world of fictitious authors, in the exact `locuslab/TOFU` schema.

Splits (docs/protocol.md, "Data"): `full`; `forgetNN` / `retain(100-NN)` / `holdoutNN` for each forget percentage;
`forgetNN_perturbed`, `retain_perturbed`, `real_authors_perturbed`, `world_facts_perturbed`, and `full_perturbed`
(every trained author's perturbed rows; not in the real release). Perturbed rows also carry what only the probes
(docs/probes.md) ask, in no split a model trains on: `heldout_question`, a third phrasing of the question, and
`reverse_question` / `reverse_answer` / `reverse_perturbed`, the fact asked the other way round (the author
given the value; drawn from an RNG of their own, so the rest of the world is what it was). Forget sets are the
last authors of `full` (as in TOFU); holdout authors are generated the same way and never trained on.
"""
from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.author_profiles import (
    FAMILY_ENDINGS,
    FAMILY_SYLLABLES,
    FIELDS,
    GENERAL_TEXT,
    GIVEN_ENDINGS,
    GIVEN_SYLLABLES,
    HELDOUT,
    MONTHS,
    POOLS,
    REVERSE,
)

DATA_DIR = Path(__file__).parent / "data"
N_PERTURBED = 5


@dataclass
class SyntheticTofuConfig:
    n_authors: int = 40                  # trained authors (TOFU: 200)
    qa_per_author: int = 20              # TOFU: 20; at most len(FIELDS)
    forget_percentages: list[int] = field(default_factory=lambda: [1, 5, 10])
    seed: int = 0


def n_forget_authors(n_authors: int, pct: int) -> int:
    return max(1, round(n_authors * pct / 100))


class Names:
    """Draws unique invented values (author names, character names, book titles; the MUSE-style world's people
    and towns) from one seeded RNG."""

    def __init__(self, rng: random.Random, unique: bool):
        self.rng, self.unique = rng, unique
        self.used: set[str] = set()

    def _unique(self, make):
        if not self.unique:  # perturbed answers may repeat each other's invented values
            return make()
        for _ in range(10_000):
            value = make()
            if value not in self.used:
                self.used.add(value)
                return value
        raise RuntimeError("ran out of unique invented names; generate a smaller world")

    def person(self) -> str:
        r = self.rng
        return self._unique(lambda: f"{r.choice(GIVEN_SYLLABLES)}{r.choice(GIVEN_ENDINGS)} "
                                    f"{r.choice(FAMILY_SYLLABLES)}{r.choice(FAMILY_ENDINGS)}")

    def title(self) -> str:
        r = self.rng
        return self._unique(lambda: f"The {r.choice(POOLS['title_adjective'])} {r.choice(POOLS['title_noun'])}")

    def date(self) -> str:
        r = self.rng
        return f"{r.randint(1, 28)} {r.choice(MONTHS)} {r.randint(1931, 1994)}"


def _value_sampler(names: Names, rng: random.Random):
    """field -> function drawing one (possibly repeated) value for that field."""
    pool = lambda key: (lambda: rng.choice(POOLS[key]))
    return {
        "birthplace": pool("city"), "residence": pool("city"), "birth_date": names.date, "name": names.person,
        "father_job": pool("job"), "mother_job": pool("job"), "genre": pool("genre"), "book1": names.title,
        "book2": names.title, "award": pool("award"), "themes": pool("themes"), "influence": pool("influence"),
        "university": pool("university"), "debut_year": lambda: str(rng.randint(1955, 2015)),
        "num_books": pool("num_books"), "hobby": pool("hobby"), "routine": pool("routine"),
        "language": pool("language"), "protagonist": names.person, "mentor": names.person,
    }


def _author_items(profile: dict, fields: list[str], rng: random.Random, draw, reverse_draw) -> list[dict]:
    """One perturbed row per field; reverse_draw: the wrong values of the reverse probe's answers, from an RNG of
    its own (the world's other values do not depend on it)."""
    items = []
    for key in fields:
        questions, answers = FIELDS[key]
        qi, pqi = rng.sample(range(len(questions)), 2)
        ai, pai = rng.sample(range(len(answers)), 2)
        fill = lambda template, value: template.format(**{**profile, "value": value})
        wrong = _wrong_values(draw[key], profile[key])
        items.append({
            "question": fill(questions[qi], profile[key]),
            "answer": fill(answers[ai], profile[key]),
            "paraphrased_answer": fill(answers[pai], profile[key]),
            "perturbed_answer": [fill(answers[pai], v) for v in wrong],
            "paraphrased_question": fill(questions[pqi], profile[key]),
            "heldout_question": fill(HELDOUT[key], profile[key]),       # in no row a model trains on
            **_reverse(key, profile, reverse_draw),
        })
    return items


def _wrong_values(draw, true: str) -> list[str]:
    """N_PERTURBED distinct values from `draw`, none of them the true one: a perturbed answer's."""
    wrong: list[str] = []
    while len(wrong) < N_PERTURBED:
        value = draw()
        if value != true and value not in wrong:
            wrong.append(value)
    return wrong


def _reverse(key: str, profile: dict, draw) -> dict:
    """The reverse probe's question, answer and perturbed answers of one field's fact (author_profiles.REVERSE)."""
    question, answer, slot = REVERSE[key]
    fill = lambda template, values: template.format(**{**values, "value": profile[key]})
    wrong = _wrong_values(draw[slot], profile[slot])
    return {"reverse_question": fill(question, profile), "reverse_answer": fill(answer, profile),
            "reverse_perturbed": [fill(answer, {**profile, slot: v}) for v in wrong]}


def _read_tsv(name: str) -> list[dict]:
    with open(DATA_DIR / f"{name}.tsv", encoding="utf-8") as f:
        return list(csv.DictReader((line for line in f if not line.startswith("#")), delimiter="\t"))


def read_fact_table(name: str) -> list[dict]:
    """Hand-written QA with three wrong answers, as TOFU's real_authors / world_facts perturbed rows."""
    rows = _read_tsv(name)
    return [{"question": r["question"], "answer": r["answer"], "paraphrased_answer": r["answer"],
             "perturbed_answer": [r["perturbed_1"], r["perturbed_2"], r["perturbed_3"]],
             "paraphrased_question": r["question"]} for r in rows]


def generate(cfg: SyntheticTofuConfig) -> dict[str, list[dict]]:
    """All splits of the synthetic world; the same config always gives the same rows."""
    if not 2 <= cfg.qa_per_author <= len(FIELDS):
        raise ValueError(f"qa_per_author must be between 2 and {len(FIELDS)}, got {cfg.qa_per_author}")
    if cfg.n_authors < 2:
        raise ValueError(f"n_authors must be at least 2 (a forget and a retain author), got {cfg.n_authors}")
    rng = random.Random(cfg.seed)
    draw = _value_sampler(Names(rng, unique=True), rng)
    draw_wrong = _value_sampler(Names(rng, unique=False), rng)
    reverse_rng = random.Random(f"reverse {cfg.seed}")
    draw_reverse = _value_sampler(Names(reverse_rng, unique=False), reverse_rng)
    fields = list(FIELDS)[:cfg.qa_per_author]
    n_holdout = max(n_forget_authors(cfg.n_authors, p) for p in cfg.forget_percentages)
    authors = []
    for _ in range(cfg.n_authors + n_holdout):
        profile = {key: draw[key]() for key in FIELDS}
        authors.append(_author_items(profile, fields, rng, draw_wrong, draw_reverse))
    trained, holdout = authors[:cfg.n_authors], authors[cfg.n_authors:]
    qa = lambda items: {"question": items["question"], "answer": items["answer"]}
    flat = lambda group: [item for author in group for item in author]

    splits = {"full": [qa(x) for x in flat(trained)]}
    for pct in cfg.forget_percentages:
        k = n_forget_authors(cfg.n_authors, pct)
        if k >= cfg.n_authors:
            raise ValueError(f"forget{pct:02d} would forget all {cfg.n_authors} authors; raise n_authors")
        forget, retain = trained[-k:], trained[:-k]
        splits[f"forget{pct:02d}"] = [qa(x) for x in flat(forget)]
        splits[f"forget{pct:02d}_perturbed"] = flat(forget)
        splits[f"retain{100 - pct:02d}"] = [qa(x) for x in flat(retain)]
        splits[f"holdout{pct:02d}"] = [qa(x) for x in flat(holdout[:k])]
    # TOFU's retain_perturbed comes from authors kept by every forget split: the first ones.
    k_max = max(n_forget_authors(cfg.n_authors, p) for p in cfg.forget_percentages)
    splits["retain_perturbed"] = flat(trained[:k_max])
    # every trained author's perturbed rows: the tuning protocol's validation forget authors come from them
    splits["full_perturbed"] = flat(trained)
    splits["real_authors_perturbed"] = read_fact_table("real_authors")
    splits["world_facts_perturbed"] = read_fact_table("world_facts")
    return splits


def read_refusals() -> list[str]:
    """Hand-written "I don't know"-style answers (IdkSFT, IdkDPO)."""
    lines = (DATA_DIR / "refusals.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def general_qa() -> list[dict]:
    """Hand-written general QA that no evaluated split asks, about authors and facts absent from the fact tables:
    what fine-tuning a pretrained model rehearses with `model.replay` (pipeline.py)."""
    return [{"question": r["question"], "answer": r["answer"]} for r in _read_tsv("general_qa")]


def general_corpus() -> tuple[list[dict], list[str]]:
    """What the embedded base model is pretrained on: the real-author and world-fact QA plus general text."""
    qa = read_fact_table("real_authors") + read_fact_table("world_facts")
    statements = [f"{row['question']} {row['answer']}." for row in qa]
    return [{"question": r["question"], "answer": r["answer"]} for r in qa], GENERAL_TEXT + statements
