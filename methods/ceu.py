"""Cross-entropy unlearning, CE-U (Yang et al. 2025, "CE-U: Cross Entropy Unlearning", arXiv:2503.01224): on the
forget answers, cross-entropy towards the model's own next-token distribution with the true token's probability
set to zero (held fixed); the first answer token is left out (the paper's footnote). No retain term."""
from __future__ import annotations

from dataclasses import dataclass

from methods import method
from unlearnbench.heavy import F


@dataclass
class CEUConfig:
    lr: float = 1e-5              # open-unlearning community/methods/CEU/run.sh
    ignore_first: int = 1         # answer tokens left out at the start: configs/trainer/CEU.yaml
                                  # (ignore_first_n_answer_tokens)


def ceu_loss(logits, labels, ignore_first: int):
    """Mean over the kept label tokens of CE(pi, q), q = softmax(logits with the true token at -inf), q fixed."""
    labels = labels.masked_fill((labels != -100) & ((labels != -100).cumsum(-1) <= ignore_first), -100)
    logits, labels = logits[:, :-1].float(), labels[:, 1:]
    mask = labels != -100
    target = F.softmax(logits.detach().scatter(-1, labels.clamp(min=0).unsqueeze(-1), float("-inf")), -1)
    ce = -(target * F.log_softmax(logits, -1)).sum(-1)
    return (ce * mask).sum() / mask.sum().clamp(min=1)


@method("CEU", CEUConfig)
def ceu(model, batch, ref, cfg: CEUConfig):
    forget = batch["forget"]
    logits = model(input_ids=forget["input_ids"], attention_mask=forget["attention_mask"]).logits
    loss = ceu_loss(logits, forget["labels"], cfg.ignore_first)
    return loss, {"ceu": loss.item()}
