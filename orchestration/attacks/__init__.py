"""Recovery attacks (docs/recovery.md, "Does it come back?"), registered like methods: one file each, with its
name, its settings and how it makes the attacked model. Every attack is read the same way: the attacked model is
evaluated by the task and scored against the retain model under the same attack (evals/robustness.py), under the
metric names `<variant>_<forget measure>`, `<variant>_model_utility`, `<variant>_recovery` (and, for an attack
that trains on part of the forget set, `relearn_ou_score`).

    @attack("my_attack", MySettings)
    def my_attack(pipe, ref, row, variant, settings, tmp, meter):
        '''Returns (model, tokenizer): the row's model under the attack (`ref` is the row's model on disk).'''

A registered attack runs when `robustness.attacks` names it, with its settings from
`robustness.attack_args.<name>` (validated strictly against its dataclass). The built-in attacks are turned on by
their own keys: relearning by `robustness.relearn_steps` (relearn.py), quantization by `robustness.quant_bits`
(quantize.py). Each attacked model's evaluation is a cached unit keyed by the row's model, the attack, its
settings and its file's digest, so a run killed mid-way resumes with the same numbers.
"""
from __future__ import annotations

import dataclasses
import random
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

from tqdm.auto import tqdm

from evals.robustness import attack_metrics
from orchestration.pipeline import Pipeline
from orchestration.units import ModelRef, Unit
from unlearnbench.cache import read_json, stable_hash, write_json
from unlearnbench.config import ConfigError, from_dict
from unlearnbench.registry import Registry
from unlearnbench.tasks import Relearns, require


@dataclass(frozen=True)
class AttackSpec:
    name: str
    settings: type | None          # dataclass of its settings (robustness.attack_args.<name>); None: none
    run: Callable                  # (pipe, ref, row, variant, settings, tmp, meter) -> (model, tokenizer)
    variants: Callable | None = None    # (RobustnessSettings) -> the variants that run, each its own metric prefix
                                        # (quantization: quant8, quant4); None: [name] when robustness.attacks names it
    key: Callable | None = None    # (pipe, variant) -> what besides the row's model and settings determines the attack
    trains_on_forget: bool = False # trains on part of the forget set: scored on the other part only (the task's
                                   # relearn_split), and OpenUnlearning's relearn score is reported
    explain: Callable | None = None     # (row, variant, RuntimeError) -> the input error to raise instead, if any
    source: str = ""               # registered from a user's file (extensions=): "<path>@<digest>"


ATTACKS = Registry("attack")


def attack(name: str, settings: type | None = None, **fields):
    """Register a function making the attacked model under `name`, with its settings dataclass."""
    def wrap(fn):
        ATTACKS.register(name, AttackSpec(name=name, settings=settings, run=fn, **fields))
        return fn
    return wrap


def variants(cfg) -> list[tuple[AttackSpec, str]]:
    """(attack, variant) of every attack the experiment turns on, built-in ones first."""
    r, out = cfg.robustness, []
    for spec in ATTACKS.values():
        if spec.variants is not None:
            out += [(spec, v) for v in spec.variants(r)]
        elif spec.name in r.attacks:
            out.append((spec, spec.name))
    return out


def enabled(cfg) -> bool:
    return bool(variants(cfg))


def check(cfg, tasks: dict) -> None:
    """Input errors before anything trains: an unknown or built-in name in robustness.attacks, settings that do
    not fit an attack's dataclass, a task that cannot serve an attack that trains on its forget set."""
    r = cfg.robustness
    for name in list(r.attacks) + list(r.attack_args):
        spec = ATTACKS.get(name)
        if spec is None:
            raise ConfigError(f"robustness: unknown attack {name!r}; registered: {sorted(ATTACKS)} (your own: "
                              f"extensions=<file>, docs/recovery.md)")
        if spec.variants is not None:
            raise ConfigError(f"robustness.attacks: {name} is turned on by its own keys (robustness.relearn_steps, "
                              f"robustness.quant_bits), not by name")
        settings_of(cfg, spec)
    for spec, _ in variants(cfg):
        for task in tasks.values():
            if spec.trains_on_forget:
                require(task, "relearn_split", f"the {spec.name} attack")


def settings_of(cfg, spec: AttackSpec):
    if spec.settings is None:
        return None
    return from_dict(spec.settings, dict(cfg.robustness.attack_args.get(spec.name) or {}),
                     prefix=f"robustness.attack_args.{spec.name}")


def relearn_rows(pipe: Pipeline) -> tuple[list[dict], list[int] | None]:
    """(rows an attack that trains on the forget set trains on, the forget items it scores): the task's split of
    the forget set, or with relearn_data=unrelated as many retain rows drawn by the seed (Łucki et al.), scored on
    the same items."""
    rows, items = cast(Relearns, pipe.task).relearn_split(pipe.cfg.seed)
    if pipe.cfg.robustness.relearn_data == "unrelated":
        rows = random.Random(pipe.cfg.seed).sample(pipe.data.retain, min(len(rows), len(pipe.data.retain)))
    return rows, items


def attacked(pipe: Pipeline, ref: ModelRef, row: str, spec: AttackSpec, variant: str) -> Unit:
    """A row's model under one attack, evaluated with the task's statistics, cached (its cost: what the attack
    itself took)."""
    settings = settings_of(pipe.cfg, spec)
    extra = ([dataclasses.asdict(settings)] if settings is not None else []) + ([spec.source] if spec.source else [])
    key = stable_hash("attack", variant, ref.key, ref.adapter, *(spec.key(pipe, variant) if spec.key else []),
                      *pipe.eval_key(ref.key, probes=False), *extra)

    def build(tmp):
        with pipe.units.meter() as meter:
            model, tokenizer = spec.run(pipe, ref, row, variant, settings, tmp, meter)
        try:
            with quiet():
                stats, eval_cost = pipe.evaluate(model.eval(), tokenizer, f"{row} ({variant})", probes=False)
        except RuntimeError as err:
            error = spec.explain(row, variant, err) if spec.explain else None
            if error is None:
                raise
            raise error from err
        write_json(tmp / "unit.json", {"stats": stats, "eval_cost": eval_cost, "cost": meter.record()})
    return Unit("ok", **read_json(pipe.units.unit("attack", key, build) / "unit.json"))


def merged(model):
    """A model as deployed: a LoRA row's adapter merged into its weights (a plain model as it is)."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


@contextmanager
def quiet():
    """bitsandbytes' LLM.int8 warns at every layer that it casts float32 inputs to float16 (its design)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*cast from torch.float32 to float16.*")
        yield


def attack_all(pipe: Pipeline, refs: dict, before: dict) -> tuple[dict, dict]:
    """Every attack the experiment turns on, on every row of `refs` ({row: its model}; the target first, and the
    retain model where there is one). before: {row: the row's own per-item statistics}. Returns ({row: attack
    metrics}, {row: {variant: its cost and its evaluation's cost}})."""
    metrics: dict[str, dict] = {row: {} for row in refs}
    costs: dict[str, dict] = {row: {} for row in refs}
    turned_on = variants(pipe.cfg)
    items = relearn_rows(pipe)[1] if any(spec.trains_on_forget for spec, _ in turned_on) else None
    # what each row holds without any attack, on the same scale: the baseline an attack's recovery is read against
    for row, values in attack_metrics(pipe.task, "unattacked", before, before, None, relearned=False).items():
        if "unattacked_recovery" in values:
            metrics[row]["unattacked_recovery"] = values["unattacked_recovery"]
    for spec, variant in turned_on:
        bar = tqdm(refs.items(), desc=f"attack {variant}", leave=False, disable=not pipe.acc.is_main_process)
        units = {row: attacked(pipe, ref, row, spec, variant) for row, ref in bar}
        scored = items if spec.trains_on_forget else None      # an attack that trains on nothing: every item counts
        for row, values in attack_metrics(pipe.task, variant, {k: u.measured() for k, u in units.items()}, before,
                                          scored, relearned=spec.trains_on_forget).items():
            metrics[row].update(values)
            costs[row][variant] = {"attack": units[row].cost, "eval": units[row].eval_cost}
    return metrics, costs


# the built-in attacks register themselves, relearning first (the order of their columns)
# isort: off
from orchestration.attacks import relearn  # noqa: E402,F401
from orchestration.attacks import quantize  # noqa: E402,F401
# isort: on
