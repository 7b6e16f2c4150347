"""The TOFU task (Maini et al. 2024): splits from the synthetic world, the real `locuslab/TOFU` on the hub, or a
local folder; evaluation and metrics as in the reference code (evals/stats.py, evals/tofu_metrics.py).

A local folder holds one file per split, `<split>.json` (JSON lines or one JSON array), `.jsonl` or `.parquet`,
with the `locuslab/TOFU` fields, so the real data drops in.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import tofu_probes
from benchmarks.synthetic_tofu import SyntheticTofuConfig, generate
from evals.engine import Work
from evals.stats import membership_stats, scored_groups, split_stats
from evals.tofu_metrics import HIGHER_IS_BETTER, all_metrics, truth_ratios
from unlearnbench.config import TaskConfig
from unlearnbench.tasks import TaskData, task

VERSION = 1
QA_FIELDS = ("question", "answer")
# Fields each evaluation role needs, as the real release has them: forget/retain perturbed rows carry a
# paraphrased answer (the truth ratio's "correct" side there); real_authors / world_facts rows only question,
# answer and perturbed_answer (TOFU scores them against `answer`).
REQUIRED = {"forget_eval": QA_FIELDS + ("paraphrased_answer", "perturbed_answer"),
            "retain_eval": QA_FIELDS + ("paraphrased_answer", "perturbed_answer"),
            "full_eval": QA_FIELDS + ("paraphrased_answer", "perturbed_answer"),
            "real_authors": QA_FIELDS + ("perturbed_answer",), "world_facts": QA_FIELDS + ("perturbed_answer",)}
OPTIONAL_ROLES = {"holdout": "membership attacks (forget vs holdout)",
                  "full_eval": "validation forget authors beyond retain_perturbed's (tune.py)"}
SUFFIXES = (".json", ".jsonl", ".parquet")


@dataclass
class TofuData:
    """Rows by role: full, forget, retain, holdout (plain QA; holdout only where the source has it) and
    forget_eval, retain_eval, real_authors, world_facts (perturbed QA), with the fingerprint of these rows."""
    splits: dict[str, list[dict]]
    names: dict[str, str]
    fingerprint: str

    def require(self, role: str, feature: str) -> list[dict]:
        """The rows of an optional role, or an error naming the feature that needs it."""
        if role not in self.splits:
            raise ValueError(f"{feature} needs the TOFU split {self.names[role]!r}, which this data source does not "
                             f"have (the classic locuslab/TOFU release has no holdout splits); add the file "
                             f"{self.names[role]}.json to task.path, or use task.source=synthetic")
        return self.splits[role]


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
            "world_facts": "world_facts_perturbed", "full_eval": "full_perturbed"}


def read_records(path: Path) -> list[dict]:
    """Rows of one file: a JSON array or JSON Lines (whatever the suffix says; the real TOFU release ships JSON
    Lines as `.json`), or parquet. Errors name the file and the line."""
    if path.suffix == ".parquet":
        import pandas as pd
        try:
            return pd.read_parquet(path).to_dict("records")
        except Exception as err:  # pyarrow raises its own types for a damaged file
            raise ValueError(f"{path}: not a readable parquet file ({type(err).__name__}: {err}); "
                             f"re-export or re-download it") from None
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8 JSON Lines") from None
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: line {err.lineno}: malformed JSON ({err.msg}); fix that line") from None
        numbered = list(enumerate(rows, 1))
    else:
        numbered = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                numbered.append((lineno, json.loads(line)))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: line {lineno}: malformed JSON ({err.msg}, column {err.colno}); "
                                 f"each line must be one JSON object") from None
    for lineno, row in numbered:
        if not isinstance(row, dict):
            raise ValueError(f"{path}: record {lineno} is a {type(row).__name__}, not a JSON object with fields")
    return [row for _, row in numbered]


def _local_file(folder: Path, split: str) -> Path | None:
    return next((folder / f"{split}{s}" for s in SUFFIXES if (folder / f"{split}{s}").is_file()), None)


def _read_hub(path: str, revision: str, split: str) -> list[dict]:
    from datasets import load_dataset
    ds = load_dataset(path, split, split="train", revision=revision or None)
    return [dict(row) for row in ds]


def _check(where: str, rows: list[dict], fields: tuple[str, ...]) -> list[dict]:
    """Rows with the fields and types the metrics need; errors name the source, the row, the field and the fix."""
    if not rows:
        raise ValueError(f"TOFU split {where} is empty; the forget, retain and evaluation sets need rows")
    n_wrong = None
    for i, row in enumerate(rows):
        for name in fields:
            value = row.get(name)
            if value is None:
                raise ValueError(f"TOFU split {where} row {i} lacks field {name!r}; rows need {list(fields)} "
                                 f"(the locuslab/TOFU schema)")
            if name == "perturbed_answer":
                if isinstance(value, str) or not all(isinstance(v, str) and v.strip() for v in list(value)):
                    raise ValueError(f"TOFU split {where} row {i}: 'perturbed_answer' must be a list of non-empty "
                                     f"strings, got {value!r:.80}")
                row[name] = list(value)
                if not row[name]:
                    raise ValueError(f"TOFU split {where} row {i} has no perturbed answers")
                if n_wrong is not None and len(row[name]) != n_wrong:
                    raise ValueError(f"TOFU split {where} row {i} has {len(row[name])} perturbed answers, earlier "
                                     f"rows {n_wrong}; every row of a split needs the same number")
                n_wrong = len(row[name])
            elif not isinstance(value, str) or not value.strip():
                raise ValueError(f"TOFU split {where} row {i}: {name!r} must be a non-empty string, got {value!r:.80}")
    return rows


def load_tofu(cfg) -> TofuData:
    """Rows of every split the benchmark uses, checked against the TOFU schema."""
    names = split_names(cfg.forget_split)
    folder = Path(cfg.path).expanduser()
    if cfg.source == "synthetic":
        everything = generate(cfg.synthetic)
        where = lambda split: repr(split)
        exists = lambda split: split in everything
        fetch = lambda split: everything[split] if split in everything else _missing_synthetic(split, everything)
    elif cfg.source == "local":
        if not folder.is_dir():
            raise FileNotFoundError(f"task.path={str(folder)!r} is not a folder; point it at a folder of TOFU "
                                    f"split files (<split>.json / .jsonl / .parquet)")
        where = lambda split: f"{split!r} ({_local_file(folder, split)})"
        exists = lambda split: _local_file(folder, split) is not None
        fetch = lambda split: read_records(_local_file(folder, split) or _missing_local(folder, split))
    elif cfg.source == "hub":
        where, exists = repr, lambda split: True
        fetch = lambda split: _read_hub(cfg.path, cfg.revision, split)
    else:
        raise ValueError(f"task.source must be synthetic, local or hub, got {cfg.source!r}")
    splits = {}
    for role, split in names.items():
        if role in OPTIONAL_ROLES and not exists(split):
            continue
        splits[role] = _check(where(split), fetch(split), REQUIRED.get(role, QA_FIELDS))
    present = {role: split for role, split in names.items() if role in splits}
    blob = json.dumps([VERSION, present, splits], sort_keys=True, ensure_ascii=False)
    return TofuData(splits=splits, names=names, fingerprint=hashlib.sha256(blob.encode()).hexdigest()[:16])


def _missing_local(folder: Path, split: str):
    raise FileNotFoundError(f"task.path={str(folder)!r} has no file for TOFU split {split!r} "
                            f"(looked for {', '.join(split + s for s in SUFFIXES)})")


def _missing_synthetic(split: str, everything: dict) -> list[dict]:
    raise ValueError(f"the synthetic world has no split {split!r}; it has {sorted(everything)} "
                     f"(set task.synthetic.forget_percentages to include it)")


# -- the task ------------------------------------------------------------------------------------------------------
EVAL_SPLITS = {"forget": "forget_eval", "retain": "retain_eval", "real_authors": "real_authors",
               "world_facts": "world_facts"}


@dataclass
class TofuConfig(TaskConfig):
    source: str = "synthetic"              # synthetic | hub | local
    path: str = "locuslab/TOFU"            # hub dataset id, or a local folder of <split>.json files
    forget_split: str = "forget10"
    rows_per_author: int = 20              # QA rows per author, in author order (the real release: 20); the
                                           # synthetic world's is synthetic.qa_per_author
    synthetic: SyntheticTofuConfig = field(default_factory=SyntheticTofuConfig)


@task("tofu", TofuConfig)
class TofuTask:
    """Forget some fictitious authors, keep the others, real authors and world facts (docs/protocol.md,
    docs/metrics.md)."""
    version = VERSION
    forget_score, utility = "forget_quality", "model_utility"
    higher_is_better = HIGHER_IS_BETTER
    headline = ["forget_quality", "model_utility", "forget_prob", "forget_rougeL", "forget_truth_ratio"]
    probe_names = staticmethod(tofu_probes.names)

    @property
    def log_scale(self) -> set[str]:
        """Forget quality's p-values, averaged over seeds on the log scale (the task's, each probe's, the worst)."""
        return {"forget_quality", "worst_forget_quality",
                *(f"probe_{p}_forget_quality" for p in ("plain",) + tofu_probes.names())}

    def __init__(self, cfg: TofuConfig):
        split_names(cfg.forget_split)  # fail on a bad split name before anything runs
        self.cfg = cfg
        self.label = f"tofu_{cfg.forget_split}"
        self.rows: dict[str, list[dict]] = {}

    def load(self, cache_dir: Path | None = None) -> TaskData:
        data = load_tofu(self.cfg)
        self.rows = data.splits
        return self._task_data(data.names, data.fingerprint)

    def _task_data(self, names: dict, fingerprint: str) -> TaskData:
        # every text of the world, in split order (the embedded tokenizer is trained on them)
        texts = [v for role, rows in self.rows.items() if role != "full_eval" for r in rows for v in _texts(r)]
        return TaskData(train={"target": self.rows["full"], "retain": self.rows["retain"]},
                        forget=self.rows["forget"], retain=self.rows["retain"], fingerprint=fingerprint,
                        texts=texts, describe={"splits": names, "source": self.cfg.source,
                                               "sizes": {k: len(v) for k, v in self.rows.items()}})

    def validation(self, n_authors: int = 0) -> tuple[TofuTask, TaskData]:
        """The tuning protocol's split (tune.py), after load(): the world without the test forget authors, whose
        forget set is `n_authors` other authors (0: as many as the test forget set) and whose target and retain
        models are fine-tuned on that world alone, so no row of the test forget set reaches a tuning run.

        Its forget authors need perturbed rows (the truth ratio): the synthetic world has them for every author
        (`full_perturbed`), and they are the last retain authors outside `retain_perturbed`. A source without them
        (the real release) takes the last half of `retain_perturbed`'s authors (at most n_authors), and the first
        half stays its retain evaluation set. An author is a block of `rows_per_author` rows of the retain split."""
        per = self._per_author()
        retain, qa = self.rows["retain"], lambda r: (r["question"], r["answer"])
        if per < 1 or len(retain) % per:
            raise ValueError(f"the retain split has {len(retain)} rows, not a multiple of task.rows_per_author={per}; "
                             f"set it to the rows each author has (the real TOFU release: 20)")
        authors = [retain[i:i + per] for i in range(0, len(retain), per)]
        author_of = {qa(r): a for a, rows in enumerate(authors) for r in rows}
        strays = [r["question"] for r in self.rows["retain_eval"] if qa(r) not in author_of]
        if strays:
            raise ValueError(f"{len(strays)} retain_perturbed rows are not in the retain split (e.g. {strays[0]!r}); "
                             f"the validation split needs retain_perturbed's authors among the retain authors")
        perturbed = {qa(r): r for r in self.rows.get("full_eval", []) + self.rows["retain_eval"]}
        evaluated = sorted({author_of[qa(r)] for r in self.rows["retain_eval"]})
        want = n_authors or max(1, round(len(self.rows["forget"]) / per))
        others = [a for a in range(len(authors)) if a not in evaluated and all(qa(r) in perturbed for r in authors[a])]
        spare = min(want, len(evaluated) // 2)       # retain_perturbed's authors keep at least half as its own
        chosen = others[-want:] if len(others) >= want else evaluated[len(evaluated) - spare:] if spare else []
        if not chosen:
            raise ValueError(f"no retain author has perturbed rows to spare for a validation forget set (retain_"
                             f"perturbed covers {len(evaluated)} authors); add a full_perturbed split to task.path")
        forget = [r for a in chosen for r in authors[a]]
        split = TofuTask(self.cfg)
        split.label = f"{self.label}_validation"
        split.rows = {"full": retain, "forget": forget,
                      "retain": [r for a, rows in enumerate(authors) if a not in chosen for r in rows],
                      "forget_eval": [perturbed[qa(r)] for r in forget],
                      "retain_eval": [r for r in self.rows["retain_eval"] if author_of[qa(r)] not in chosen],
                      "real_authors": self.rows["real_authors"], "world_facts": self.rows["world_facts"]}
        names = {role: f"validation {role}" for role in split.rows}
        names["full"] = f"{self.cfg.forget_split}'s retain split"
        blob = json.dumps([VERSION, "validation", split.rows], sort_keys=True, ensure_ascii=False)
        return split, split._task_data(names, hashlib.sha256(blob.encode()).hexdigest()[:16])

    prompted = True
    forget_measure = "forget_prob"      # what the recovery attacks measure (orchestration/attacks/)

    def _per_author(self) -> int:
        """Rows per author in every split (the synthetic world's qa_per_author, or task.rows_per_author)."""
        return self.cfg.synthetic.qa_per_author if self.cfg.source == "synthetic" else self.cfg.rows_per_author

    def _forget_authors(self, at_least: int = 1) -> int:
        """Rows per forget author (an author is a block of that many rows of the forget split)."""
        per, forget = self._per_author(), self.rows["forget"]
        if per < at_least or len(forget) % per:
            raise ValueError(f"the forget split has {len(forget)} rows, not whole authors of task.rows_per_author="
                             f"{per}; set it to the rows each author has (the real TOFU release: 20)")
        return per

    def relearn_split(self, seed: int) -> tuple[list[dict], list[int] | None]:
        """The relearning attack's split of the forget set (Deeb & Roger): within each forget author, half the
        questions (drawn by `seed`) are rows to relearn on, and the forget evaluation's items of the other half are
        scored. Returns (rows to relearn on, indices of the scored items in the forget evaluation split, or None:
        all)."""
        per, forget = self._forget_authors(at_least=2), self.rows["forget"]
        rng, relearn = random.Random(seed), set()
        for start in range(0, len(forget), per):
            order = rng.sample(range(start, start + per), per)
            relearn.update(order[:per // 2])
        kept = {forget[i]["question"] for i in range(len(forget)) if i not in relearn}
        evaluated = [i for i, r in enumerate(self.rows["forget_eval"]) if r["question"] in kept]
        return [forget[i] for i in sorted(relearn)], evaluated

    def request_folds(self, k: int, seed: int) -> list[tuple[list[int], list[int] | None]]:
        """The forget set as `k` requests (orchestration/requests.py): the forget authors in an order drawn by
        `seed`, dealt into k folds of whole authors (sizes differ by at most one). Per fold: (indices of its rows in
        the forget split, indices of its items in the forget evaluation split)."""
        per, forget = self._forget_authors(), self.rows["forget"]
        authors = list(range(len(forget) // per))
        if len(authors) < k:
            raise ValueError(f"requests.folds={k}, but the forget split {self.cfg.forget_split} has {len(authors)} "
                             f"author(s), one at least per fold; use fewer folds or a larger forget split")
        random.Random(seed).shuffle(authors)
        folds: list[tuple[list[int], list[int] | None]] = []
        for f in range(k):
            rows = sorted(i for a in authors[f::k] for i in range(a * per, (a + 1) * per))
            asked = {forget[i]["question"] for i in rows}
            folds.append((rows, [i for i, r in enumerate(self.rows["forget_eval"]) if r["question"] in asked]))
        return folds

    def train_units(self) -> list[str]:
        """The author of each row of the target's fine-tuning split (`full`, in blocks of an author's rows): SISA's
        unit (orchestration/guarantees.py), so that an author's rows live in one shard and slice."""
        per, full = self._forget_authors(), self.rows["full"]
        if len(full) % per:
            raise ValueError(f"the full split has {len(full)} rows, not whole authors of {per} rows each")
        return [f"author {i // per}" for i in range(len(full))]

    def scored_pairs(self) -> dict[str, list[tuple[str, list[str]]]]:
        """Every evaluation split's (question, answers) as `evaluate` scores them (membership: the answer only)."""
        out = {split: [(r["question"], _answers(r, split in ("forget", "retain"))) for r in self.rows[role]]
               for split, role in EVAL_SPLITS.items()}
        if "holdout" in self.rows:
            out["holdout"] = [(r["question"], [r["answer"]]) for r in self.rows["holdout"]]
        return out

    # -- probes (docs/probes.md) -------------------------------------------------------------------------------
    def offered_probes(self) -> tuple[str, ...]:
        """After load: the probes this data can serve (`heldout` needs the synthetic world's held-out phrasing)."""
        return tofu_probes.offered(self.rows["forget_eval"] + self.rows["retain_eval"], self._per_author())

    def probe_claims(self, probes: tuple[str, ...]) -> dict[str, dict]:
        """Per probe what it changes and the texts it claims no model trained on (forget and retain items)."""
        rows = self.rows["forget_eval"] + self.rows["retain_eval"]
        return {p: {"changes": tofu_probes.changes(p), "unseen": tofu_probes.unseen(p, rows)} for p in probes}

    def probe_pairs(self, probes: tuple[str, ...]) -> dict[str, list[tuple[str, list[str]]]]:
        """The (question, answers) of these probes' items, as `evaluate` scores them (for the length check)."""
        return {f"probe {probe} ({split})": [(tofu_probes.shown(probe, q), a) for q, a in items]
                for probe, split, items in self._probe_items(probes)}

    def _probe_items(self, probes) -> list[tuple[str, str, list]]:
        """(probe, split, engine items) of every asked probe on the forget and retain evaluation rows; `mc` reads
        the plain evaluation and has none."""
        asked = {r["question"] for r in self.rows.get("retain_eval", [])}
        context = tofu_probes.examples([r for r in self.rows.get("retain", []) if r["question"] not in asked], 5)
        return [(p, split, tofu_probes.items(p, self.rows[role], context, self._per_author(), ratio=split == "forget"))
                for p in probes if p != "mc" for split, role in (("forget", "forget_eval"), ("retain", "retain_eval"))]

    def probe_scores(self, stats: dict) -> dict:
        """Per probe and split ({"forget", "retain"}), the per-item scores of evals/probes.py, `plain` the task's own
        question: p(answer | prompt) and the truth ratio, or 1 / 0 for a choice probe answered right / wrong."""
        out = {"plain": {s: {"score": np.exp(-np.asarray(stats[s]["nll_answer"])).tolist(),
                             "ratio": truth_ratios(stats[s]["nll_paraphrased"], stats[s]["nll_perturbed"]).tolist()}
                         for s in ("forget", "retain")}}
        for probe, by_split in stats.get("probes", {}).items():
            out[probe] = {s: tofu_probes.scores(probe, raw["nll"], self.rows[f"{s}_eval"], lengths=raw.get("lengths"),
                                                ratio=s == "forget")
                          for s, raw in by_split.items()}
        return out

    def evaluate(self, model, tokenizer, fmt, name: str, batch_size: int, accelerator=None,
                 generate: bool = True, probes: tuple[str, ...] = ()) -> dict:
        """Per-item statistics of every evaluation split; the forget split's answers with per-token statistics,
        and the holdout split (where the data has one) scored the same way, for the membership attacks.
        generate=False skips the generations (ROUGE is then 0): a population member needs teacher forcing only.
        probes: the NLLs of these probes' items on the forget and retain rows (teacher forced, `stats["probes"]`)."""
        ev = self.cfg.eval
        budget = ev.max_new_tokens if generate else 0
        stats: dict[str, Any] = {
            split: split_stats(model, fmt, self.rows[role], batch_size, budget, name=f"{name}/{split}",
                               paraphrased=split in ("forget", "retain"), token_budget=ev.token_budget,
                               accelerator=accelerator, detail=split == "forget")
            for split, role in EVAL_SPLITS.items()}
        if "holdout" in self.rows:
            stats["holdout"] = membership_stats(model, fmt, self.rows["holdout"], batch_size, f"{name}/holdout",
                                                ev.token_budget, accelerator=accelerator)
        if probes:
            stats["probes"] = {p: {} for p in probes}
            asked = self._probe_items(probes)        # every probe's items in one batch schedule
            scored = scored_groups(model, [(tofu_probes.prompt_format(p, fmt), items) for p, _, items in asked],
                                   batch_size, 0, ev.token_budget, Work(), accelerator)
            for (probe, split, items), done in zip(asked, scored):
                stats["probes"][probe][split] = {"prompt": [tofu_probes.shown(probe, q) for q, _ in items],
                                                 "nll": [d.nll for d in done]}
            if "mc" in probes:           # the plain NLLs, compared by total log-likelihood: each answer's length
                stats["probes"]["mc"] = {s: {"nll": [[a, *w] for a, w in zip(stats[s]["nll_paraphrased"],
                                                                             stats[s]["nll_perturbed"])],
                                             "lengths": tofu_probes.label_lengths(fmt, self.rows[f"{s}_eval"])}
                                         for s in ("forget", "retain")}
        return stats

    def metrics(self, stats: dict, retain_stats: dict | None) -> dict:
        if retain_stats is None:
            raise ValueError("TOFU's forget quality needs a retain model; give model.retain=<path> or let the "
                             "suite fine-tune one")
        return all_metrics(stats, retain_stats)


def _answers(row: dict, paraphrased: bool) -> list[str]:
    """The answers evaluate() scores after a row's question: answer, paraphrase (forget, retain), perturbed."""
    return [row["answer"]] + ([row["paraphrased_answer"]] if paraphrased else []) + list(row["perturbed_answer"])


def _texts(row: dict) -> list[str]:
    out = [row["question"], row["answer"]]
    for key in ("paraphrased_answer", "paraphrased_question"):
        if row.get(key):
            out.append(row[key])
    return out + list(row.get("perturbed_answer") or [])
