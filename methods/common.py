"""Plain functions shared by the methods: NLL, sequence log-prob, KL to the reference, hidden states."""
from __future__ import annotations

from unlearnbench.heavy import F, no_grad, torch


def nll(model, inputs: dict) -> torch.Tensor:
    """Mean NLL over every label token of the batch (the causal-LM loss, as TOFU's GradAscent uses)."""
    return model(**inputs).loss


def sequence_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log pi(y|x) summed over each sequence's label tokens."""
    shift_logits, shift_labels = logits[:, :-1].float(), labels[:, 1:]
    mask = shift_labels != -100
    logp = torch.gather(F.log_softmax(shift_logits, -1), 2, shift_labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (logp * mask).sum(-1)


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(-log pi(y_t | y_<t, x) at every position, the mask of label positions), both (batch, length - 1): the
    per-token losses whose mean over the mask is the causal-LM loss."""
    shift_logits, shift_labels = logits[:, :-1].float(), labels[:, 1:]
    per_token = F.cross_entropy(shift_logits.transpose(1, 2), shift_labels.clamp(min=0), reduction="none")
    return per_token, shift_labels != -100


def label_count(labels: torch.Tensor) -> torch.Tensor:
    return (labels[:, 1:] != -100).sum(-1)


def kl_to_reference(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """KL(pi_ref || pi) per token, averaged over label tokens (TOFU's KL method on the retain set)."""
    mask = (labels[:, 1:] != -100).float()
    logp = F.log_softmax(logits[:, :-1].float(), -1)
    ref_logp = F.log_softmax(ref_logits[:, :-1].float(), -1)
    kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
    return (kl * mask).sum() / mask.sum().clamp(min=1)


def hidden_states(model, inputs: dict, layer: int) -> torch.Tensor:
    """Output of decoder layer `layer` (1-based index into hidden_states, 0 is the embeddings)."""
    out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], output_hidden_states=True)
    return out.hidden_states[layer]


class Reference:
    """The frozen target model pi_ref: a separate copy, or (with LoRA) the same network with the adapter off."""

    def __init__(self, model, adapter_of=None):
        self.model, self.adapter_of = model, adapter_of

    @no_grad
    def forward(self, inputs: dict, **kwargs):
        if self.adapter_of is not None:
            with self.adapter_of.disable_adapter():
                return self.adapter_of(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], **kwargs)
        return self.model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], **kwargs)

    def logits(self, inputs: dict) -> torch.Tensor:
        return self.forward(inputs).logits

    def sequence_logprob(self, inputs: dict) -> torch.Tensor:
        return sequence_logprob(self.logits(inputs), inputs["labels"])

    def hidden_states(self, inputs: dict, layer: int) -> torch.Tensor:
        return self.forward(inputs, output_hidden_states=True).hidden_states[layer]
