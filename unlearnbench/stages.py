"""The pipeline's stages as cached units: base model, fine-tuned target/retain, evaluation, one unlearning row.

Each unit's key hashes everything that determines it (config section, data fingerprint, upstream unit key, code
version), so a rerun reuses finished units and a crashed run resumes where it stopped.
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path

from benchmarks.synthetic_tofu import general_corpus, read_refusals
from evals.stats import split_stats
from methods import METHODS, method_config
from methods.trainer import DivergenceError, finetune, prepare, train
from unlearnbench.cache import UnitStore, read_json, stable_hash, write_json
from unlearnbench.config import ExperimentConfig
from unlearnbench.cost import CostMeter
from unlearnbench.models import (PromptFormat, build_embedded_model, load_model, load_tokenizer, save_model,
                                 train_tokenizer)

EVAL_SPLITS = {"forget": "forget_eval", "retain": "retain_eval", "real_authors": "real_authors",
               "world_facts": "world_facts"}


@dataclass
class ModelRef:
    """A model on disk (or the hub) with the cache key that identifies its weights."""
    path: str
    key: str
    gguf_file: str = ""
    cost: dict | None = None        # what training it cost, if this suite trained it


class Pipeline:
    def __init__(self, cfg: ExperimentConfig, data, store: UnitStore, accelerator):
        self.cfg, self.data, self.store, self.acc = cfg, data, store, accelerator
        self.prompt_key = [cfg.model.prompt_format, cfg.model.template]

    # -- models ----------------------------------------------------------------------------------------------
    def load(self, ref: ModelRef):
        model = load_model(ref.path, self.cfg.model, ref.gguf_file).to(self.acc.device)
        model.eval()
        return model

    def tokenizer(self, ref: ModelRef):
        return load_tokenizer(ref.path, self.cfg.model, ref.gguf_file)

    def fmt(self, tokenizer, max_length: int = 512) -> PromptFormat:
        return PromptFormat(self.cfg.model, tokenizer, max_length)

    def _unit(self, kind: str, key: str, build) -> Path:
        """The unit's folder, building it with `build(tmp_folder)` unless a finished one is cached."""
        if not self.store.done(kind, key):
            with self.store.build(kind, key, publish=self.acc.is_main_process) as tmp:
                build(tmp)
        self.acc.wait_for_everyone()
        return self.store.path(kind, key)

    def _meter(self) -> CostMeter:
        return CostMeter(self.acc.device, self.acc.num_processes)

    def base(self) -> ModelRef:
        m = self.cfg.model
        if not m.name:
            raise ValueError("model.name is empty; set it to 'embedded', a hub id or a local path "
                             "(configs/model/smollm2.yaml needs model.name=<folder holding the GGUF file>)")
        if m.name != "embedded":
            return ModelRef(m.name, stable_hash("hub", m.name, m.revision, m.gguf_file, m.dtype), m.gguf_file)
        qa, text = general_corpus()
        key = stable_hash("base", dataclasses.asdict(m.embedded), self.prompt_key, self.cfg.seed,
                          self.data.fingerprint, qa, text)

        def build(tmp):
            # The tokenizer sees the whole world's text; the model learns only general knowledge here.
            world = [v for rows in self.data.splits.values() for r in rows for v in _texts(r)]
            tokenizer = train_tokenizer(text + world + [r["question"] + " " + r["answer"] for r in qa],
                                        m.embedded.vocab_size)
            model = build_embedded_model(m.embedded, tokenizer).to(self.acc.device)
            fmt = self.fmt(tokenizer, m.embedded.pretrain.max_length)
            rows = self._pretrain_rows(fmt)
            with self._meter() as meter:
                meter.watch(model)
                log = finetune(model, rows, m.embedded.pretrain, self.cfg.seed, self.acc,
                               tokenizer.pad_token_id, desc="pretrain base")
            save_model(model, tokenizer, tmp)
            write_json(tmp / "cost.json", {**meter.record(), "train_log": log})
        path = self._unit("base", key, build)
        return ModelRef(str(path), key, cost=read_json(path / "cost.json"))

    @staticmethod
    def _pretrain_rows(fmt: PromptFormat) -> list[dict]:
        qa, text = general_corpus()
        return [fmt.encode(r["question"], r["answer"]) for r in qa] + [fmt.encode_text(t) for t in text]

    def finetuned(self, base: ModelRef, role: str, given: str) -> ModelRef:
        """The target (role full) or retain model: `given` checkpoint, or base fine-tuned on that role's rows."""
        if given:
            return ModelRef(given, stable_hash("given", given, self.cfg.model.revision, self.cfg.model.dtype))
        ft = self.cfg.task.finetune
        replay = self.cfg.model.name == "embedded" and self.cfg.model.embedded.replay
        key = stable_hash("finetune", base.key, dataclasses.asdict(ft), self.prompt_key, self.cfg.seed,
                          self.data.splits[role], replay)

        def build(tmp):
            model, tokenizer = self.load(base), self.tokenizer(base)
            fmt = self.fmt(tokenizer, ft.max_length)
            rows = [fmt.encode(r["question"], r["answer"]) for r in self.data.splits[role]]
            if replay:
                rows += self._pretrain_rows(fmt)
            with self._meter() as meter:
                meter.watch(model)
                log = finetune(model, rows, ft, self.cfg.seed, self.acc, tokenizer.pad_token_id,
                               desc=f"fine-tune on {self.data.names[role]}")
            save_model(model, tokenizer, tmp)
            write_json(tmp / "cost.json", {**meter.record(), "train_log": log})
        path = self._unit("finetuned", key, build)
        return ModelRef(str(path), key, cost=read_json(path / "cost.json"))

    # -- evaluation ------------------------------------------------------------------------------------------
    def _eval_key(self, model_key: str) -> list:
        return [model_key, dataclasses.asdict(self.cfg.task.eval), self.prompt_key, self.data.fingerprint]

    def evaluate(self, model, tokenizer, name: str) -> tuple[dict, dict]:
        """Per-item statistics of every evaluation split, and what computing them cost."""
        ev, fmt = self.cfg.task.eval, self.fmt(tokenizer)
        with self._meter() as meter:
            meter.watch(model)
            stats = {split: split_stats(model, fmt, self.data.splits[role], ev.batch_size, ev.max_new_tokens,
                                        name=f"{name}/{split}", paraphrased=split in ("forget", "retain"))
                     for split, role in EVAL_SPLITS.items()}
        return stats, meter.record()

    def evaluated(self, ref: ModelRef, name: str) -> dict:
        """Cached evaluation of a model on disk: {"stats", "eval_cost"}."""
        key = stable_hash("eval", *self._eval_key(ref.key))

        def build(tmp):
            stats, cost = self.evaluate(self.load(ref), self.tokenizer(ref), name)
            write_json(tmp / "unit.json", {"stats": stats, "eval_cost": cost})
        return read_json(self._unit("eval", key, build) / "unit.json")

    # -- unlearning ------------------------------------------------------------------------------------------
    def unlearned(self, target: ModelRef, method_name: str) -> dict:
        """One unlearning row, cached: {"status", "stats", "cost", "eval_cost", "train_log"|"error"}."""
        spec = METHODS.get_or_raise(method_name)
        hp = method_config(method_name, self.cfg.method_args.get(method_name))
        un = self.cfg.unlearn
        key = stable_hash("row", target.key, method_name, dataclasses.asdict(hp), dataclasses.asdict(un),
                          self.cfg.lora, dataclasses.asdict(self.cfg.lora_cfg), self.cfg.seed,
                          self.data.splits["forget"], self.data.splits["retain"],
                          read_refusals() if spec.needs_idk else None, *self._eval_key(target.key))
        build = lambda tmp: write_json(tmp / "unit.json", self._run_method(target, spec, hp))  # noqa: E731
        return read_json(self._unit("row", key, build) / "unit.json")

    def _run_method(self, target: ModelRef, spec, hp) -> dict:
        model, tokenizer = self.load(target), self.tokenizer(target)
        fmt = self.fmt(tokenizer, self.cfg.unlearn.max_length)
        roles = {"forget": [fmt.encode(r["question"], r["answer"]) for r in self.data.splits["forget"]],
                 "retain": [fmt.encode(r["question"], r["answer"]) for r in self.data.splits["retain"]]}
        if spec.needs_idk:
            refusals, rng = read_refusals(), random.Random(self.cfg.seed)
            roles["forget_idk"] = [fmt.encode(r["question"], rng.choice(refusals)) for r in self.data.splits["forget"]]
        with self._meter() as meter:
            meter.watch(model)
            if spec.edit is not None:
                spec.edit(model, hp, self.cfg.seed)
                log = {"edit": spec.name}
            else:
                model, ref = prepare(model, spec, hp, self.cfg.lora_cfg if self.cfg.lora else None, meter.watch)
                try:
                    log = train(model, roles, lambda m, b: spec.loss(m, b, ref, hp), self.cfg.unlearn, hp.lr,
                                self.cfg.seed, self.acc, tokenizer.pad_token_id, lead="forget", desc=spec.name)
                except DivergenceError as err:
                    log = err
        if isinstance(log, DivergenceError):
            return {"status": "failed", "error": str(log), "cost": meter.record()}
        stats, eval_cost = self.evaluate(model, tokenizer, spec.name)
        return {"status": "ok", "stats": stats, "cost": meter.record(), "eval_cost": eval_cost, "train_log": log,
                "hparams": dataclasses.asdict(hp)}


def _texts(row: dict) -> list[str]:
    out = [row["question"], row["answer"]]
    for key in ("paraphrased_answer", "paraphrased_question"):
        if row.get(key):
            out.append(row[key])
    return out + list(row.get("perturbed_answer") or [])

