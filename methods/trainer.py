"""The one training loop, for fine-tuning and for every unlearning method: accelerate handles devices/processes.

Each call seeds itself from its own seed, so a unit gives the same weights whether or not earlier units ran in
this process (what makes a resumed run equal an uninterrupted one).
"""
from __future__ import annotations

import math
import random
from contextlib import nullcontext

import copy

import torch
from accelerate.utils import set_seed
from peft import LoraConfig, get_peft_model
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from methods.common import Reference, nll
from unlearnbench.config import TrainConfig
from unlearnbench.models import collate


class DivergenceError(RuntimeError):
    """The loss became NaN or infinite."""


def _batches(roles: dict[str, list[dict]], lead: str, batch_size: int, epochs: float, seed: int,
             rank: int, world: int, pad_id: int):
    """Micro-batches: the `lead` role in shuffled order, each paired with a random batch of every other role
    (TOFU's forget/retain pairing); rows of role `<lead>_*` (e.g. forget_idk) follow the lead's indices."""
    rows = roles[lead]
    n = len(rows)
    if n == 0:
        raise ValueError(f"the {lead} set is empty: nothing to train on")
    per_epoch = math.ceil(n / (batch_size * world))
    total = max(1, math.ceil(epochs * per_epoch))
    rng = random.Random(seed)
    yielded = epoch = 0
    while yielded < total:
        order = list(range(n))
        random.Random(seed * 1000 + epoch).shuffle(order)
        order = order[rank::world]
        for start in range(0, len(order), batch_size):
            if yielded == total:
                return
            idx = order[start:start + batch_size]
            batch = {}
            for role, role_rows in roles.items():
                if role == lead or role.startswith(f"{lead}_"):
                    picked = [role_rows[i] for i in idx]
                else:
                    picked = [role_rows[rng.randrange(len(role_rows))] for _ in idx]
                batch[role] = collate(picked, pad_id)
            yield batch
            yielded += 1
        epoch += 1


def prepare(model, spec, hp, lora=None, watch=None):
    """The model to optimise and its reference pi_ref for method `spec`.

    With LoRA settings `lora`, the adapter goes on the modules the method may train, and the reference is the
    same network with the adapter disabled (no second copy in memory). Otherwise the method's trainable
    parameters are unfrozen, and a frozen copy is the reference if the loss needs one (`watch` sees it)."""
    pick = (lambda name: spec.trainable(name, hp)) if spec.trainable else (lambda name: True)
    if lora is not None:
        targets = [name for name, _ in model.named_modules()
                   if name.rsplit(".", 1)[-1] in lora.target_modules and pick(name)]
        if not targets:
            raise ValueError(f"lora_cfg.target_modules {lora.target_modules} match no module of the model that "
                             f"{spec.name} may train")
        model = get_peft_model(model, LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                                 target_modules=targets))
        return model, (Reference(None, adapter_of=model) if spec.needs_ref else None)
    for name, param in model.named_parameters():
        param.requires_grad_(pick(name))
    if not spec.needs_ref:
        return model, None
    frozen = copy.deepcopy(model).requires_grad_(False).eval()
    if watch is not None:
        watch(frozen)
    return model, Reference(frozen)


def total_micro_batches(n: int, cfg: TrainConfig, world: int = 1) -> int:
    return max(1, math.ceil(cfg.epochs * math.ceil(n / (cfg.batch_size * world))))


def train(model, roles: dict[str, list[dict]], loss_fn, cfg: TrainConfig, lr: float, seed: int, accelerator,
          pad_id: int, lead: str = "main", desc: str = "train") -> dict:
    """Optimise `loss_fn(model, batch) -> (loss, logs)` over micro-batches led by `roles[lead]`.

    Only parameters with requires_grad are optimised. Raises DivergenceError on a NaN/inf loss."""
    set_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{desc}: no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    world, rank = accelerator.num_processes, accelerator.process_index
    micro = total_micro_batches(len(roles[lead]), cfg, world)
    updates = math.ceil(micro / cfg.grad_accum)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * updates), updates)
    wrapped, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    wrapped.train()
    history = []
    bar = tqdm(total=micro, desc=desc, leave=False, disable=not accelerator.is_main_process)
    try:
        for step, batch in enumerate(_batches(roles, lead, cfg.batch_size, cfg.epochs, seed, rank, world, pad_id)):
            batch = {role: {k: v.to(accelerator.device) for k, v in b.items()} for role, b in batch.items()}
            sync = (step + 1) % cfg.grad_accum == 0 or step + 1 == micro
            with (nullcontext() if sync else accelerator.no_sync(wrapped)), accelerator.autocast():
                loss, logs = loss_fn(wrapped, batch)
                if not torch.isfinite(loss):
                    raise DivergenceError(f"{desc}: the loss became {loss.item()} at step {step + 1} of {micro}; "
                                          f"lower the learning rate (now {lr:g}) or the number of epochs")
                accelerator.backward(loss / cfg.grad_accum)
            if sync:
                if cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            history.append({"loss": loss.item(), **logs})
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    finally:
        bar.close()
        model = accelerator.unwrap_model(wrapped)
        accelerator.free_memory()
    model.eval()
    return {"micro_batches": micro, "updates": updates, "final_loss": history[-1]["loss"],
            "first_loss": history[0]["loss"]}


def finetune(model, rows: list[dict], cfg: TrainConfig, seed: int, accelerator, pad_id: int, desc: str) -> dict:
    """Supervised fine-tuning (next-token NLL on the label tokens)."""
    return train(model, {"main": rows}, lambda m, b: (nll(m, b["main"]), {}), cfg, cfg.lr, seed, accelerator,
                 pad_id, desc=desc)
