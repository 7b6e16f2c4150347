"""A folder that mirrors the public locuslab/TOFU release's files exactly, built from the micro synthetic world.

What the real files look like (and what the loader must take as it is): one `<split>.json` per split holding
JSON Lines (not an array) despite the suffix; no holdout splits; `real_authors_perturbed` and
`world_facts_perturbed` rows with only question, answer and perturbed_answer; forget/retain perturbed rows with
paraphrased_answer, paraphrased_question and five perturbed answers; non-ASCII author names, written unescaped.
"""
import json
from pathlib import Path

from benchmarks.synthetic_tofu import SyntheticTofuConfig, generate

RELEASE_FILES = ["full", "forget10", "retain90", "forget10_perturbed", "retain_perturbed",
                 "real_authors_perturbed", "world_facts_perturbed"]
NON_ASCII = ["Jürgen Øyvind Çelik", "Nguyễn Thị Hạnh", "Zoë Ångström", "Łukasz Ðorđević", "Søren Mañas"]
FACT_FIELDS = ("question", "answer", "perturbed_answer")


def write_release(folder: Path, n_authors: int = 10, qa_per_author: int = 6) -> Path:
    splits = generate(SyntheticTofuConfig(n_authors=n_authors, qa_per_author=qa_per_author,
                                          forget_percentages=[10]))
    text = json.dumps(splits, ensure_ascii=False)
    # give some authors (forget and retain ones) non-ASCII names, consistently across every split
    for old, new in zip(_author_names(splits), NON_ASCII):
        text = text.replace(old, new)
    splits = json.loads(text)
    folder.mkdir(parents=True, exist_ok=True)
    for split in RELEASE_FILES:
        rows = splits[split]
        if split in ("real_authors_perturbed", "world_facts_perturbed"):
            rows = [{k: r[k] for k in FACT_FIELDS} for r in rows]
        (folder / f"{split}.json").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                              encoding="utf-8")
    return folder


def _author_names(splits: dict) -> list[str]:
    """The invented full names that appear in questions (two capitalised words), first and last authors first."""
    seen = []
    for row in splits["forget10"] + splits["retain90"]:
        words = row["question"].replace("?", " ").replace("'s", " ").split()
        for a, b in zip(words, words[1:]):
            if a[:1].isupper() and b[:1].isupper() and a.isalpha() and b.isalpha():
                name = f"{a} {b}"
                if name not in seen:
                    seen.append(name)
    return seen
