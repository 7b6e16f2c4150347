"""The pipeline's stages as cached units (base model, fine-tuned target/retain, evaluation, one unlearning row),
built with the unit mechanics of units.py. This is the layer that ties tasks (benchmarks/), methods and evals
together; the core (unlearnbench/) knows none of them.

Each unit's key hashes everything that determines it (config section, data fingerprint, upstream unit key, code
version), so a rerun reuses finished units and a crashed run resumes where it stopped.
"""
from __future__ import annotations

import copy
import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import benchmarks  # noqa: F401  (registers every task family)
from benchmarks.synthetic_tofu import general_corpus, general_qa, read_refusals
from evals.engine import ENGINE_VERSION
from methods import METHODS, method_config, run_loss, stop_after
from methods.private import dp_finetune
from methods.trainer import DivergenceError, Hooks, Run, finetune, prepare, total_micro_batches, train, with_adapter
from orchestration import probing
from orchestration.probing import ProbeLeakError
from orchestration.rows import RowPlan
from orchestration.units import ModelRef, Unit, Units
from unlearnbench.cache import UnitStore, read_json, row_digests, stable_hash, write_json
from unlearnbench.config import ExperimentConfig, TrainConfig
from unlearnbench.heavy import accelerate_utils
from unlearnbench.models import (
    TOKENIZER_FILES,
    PromptFormat,
    build_embedded_model,
    load_tokenizer,
    resolve_name,
    save_model,
    train_tokenizer,
)
from unlearnbench.probes import PROBES
from unlearnbench.tasks import TASKS, Probes, Task, TaskData, probes_for


@dataclass(frozen=True)
class Recipe:
    """How a model is fine-tuned from the base, where it differs from the task's target / retain recipe."""
    rows: list | None = None       # the rows (a shadow model's, a SISA slice's, a gold standard's); None: the role's
    ft: TrainConfig | None = None  # another schedule than the task's (SISA's slices)
    replay: bool | list | None = None   # another rehearsal than the run's (Pipeline.replay_rows)
    lora_lr: float = 0.0           # > 0: a LoRA adapter (lora_cfg) trained at this rate, merged into the weights
    private: tuple | None = None   # (DPSettings, epsilon): DP-SGD (methods/private.py), its accounting in the cost


def encode_row(fmt: PromptFormat, row: dict) -> dict:
    """A QA row is prompted (loss on the answer), a text row is plain language modelling (loss on every token)."""
    return fmt.encode(row["question"], row["answer"]) if "question" in row else fmt.encode_text(row["text"])


def prompted(fmt: PromptFormat, row: dict, answer: str | None = None) -> dict:
    """The row as prompt -> its answer (loss on the answer), or -> `answer` instead. A text row is split after its
    first sentence: that sentence is the prompt, the rest is the answer."""
    if "question" in row:
        return fmt.encode(row["question"], row["answer"] if answer is None else answer)
    head, sep, rest = row["text"].partition(". ")
    head = head + sep if rest else head
    return fmt.encode_continuation(head, (rest or row["text"]) if answer is None else answer)


def idk_pair(fmt: PromptFormat, row: dict, refusal: str) -> tuple[dict, dict]:
    """(forget row, refusal row) with the same prompt, for IdkSFT / IdkDPO."""
    return prompted(fmt, row), prompted(fmt, row, refusal)


class Pipeline:
    """One task's stages, each a cached unit built with `units` (orchestration/units.py): the base, fine-tuned
    models (target, retain, and any other Recipe), evaluations, unlearning rows."""

    def __init__(self, cfg: ExperimentConfig, task: Task, data: TaskData, store: UnitStore, accelerator,
                 units: Units | None = None):
        self.cfg, self.task, self.data = cfg, task, data
        self.units = units or Units(cfg, store, accelerator)
        self.store, self.acc = self.units.store, self.units.acc
        self.probes = probes_for(task, cfg.probes) if cfg.probes else ()     # after load (docs/probes.md)
        # what each asked probe changes, and the texts no unlearning run may train on
        self.claims = cast(Probes, task).probe_claims(self.probes) if self.probes else {}
        self.prompt_key = [cfg.model.prompt_format, cfg.model.template]
        # the experiment's unlearning schedule and method settings, with this task's overrides on top
        self.unlearn = cfg.unlearn_schedule(task.label, task.cfg)

    def solo(self) -> Pipeline:
        """This pipeline for units this process builds alone while the other processes build theirs
        (orchestration/populations.py): the same config, data and cache, no collective operation."""
        return Pipeline(self.cfg, self.task, self.data, self.store, self.acc, units=self.units.solo())

    def given(self, ref: str, default_base=None) -> ModelRef:
        """A checkpoint the user names (Units.given), an adapter without a base of its own on `default_base()`, by
        default the base model."""
        return self.units.given(ref, default_base or self.base)

    def method_hparams(self, name: str):
        return method_config(name, self.cfg.method_args_for(name, self.task.cfg))

    def base(self) -> ModelRef:
        m = self.cfg.model
        if not m.name:
            raise ValueError("model.name is empty; set it to 'embedded', a hub id, a local path, or package:<module> "
                             "for weights shipped in a Python package (configs/model/smollm2.yaml)")
        if m.name != "embedded":
            return ModelRef(resolve_name(m.name), stable_hash("hub", m.name, m.revision, m.gguf_file, m.dtype),
                            m.gguf_file)
        key = self._base_key()

        def build(tmp):
            tokenizer = self._train_tokenizer()
            accelerate_utils.set_seed(self.cfg.seed)     # the same initial weights whatever ran before
            model = build_embedded_model(m.embedded, tokenizer).to(self.acc.device)
            fmt = self.units.fmt(tokenizer, m.embedded.pretrain.max_length)
            with self.units.meter() as meter:
                meter.watch(model)
                corpus = [encode_row(fmt, r) for r in self.replay_rows(True)]     # the pretraining corpus
                log = finetune(model, corpus, m.embedded.pretrain, self.cfg.seed, self.acc, tokenizer.pad_token_id,
                               desc="pretrain base", checkpointing=self.cfg.gradient_checkpointing)
            save_model(model, tokenizer, tmp, alone=self.acc.num_processes == 1)
            write_json(tmp / "cost.json", {**meter.record(), "train_log": log})
        path = self.units.unit("base", key, build)
        return ModelRef(str(path), key, cost=read_json(path / "cost.json"))

    def _base_key(self) -> str:
        qa, text = general_corpus()
        return stable_hash("base", dataclasses.asdict(self.cfg.model.embedded), self.prompt_key, self.cfg.seed,
                           self.data.fingerprint, qa, text, *([self.data.pretrain] if self.data.pretrain else []))

    def _train_tokenizer(self):
        """The embedded model's tokenizer: trained on the whole world's text (deterministic); the model learns
        only general knowledge in pretraining."""
        qa, text = general_corpus()
        return train_tokenizer(text + self.data.texts + [r["question"] + " " + r["answer"] for r in qa],
                               self.cfg.model.embedded.vocab_size)

    def run_tokenizer(self):
        """The run's tokenizer before any model trains: a pretrained model's own; the embedded base's (its cached
        unit's, else trained here exactly as the base unit will train it)."""
        if self.cfg.model.target and any((Path(self.cfg.model.target) / f).is_file() for f in TOKENIZER_FILES):
            return load_tokenizer(self.cfg.model.target, self.cfg.model)     # a given target: its own tokenizer
        if self.cfg.model.name != "embedded":
            return self.units.tokenizer(self.base())
        key = self._base_key()
        if self.store.done("base", key):
            return self.units.tokenizer(ModelRef(str(self.store.path("base", key)), key))
        return self._train_tokenizer()


    def _replay(self) -> bool | list[dict]:
        """What fine-tuning into target, retain and shadow models rehearses besides the task's rows (part of their
        cache key): True, the embedded model's pretraining corpus (`model.embedded.replay`, or the task's own
        `replay`); for a pretrained model with `model.replay`, the general QA that no evaluated split asks; False,
        nothing."""
        if self.cfg.model.name == "embedded":
            own = self.task.cfg.replay
            return self.cfg.model.embedded.replay if own is None else own
        return general_qa() if self.cfg.model.replay else False

    def replay_rows(self, replay: bool | list[dict] | None = None) -> list[dict]:
        """What fine-tuning rehearses (`_replay()`, or `replay`) as task rows: {"question", "answer"} or {"text"}
        (True: the embedded model's pretraining corpus, with the task's own pretraining rows)."""
        replay = self._replay() if replay is None else replay
        if replay is True:
            qa, text = general_corpus()
            return list(qa) + [{"text": t} for t in text] + list(self.data.pretrain)
        return list(replay or [])

    def target_model(self, base: ModelRef | None, *, given: str = "", seed: int | None = None) -> ModelRef:
        """The `given` checkpoint, or base fine-tuned on the task's target rows; a task without them (e.g. WMDP on a
        real model) has the base itself as its target."""
        if given:
            return self.given(given)
        if base is None:
            raise ValueError(f"task {self.task.label}: no base model to fine-tune the target from")
        return base if self.data.train.get("target") is None else self.finetuned(base, "target", seed=seed)

    def retain_model(self, base: ModelRef | None, *, given: str = "", seed: int | None = None) -> ModelRef | None:
        """The `given` checkpoint, or base fine-tuned on the task's retain rows; None for a task without them (e.g.
        WMDP on a real model: no retain model)."""
        if given:
            return self.given(given)
        if self.data.train.get("retain") is None:
            return None
        if base is None:
            raise ValueError(f"task {self.task.label}: no base model to fine-tune the retain model from")
        return self.finetuned(base, "retain", seed=seed)

    def finetuned(self, base: ModelRef, role: str, *, seed: int | None = None, recipe: Recipe = Recipe()) -> ModelRef:
        """`base` fine-tuned on the task's rows for `role` (target, retain), or as `recipe` says (a shadow
        model's, a SISA slice's, a DP row's), with the experiment's seed or `seed` (a population member)."""
        rows = self.data.train.get(role) if recipe.rows is None else recipe.rows
        if rows is None:
            raise ValueError(f"task {self.task.label} has no {role} rows to fine-tune on")
        ft, seed = recipe.ft or self.task.cfg.finetune, self.cfg.seed if seed is None else seed
        replay = self._replay() if recipe.replay is None else recipe.replay
        lora_lr, private = recipe.lora_lr, recipe.private
        adapter = [lora_lr, dataclasses.asdict(self.cfg.lora_cfg)] if lora_lr else []
        dp = [dataclasses.asdict(private[0]), private[1]] if private else []
        key = stable_hash("finetune", base.key, dataclasses.asdict(ft), self.prompt_key, seed, rows, replay, *adapter,
                          *dp)
        ft = dataclasses.replace(ft, lr=lora_lr) if lora_lr else ft

        def build(tmp):
            model, tokenizer = self.units.load(base), self.units.tokenizer(base)
            if lora_lr:
                accelerate_utils.set_seed(seed)      # the adapter's initial weights: the same whatever ran before
                model = with_adapter(model, self.cfg.lora_cfg, self.cfg.lora_cfg.target_modules)
            fmt = self.units.fmt(tokenizer, ft.max_length)
            laid = self.task.pack(rows, seed) if "pack" in self.task.capabilities else rows   # a document task's
            encoded = [encode_row(fmt, r) for r in laid + self.replay_rows(replay)]
            with self.units.meter() as meter:
                meter.watch(model)
                desc = f"fine-tune {self.task.label} {role} (seed {seed})"
                log = (dp_finetune(model, encoded, ft, *private, seed, self.acc.device, tokenizer.pad_token_id, desc)
                       if private else finetune(model, encoded, ft, seed, self.acc, tokenizer.pad_token_id, desc=desc,
                                                checkpointing=self.cfg.gradient_checkpointing))
            save_model(model.merge_and_unload() if lora_lr else model, tokenizer, tmp,
                       alone=self.acc.num_processes == 1)
            write_json(tmp / "cost.json", {**meter.record(), "train_log": log})
            write_json(tmp / "rows_seen.json", row_digests(rows))
        path = self.units.unit("finetuned", key, build)
        return ModelRef(str(path), key, cost=read_json(path / "cost.json"))

    # -- evaluation ------------------------------------------------------------------------------------------
    def eval_key(self, model_key: str, probes: bool = True) -> list:
        """What determines an evaluation besides the model: the task, its data, the engine, and the probes asked
        (probes=False: an evaluation without them, e.g. an attacked model's)."""
        source = TASKS[self.task.cfg.name].source        # a task from a user's file: its digest
        asked = ["probes", list(self.probes), *[PROBES[p].source for p in self.probes
                                                if p in PROBES and PROBES[p].source]] if probes and self.probes else []
        return [model_key, dataclasses.asdict(self.task.cfg.eval), self.prompt_key, self.data.fingerprint,
                self.task.version, ENGINE_VERSION, *([source] if source else []), *asked]

    def evaluate(self, model, tokenizer, name: str, generate: bool = True, probes: bool = True) -> tuple[dict, dict]:
        """Per-item statistics of the task's evaluation sets, and what computing them cost. generate=False (a
        population member: teacher-forced statistics only) needs a task that can skip generation (TOFU), and asks
        no probes; probes=False leaves the run's probes out."""
        extra: dict[str, Any] = {} if generate else {"generate": False}
        if generate and probes and self.probes:
            extra["probes"] = self.probes
        with self.units.meter() as meter:
            meter.watch(model)
            stats = self.task.evaluate(model, tokenizer, self.units.fmt(tokenizer), name, self.task.cfg.eval.batch_size,
                                       self.acc, **extra)
        return stats, meter.record()

    def evaluated(self, ref: ModelRef, name: str, generate: bool = True, cost: dict | None = None,
                  **facts) -> Unit:
        """The model on disk scored as row `name`, its evaluation cached: an ok Unit with `ref` as its model, what
        making it cost (`cost`; None: unknown) and the unit's other `facts` (a guarantee row's)."""
        key = stable_hash("eval", *self.eval_key(ref.key, probes=generate),
                          *([] if generate else ["teacher-forced only"]))

        def build(tmp):
            stats, spent = self.evaluate(self.units.load(ref), self.units.tokenizer(ref), name, generate)
            write_json(tmp / "unit.json", {"stats": stats, "eval_cost": spent})
        saved = read_json(self.units.unit("eval", key, build) / "unit.json")
        return Unit("ok", saved["stats"], cost, saved["eval_cost"], model=ref, **facts)

    # -- unlearning ------------------------------------------------------------------------------------------
    def untrained(self, method_name: str) -> str:
        """Why a trained method's rows stay the target's weights (a deliberate zero: unlearn.epochs=0 or lr 0), or
        "" when they train."""
        spec, hp = METHODS.get_or_raise(method_name), self.method_hparams(method_name)
        if spec.edit is not None or spec.is_retrain:
            return ""
        if self.unlearn.epochs == 0:
            return "unlearn.epochs=0"
        return f"method_args.{method_name}.lr=0" if getattr(hp, "lr", None) == 0 else ""

    def plan(self, target: ModelRef, method: str, seed: int | None = None, generate: bool = True,
             curve_every: int = 0, probes: bool = True) -> RowPlan:
        """Method `method` unlearning `target` from `seed` (default: the experiment's) with this task's settings:
        generate=False, teacher-forced statistics only (a population member); curve_every > 0, the unlearning curve
        (a method that trains only); probes=False, evaluated without the run's probes (a further seed's row under
        probe_seeds=first)."""
        spec, args = METHODS.get_or_raise(method), self.cfg.method_args_for(method, self.task.cfg)
        return RowPlan(method, target, self.cfg.seed if seed is None else seed, method_config(method, args),
                       self.unlearn, self.cfg.lora, self.cfg.lora_cfg, stop_after(method, args),
                       curve_every if spec.edit is None and not spec.is_retrain else 0, generate, probes)

    def unlearned(self, plan: RowPlan, keep_model: bool | str = False) -> Unit:
        """One unlearning row, cached. keep_model: the row's model is also a cached unit (full weights, or the LoRA
        adapter; "merged": a LoRA row merged into full weights), the unit's `model`; a row cached without it is
        unlearned again for it, deterministically. With plan.curve_every, the unit's `curve` holds the model
        evaluated every that many updates (its own end point not repeated; its time and tokens are not the row's
        cost)."""
        spec = METHODS[plan.method]
        key = plan.key([self.data.forget, self.data.retain, read_refusals() if spec.needs_idk else None,
                        *self.eval_key(plan.target.key, probes=plan.generate and plan.probes)])
        merged = keep_model == "merged" and plan.lora
        weights = stable_hash("weights", key, *(["merged"] if merged else []))

        def keep(model, tokenizer):
            with self.store.build("weights", weights, publish=self.acc.is_main_process) as tmp:
                # a merged copy: the row's own model is evaluated as trained, adapter active
                save_model(copy.deepcopy(model).merge_and_unload() if merged else model, tokenizer, tmp,
                           alone=self.acc.num_processes == 1)

        def build(tmp):
            curve = []

            def on_point(updates, trained, tokenizer):
                stats, cost = self.evaluate(trained, tokenizer, f"{spec.name} after {updates} updates", plan.generate,
                                            plan.probes)
                curve.append({"updates": updates, "stats": stats, "eval_cost": cost})
            model, tokenizer, log, cost = self._trained(plan, on_point if plan.curve_every else None,
                                                        track=f"{self.task.label}/{spec.name}/{key[:8]}/seed{plan.seed}")
            if isinstance(log, Exception):
                unit = Unit("failed", cost=cost, error=str(log))
            else:
                if keep_model:
                    keep(model, tokenizer)
                stats, eval_cost = self.evaluate(model, tokenizer, spec.name, plan.generate, plan.probes)
                unit = Unit("ok", stats, cost, eval_cost, train_log=log, curve=curve,
                            hparams=dataclasses.asdict(plan.hparams),
                            rows_seen=row_digests(self.data.forget + self.data.retain))
            write_json(tmp / "unit.json", unit.to_json())
        unit = Unit.from_json(read_json(self.units.unit("row", key, build) / "unit.json"))
        if keep_model and unit.ok:
            self.acc.wait_for_everyone()
            if not self.store.done("weights", weights):
                model, tokenizer, _, _ = self._trained(plan)
                keep(model, tokenizer)
            self.acc.wait_for_everyone()
            folder = str(self.store.path("weights", weights))
            own = stable_hash("row model", Path(folder).name)
            unit.model = (ModelRef(plan.target.path, own, plan.target.gguf_file, adapter=folder)
                          if plan.lora and spec.loss and not merged else ModelRef(folder, own))
        return unit

    def _trained(self, plan: RowPlan, on_point=None, track: str = "") -> tuple:
        """The target unlearned as `plan` says: (model, tokenizer, the run's log or the DivergenceError /
        ProbeLeakError that stopped it, what it cost); on_point(updates, model, tokenizer) sees the unlearning curve's
        points, whose time is not the run's; `track` names its losses for the trackers."""
        spec, hp, seed = METHODS[plan.method], plan.hparams, plan.seed
        untrained = self.untrained(spec.name)
        model, tokenizer = self.units.load(plan.target), self.units.tokenizer(plan.target)
        fmt = self.units.fmt(tokenizer, plan.schedule.max_length)
        roles = {"forget": [encode_row(fmt, r) for r in self.data.forget],
                 "retain": [encode_row(fmt, r) for r in self.data.retain]}
        if spec.needs_idk or spec.roles is not None:     # answers compared with others: prompt -> answer
            roles["forget"] = [prompted(fmt, r) for r in self.data.forget]
        if spec.needs_idk:
            refusals, rng = read_refusals(), random.Random(seed)
            roles["forget_idk"] = [prompted(fmt, r, rng.choice(refusals)) for r in self.data.forget]

        def paused(updates, trained):
            with meter.paused():
                on_point(updates, trained, tokenizer)
        log: dict | Exception
        with self.units.meter() as meter:
            meter.watch(model)
            if spec.edit is not None:
                spec.edit(model, hp, seed)
                log = {"edit": spec.name}
            elif untrained:
                log = {"micro_batches": 0, "updates": 0, "untrained": untrained}
            else:
                if spec.roles is not None:            # from the target, before training (AltPO's alternates)
                    roles.update(spec.roles(model, roles["forget"], tokenizer, hp, seed))
                accelerate_utils.set_seed(seed)      # a LoRA adapter's initial weights: the same whatever ran before
                model, ref = prepare(model, spec, hp, plan.lora_cfg if plan.lora else None, meter.watch)
                loss_fn, state = run_loss(spec, hp, ref, total_micro_batches(len(roles["forget"]), plan.schedule))
                consumed: set = set()
                run = Run(plan.schedule, hp.lr, seed, "forget", plan.stop, self.cfg.gradient_checkpointing)
                hooks = Hooks(spec.name, plan.curve_every if on_point else 0, paused, track, consumed)
                try:
                    log = train(model, roles, loss_fn, run, self.acc, tokenizer.pad_token_id, hooks)
                    if state is not None:
                        log["state"] = state.record()
                    probing.check_unseen(spec.name, self.claims, consumed, tokenizer)
                except (DivergenceError, ProbeLeakError) as err:
                    log = err
        return model, tokenizer, log, meter.record()
