"""A row of a task's table as a value, and the one record builder that the benchmark (benchmark.py) and the
requests protocol (requests.py) share.

A row's identity is (name, through a LoRA adapter or not): `RowId("GradDiff", lora=True)` renders as
`GradDiff+lora` in results and tables, and is never parsed back. A `Row` holds what its source built: the unit of
the record's own seed, the units of its other seeds, the model an attack reads, and the columns that column
sources (privacy populations, recovery attacks) add to it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from orchestration.units import ModelRef
from unlearnbench.config import ExperimentConfig
from unlearnbench.cost import COST_FIELDS
from unlearnbench.tasks import TaskData


@dataclass(frozen=True)
class RowId:
    name: str                  # a method, a reference (base, target, retain), a guarantee row or a checkpoint's name
    lora: bool = False         # the method ran through a LoRA adapter

    def __str__(self) -> str:
        return self.name + ("+lora" if self.lora else "")


@dataclass
class Row:
    id: RowId
    kind: str                  # reference | method | guarantee | checkpoint
    unit: dict                 # the record's own seed's: {"status", "stats", "cost", "eval_cost", ...}
    repeats: list = field(default_factory=list)     # [(seed, unit)] of its other seeds
    model: ModelRef | None = None                   # what a recovery attack reads (None: not attacked)
    same_as: RowId | None = None                    # a row that is another row's model (Retrain: the retain model)
    columns: dict = field(default_factory=dict)     # metrics added by column sources (the record's own seed)
    seed_models: dict = field(default_factory=dict)  # seed -> the model of a further seed, where one is kept
    seed_columns: dict = field(default_factory=dict)  # seed -> the columns of a further seed's model
    attack_cost: dict | None = None


def cost_fields(unit: dict, retrain_wall: float | None) -> dict:
    """A unit's cost with every field present (null where unknown: a given checkpoint's training) and
    `relative_cost`, its wall time over retraining's in the same run."""
    cost = {**dict.fromkeys(COST_FIELDS), **(unit.get("cost") or {})}
    cost.pop("train_log", None)
    wall = cost["wall_seconds"]
    cost["relative_cost"] = wall / retrain_wall if retrain_wall and wall is not None else None
    return cost


def record(task_label: str, row: RowId | str, unit: dict, retrain_wall: float | None, **fields) -> dict:
    """A results.json record: task, row, the caller's fields, status, metrics (empty until scored), cost and
    evaluation cost, and the error of a row that failed."""
    out = {"task": task_label, "model": str(row), **fields, "status": unit["status"], "metrics": {},
           "cost": cost_fields(unit, retrain_wall), "eval_cost": unit.get("eval_cost")}
    if unit["status"] != "ok":
        out["error"] = unit.get("error", "")
    return out


def describe(task, data: TaskData, cfg: ExperimentConfig) -> dict:
    """A task's section of results.json (`datasets`): its data, and which metrics it reports and how to read them."""
    return {"fingerprint": data.fingerprint, "task_version": task.version, "family": task.cfg.name,
            **data.describe, "forget_score": task.forget_score, "utility": task.utility, "headline": task.headline,
            "higher_is_better": task.higher_is_better, "log_scale": sorted(task.log_scale),
            "utility_floor": cfg.utility_floor}
