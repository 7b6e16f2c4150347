"""SISA's aggregate as one causal LM (orchestration/guarantees.py): S constituent models of one architecture, whose
next-token distributions are averaged. `forward` returns log((1/S) sum_s p_s(. | context)) as its logits: a
softmax of them gives back the mean distribution, so every metric reads the aggregate's probabilities exactly as
it reads one model's (the evaluation engine, lm-eval, the membership attacks), and greedy decoding takes the
argmax of the mean. (Bourtoule et al. aggregate by majority vote over labels; over a vocabulary the mean of the
distributions is the aggregate whose likelihoods the metrics can score. A documented choice.)

The key/value cache: the aggregate's config has S x L layers; constituent s reads and writes layers
s*L .. (s+1)*L - 1 of the cache it is given, through a `Cache` over those same layer objects, so everything the
engine does to a cache (copy its layers, drop rows) acts on every constituent at once.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn
from transformers.cache_utils import Cache
from transformers.modeling_outputs import CausalLMOutputWithPast


class Ensemble(nn.Module):
    def __init__(self, members: list):     # causal LMs of one architecture
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one constituent model")
        self.members = nn.ModuleList(members)
        self.per = members[0].config.num_hidden_layers
        self.config = copy.deepcopy(members[0].config)
        self.config.num_hidden_layers = self.per * len(members)
        if getattr(self.config, "layer_types", None):
            self.config.layer_types = list(self.config.layer_types) * len(members)
        self.generation_config = None        # plain greedy decoding (evals/greedy.py): no logits processors

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def tie_weights(self, *args, **kwargs) -> None:
        """Each constituent's own weights are tied when it loads (lm-eval calls this on a model it is given)."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, cache: Cache | None = None,
                logits_to_keep: int | torch.Tensor = 0) -> CausalLMOutputWithPast:
        logps = []
        for s, member in enumerate(self.members):
            view = None if cache is None else Cache(layers=cache.layers[s * self.per:(s + 1) * self.per])
            out = member(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=view,
                         logits_to_keep=logits_to_keep)
            logps.append(torch.log_softmax(out.logits.float(), -1))
        mean = torch.logsumexp(torch.stack(logps), 0) - math.log(len(self.members))
        return CausalLMOutputWithPast(logits=mean)
