"""Gradient difference: ascend on forget, descend on retain (TOFU, Maini et al. 2024; Liu et al. 2022)."""
from dataclasses import dataclass

from methods import method
from methods.common import nll


@dataclass
class GradDiffConfig:
    lr: float = 1e-5        # TOFU
    gamma: float = 1.0      # forget weight
    alpha: float = 1.0      # retain weight


@method("GradDiff", GradDiffConfig)
def grad_diff(model, batch, ref, cfg: GradDiffConfig):
    """L = -gamma NLL(forget) + alpha NLL(retain)."""
    forget, retain = nll(model, batch["forget"]), nll(model, batch["retain"])
    return -cfg.gamma * forget + cfg.alpha * retain, {"forget_nll": forget.item(), "retain_nll": retain.item()}
