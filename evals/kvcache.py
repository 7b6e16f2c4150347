"""The one place the evaluation engine touches transformers' key/value cache.

Public API only: `DynamicCache` built from a model's config, or from given keys and values (its `ddp_cache_data`
argument), read by iterating it (one `(keys, values, ...)` per layer), rows dropped with `batch_select_indices`,
its `is_sliding` / `is_linear` flags, and the model's `cache=` argument.

One private fast path, worth its speed: `RoomyLayer` writes decoded tokens into reserved room where transformers'
DynamicLayer concatenates (a copy of the whole cache at every step: most of a decoding step's time on a small
model). It subclasses a transformers internal, so a feature test at import checks that it still behaves exactly
as the public layer on this transformers version, and the engine falls back to the plain DynamicCache (same keys
and values, same numbers, slower decoding) when it does not, or when UNLEARNBENCH_KV_FAST=0.
tests/test_engine.py runs the engine against the reference on both paths.
"""
from __future__ import annotations

import os

import torch
from transformers import DynamicCache


def new(model) -> DynamicCache:
    return DynamicCache(config=model.config)


def from_layers(model, kv: list[tuple[torch.Tensor, torch.Tensor]]) -> DynamicCache:
    """A cache holding these keys and values, (batch, heads, length, dim) per layer."""
    return DynamicCache(ddp_cache_data=kv, config=model.config)


def layers(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each layer's (keys, values)."""
    return [(entry[0], entry[1]) for entry in cache]


def full_attention(cache: DynamicCache) -> bool:
    """Whether every layer keeps every position (no sliding window, no linear-attention state): the engine's
    drafts copy positions between caches, which only such layers allow."""
    return not any(cache.is_sliding) and not any(cache.is_linear)


def roomy(cache: DynamicCache) -> DynamicCache:
    """The cache, with its full-attention layers writing new tokens into reserved room where the fast path
    works; unchanged otherwise (the public path)."""
    if FAST:
        cache.layers = [RoomyLayer(layer) if type(layer) is _DynamicLayer else layer for layer in cache.layers]
    return cache


try:                                                    # the fast path's only private import
    from transformers.cache_utils import DynamicLayer as _DynamicLayer
except ImportError:                                     # pragma: no cover - a transformers without it
    _DynamicLayer = None


if _DynamicLayer is not None:
    class RoomyLayer(_DynamicLayer):
        """A DynamicLayer whose room doubles when full, so a step copies the cache only now and then, and dropping
        finished rows copies little unused room. `keys` and `values` are views of the filled part."""

        def __init__(self, layer):
            super().__init__()
            self.device, self.is_initialized = layer.keys.device, True
            self.length, self.buffers = layer.keys.shape[-2], [layer.keys, layer.values]
            self.keys, self.values = layer.keys, layer.values

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
            end = self.length + key_states.shape[-2]
            if end > self.buffers[0].shape[-2]:
                self.buffers = [torch.cat([b[:, :, :self.length], b.new_empty(
                    *b.shape[:2], max(end, 2 * self.length) - self.length, b.shape[-1])], 2) for b in self.buffers]
            for buffer, new_states in zip(self.buffers, (key_states, value_states)):
                buffer[:, :, self.length:end] = new_states
            self.length = end
            self.keys, self.values = (b[:, :, :end] for b in self.buffers)
            return self.keys, self.values

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            self.buffers = [b[indices] for b in self.buffers]
            self.keys, self.values = (b[:, :, :self.length] for b in self.buffers)


def _fast_path_works() -> bool:
    """The fast path on a tiny cache against the public one: the same keys and values after updates and a row
    selection, through the same Cache methods the model calls."""
    if _DynamicLayer is None or os.environ.get("UNLEARNBENCH_KV_FAST", "1") == "0":
        return False
    try:
        g = torch.Generator().manual_seed(0)
        states = [torch.randn(3, 2, n, 4, generator=g) for n in (5, 1, 1, 2)]
        caches = [DynamicCache(), DynamicCache()]
        for cache in caches:
            cache.update(states[0], states[0] + 1, 0)
        caches[1].layers = [RoomyLayer(layer) for layer in caches[1].layers]
        for cache in caches:
            for s in states[1:3]:
                cache.update(s, s + 1, 0)
            cache.batch_select_indices(torch.tensor([0, 2]))
            cache.update(states[3][:2], states[3][:2] + 1, 0)
        (k0, v0), (k1, v1) = layers(caches[0])[0], layers(caches[1])[0]
        return (torch.equal(k0, k1) and torch.equal(v0, v1)
                and caches[0].get_seq_length() == caches[1].get_seq_length() == 9)
    except Exception:       # any change to the internals it relies on: use the public path
        return False


FAST = _fast_path_works()
