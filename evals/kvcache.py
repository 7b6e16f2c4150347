"""The one place the evaluation engine touches transformers' key/value cache, through public API only:
`DynamicCache` built from a model's config, or from given keys and values (its `ddp_cache_data` argument), read by
iterating it (one `(keys, values, ...)` per layer), rows dropped with `batch_select_indices`, its `is_sliding` /
`is_linear` flags, and the model's `cache=` argument.

Until 2026-12-01 decoding also used a subclass of transformers' private DynamicLayer that wrote new tokens into
reserved room instead of concatenating; transformers 5.24 broke it. Measured side by side against the plain
DynamicCache it gave no gain (SmolLM2-135M, 4,045 prompt + generated tokens: 18.0 s against 17.8 s; the default
world's target and base: equal within noise), so it is gone rather than kept behind a feature test.
"""
from __future__ import annotations

from unlearnbench.heavy import torch, transformers


def new(model) -> transformers.DynamicCache:
    return transformers.DynamicCache(config=model.config)


def from_layers(model, kv: list[tuple[torch.Tensor, torch.Tensor]]) -> transformers.DynamicCache:
    """A cache holding these keys and values, (batch, heads, length, dim) per layer."""
    return transformers.DynamicCache(ddp_cache_data=kv, config=model.config)


def layers(cache: transformers.DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each layer's (keys, values)."""
    return [(entry[0], entry[1]) for entry in cache]


def full_attention(cache: transformers.DynamicCache) -> bool:
    """Whether every layer keeps every position (no sliding window, no linear-attention state): the engine's
    drafts copy positions between caches, which only such layers allow."""
    return not any(cache.is_sliding) and not any(cache.is_linear)
