"""Weighted gradient ascent, WGA (Wang et al. 2025, "Rethinking LLM Unlearning Objectives: A Gradient Perspective
and Go Beyond", ICLR): gradient ascent on the forget answers with each token's loss weighted by p^beta, p =
pi(y_t | ...) held fixed (tokens the model has already forgotten stop pulling), plus a retain NLL term."""
from __future__ import annotations

from dataclasses import dataclass

from methods import method
from methods.common import nll, token_nll


@dataclass
class WGAConfig:
    lr: float = 1e-5        # paper (Llama-2-7B); open-unlearning configs/trainer/WGA.yaml
    beta: float = 1.0       # paper
    gamma: float = 1.0      # forget weight, open-unlearning configs/trainer/WGA.yaml
    alpha: float = 1.0      # retain weight, idem


def wga_weights(per_token, beta: float):
    """p^beta per token, p = exp(-NLL_t), without gradient."""
    return (-per_token).exp().detach() ** beta


def wga_loss(logits, labels, beta: float):
    """-mean over label tokens of w_t NLL_t."""
    per_token, mask = token_nll(logits, labels)
    return -(wga_weights(per_token, beta) * per_token)[mask].mean()


@method("WGA", WGAConfig)
def wga(model, batch, ref, cfg: WGAConfig):
    forget = batch["forget"]
    logits = model(input_ids=forget["input_ids"], attention_mask=forget["attention_mask"]).logits
    forget_loss = wga_loss(logits, forget["labels"], cfg.beta)
    retain = nll(model, batch["retain"])
    return cfg.gamma * forget_loss + cfg.alpha * retain, {"wga": forget_loss.item(), "retain_nll": retain.item()}
