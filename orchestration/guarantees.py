"""Rows that come with a guarantee (docs/guarantees.md), scored like every method row.

SISA (Bourtoule et al. 2021), per number of shards S in `sisa.shards`:
- The target's fine-tuning rows are split by the task's unit (`train_units`: TOFU's authors, the WMDP-style
  world's species; else each row is its own unit). A unit's shard and slice are a hash of the seed and the unit's
  label alone, so the partition of the data without some units is the partition of all of it minus those units:
  training SISA from scratch without the forget rows and unlearning them from SISA run the same units.
- The rehearsal rows the target trains on besides the task's (`model.embedded.replay`: the pretraining corpus)
  are dealt round-robin into the same shards and slices: each constituent sees 1/S of everything the target
  trains on. They are never forgotten, so their place does not depend on the forget set.
- Constituent s trains from the base slice by slice: step r fine-tunes step r-1's model on slices 1..r of its
  shard, for 2E/(R+1) epochs (E the target's), so that the R steps together cost what E epochs over the shard
  cost (Bourtoule et al., section 4.2), and all of SISA's training what the target's costs. Every step is a
  cached fine-tuning unit keyed by its starting model and its rows, and every shard and step has its own seed.
- The SISA model is the constituents' aggregate (unlearnbench/ensemble.py: the log of their mean next-token
  probabilities), evaluated by the task like any model.
- Rows: `SISA(S=s)-target`, trained on every target row (the utility price of sharding; a reference row, like the
  target), and `SISA(S=s)`, after the forget request: the SISA model of the rows without the forget rows. Its
  steps that saw no forget row are the same cached units; only the shards holding forget rows retrain, from the
  last step before their first forget row, and its cost is what those steps took.

DP (Abadi et al. 2016), per privacy budget in `dp.epsilon`: the base fine-tuned with DP-SGD on the target's rows
(methods/private.py), the target's epochs; no unlearning step, so its unlearning cost is zero and its training
cost is reported as the target's is (`training_cost`).
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import cast

from orchestration.pipeline import Pipeline, Recipe
from orchestration.units import ModelRef, Unit
from unlearnbench.cache import kept, stable_hash
from unlearnbench.cost import total
from unlearnbench.tasks import Shards


def sisa_row(shards: int) -> str:
    return f"SISA(S={shards})"


def dp_row(epsilon: float) -> str:
    return f"DP(eps={epsilon:g})"


def enabled(cfg) -> bool:
    return bool(cfg.sisa.shards or cfg.dp.epsilon)


def cell(label: str, seed: int, shards: int, slices: int) -> tuple[int, int]:
    """A unit's (shard, slice): a hash of the seed and its label only (independent of the other units)."""
    h = int(hashlib.sha256(f"sisa\0{seed}\0{label}".encode()).hexdigest()[:15], 16)
    return h % shards, (h // shards) % slices


def units(pipe: Pipeline, rows: list[dict]) -> list[str]:
    """The unit label of each of the target's fine-tuning rows (`rows`, in order)."""
    labels = (cast(Shards, pipe.task).train_units() if "train_units" in pipe.task.capabilities
              else [stable_hash("row", r) for r in rows])
    if len(labels) != len(rows):
        raise ValueError(f"task {pipe.task.label}: train_units() gave {len(labels)} labels for {len(rows)} rows")
    return labels


@dataclasses.dataclass
class Sisa:
    model: ModelRef                   # the aggregate of the last step of every shard
    steps: list[tuple[int, int, ModelRef]]   # (shard, slice, the step's model) in training order
    rows_per_shard: list[int]


def partition(labels: list[str], seed: int, shards: int, slices: int, what: str) -> list[list[tuple[int, int]]]:
    """Per shard, its rows as (row index, slice); an empty shard is an error."""
    out: list[list[tuple[int, int]]] = [[] for _ in range(shards)]
    for i, label in enumerate(labels):
        s, r = cell(label, seed, shards, slices)
        out[s].append((i, r))
    for s, mine in enumerate(out):
        if not mine:
            raise ValueError(f"sisa.shards={shards}: shard {s + 1} would hold no row of {what} with seed {seed} (the "
                             f"{len(set(labels))} units hash to the other shards); use fewer shards or more data")
    return out


def target_rows(pipe: Pipeline, key: str) -> list[dict]:
    rows = pipe.data.train.get("target")
    if not rows:
        raise ValueError(f"{key}: task {pipe.task.label} has no fine-tuning rows (its target is a given model), so "
                         f"there is no training to shard or to make private; drop {key} for this task")
    return rows


def check(pipe: Pipeline) -> None:
    """Before anything trains: the task has rows to train on, and no shard is empty, before or after the forget
    request, for any seed of the run."""
    cfg = pipe.cfg
    if cfg.dp.epsilon:
        target_rows(pipe, "dp.epsilon")
    if not cfg.sisa.shards:
        return
    rows = target_rows(pipe, "sisa.shards")
    labels = units(pipe, rows)
    remaining = [labels[i] for i in kept(rows, pipe.data.forget)]
    for seed in cfg.seed_values():
        for shards in cfg.sisa.shards:
            partition(labels, seed, shards, cfg.sisa.slices, "the target's rows")
            partition(remaining, seed, shards, cfg.sisa.slices, "the rows without the forget set")


def sisa_model(pipe: Pipeline, base: ModelRef, rows: list[dict], labels: list[str], shards: int, seed: int,
               what: str) -> Sisa:
    """SISA with `shards` shards trained on `rows` (unit labels `labels`), from `base`."""
    slices, ft = pipe.cfg.sisa.slices, pipe.task.cfg.finetune
    step_ft = dataclasses.replace(ft, epochs=2 * ft.epochs / (slices + 1))
    replay = pipe.replay_rows()
    steps, members, sizes = [], [], []
    for s, cells in enumerate(partition(labels, seed, shards, slices, what)):
        sizes.append(len(cells))
        mine = [(rows[i], r) for i, r in cells] + [(row, j // shards % slices) for j, row in enumerate(replay)
                                                    if j % shards == s]
        model = base
        for r in range(slices):
            step_rows = [row for row, c in mine if c <= r]
            step_seed = int(hashlib.sha256(f"sisa-step\0{seed}\0{s}\0{r}".encode()).hexdigest()[:7], 16)
            model = pipe.finetuned(model, f"SISA shard {s + 1}/{shards} slice {r + 1}/{slices}", seed=step_seed,
                                   recipe=Recipe(rows=step_rows, lora_lr=pipe.cfg.sisa.lora_lr, ft=step_ft,
                                                 replay=False))
            steps.append((s, r, model))
        members.append(model)
    key = stable_hash("sisa", [m.key for m in members])
    return Sisa(ModelRef(members[0].path, key, members=tuple(m.path for m in members)), steps, sizes)


def sisa_units(pipe: Pipeline, base: ModelRef, shards: int, seed: int) -> dict[str, Unit]:
    """{SISA(S)-target: unit, SISA(S): unit} for one seed."""
    rows = target_rows(pipe, "sisa.shards")
    labels = units(pipe, rows)
    keep = kept(rows, pipe.data.forget)
    before = sisa_model(pipe, base, rows, labels, shards, seed, "the target's rows")
    after = sisa_model(pipe, base, [rows[i] for i in keep], [labels[i] for i in keep], shards, seed,
                       "the rows without the forget set")
    trained = {m.key for _, _, m in before.steps}
    redone = [(s, r, m) for s, r, m in after.steps if m.key not in trained]
    name = sisa_row(shards)
    training = total([m.cost for _, _, m in before.steps], pipe.acc.device.type)
    facts = {"shards": shards, "slices": pipe.cfg.sisa.slices, "slice_steps": len(before.steps),
             "rows_per_shard": before.rows_per_shard, "forget_rows": len(rows) - len(keep)}
    return {
        f"{name}-target": pipe.evaluated(before.model, f"{name}-target", cost=training, reference=True,
                                         guarantee=facts),
        name: pipe.evaluated(after.model, name, cost=total([m.cost for _, _, m in redone], pipe.acc.device.type),
                             training_cost=training,
                             guarantee={**facts, "retrained_steps": len(redone),
                                        "affected_shards": sorted({s + 1 for s, _, _ in redone}),
                                        "rows_per_shard": after.rows_per_shard})}


def dp_units(pipe: Pipeline, base: ModelRef, epsilon: float, seed: int) -> dict[str, Unit]:
    """{DP(eps): unit} for one seed."""
    rows, dp = target_rows(pipe, "dp.epsilon"), pipe.cfg.dp
    ref = pipe.finetuned(base, f"DP (epsilon {epsilon:g})", seed=seed,
                         recipe=Recipe(rows=rows, lora_lr=dp.lora_lr, private=(dp, epsilon)))
    log = ref.training()["train_log"]
    training = {k: v for k, v in ref.training().items() if k != "train_log"}
    guarantee = {k: log[k] for k in ("epsilon", "epsilon_spent", "delta", "noise_multiplier", "sample_rate", "steps",
                                     "clip", "expected_batch", "mean_batch")}
    return {dp_row(epsilon): pipe.evaluated(ref, dp_row(epsilon), cost=total([], pipe.acc.device.type),
                                            training_cost=training, guarantee=guarantee)}


def guarantee_units(pipe: Pipeline, base: ModelRef, seed: int) -> dict[str, Unit]:
    """Every SISA and DP row of the experiment for one seed, in config order."""
    out = {}
    for shards in pipe.cfg.sisa.shards:
        out.update(sisa_units(pipe, base, shards, seed))
    for epsilon in pipe.cfg.dp.epsilon:
        out.update(dp_units(pipe, base, epsilon, seed))
    return out
