"""The mechanics of cached units and of models on disk, which know no task: a unit's folder built once and then
read from the cache (`unit`), a model reference (`ModelRef`) loaded as a model and its tokenizer, a checkpoint the
user names resolved to a reference keyed by its files, the prompt format, the cost meter. The pipeline's stages
(pipeline.py) are built from these.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from unlearnbench.cache import UnitStore, folder_digest, stable_hash
from unlearnbench.config import ExperimentConfig
from unlearnbench.cost import CostMeter
from unlearnbench.heavy import peft
from unlearnbench.models import EVAL_MAX_LENGTH, TOKENIZER_FILES, PromptFormat, adapter_base, load_model, load_tokenizer
from unlearnbench.runtime import Solo


@dataclass
class ModelRef:
    """A model on disk (or the hub) with the cache key that identifies its weights."""
    path: str
    key: str
    gguf_file: str = ""
    cost: dict | None = None        # what training it cost, if this suite trained it
    adapter: str = ""               # a peft adapter folder applied on top of `path` (a LoRA checkpoint row)
    members: tuple = ()             # an aggregate of these model folders (SISA: unlearnbench/ensemble.py); `path`
                                    # is the first, whose tokenizer it uses

    def training(self) -> dict:
        """What training this model cost (one the suite trained; an error for one it was given)."""
        if self.cost is None:
            raise ValueError(f"{self.path}: not trained by this suite, so its training cost is unknown")
        return self.cost


@dataclass
class Unit:
    """One model scored for one row and seed: its per-item statistics and what making and evaluating it cost, or
    why it has none (`status`). Pipeline.evaluated and Pipeline.unlearned make them; they are JSON only in the cache
    (`to_json` / `from_json`)."""
    status: str                     # ok | failed (diverged, or trained on a probe's text) | absent (no such model)
    stats: dict | None = None       # per-item statistics (ok only)
    cost: dict | None = None        # what making the model cost (None: unknown, e.g. a given checkpoint's)
    eval_cost: dict | None = None   # what evaluating it cost
    error: str = ""                 # why it is not ok
    model: ModelRef | None = None   # the model, where it is on disk (an unlearning row's only if kept)
    train_log: dict | None = None   # an unlearning run's log (methods/trainer.py:train)
    curve: list = field(default_factory=list)   # the unlearning curve: [{"updates", "stats", "eval_cost"}]
    hparams: dict | None = None     # an unlearning row's method settings
    rows_seen: list | None = None   # digests of the rows its unlearning run read (unlearnbench/cache.row_digests)
    training_cost: dict | None = None   # a guarantee row's training before the forget request (`cost`: the
                                        # request's own)
    reference: bool = False         # read as a reference, never a contender (SISA(S)-target)
    guarantee: dict | None = None   # what a SISA or DP row guarantees, and how
    forget_rows: int | None = None  # a request's forget rows (orchestration/requests.py)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def measured(self) -> dict:
        """The per-item statistics of a unit that is ok (a failed or absent one has none: an error to ask)."""
        if self.stats is None:
            raise ValueError(f"a unit that is {self.status} has no statistics ({self.error})")
        return self.stats

    def to_json(self) -> dict:
        """The unit as its cache file holds it: every field but the model (a reference the reader makes again) that
        is not at its default."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"
                and getattr(self, f.name) != (f.default_factory() if callable(f.default_factory) else f.default)}

    @classmethod
    def from_json(cls, saved: dict) -> Unit:
        unknown = sorted(set(saved) - {f.name for f in fields(cls) if f.name != "model"})
        if unknown:
            raise ValueError(f"a cached unit holds {unknown}, which this version does not write; a cache of another "
                             f"version: rerun with --fresh, or point cache_dir= at a new folder")
        return cls(**saved)


class Units:
    """Cached units and models of one run: its config, its unit store and its accelerator."""

    def __init__(self, cfg: ExperimentConfig, store: UnitStore, accelerator):
        self.cfg, self.store, self.acc = cfg, store, accelerator

    def solo(self) -> Units:
        """These units for a process that builds its own alone while the other processes build theirs
        (orchestration/populations.py): the same config and cache, no collective operation."""
        return Units(self.cfg, self.store, Solo(self.acc))

    def load(self, ref: ModelRef):
        if ref.members:
            from unlearnbench.ensemble import Ensemble  # an nn.Module class: torch at import (SISA rows only)
            ensemble = Ensemble([load_model(path, self.cfg.model) for path in ref.members]).to(self.acc.device)
            return ensemble.eval()
        model = load_model(ref.path, self.cfg.model, ref.gguf_file)
        if ref.adapter:         # evaluated with the adapter active, exactly as the suite's own LoRA rows are
            model = peft.PeftModel.from_pretrained(model, ref.adapter)
        model = model.to(self.acc.device)
        model.eval()
        return model

    def tokenizer(self, ref: ModelRef):
        own = ref.adapter and any((Path(ref.adapter) / f).is_file() for f in TOKENIZER_FILES)
        return load_tokenizer(ref.adapter if own else ref.path, self.cfg.model, "" if own else ref.gguf_file)

    def given(self, ref: str, default_base) -> ModelRef:
        """A checkpoint the user names (model.target / model.retain / checkpoints.<row>): a local folder, keyed by a
        digest of its files (an edited folder is evaluated again), or a hub id at the configured revision. A
        folder holding a peft adapter loads on top of the model its adapter_config.json names, or else on
        `default_base()` (a checkpoint row's: the run's target; model.target's own: the base model)."""
        folder = Path(ref).expanduser()
        m = self.cfg.model
        if not folder.is_dir():
            return ModelRef(ref, stable_hash("given", ref, m.revision, m.dtype))
        key = stable_hash("given", folder_digest(folder), m.dtype)
        base = adapter_base(folder)
        if base is None:
            return ModelRef(str(folder), key)
        base_ref = self.given(base, default_base) if base else default_base()
        return ModelRef(base_ref.path, stable_hash("adapter", key, base_ref.key), adapter=str(folder))

    def fmt(self, tokenizer, max_length: int = EVAL_MAX_LENGTH) -> PromptFormat:
        return PromptFormat(self.cfg.model, tokenizer, max_length)

    def unit(self, kind: str, key: str, build) -> Path:
        """The unit's folder, building it with `build(tmp_folder)` unless a finished one is cached."""
        if not self.store.done(kind, key):
            with self.store.build(kind, key, publish=self.acc.is_main_process) as tmp:
                build(tmp)
        self.acc.wait_for_everyone()
        return self.store.path(kind, key)

    def meter(self) -> CostMeter:
        return CostMeter(self.acc.device, self.acc.num_processes)

