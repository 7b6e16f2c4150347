"""Gradient ascent on the forget set (TOFU baseline, Maini et al. 2024, sec. 4)."""
from dataclasses import dataclass

from methods import method
from methods.common import nll


@dataclass
class GradAscentConfig:
    lr: float = 1e-5        # TOFU


@method("GradAscent", GradAscentConfig)
def grad_ascent(model, batch, ref, cfg: GradAscentConfig):
    """L = -NLL(forget)."""
    forget = nll(model, batch["forget"])
    return -forget, {"forget_nll": forget.item()}
