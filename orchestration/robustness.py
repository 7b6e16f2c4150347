"""Recovery attacks on every evaluated row of a task (README, "Does it come back?"): relearning (fine-tuning on a
part of the forget set, or on as many unrelated retain rows, with the same budget for every row) and weight
quantization on load (bitsandbytes). Each attacked model's evaluation is a cached unit keyed by the row's model,
the attack and its settings, so a run killed mid-way resumes with the same numbers; the numbers are
evals/robustness.py's.

A LoRA row is attacked as deployed: its adapter merged into the target's weights. The relearning run is the one
training loop (methods/trainer.py's finetune), from the experiment's seed.
"""
from __future__ import annotations

import dataclasses
import random
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path

from evals.robustness import attack_metrics
from methods.trainer import finetune
from pipeline import ModelRef, Pipeline, encode_row
from unlearnbench.cache import read_json, stable_hash, write_json
from unlearnbench.config import TrainConfig
from unlearnbench.models import load_model, save_model


def enabled(cfg) -> bool:
    return bool(cfg.robustness.relearn_steps or cfg.robustness.quant_bits)


def row_ref(folder: str, target: ModelRef, lora: bool) -> ModelRef:
    """A method row's model kept in the cache (Pipeline.unlearned(keep_model=True)): full weights, or a LoRA
    adapter on the target."""
    key = stable_hash("row model", Path(folder).name)
    return ModelRef(target.path, key, target.gguf_file, adapter=folder) if lora else ModelRef(folder, key)


def relearn_rows(pipe: Pipeline) -> tuple[list[dict], list[int] | None]:
    """(rows the relearning attack trains on, the forget items it scores): the task's split of the forget set, or
    with relearn_data=unrelated as many retain rows drawn by the seed (Łucki et al.), scored on the same items."""
    rows, items = pipe.task.relearn_split(pipe.cfg.seed)
    if pipe.cfg.robustness.relearn_data == "unrelated":
        rows = random.Random(pipe.cfg.seed).sample(pipe.data.retain, min(len(rows), len(pipe.data.retain)))
    return rows, items


def attacked(pipe: Pipeline, ref: ModelRef, name: str, attack: str, rows: list[dict] | None = None) -> dict:
    """A model under one attack ("relearn", or "quant<bits>"), evaluated with the task's statistics, cached:
    {"stats", "eval_cost", "cost"} (cost: what the attack itself took)."""
    r = pipe.cfg.robustness
    schedule = TrainConfig(lr=r.relearn_lr, batch_size=r.relearn_batch_size, steps=r.relearn_steps,
                           max_length=pipe.task.cfg.finetune.max_length)
    settings = [dataclasses.asdict(schedule), rows] if attack == "relearn" else []
    key = stable_hash("attack", attack, ref.key, ref.adapter, *settings, *pipe.eval_key(ref.key))

    def build(tmp):
        with pipe.meter() as meter:
            if attack == "relearn":
                # every weight trains (a merged adapter's base weights come back frozen)
                model, tokenizer = _merged(pipe.load(ref)).requires_grad_(True), pipe.tokenizer(ref)
                meter.watch(model)
                fmt = pipe.fmt(tokenizer, schedule.max_length)
                finetune(model, [encode_row(fmt, row) for row in rows], schedule, pipe.cfg.seed, pipe.acc,
                         tokenizer.pad_token_id, desc=f"relearn {name}",
                         checkpointing=pipe.cfg.gradient_checkpointing)
            else:       # quantized on load, from full weights on disk (a LoRA row's merged into them first)
                path, tokenizer = ref.path, pipe.tokenizer(ref)
                if ref.adapter:     # each process writes its own copy, in its own scratch folder
                    path = tmp / "merged"
                    save_model(_merged(pipe.load(ref)), tokenizer, path, alone=True)
                with _quiet():
                    bits = int(attack[5:])
                    model = load_model(str(path), pipe.cfg.model, ref.gguf_file, bits=bits, device=str(pipe.acc.device))
                    model = model.to(pipe.acc.device) if bits == 16 else model
                shutil.rmtree(tmp / "merged", ignore_errors=True)
        try:
            with _quiet():
                stats, eval_cost = pipe.evaluate(model.eval(), tokenizer, f"{name} ({attack})")
        except RuntimeError as err:
            if attack == "relearn":
                raise
            raise ValueError(f"{name}: bitsandbytes could not run the model at {attack[5:]} bits ({err}); NF4 "
                             f"quantizes blocks of 64 weights, so a model this small may not fit it. Drop the "
                             f"width from robustness.quant_bits (finished units stay cached)") from err
        write_json(tmp / "unit.json", {"stats": stats, "eval_cost": eval_cost, "cost": meter.record()})
    return read_json(pipe.unit("attack", key, build) / "unit.json")


def _merged(model):
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


@contextmanager
def _quiet():
    """bitsandbytes' LLM.int8 warns at every layer that it casts float32 inputs to float16 (its design)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*cast from torch.float32 to float16.*")
        yield


def attack_all(pipe: Pipeline, refs: dict[str, ModelRef], before: dict[str, dict]) -> tuple[dict, dict]:
    """Every configured attack on every row of `refs` (the target, and the retain model where there is one).
    before: {row: the row's own per-item statistics}. Returns ({row: attack metrics}, {row: {attack: its cost and
    its evaluation's cost}})."""
    r, metrics, costs = pipe.cfg.robustness, {row: {} for row in refs}, {row: {} for row in refs}
    attacks = (["relearn"] if r.relearn_steps else []) + [f"quant{b}" for b in r.quant_bits]
    rows, items = relearn_rows(pipe)
    # what each row holds without any attack, on the same scale: the baseline an attack's recovery is read against
    for row, values in attack_metrics(pipe.task, "unattacked", before, before, None, relearned=False).items():
        if "unattacked_recovery" in values:
            metrics[row]["unattacked_recovery"] = values["unattacked_recovery"]
    for attack in attacks:
        units = {row: attacked(pipe, ref, row, attack, rows if attack == "relearn" else None)
                 for row, ref in refs.items()}
        scored = items if attack == "relearn" else None      # quantization trains on nothing: every item counts
        for row, values in attack_metrics(pipe.task, attack, {k: u["stats"] for k, u in units.items()}, before,
                                          scored, relearned=attack == "relearn").items():
            metrics[row].update(values)
            costs[row][attack] = {"attack": units[row]["cost"], "eval": units[row]["eval_cost"]}
    return metrics, costs
