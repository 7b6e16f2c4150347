"""The one training loop, for fine-tuning and for every unlearning method: accelerate handles devices/processes.

Each call seeds itself from its own seed, so a unit gives the same weights whether or not earlier units ran in
this process (what makes a resumed run equal an uninterrupted one).
"""
from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

from tqdm.auto import tqdm

from methods.common import Reference, nll
from unlearnbench.cache import stable_hash
from unlearnbench.config import TrainConfig
from unlearnbench.heavy import accelerate_utils, peft, torch, transformers
from unlearnbench.models import collate


class DivergenceError(RuntimeError):
    """The loss became NaN or infinite."""


def _batches(roles: dict[str, list[dict]], lead: str, batch_size: int, total: int, seed: int):
    """The run's micro-batches, `total` of them, as (lead-row indices, {role: rows}): the `lead` role in shuffled order,
    each paired with a random batch of every other role (TOFU's forget/retain pairing); rows of role `<lead>_*`
    (e.g. forget_idk) follow the lead's indices. The sequence does not depend on the number of processes."""
    rows = roles[lead]
    n = len(rows)
    if n == 0:
        raise ValueError(f"the {lead} set is empty: nothing to train on")
    rng = random.Random(seed)
    yielded = epoch = 0
    while yielded < total:
        order = list(range(n))
        random.Random(seed * 1000 + epoch).shuffle(order)
        for start in range(0, n, batch_size):
            if yielded == total:
                return
            idx = order[start:start + batch_size]
            batch = {}
            for role, role_rows in roles.items():
                if role == lead or role.startswith(f"{lead}_"):
                    picked = [role_rows[i] for i in idx]
                else:
                    picked = [role_rows[rng.randrange(len(role_rows))] for _ in idx]
                batch[role] = picked
            yield idx, batch
            yielded += 1
        epoch += 1


def with_adapter(model, lora, targets: list[str]):
    """`model` with a LoRA adapter (settings `lora`: unlearnbench.config.LoraSettings) on the modules `targets`."""
    return peft.get_peft_model(model, peft.LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                            target_modules=targets))


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
        model = with_adapter(model, lora, targets)
        return model, (Reference(None, adapter_of=model) if spec.needs_ref else None)
    for name, param in model.named_parameters():
        param.requires_grad_(pick(name))
    if not spec.needs_ref:
        return model, None
    frozen = copy.deepcopy(model).requires_grad_(False).eval()
    if watch is not None:
        watch(frozen)
    return model, Reference(frozen)


def total_micro_batches(n: int, cfg: TrainConfig) -> int:
    """Micro-batches of a run: `steps` updates of grad_accum each, or else `epochs` passes over n rows, rounded up
    to whole updates."""
    if cfg.steps:
        return cfg.steps * cfg.grad_accum
    micro = max(1, math.ceil(cfg.epochs * math.ceil(n / cfg.batch_size)))
    return math.ceil(micro / cfg.grad_accum) * cfg.grad_accum


@dataclass(frozen=True)
class Run:
    """What decides a training run's numbers: its schedule, learning rate and seed, which role leads its micro-batches,
    and where it stops (`stop_after` > 0: after that many updates of the schedule, whose learning-rate decay still
    spans the whole run, so the first k updates are the same whether the run stops there or not). `checkpointing`
    recomputes activations in the backward pass (gradient checkpointing): the same numbers, less memory."""
    cfg: TrainConfig
    lr: float
    seed: int
    lead: str = "main"
    stop_after: int = 0
    checkpointing: bool = False


@dataclass
class Hooks:
    """What watches a training run without changing its numbers. `desc` names it in progress bars and errors; every
    `every` updates before the last, `on_point(updates, model)` sees the model in eval mode (the unlearning curve; it
    must leave the weights and the random state as they are), then training resumes; `track`: each update's loss
    (and the loss's logs) go to the accelerator's trackers under that name, if it has any; `consumed`: a set that
    receives the token ids of every row this process trained on (every role's), whose count and digest the log
    records too."""
    desc: str = "train"
    every: int = 0
    on_point: Callable | None = None
    track: str = ""
    consumed: set | None = None


def train(model, roles: dict[str, list[dict]], loss_fn, run: Run, accelerator, pad_id: int,
          hooks: Hooks | None = None) -> dict:
    """Optimise `loss_fn(model, batch) -> (loss, logs)` over micro-batches led by `roles[run.lead]`, as `run` says,
    watched by `hooks`.

    Only parameters with requires_grad are optimised. Raises DivergenceError on a NaN/inf loss.

    Process-count invariance: an update is `grad_accum` micro-batches of `batch_size` rows, taken in one sequence
    whatever the number of processes; with N processes, process r runs micro-batches r, r + N, ... of each update
    and the gradients are averaged across processes. Every loss is a mean over its own micro-batch, so an update's
    gradient is the mean of the same grad_accum micro-batch gradients with 1 process or N (grad_accum must be a
    multiple of N); only the floating-point order of the sums differs."""
    hooks = hooks or Hooks()
    cfg, lr, seed, desc = run.cfg, run.lr, run.seed, hooks.desc
    world, rank = accelerator.num_processes, accelerator.process_index
    if cfg.grad_accum % world:
        raise ValueError(f"{desc}: grad_accum={cfg.grad_accum} is not a multiple of the {world} processes; an update "
                         f"is grad_accum micro-batches shared among the processes, so set grad_accum to {world} "
                         f"(or a multiple) in `finetune`/`unlearn` for numbers that do not depend on the process count")
    if cfg.grad_accum != world and str(accelerator.distributed_type).endswith("DEEPSPEED"):
        raise ValueError(f"{desc}: under DeepSpeed set grad_accum to the number of processes ({world}): DeepSpeed "
                         f"steps the optimizer at every backward, so no micro-batches may accumulate in a process")
    accelerate_utils.set_seed(seed)
    if run.checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{desc}: no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    micro = total_micro_batches(len(roles[run.lead]), cfg)
    updates, local_accum = micro // cfg.grad_accum, cfg.grad_accum // world
    stop_after = run.stop_after
    if not 0 <= stop_after <= updates:
        raise ValueError(f"{desc}: stop_after={stop_after} updates, but the schedule has {updates}; choose 0 (its "
                         f"end) to {updates}")
    taken = (stop_after or updates) * cfg.grad_accum          # the micro-batches this run takes of the schedule's
    scheduler = transformers.get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * updates), updates)
    # the scheduler stays outside accelerate, which would step it once per process at every update
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    wrapped.train()
    history: list[dict] = []
    seen: list[tuple[int, list[int]]] = []
    fed: set[tuple] = set()
    bar = tqdm(total=taken // world, desc=desc, leave=False, disable=not accelerator.is_main_process)
    try:
        for step, (idx, rows) in enumerate(_batches(roles, run.lead, cfg.batch_size, taken, seed)):
            if step % world != rank:        # another process's micro-batch (drawn anyway: one sequence for all)
                continue
            seen.append((step, idx))
            fed.update(tuple(v) for r in rows.values() for row in r for k, v in row.items() if k.endswith("input_ids"))
            batch = {role: {k: v.to(accelerator.device) for k, v in collate(r, pad_id).items()}
                     for role, r in rows.items()}
            sync = step % cfg.grad_accum >= cfg.grad_accum - world         # this process's last of the update
            with (nullcontext() if sync else accelerator.no_sync(wrapped)), accelerator.autocast():
                loss, logs = loss_fn(wrapped, batch)
                if not torch.isfinite(loss):
                    raise DivergenceError(f"{desc}: the loss became {loss.item()} at step {step + 1} of {micro}; "
                                          f"lower the learning rate (now {lr:g}) or the number of epochs")
                accelerator.backward(loss / local_accum)
            if sync:
                if cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            history.append({"loss": loss.item(), **logs})
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            done = step // cfg.grad_accum + 1          # updates finished once this one steps (at `sync`)
            if sync and hooks.track and accelerator.trackers:
                accelerator.log({f"{hooks.track}/{k}": float(v) for k, v in history[-1].items()}, step=done)
            if (sync and hooks.every and hooks.on_point is not None and done % hooks.every == 0
                    and done * cfg.grad_accum < taken):
                wrapped.eval()
                hooks.on_point(done, accelerator.unwrap_model(wrapped))
                wrapped.train()
    finally:
        bar.close()
        model = accelerator.unwrap_model(wrapped)
        accelerator.free_memory()
        if run.checkpointing:
            model.gradient_checkpointing_disable()
    model.eval()
    order = sorted(p for part in (accelerate_utils.gather_object([seen]) if world > 1 else [seen]) for p in part)
    if hooks.consumed is not None:
        hooks.consumed |= fed
    return {"micro_batches": micro, "updates": updates, **({"stopped_after": stop_after} if stop_after else {}),
            "final_loss": history[-1]["loss"],
            "first_loss": history[0]["loss"], "processes": world,
            "examples": stable_hash([i for _, i in order]),
            "consumed": {"texts": len(fed), "digest": stable_hash(sorted(fed))}}


def finetune(model, rows: list[dict], cfg: TrainConfig, seed: int, accelerator, pad_id: int, desc: str,
             checkpointing: bool = False) -> dict:
    """Supervised fine-tuning (next-token NLL on the label tokens)."""
    return train(model, {"main": rows}, lambda m, b: (nll(m, b["main"]), {}), Run(cfg, cfg.lr, seed,
                 checkpointing=checkpointing), accelerator, pad_id, Hooks(desc))
