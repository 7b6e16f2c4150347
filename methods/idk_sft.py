"""Fine-tune on "I don't know" answers to the forget questions (TOFU's "preference optimization" baseline,
Maini et al. 2024, sec. 4), plus the retain NLL."""
from dataclasses import dataclass

from methods import method
from methods.common import nll


@dataclass
class IdkSFTConfig:
    lr: float = 1e-5        # TOFU
    alpha: float = 1.0      # retain weight


@method("IdkSFT", IdkSFTConfig, needs_idk=True)
def idk_sft(model, batch, ref, cfg: IdkSFTConfig):
    idk, retain = nll(model, batch["forget_idk"]), nll(model, batch["retain"])
    return idk + cfg.alpha * retain, {"idk_nll": idk.item(), "retain_nll": retain.item()}
