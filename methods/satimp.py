"""SatImp (Yang et al. 2025, "Exploring Criteria of Loss Reweighting to Enhance LLM Unlearning", ICML): gradient
ascent on the forget answers with each token's loss weighted by saturation p^beta1 and importance (1 - p)^beta2,
p = pi(y_t | ...) held fixed, plus a retain NLL term."""
from __future__ import annotations

from dataclasses import dataclass

from methods import method
from methods.common import nll, token_nll


@dataclass
class SatImpConfig:
    lr: float = 1e-5        # paper (Llama-2-7B); open-unlearning configs/trainer/SatImp.yaml
    beta1: float = 5.0      # saturation exponent, paper
    beta2: float = 1.0      # importance exponent, paper
    gamma: float = 1.0      # forget weight: the paper's forget:retain ratio of 10 (open-unlearning
    alpha: float = 0.1      # community/methods/SatImp/README.md), retain weight


def satimp_weights(per_token, beta1: float, beta2: float):
    """p^beta1 (1 - p)^beta2 per token, p = exp(-NLL_t), without gradient."""
    p = (-per_token).exp().detach()
    return p ** beta1 * (1 - p) ** beta2


def satimp_loss(logits, labels, beta1: float, beta2: float):
    """-mean over label tokens of w_t NLL_t: minimising it raises the weighted forget NLL."""
    per_token, mask = token_nll(logits, labels)
    return -(satimp_weights(per_token, beta1, beta2) * per_token)[mask].mean()


@method("SatImp", SatImpConfig)
def satimp(model, batch, ref, cfg: SatImpConfig):
    forget = batch["forget"]
    logits = model(input_ids=forget["input_ids"], attention_mask=forget["attention_mask"]).logits
    forget_loss = satimp_loss(logits, forget["labels"], cfg.beta1, cfg.beta2)
    retain = nll(model, batch["retain"])
    return cfg.gamma * forget_loss + cfg.alpha * retain, {"satimp": forget_loss.item(), "retain_nll": retain.item()}
