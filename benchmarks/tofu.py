"""The TOFU task: splits from the synthetic world, the real `locuslab/TOFU` on the hub, or a local folder.

A local folder holds one file per split, `<split>.json` (JSON lines or one JSON array), `.jsonl` or `.parquet`,
with the `locuslab/TOFU` fields, so the real data drops in.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from benchmarks.synthetic_tofu import generate

VERSION = 1
QA_FIELDS = ("question", "answer")
PERTURBED_FIELDS = ("question", "answer", "paraphrased_answer", "perturbed_answer")


@dataclass
class TofuData:
    """Rows by role: full, forget, retain, holdout (plain QA) and forget_eval, retain_eval, real_authors,
    world_facts (perturbed QA), with the fingerprint of exactly these rows."""
    splits: dict[str, list[dict]]
    names: dict[str, str]
    fingerprint: str


def split_names(forget_split: str) -> dict[str, str]:
    match = re.fullmatch(r"forget(\d\d)", forget_split)
    if not match:
        raise ValueError(f"task.forget_split must look like forget01 / forget05 / forget10, got {forget_split!r}")
    pct = int(match.group(1))
    if not 0 < pct < 100:
        raise ValueError(f"task.forget_split percentage must be between 1 and 99, got {pct}")
    return {"full": "full", "forget": forget_split, "retain": f"retain{100 - pct:02d}",
            "holdout": f"holdout{pct:02d}", "forget_eval": f"{forget_split}_perturbed",
            "retain_eval": "retain_perturbed", "real_authors": "real_authors_perturbed",
            "world_facts": "world_facts_perturbed"}


def _read_local(folder: Path, split: str) -> list[dict]:
    for suffix in (".json", ".jsonl", ".parquet"):
        path = folder / f"{split}{suffix}"
        if not path.is_file():
            continue
        if suffix == ".parquet":
            import pandas as pd
            return pd.read_parquet(path).to_dict("records")
        text = path.read_text(encoding="utf-8").strip()
        if text.startswith("["):
            return json.loads(text)
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    raise FileNotFoundError(f"task.path={str(folder)!r} has no file for TOFU split {split!r} "
                            f"(looked for {split}.json, {split}.jsonl, {split}.parquet)")


def _read_hub(path: str, revision: str, split: str) -> list[dict]:
    from datasets import load_dataset
    ds = load_dataset(path, split, split="train", revision=revision or None)
    return [dict(row) for row in ds]


def _check(split: str, rows: list[dict], fields: tuple[str, ...]) -> list[dict]:
    if not rows:
        raise ValueError(f"TOFU split {split!r} is empty; the forget, retain and evaluation sets need rows")
    for i, row in enumerate(rows):
        for name in fields:
            if name not in row or row[name] is None:
                raise ValueError(f"TOFU split {split!r} row {i} lacks field {name!r}; rows need {list(fields)} "
                                 f"(the locuslab/TOFU schema)")
        if "perturbed_answer" in fields:
            row["perturbed_answer"] = list(row["perturbed_answer"])
            if not row["perturbed_answer"]:
                raise ValueError(f"TOFU split {split!r} row {i} has no perturbed answers")
    return rows


def load_tofu(cfg) -> TofuData:
    """Rows of every split the benchmark uses, checked against the TOFU schema."""
    names = split_names(cfg.forget_split)
    if cfg.source == "synthetic":
        everything = generate(cfg.synthetic)
        fetch = lambda split: everything[split] if split in everything else _missing_synthetic(split, everything)  # noqa: E731
    elif cfg.source == "local":
        fetch = lambda split: _read_local(Path(cfg.path).expanduser(), split)  # noqa: E731
    elif cfg.source == "hub":
        fetch = lambda split: _read_hub(cfg.path, cfg.revision, split)  # noqa: E731
    else:
        raise ValueError(f"task.source must be synthetic, local or hub, got {cfg.source!r}")
    splits = {}
    for role, split in names.items():
        fields = PERTURBED_FIELDS if role in ("forget_eval", "retain_eval", "real_authors", "world_facts") else QA_FIELDS
        splits[role] = _check(split, fetch(split), fields)
    blob = json.dumps([VERSION, names, splits], sort_keys=True, ensure_ascii=False)
    return TofuData(splits=splits, names=names, fingerprint=hashlib.sha256(blob.encode()).hexdigest()[:16])


def _missing_synthetic(split: str, everything: dict) -> list[dict]:
    raise ValueError(f"the synthetic world has no split {split!r}; it has {sorted(everything)} "
                     f"(set task.synthetic.forget_percentages to include it)")
