"""Fine-tuning with differential privacy: DP-SGD (Abadi et al. 2016) through opacus, for the DP row
(orchestration/guarantees.py).

Each step draws every row independently with probability q = batch_size / n (Poisson sampling, what the
accountant's bound assumes), computes each row's own gradient (opacus's per-sample gradients; layers opacus has
no rule for, such as Llama's RMSNorm, through its functorch fallback), clips each to norm `clip`, sums them, adds
Gaussian noise of standard deviation noise_multiplier x clip and divides by the expected batch size. An empty draw
is a step of noise alone. The noise multiplier is the smallest that keeps the whole run within (epsilon, delta)
by opacus's RDP accountant, and the accountant's epsilon after the last step is reported. AdamW and the linear
schedule act on the privatized gradient only (post-processing: no further privacy cost).

One process trains the whole model (opacus's per-sample hooks and accelerate's gradient all-reduce do not mix);
under several processes each trains the same model from the same seed and the main one's is kept.
"""
from __future__ import annotations

import math
import warnings

from tqdm.auto import tqdm

from unlearnbench.config import TrainConfig
from unlearnbench.heavy import F, accelerate_utils, opacus, torch, transformers
from unlearnbench.models import collate
from unlearnbench.settings import DPSettings


def plan(n: int, epochs: float, dp: DPSettings, epsilon: float) -> dict:
    """The run's privacy parameters for n rows: sample rate, steps (epochs / sample rate, the target's epochs in
    expectation), delta (dp.delta, else 1 / n) and the accountant's noise multiplier for `epsilon`."""
    if n < 1:
        raise ValueError("DP fine-tuning: no rows to train on")
    rate = min(1.0, dp.batch_size / n)
    steps = max(1, math.ceil(epochs / rate))
    delta = dp.delta or 1.0 / n
    with warnings.catch_warnings():     # the search tries noise levels far from the answer, whose bounds warn
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        noise = opacus.accountants.utils.get_noise_multiplier(target_epsilon=epsilon, target_delta=delta,
                                                              sample_rate=rate, steps=steps, accountant="rdp")
    return {"sample_rate": rate, "steps": steps, "delta": delta, "noise_multiplier": noise, "epsilon": epsilon}


def privatize(model: torch.nn.Module, optimizer: torch.optim.Optimizer, noise_multiplier: float, clip: float,
              expected_batch: int) -> tuple[opacus.GradSampleModule, opacus.optimizers.DPOptimizer]:
    """`model` with per-sample gradient hooks, and `optimizer` stepping on clipped, noised, averaged gradients
    (losses are means over the batch's rows)."""
    wrapped = opacus.GradSampleModule(model, loss_reduction="mean")
    return wrapped, opacus.optimizers.DPOptimizer(optimizer, noise_multiplier=noise_multiplier, max_grad_norm=clip,
                                expected_batch_size=expected_batch, loss_reduction="mean")


def row_nll(model, batch: dict) -> torch.Tensor:
    """Each row's mean NLL over its own label tokens (a per-row loss, so that each row's gradient is its own)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    kept = labels != -100
    tokens = F.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none") * kept
    return tokens.sum(1) / kept.sum(1).clamp(min=1)


def dp_finetune(model, rows: list[dict], cfg: TrainConfig, dp: DPSettings, epsilon: float, seed: int, device,
                pad_id: int, desc: str) -> dict:
    """Fine-tune `model` (its trainable parameters) on encoded `rows` with DP-SGD at budget `epsilon`; returns the
    training log with the privacy parameters and the epsilon spent."""
    p = plan(len(rows), cfg.epochs, dp, epsilon)
    accelerate_utils.set_seed(seed)
    params = [q for q in model.parameters() if q.requires_grad]
    if not params:
        raise ValueError(f"{desc}: no trainable parameters")
    lr = dp.lr or cfg.lr
    wrapped, optimizer = privatize(model, torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay),
                                   p["noise_multiplier"], dp.clip, dp.batch_size)
    accountant = opacus.accountants.RDPAccountant()        # counts the steps actually taken
    optimizer.attach_step_hook(accountant.get_optimizer_hook_fn(sample_rate=p["sample_rate"]))
    scheduler = transformers.get_linear_schedule_with_warmup(optimizer.original_optimizer,
                                                             int(cfg.warmup_ratio * p["steps"]), p["steps"])
    draws = torch.Generator().manual_seed(seed)
    wrapped.train()
    sizes, losses = [], []
    with warnings.catch_warnings():     # torch's note that no input requires a gradient: only weights do here
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for _ in tqdm(range(p["steps"]), desc=desc, leave=False):
            picked = (torch.rand(len(rows), generator=draws) < p["sample_rate"]).nonzero().flatten().tolist()
            sizes.append(len(picked))
            if picked:
                batch = {k: v.to(device) for k, v in collate([rows[i] for i in picked], pad_id).items()}
                loss = row_nll(wrapped, batch).mean()
                if not torch.isfinite(loss):
                    raise ValueError(f"{desc}: the loss became {loss.item()}; lower dp.lr (now {lr:g})")
                loss.backward()
                losses.append(loss.item())
            else:           # nothing drawn: the step adds noise alone, as the accountant counts it
                for q in params:
                    q.grad_sample = torch.zeros((1, *q.shape), dtype=q.dtype, device=q.device)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
    wrapped.remove_hooks()
    for q in params:                    # opacus's own attributes go (frozen weights never had them)
        for attr in ("grad_sample", "_forward_counter"):
            if hasattr(q, attr):
                delattr(q, attr)
    model.eval()
    return {**p, "epsilon_spent": accountant.get_epsilon(p["delta"]), "clip": dp.clip, "expected_batch": dp.batch_size,
            "lr": lr, "updates": p["steps"], "mean_batch": sum(sizes) / len(sizes), "empty_batches": sizes.count(0),
            "first_loss": losses[0] if losses else None, "final_loss": losses[-1] if losses else None}
