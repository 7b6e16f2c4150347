"""Representation Misdirection for Unlearning (Li et al. 2024, "The WMDP Benchmark", sec. 5, Eq. 1-2): push
layer-l activations on forget text towards a fixed random direction, keep them on retain text; only a few
layers' MLP down-projections are updated."""
from __future__ import annotations

from dataclasses import dataclass, field

from methods import method
from methods.common import hidden_states
from unlearnbench.heavy import torch


@dataclass
class RMUConfig:
    lr: float = 5e-5                   # paper (Zephyr-7B)
    layer: int = 7                     # paper: activations of decoder layer 7 ...
    update_layers: list[int] = field(default_factory=lambda: [5, 6, 7])   # ... updating layers 5-7
    steering_coeff: float = 6.5        # c, paper (Zephyr-7B); scale with the activation norm of smaller models
    alpha: float = 1200.0              # retain weight, paper
    seed: int = 0                      # draws the random unit vector u


def masked_mse(a, b, mask):
    per_token = ((a.float() - b.float()) ** 2).mean(-1)
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


def control_vector(hidden_size: int, seed: int, coeff: float, device) -> torch.Tensor:
    """c u, u a uniform random vector normalised to unit length (fixed for the whole run)."""
    u = torch.rand(hidden_size, generator=torch.Generator().manual_seed(seed))
    return (coeff * u / u.norm()).to(device)


def rmu_trainable(name: str, cfg: RMUConfig) -> bool:
    return any(f"layers.{i}.mlp.down_proj" in name for i in cfg.update_layers)


@method("RMU", RMUConfig, needs_ref=True, trainable=rmu_trainable)
def rmu(model, batch, ref, cfg: RMUConfig):
    forget, retain = batch["forget"], batch["retain"]
    # hidden_states[0] is the embedding output, so decoder layer l's output is index l + 1
    h_forget = hidden_states(model, forget, cfg.layer + 1)
    target = control_vector(h_forget.shape[-1], cfg.seed, cfg.steering_coeff, h_forget.device).expand_as(h_forget)
    forget_loss = masked_mse(h_forget, target, forget["attention_mask"])
    h_retain = hidden_states(model, retain, cfg.layer + 1)
    retain_loss = masked_mse(h_retain, ref.hidden_states(retain, cfg.layer + 1), retain["attention_mask"])
    return forget_loss + cfg.alpha * retain_loss, {"rmu_forget": forget_loss.item(), "rmu_retain": retain_loss.item()}
