"""SimNPO (Fan et al. 2024, "Simplicity Prevails: Rethinking Negative Preference Optimization for LLM
Unlearning", Eq. 4): reference-free, length-normalised NPO, plus a retain NLL term."""
from __future__ import annotations

from dataclasses import dataclass

from methods import method
from methods.common import label_count, nll, sequence_logprob
from unlearnbench.heavy import F


@dataclass
class SimNPOConfig:
    lr: float = 1e-5        # TOFU setting of the paper
    beta: float = 4.5       # paper (TOFU)
    delta: float = 0.0      # reward margin gamma of the paper
    gamma: float = 0.125    # forget weight (paper, TOFU)
    alpha: float = 1.0      # retain weight


def simnpo_loss(logp, length, beta: float, delta: float):
    """-(2/beta) log sigmoid(beta (NLL/|y| - delta)), NLL = -log pi(y|x) summed over the answer."""
    return -2.0 / beta * F.logsigmoid(beta * (-logp / length.clamp(min=1) - delta)).mean()


@method("SimNPO", SimNPOConfig)
def simnpo(model, batch, ref, cfg: SimNPOConfig):
    forget = batch["forget"]
    logits = model(input_ids=forget["input_ids"], attention_mask=forget["attention_mask"]).logits
    forget_loss = simnpo_loss(sequence_logprob(logits, forget["labels"]), label_count(forget["labels"]),
                              cfg.beta, cfg.delta)
    retain = nll(model, batch["retain"])
    return cfg.gamma * forget_loss + cfg.alpha * retain, {"simnpo": forget_loss.item(), "retain_nll": retain.item()}
