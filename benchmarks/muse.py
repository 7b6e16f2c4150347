"""The MUSE-style task (Shi et al. 2024, "MUSE: Machine Unlearning Six-Way Evaluation"): forget documents, their
verbatim text and the knowledge in them, keep the retain documents' knowledge; metrics in evals/muse_metrics.py.

- source=synthetic: the invented local news of benchmarks/synthetic_muse.py. The target is the embedded base
  trained on every document but the holdout set (forget, retain1, retain2), the retain model the base trained on
  retain1 and retain2 (MUSE's retrained model); methods unlearn the forget documents with retain1 as retain set.
- source=hub / local: `muse-bench/MUSE-News` or `MUSE-Books` from the hub (`task.path`, `task.revision`), or a
  local copy of their files as muse_bench's data folder lays them out (`<subset>/<split>.json`, JSON Lines or
  parquet; fields as on the hub). The target is the given model itself (MUSE's `muse-bench/MUSE-news_target`),
  the retain model `model.retain` (MUSE's retrained model), if given. Documents are cut at paragraph breaks
  into rows of at most `chunk_chars` characters for unlearning. `folds=sust` / `folds=scal` make MUSE's own
  request folds the forget set (sust: four disjoint folds, run sequentially; scal: nested forget sets, whose
  increments run cumulatively reproduce them).
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import muse_probes
from benchmarks.synthetic_muse import SyntheticMuseConfig, generate, icl_blocks
from benchmarks.synthetic_tofu import general_corpus
from benchmarks.tofu import read_records
from evals import muse_metrics
from evals.engine import Work
from evals.privacy import min_k
from evals.stats import scored_items
from unlearnbench.config import TaskConfig, TrainConfig
from unlearnbench.tasks import TaskData, task

DATA_VERSION = 1    # the generated world and the corpus handling: part of the data fingerprint (models train on it)
VERSION = 1         # scoring (evaluations only)
# each subset's splits, fields, and the older names muse_bench's data used for a split
SCHEMA = {("verbmem", "forget"): ("prompt", "gt"), ("knowmem", "forget_qa"): ("question", "answer"),
          ("knowmem", "retain_qa"): ("question", "answer"), ("knowmem", "forget_qa_icl"): ("question", "answer"),
          ("knowmem", "retain_qa_icl"): ("question", "answer"), ("privleak", "forget"): ("text",),
          ("privleak", "retain"): ("text",), ("privleak", "holdout"): ("text",), ("raw", "forget"): ("text",),
          ("raw", "retain1"): ("text",)}
OLDER = {"retain_qa": "retain2_qa", "retain_qa_icl": "retain2_qa_icl", "retain": "retain2"}
SUFFIXES = (".json", ".jsonl", ".parquet")
FOLDS = 4                       # MUSE-News's sust and scal subsets: forget_1 .. forget_4


@dataclass
class MuseConfig(TaskConfig):
    source: str = "synthetic"                   # synthetic | hub | local
    path: str = "muse-bench/MUSE-News"          # hub id, or a local folder of <subset>/<split>.json files
    synthetic: SyntheticMuseConfig = field(default_factory=SyntheticMuseConfig)
    folds: str = ""                             # real mode: "", sust or scal (the forget set: MUSE's request folds)
    chunk_chars: int = 4000                     # real mode: a document longer than this is cut at paragraph breaks
    finetune: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=40, lr=1e-3, batch_size=16))


def read_split(cfg: MuseConfig, subset: str, split: str, fields: tuple[str, ...]) -> list[dict]:
    """One MUSE split, its fields checked (the older name of a split is read where the newer is absent)."""
    names = [split] + ([OLDER[split]] if split in OLDER else [])
    rows, where = None, ""
    for name in names:
        if cfg.source == "local":
            folder = Path(cfg.path).expanduser() / subset
            file = next((folder / f"{name}{s}" for s in SUFFIXES if (folder / f"{name}{s}").is_file()), None)
            rows, where = (read_records(file), str(file)) if file else (None, where)
        else:
            rows, where = _read_hub(cfg, subset, name), f"{cfg.path} {subset}/{name}"
        if rows is not None:
            break
    if rows is None:
        raise FileNotFoundError(f"MUSE split {subset}/{split} not found under {cfg.path} (looked for "
                                f"{' or '.join(f'{subset}/{n}.json' for n in names)}); a local copy keeps "
                                f"muse_bench's layout, <subset>/<split>.json, with the hub's fields")
    if not rows:
        raise ValueError(f"{where} is empty; MUSE's {subset}/{split} needs rows")
    for i, row in enumerate(rows):
        for name in fields:
            if not isinstance(row.get(name), str) or not row[name].strip():
                raise ValueError(f"{where}: row {i} needs a non-empty string field {name!r} (MUSE's {subset} "
                                 f"schema: {list(fields)}), got {row.get(name)!r:.80}")
    return [{k: row[k] for k in fields} for row in rows]


def _read_hub(cfg: MuseConfig, subset: str, split: str) -> list[dict] | None:
    """One split from the hub; None where the subset has no split of that name."""
    from datasets import load_dataset
    try:
        return [dict(r) for r in load_dataset(cfg.path, subset, split=split, revision=cfg.revision or None)]
    except ValueError as err:       # datasets: an unknown split name
        if "unknown split" in str(err).lower():
            return None
        raise
    except (ConnectionError, OSError) as err:
        raise OSError(f"{cfg.path} {subset}/{split}: not readable from the hub ({err}); without the hub, use a local "
                      f"copy: task.source=local task.path=<folder of <subset>/<split>.json>") from None


def chunks(text: str, limit: int) -> list[str]:
    """A document as rows of at most `limit` characters, cut at paragraph breaks (a longer paragraph alone)."""
    out, current = [], ""
    for paragraph in (p for p in text.split("\n\n") if p.strip()):
        if current and len(current) + 2 + len(paragraph) > limit:
            out.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph
    return out + [current] if current else out


@task("muse", MuseConfig)
class MuseTask:
    """Forget documents (verbatim and knowledge), keep the retain documents' knowledge (MUSE's six-way
    evaluation's first four: VerbMem, KnowMem forget, KnowMem retain as utility, PrivLeak)."""
    version = VERSION
    forget_score, utility = "verbmem_forget", "knowmem_retain"
    higher_is_better = muse_metrics.HIGHER_IS_BETTER
    headline = ["verbmem_forget", "knowmem_forget", "knowmem_retain", "priv_leak"]
    log_scale: set = set()
    prompted = False
    forget_measure = "verbmem_forget"   # what the recovery attacks measure (orchestration/attacks/)
    tuning_score = "forget_gap_to_retain"   # what tune.py's rule minimises (evals/muse_metrics.py)

    def __init__(self, cfg: MuseConfig):
        if cfg.source not in ("synthetic", "hub", "local"):
            raise ValueError(f"MUSE task.source must be synthetic, hub or local, got {cfg.source!r}")
        if cfg.folds not in ("", "sust", "scal"):
            raise ValueError(f"MUSE task.folds must be '', sust or scal, got {cfg.folds!r}")
        if cfg.folds and cfg.source == "synthetic":
            raise ValueError("task.folds reads MUSE's own sust/scal subsets (hub or local); the synthetic world "
                             "splits its forget articles into requests itself (requests.folds=<k>)")
        self.cfg = cfg
        corpus = Path(cfg.path.rstrip("/")).name.lower().replace("muse-", "")
        self.label = "muse_synthetic" if cfg.source == "synthetic" else f"muse_{corpus}"
        self.sets: dict[str, list[dict]] = {}      # the evaluation sets, MUSE's schema
        self.sources: dict[str, list[int | None]] = {}  # per forget-side split: each item's forget row (None: ?)
        self.fold_rows: list[list[int]] = []        # real mode with folds: each fold's forget rows
        self.documents: list[dict] = []             # the forget rows (TaskData.forget)

    # -- data ------------------------------------------------------------------------------------------------
    def load(self, cache_dir: Path | None = None) -> TaskData:
        return self._load_synthetic() if self.cfg.source == "synthetic" else self._load_real()

    def _load_synthetic(self, world: dict | None = None) -> TaskData:
        world = world or generate(self.cfg.synthetic)
        self._sets(world)
        raw = world["raw"]
        n = len(raw["forget"])
        # an article's items: verbmem and privleak one each, knowmem two (synthetic_muse.py's order)
        self.sources = {"verbmem_forget": list(range(n)), "privleak_forget": list(range(n)),
                        "knowmem_forget": [i // 2 for i in range(2 * n)]}
        retained, self.documents = raw["retain1"] + raw["retain2"], raw["forget"]
        texts = [r["text"] for rows in raw.values() for r in rows] + \
            [r[k] for rows in world["knowmem"].values() for r in rows for k in ("question", "answer")]
        return TaskData(train={"target": raw["forget"] + retained, "retain": retained}, forget=raw["forget"],
                        retain=raw["retain1"], texts=texts,
                        fingerprint=_fingerprint([DATA_VERSION, self.cfg.synthetic.packings, world]),
                        describe={"source": "synthetic", "sizes": self._sizes(raw)},
                        pretrain=icl_blocks(general_corpus()[0], self.cfg.synthetic.seed))

    def _load_real(self) -> TaskData:
        cfg = self.cfg
        world: dict[str, dict] = {subset: {} for subset, _ in SCHEMA}
        for (subset, split), fields in SCHEMA.items():
            world[subset][split] = read_split(cfg, subset, split, fields)
        self._sets(world)
        if cfg.folds:
            folds = [read_split(cfg, cfg.folds, f"forget_{k}", ("text",)) for k in range(1, FOLDS + 1)]
            if cfg.folds == "scal":     # nested sets: each request is what the next set adds
                seen = [set()] + [{r["text"] for r in fold} for fold in folds[:-1]]
                folds = [[r for r in fold if r["text"] not in before] for fold, before in zip(folds, seen)]
        else:
            folds = [world["raw"]["forget"]]
        rows = lambda docs: [{"text": c} for r in docs for c in chunks(r["text"], cfg.chunk_chars)]
        parts = [rows(fold) for fold in folds]
        forget, retain = [r for part in parts for r in part], rows(world["raw"]["retain1"])
        starts = [sum(map(len, parts[:k])) for k in range(len(parts))]
        self.fold_rows = [list(range(a, a + len(p))) for a, p in zip(starts, parts)] if cfg.folds else []
        self.documents = forget
        if not forget or not retain:
            raise ValueError(f"{cfg.path}: the forget or retain1 documents hold no text to unlearn on")
        # a verbatim or membership item's forget row: the row holding its first 100 characters (if any)
        row_of = lambda text: next((i for i, r in enumerate(forget) if text[:100] in r["text"]), None)
        self.sources = {"verbmem_forget": [row_of(r["prompt"]) for r in self.sets["verbmem_forget"]],
                        "privleak_forget": [row_of(r["text"]) for r in self.sets["privleak_forget"]],
                        "knowmem_forget": [None] * len(self.sets["knowmem_forget"])}
        fingerprint = _fingerprint([DATA_VERSION, cfg.path, cfg.revision, cfg.folds, cfg.chunk_chars, world, forget])
        return TaskData(train={"target": None, "retain": None}, forget=forget, retain=retain, fingerprint=fingerprint,
                        texts=[r["text"] for r in forget + retain],
                        describe={"source": cfg.source, "path": cfg.path, "folds": cfg.folds,
                                  "sizes": {**self._sizes(world["raw"]), "forget_rows": len(forget),
                                            "retain_rows": len(retain)}})

    def _sets(self, world: dict) -> None:
        know, priv = world["knowmem"], world["privleak"]
        self.sets = {"verbmem_forget": world["verbmem"]["forget"], "knowmem_forget": know["forget_qa"],
                     "knowmem_retain": know["retain_qa"], "privleak_forget": priv["forget"],
                     "privleak_retain": priv["retain"], "privleak_holdout": priv["holdout"]}
        self.icl = {"knowmem_forget": know["forget_qa_icl"], "knowmem_retain": know["retain_qa_icl"]}

    def _sizes(self, raw: dict) -> dict:
        return {**{f"raw_{k}": len(v) for k, v in raw.items()}, **{k: len(v) for k, v in self.sets.items()}}

    def validation(self, n_articles: int = 0) -> tuple[MuseTask, TaskData]:
        """The tuning protocol's split (tune.py), after load(): the world's articles without its forget ones, in
        other roles (synthetic_muse.generate): `n_articles` of the holdout articles to forget (0: as many as the
        test forget set), half of retain1 kept and half held out, retain2 asked about; its target is the base
        trained on those to forget and keep, its retain model on those kept, so no test forget article reaches a
        tuning run."""
        if self.cfg.source != "synthetic":
            raise ValueError("tune.py needs a validation split with its own target and retain model, which real "
                             "MUSE (given models) does not have; tune on the synthetic world (task=muse_embedded) "
                             "and carry its settings with tuned=tuned/muse")
        split = MuseTask(self.cfg)
        data = split._load_synthetic(generate(self.cfg.synthetic, n_articles or self.cfg.synthetic.n_forget))
        split.label = f"{self.label}_validation"
        return split, data

    # -- protocols -------------------------------------------------------------------------------------------
    def _items_of(self, rows: set[int]) -> dict[str, list[int]]:
        """Per forget-side split, the items from these forget rows (an item of unknown row: always)."""
        return {split: [i for i, row in enumerate(rows_of) if row is None or row in rows]
                for split, rows_of in self.sources.items()}

    def relearn_split(self, seed: int) -> tuple[list[dict], dict[str, list[int]]]:
        """Half the forget documents (drawn by `seed`) to relearn on; scored: the items of the other half (KnowMem
        items of real data, whose document is unknown: all)."""
        n = len(self.documents)
        relearn = set(random.Random(seed).sample(range(n), n // 2))
        return [self.documents[i] for i in sorted(relearn)], self._items_of(set(range(n)) - relearn)

    def request_folds(self, k: int, seed: int) -> list[tuple[list[int], dict[str, list[int]]]]:
        """The forget set as `k` requests: MUSE's own folds (task.folds, k = 4), or the forget documents in an
        order drawn by `seed`, dealt into k folds; per fold its rows and the items of its documents."""
        if self.fold_rows:
            if k != len(self.fold_rows):
                raise ValueError(f"requests.folds={k}, but task.folds={self.cfg.folds} holds MUSE's "
                                 f"{len(self.fold_rows)} folds; set requests.folds={len(self.fold_rows)}")
            return [(rows, self._items_of(set(rows))) for rows in self.fold_rows]
        n = len(self.documents)
        if n < k:
            raise ValueError(f"requests.folds={k}, but the forget set has {n} documents, one at least per fold; "
                             f"use fewer folds or more forget documents")
        order = list(range(n))
        random.Random(seed).shuffle(order)
        return [(sorted(order[f::k]), self._items_of(set(order[f::k]))) for f in range(k)]

    def pack(self, rows: list[dict], seed: int) -> list[dict]:
        """What fine-tuning on these documents trains on: each document alone, and in `synthetic.packings` seeded
        orders, every two consecutive documents as one row, as LM training packs documents (MUSE's target too):
        a fact is learned after other articles' text and at other positions, not only at the start of its own
        article (without it, the embedded target recalled a key fact after KnowMem's ten in-context pairs no
        better than the retain model). Real mode trains nothing."""
        rng, packed = random.Random(seed), []
        for _ in range(self.cfg.synthetic.packings):
            order = rng.sample(rows, len(rows))
            packed += [{"text": a["text"] + "\n\n" + b["text"]} for a, b in zip(order[::2], order[1::2])]
        return list(rows) + packed

    def scored_pairs(self) -> dict[str, list[tuple[str, list[str]]]]:
        """The generations' prompts with their references as raw text (PrivLeak's documents are cut to the model's
        context instead, as muse_bench truncates them)."""
        s = self.sets
        return {"verbmem_forget": [(r["prompt"], [r["gt"]]) for r in s["verbmem_forget"]],
                **{split: [(muse_metrics.icl_prompt(self.icl[split], r["question"]), [r["answer"]]) for r in s[split]]
                   for split in ("knowmem_forget", "knowmem_retain")}}

    # -- probes (docs/probes.md) -------------------------------------------------------------------------------
    def offered_probes(self) -> tuple[str, ...]:
        """After load: `shifted` and `icl0` on any data, `paraphrase` where the KnowMem rows carry a second
        phrasing (the synthetic world)."""
        return muse_probes.offered(self.sets)

    def probe_claims(self, probes: tuple[str, ...]) -> dict[str, dict]:
        """Per probe what it changes, and for `paraphrase` its questions, which no article or training row holds."""
        return {p: {"changes": muse_probes.CHANGES[p],
                    "unseen": [r["paraphrased_question"] for s in ("knowmem_forget", "knowmem_retain")
                               for r in self.sets[s]] if muse_probes.CHANGES[p] == "unseen wording" else []}
                for p in probes}

    probe_names = staticmethod(lambda: muse_probes.PROBES)

    def probe_pairs(self, probes: tuple[str, ...]) -> dict[str, list[tuple[str, list[str]]]]:
        """The probes' (prompt, references) as raw text, for the length check."""
        return {f"probe {p} ({side})": its for p in probes
                for side, its in muse_probes.items(p, self.sets, self.icl).items()}

    def probe_scores(self, stats: dict) -> dict:
        """Per probe and side, the per-item ROUGE-L F1 (evals/probes.py); `plain` is VerbMem, the forget measure
        (x 100, MUSE's scale); the KnowMem probes ask KnowMem's items."""
        out = {"plain": {"forget": {"score": stats["verbmem_forget"]["rougeL_f1"]}, "scale": 100}}
        for probe, by_side in stats.get("probes", {}).items():
            out[probe] = {side: {"score": v["rougeL_f1"]} for side, v in by_side.items()}
        return out

    # -- evaluation ------------------------------------------------------------------------------------------
    def evaluate(self, model, tokenizer, fmt, name: str, batch_size: int, accelerator=None,
                 probes: tuple[str, ...] = ()) -> dict:
        """Per item: VerbMem's and KnowMem's generations and ROUGE-L F1, and each document's Min-40% and NLL;
        probes: each probe's prompts, generations and ROUGE-L F1 (`stats["probes"]`)."""
        context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        raw, work = fmt.raw(context), Work()

        def run(items: list, new_tokens: int, detail: int = 0) -> list:
            return scored_items(model, raw, items, batch_size, new_tokens, self.cfg.eval.token_budget, work,
                                accelerator, detail)
        out: dict[str, Any] = {}
        verbmem = self.sets["verbmem_forget"]
        gts = [muse_metrics.cut_gt(tokenizer, r["gt"]) for r in verbmem]
        done = run([(r["prompt"], [gt]) for r, gt in zip(verbmem, gts)], muse_metrics.VERBMEM_TOKENS)
        out["verbmem_forget"] = {"gt": gts, "generation": [d.generation for d in done],
                                 "rougeL_f1": [muse_metrics.rouge_l_f1(g, d.generation) for g, d in zip(gts, done)]}
        for split in ("knowmem_forget", "knowmem_retain"):
            rows = self.sets[split]
            done = run([(muse_metrics.icl_prompt(self.icl[split], r["question"]), [r["answer"]]) for r in rows],
                       muse_metrics.KNOWMEM_TOKENS)
            answers = [muse_metrics.knowmem_answer(d.generation) for d in done]
            out[split] = {"answer": [r["answer"] for r in rows], "generation": answers,
                          "rougeL_f1": [muse_metrics.rouge_l_f1(r["answer"], a) for r, a in zip(rows, answers)]}
        bos = bool(tokenizer("", add_special_tokens=True)["input_ids"])
        for split in ("privleak_forget", "privleak_retain", "privleak_holdout"):
            # every token after the first is scored (muse_bench: after BOS); without a BOS, after the first word
            pairs = [("", r["text"]) if bos else _first_word(r["text"]) for r in self.sets[split]]
            done = run([(p, [t]) for p, t in pairs], 0, detail=1)
            out[split] = {"min_k": [min_k(d.token_logp[0]) for d in done], "nll": [d.nll[0] for d in done]}
        if probes:
            out["probes"] = {p: {side: self._probed(run, tokenizer, p, its)
                                 for side, its in muse_probes.items(p, self.sets, self.icl).items()} for p in probes}
        return out

    def _probed(self, run, tokenizer, probe: str, its: list) -> dict:
        """One probe's items generated and scored as the task scores its own: VerbMem against the reference cut to
        its first 128 tokens, KnowMem's answer cut where the next pair starts."""
        knowmem = probe in muse_probes.KNOWMEM
        refs = [r[0] if knowmem else muse_metrics.cut_gt(tokenizer, r[0]) for _, r in its]
        done = run([(p, [ref]) for (p, _), ref in zip(its, refs)], muse_probes.new_tokens(probe))
        generations = [muse_metrics.knowmem_answer(d.generation) if knowmem else d.generation for d in done]
        return {"prompt": [p for p, _ in its], "generation": generations,
                "rougeL_f1": [muse_metrics.rouge_l_f1(ref, g) for ref, g in zip(refs, generations)]}

    def metrics(self, stats: dict, retain_stats: dict | None) -> dict:
        return muse_metrics.metrics(stats, retain_stats)


def _first_word(text: str) -> tuple[str, str]:
    head, sep, rest = text.partition(" ")
    return (head + sep, rest) if rest else ("", text)


def _fingerprint(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]
