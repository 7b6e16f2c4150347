"""The relearning attack (Deeb & Roger 2024; Hu et al. 2024; Łucki et al. 2024): fine-tune the row's model on a
part of the forget set (the task's relearn_split), or with `robustness.relearn_data=unrelated` on as many retain
rows, for exactly `robustness.relearn_steps` updates, the same budget for every row, then score the forget items
it never trained on. A LoRA row is attacked as deployed, its adapter merged; every weight trains. The run is the
suite's one training loop (methods/trainer.py's finetune), from the experiment's seed.
"""
from __future__ import annotations

import dataclasses

from methods.trainer import finetune
from orchestration.attacks import attack, merged, relearn_rows
from orchestration.pipeline import encode_row
from unlearnbench.config import TrainConfig


def schedule(pipe) -> TrainConfig:
    r = pipe.cfg.robustness
    return TrainConfig(lr=r.relearn_lr, batch_size=r.relearn_batch_size, steps=r.relearn_steps,
                       max_length=pipe.task.cfg.finetune.max_length)


def key(pipe, variant: str) -> list:
    return [dataclasses.asdict(schedule(pipe)), relearn_rows(pipe)[0]]


@attack("relearn", variants=lambda r: ["relearn"] if r.relearn_steps else [], key=key, trains_on_forget=True)
def relearn(pipe, ref, row: str, variant: str, settings, tmp, meter):
    plan = schedule(pipe)
    # every weight trains (a merged adapter's base weights come back frozen)
    model, tokenizer = merged(pipe.units.load(ref)).requires_grad_(True), pipe.units.tokenizer(ref)
    meter.watch(model)
    fmt = pipe.units.fmt(tokenizer, plan.max_length)
    finetune(model, [encode_row(fmt, r) for r in relearn_rows(pipe)[0]], plan, pipe.cfg.seed, pipe.acc,
             tokenizer.pad_token_id, desc=f"relearn {row}", checkpointing=pipe.cfg.gradient_checkpointing)
    return model, tokenizer
