"""PDU, primal-dual unlearning (Entesari et al. 2025, "Constrained Entropic Unlearning: A Primal-Dual Framework for
Large Language Models", arXiv:2506.05314): flatten the logits on the forget answers ((max - mean logit)^2) subject
to retain NLL <= eps, solved by gradient steps on the Lagrangian and dual ascent on its multiplier lambda:
L = gamma flat(forget) + lambda (NLL(retain) - eps), then lambda <- max(0, lambda + step (NLL(retain) - eps)) after
every micro-batch once the warm-up has passed. lambda's trajectory is the row's train_log.state."""
from __future__ import annotations

import math
from dataclasses import dataclass

from methods import method
from methods.common import nll


@dataclass
class PDUConfig:
    lr: float = 1e-5                # open-unlearning community/methods/PDU/run.sh (TOFU, Llama-3.2-1B)
    gamma: float = 1.0              # forget weight, idem
    alpha: float = 100.0            # lambda's start value (run.sh "pref", TOFU)
    retain_loss_eps: float = 0.3    # the constraint's bound on the retain NLL (run.sh, TOFU); the paper: a little
                                    # above the target's own retain NLL
    dual_step_size: float = 5.0     # dual ascent step (run.sh, TOFU)
    dual_warmup: float = 0.5        # share of the schedule before lambda moves (run.sh: 5 warm-up epochs of 10)


class DualVariable:
    """lambda over one run: its value at each micro-batch is kept for the row."""

    def __init__(self, cfg: PDUConfig, micro_batches: int):
        self.value, self.step_size, self.eps = float(cfg.alpha), cfg.dual_step_size, cfg.retain_loss_eps
        self.start, self.seen = math.ceil(cfg.dual_warmup * micro_batches), 0
        self.trajectory: list[float] = []

    def observe(self, retain_loss: float) -> None:
        """After a micro-batch whose Lagrangian used self.value: dual ascent on the constraint's slack."""
        self.trajectory.append(self.value)
        if self.seen >= self.start:
            self.value = max(0.0, self.value + self.step_size * (retain_loss - self.eps))
        self.seen += 1

    def record(self) -> dict:
        return {"dual_variable": [round(v, 6) for v in self.trajectory], "dual_final": round(self.value, 6),
                "dual_moves_from": self.start}


def flatness_loss(logits, labels):
    """(max logit - mean logit)^2, averaged over the label positions: zero when the prediction is uniform."""
    logits, mask = logits[:, :-1].float(), labels[:, 1:] != -100
    gap = logits.max(-1).values - logits.mean(-1)
    return (gap ** 2 * mask).sum() / mask.sum().clamp(min=1)


@method("PDU", PDUConfig, state=DualVariable)
def pdu(model, batch, ref, cfg: PDUConfig, dual: DualVariable):
    forget = batch["forget"]
    logits = model(input_ids=forget["input_ids"], attention_mask=forget["attention_mask"]).logits
    flat, retain = flatness_loss(logits, forget["labels"]), nll(model, batch["retain"])
    lam = dual.value
    dual.observe(retain.item())
    return cfg.gamma * flat + lam * (retain - cfg.retain_loss_eps), {"flatness": flat.item(),
                                                                     "retain_nll": retain.item(), "dual": lam}
