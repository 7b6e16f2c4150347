"""Negative Preference Optimization (Zhang et al. 2024, "Negative Preference Optimization: From Catastrophic
Collapse to Effective Unlearning", Eq. 3), with the retain NLL term of their NPO+RT variant."""
from __future__ import annotations

from dataclasses import dataclass

from methods import method
from methods.common import nll, sequence_logprob
from unlearnbench.heavy import F


@dataclass
class NPOConfig:
    lr: float = 1e-5        # TOFU setting of the paper
    beta: float = 0.1       # paper
    alpha: float = 1.0      # retain weight (NPO+RT)


def npo_loss(logp, ref_logp, beta: float):
    """-(2/beta) log sigmoid(-beta (log pi - log pi_ref)), averaged over the batch. Equals (2/beta) log 2 when
    pi = pi_ref."""
    return -2.0 / beta * F.logsigmoid(-beta * (logp - ref_logp)).mean()


@method("NPO", NPOConfig, needs_ref=True)
def npo(model, batch, ref, cfg: NPOConfig):
    forget = batch["forget"]
    logp = sequence_logprob(model(input_ids=forget["input_ids"], attention_mask=forget["attention_mask"]).logits,
                            forget["labels"])
    forget_loss = npo_loss(logp, ref.sequence_logprob(forget), cfg.beta)
    retain = nll(model, batch["retain"])
    return forget_loss + cfg.alpha * retain, {"npo": forget_loss.item(), "retain_nll": retain.item()}
