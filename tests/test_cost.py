"""The cost meter counts each forward pass's tokens once, split by whether gradients flow."""
import copy

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from unlearnbench.cost import CostMeter


def test_tokens_counted_once_per_pass_even_for_a_deep_copy():
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=2, intermediate_size=32))
    ids = torch.randint(0, 50, (2, 5))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])      # 8 real tokens
    meter = CostMeter("cpu", sample_seconds=0.001)
    with meter:
        meter.watch(model)
        frozen = copy.deepcopy(model).requires_grad_(False)      # the reference copy made after watching
        meter.watch(frozen)
        model(input_ids=ids, attention_mask=mask).logits.sum().backward()
        with torch.no_grad():
            frozen(input_ids=ids, attention_mask=mask)
            model(input_ids=ids, attention_mask=mask)
    rec = meter.record()
    n = sum(p.numel() for p in model.parameters())
    assert (rec["grad_tokens"], rec["forward_tokens"], rec["tokens"]) == (8, 16, 24)
    assert rec["flops"] == 6 * n * 8 + 2 * n * 16
    assert rec["wall_seconds"] > 0 and rec["peak_memory_bytes"] > 0 and rec["device"] == "cpu"
