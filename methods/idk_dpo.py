"""DPO towards "I don't know" (TOFU's preference baseline; Rafailov et al. 2023 loss, Maini et al. 2024 setup):
the refusal is preferred over the forget answer, plus a retain NLL term."""
from __future__ import annotations

from dataclasses import dataclass

from methods import method
from methods.common import nll, sequence_logprob
from unlearnbench.heavy import F


@dataclass
class IdkDPOConfig:
    lr: float = 1e-5        # TOFU
    beta: float = 0.1       # DPO / open-unlearning default
    alpha: float = 1.0      # retain weight


def dpo_loss(win_logp, win_ref, lose_logp, lose_ref, beta: float):
    """-(2/beta) log sigmoid(beta [(log pi - log pi_ref)(win) - (log pi - log pi_ref)(lose)])."""
    return -2.0 / beta * F.logsigmoid(beta * ((win_logp - win_ref) - (lose_logp - lose_ref))).mean()


def preferred_over_forget(model, batch, ref, cfg, win: str):
    """DPO with batch[win] (same prompts) preferred over the forget answers, + alpha NLL(retain): (loss, logs)."""
    win, lose = batch[win], batch["forget"]
    logp = lambda b: sequence_logprob(
        model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits, b["labels"])
    pref = dpo_loss(logp(win), ref.sequence_logprob(win), logp(lose), ref.sequence_logprob(lose), cfg.beta)
    retain = nll(model, batch["retain"])
    return pref + cfg.alpha * retain, {"dpo": pref.item(), "retain_nll": retain.item()}


@method("IdkDPO", IdkDPOConfig, needs_ref=True, needs_idk=True)
def idk_dpo(model, batch, ref, cfg: IdkDPOConfig):
    return preferred_over_forget(model, batch, ref, cfg, "forget_idk")
