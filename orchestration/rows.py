"""A row of a task's table as a value, and the one record builder that the benchmark (benchmark.py) and the
requests protocol (requests.py) share.

A row's identity is (name, through a LoRA adapter or not): `RowId("GradDiff", lora=True)` renders as
`GradDiff+lora` in results and tables, and is never parsed back. An unlearning row's `RowPlan` is everything that
decides its training and evaluation, built once (Pipeline.plan): its fields make its cache key, and the run reads
them. A `Row` holds what its source built: the unit of the record's own seed, the units of its other seeds, the
model an attack reads, and the columns that column sources (privacy populations, recovery attacks) add to it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from methods import METHODS, STOP
from orchestration.units import ModelRef, Unit
from unlearnbench.cache import stable_hash
from unlearnbench.config import ExperimentConfig, LoraSettings, TrainConfig
from unlearnbench.cost import COST_FIELDS
from unlearnbench.tasks import Task, TaskData


@dataclass(frozen=True)
class RowId:
    name: str                  # a method, a reference (base, target, retain), a guarantee row or a checkpoint's name
    lora: bool = False         # the method ran through a LoRA adapter

    def __str__(self) -> str:
        return self.name + ("+lora" if self.lora else "")


@dataclass(frozen=True)
class RowPlan:
    """One unlearning row from one seed: what decides its training and its evaluation."""
    method: str
    target: ModelRef            # the model it unlearns
    seed: int
    hparams: Any                # the method's settings (its dataclass in methods/<method>.py)
    schedule: TrainConfig       # the unlearning schedule, with the task's overrides
    lora: bool                  # through a LoRA adapter with `lora_cfg`
    lora_cfg: LoraSettings
    stop: int = 0               # stop after this many updates of the schedule (0: at its end)
    curve_every: int = 0        # also evaluated every that many updates (the unlearning curve; 0: not)
    generate: bool = True       # False: teacher-forced statistics only (a population member)
    probes: bool = True         # the run's probes asked of its evaluations

    def key(self, context: list) -> str:
        """The row's cache key: its fields and `context`, what its task adds (the forget and retain rows, the
        refusals an "I don't know" method answers with, what determines its evaluation)."""
        source = METHODS[self.method].source        # a method from a user's file: its digest
        return stable_hash("row", self.target.key, self.method, dataclasses.asdict(self.hparams),
                           dataclasses.asdict(self.schedule), self.lora, dataclasses.asdict(self.lora_cfg), self.seed,
                           *context, *([] if self.generate else ["teacher-forced only"]), *([source] if source else []),
                           *([STOP, self.stop] if self.stop else []),
                           *(["curve", self.curve_every] if self.curve_every else []))


@dataclass
class Row:
    id: RowId
    kind: str                  # reference | method | guarantee | checkpoint
    unit: Unit                 # the record's own seed's
    repeats: list[tuple[int, Unit]] = field(default_factory=list)     # its other seeds' units
    model: ModelRef | None = None                   # what a recovery attack reads (None: not attacked)
    same_as: RowId | None = None                    # a row that is another row's model (Retrain: the retain model)
    columns: dict = field(default_factory=dict)     # metrics added by column sources (the record's own seed)
    seed_models: dict = field(default_factory=dict)  # seed -> the model of a further seed, where one is kept
    seed_columns: dict = field(default_factory=dict)  # seed -> the columns of a further seed's model
    attack_cost: dict | None = None


def cost_fields(unit: Unit, retrain_wall: float | None) -> dict:
    """A unit's cost with every field present (null where unknown: a given checkpoint's training) and
    `relative_cost`, its wall time over retraining's in the same run."""
    cost = {**dict.fromkeys(COST_FIELDS), **(unit.cost or {})}
    cost.pop("train_log", None)
    wall = cost["wall_seconds"]
    cost["relative_cost"] = wall / retrain_wall if retrain_wall and wall is not None else None
    return cost


def record(task_label: str, row: RowId | str, unit: Unit, retrain_wall: float | None, **fields) -> dict:
    """A results.json record: task, row, the caller's fields, status, metrics (empty until scored), cost and
    evaluation cost, and the error of a row that failed."""
    out = {"task": task_label, "model": str(row), **fields, "status": unit.status, "metrics": {},
           "cost": cost_fields(unit, retrain_wall), "eval_cost": unit.eval_cost}
    if not unit.ok:
        out["error"] = unit.error
    return out


def describe(task: Task, data: TaskData, cfg: ExperimentConfig) -> dict:
    """A task's section of results.json (`datasets`): its data, and which metrics it reports and how to read them."""
    return {"fingerprint": data.fingerprint, "task_version": task.version, "family": task.cfg.name,
            **data.describe, "forget_score": task.forget_score, "utility": task.utility, "headline": task.headline,
            "higher_is_better": task.higher_is_better, "log_scale": sorted(task.log_scale),
            "utility_floor": cfg.utility_floor}
