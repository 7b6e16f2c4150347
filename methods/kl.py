"""Gradient ascent with a KL term to the target on the retain set (TOFU, Maini et al. 2024, sec. 4)."""
from dataclasses import dataclass

from methods import method
from methods.common import kl_to_reference, nll


@dataclass
class KLConfig:
    lr: float = 1e-5        # TOFU
    alpha: float = 1.0      # KL weight


@method("KL", KLConfig, needs_ref=True)
def kl(model, batch, ref, cfg: KLConfig):
    """L = -NLL(forget) + alpha KL(pi_ref || pi) on retain (per label token)."""
    forget = nll(model, batch["forget"])
    retain = batch["retain"]
    logits = model(input_ids=retain["input_ids"], attention_mask=retain["attention_mask"]).logits
    div = kl_to_reference(logits, ref.logits(retain), retain["labels"])
    return -forget + cfg.alpha * div, {"forget_nll": forget.item(), "retain_kl": div.item()}
