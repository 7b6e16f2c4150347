"""UNDIAL (Dong et al. 2024, "UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning in LLMs",
Eq. 2): distil from the target's logits with the true token's logit lowered by beta."""
from __future__ import annotations

from dataclasses import dataclass

from methods import method
from unlearnbench.heavy import F


@dataclass
class UNDIALConfig:
    lr: float = 1e-4        # paper
    beta: float = 10.0      # paper: logit reduction of the forget token


def undial_loss(logits, ref_logits, labels, beta: float):
    """CE(student, softmax(teacher - beta onehot(y))) over the label tokens."""
    logits, ref_logits, labels = logits[:, :-1].float(), ref_logits[:, :-1].float(), labels[:, 1:]
    mask = labels != -100
    onehot = F.one_hot(labels.clamp(min=0), logits.shape[-1]).float()
    target = F.softmax(ref_logits - beta * onehot, dim=-1)
    ce = -(target * F.log_softmax(logits, -1)).sum(-1)
    return (ce * mask).sum() / mask.sum().clamp(min=1)


@method("UNDIAL", UNDIALConfig, needs_ref=True)
def undial(model, batch, ref, cfg: UNDIALConfig):
    forget = batch["forget"]
    logits = model(input_ids=forget["input_ids"], attention_mask=forget["attention_mask"]).logits
    loss = undial_loss(logits, ref.logits(forget), forget["labels"], cfg.beta)
    return loss, {"undial": loss.item()}


