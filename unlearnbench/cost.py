"""Compute cost of a stage: wall-clock seconds, tokens, FLOPs, peak memory, device (docs/metrics.md, "Cost")."""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager

from unlearnbench.heavy import torch

FLOPS_METHOD = "analytic: 6*N*tokens for passes with gradients + 2*N*tokens for forward-only passes, N = all parameters"
COST_FIELDS = ("wall_seconds", "tokens", "grad_tokens", "forward_tokens", "flops", "flops_method", "n_params",
               "peak_memory_bytes", "device", "device_count")
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class CostMeter:
    """Counts tokens through forward hooks on the watched models and samples peak memory while open.

    Peak memory is accelerator memory on CUDA and the process's resident memory (sampled) on CPU. Inside
    `paused()` nothing is counted but peak memory."""

    def __init__(self, device: torch.device, device_count: int = 1, sample_seconds: float = 0.02):
        self.device, self.device_count, self.sample_seconds = torch.device(device), device_count, sample_seconds
        self.grad_tokens = self.forward_tokens = 0
        self.n_params = 0
        self._hooks: list = []
        self.wall_seconds, self.peak_memory_bytes = 0.0, 0
        self._paused, self._paused_seconds = 0, 0.0

    @contextmanager
    def paused(self):
        """Neither tokens nor time counted inside: an evaluation while training (the unlearning curve's, which has
        its own meter) is not the training's cost."""
        self._paused += 1
        start = time.perf_counter()
        try:
            yield
        finally:
            self._paused -= 1
            if not self._paused:        # the outermost pause's time (a nested one lies within it)
                self._paused_seconds += time.perf_counter() - start

    def watch(self, model) -> None:
        """Count the tokens of every forward pass of `model` (its parameters define N)."""
        self.n_params = max(self.n_params, sum(p.numel() for p in model.parameters()))

        def hook(module, args, kwargs):
            if module is not model or self._paused:   # a deep copy of `model` carries this hook along; it
                return                                   # counts its own passes
            ids = kwargs.get("input_ids", args[0] if args else None)
            mask = kwargs.get("attention_mask")
            if mask is None:
                n = ids.numel() if ids is not None else 0
            elif mask.dim() == 2:   # over cached positions too where a cache is fed (decoding, a shared prompt
                n = int((mask if ids is None else mask[:, -ids.shape[1]:]).sum())   # prefix): the new tokens only
            else:   # a 4-D mask (the evaluation engine's token trees): a real token sees itself, padding does not
                own = mask[:, 0, :, -ids.shape[1]:].diagonal(dim1=-2, dim2=-1)
                n = int((own == 0).sum()) if own.is_floating_point() else int(own.sum())
            if torch.is_grad_enabled():
                self.grad_tokens += n
            else:
                self.forward_tokens += n
        self._hooks.append(model.register_forward_pre_hook(hook, with_kwargs=True))

    def __enter__(self):
        self._start = time.perf_counter()
        self._stop = threading.Event()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.peak_memory_bytes = _rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(self.sample_seconds):
            self.peak_memory_bytes = max(self.peak_memory_bytes, _rss_bytes())

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_memory_bytes = int(torch.cuda.max_memory_allocated(self.device))
        else:
            self._stop.set()
            self._thread.join()
            self.peak_memory_bytes = max(self.peak_memory_bytes, _rss_bytes())
        self.wall_seconds = time.perf_counter() - self._start - self._paused_seconds
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        return False

    def record(self) -> dict:
        return {"wall_seconds": self.wall_seconds, "tokens": self.grad_tokens + self.forward_tokens,
                "grad_tokens": self.grad_tokens, "forward_tokens": self.forward_tokens,
                "flops": float(6 * self.n_params * self.grad_tokens + 2 * self.n_params * self.forward_tokens),
                "flops_method": FLOPS_METHOD, "n_params": self.n_params,
                "peak_memory_bytes": int(self.peak_memory_bytes), "device": self.device.type,
                "device_count": self.device_count}


def total(records: list[dict | None], device: str = "cpu") -> dict:
    """Several stages' cost as one (run one after another): times, tokens and FLOPs add up, peak memory and the
    parameter count are the largest. No stage: a cost of zero (nothing was trained)."""
    out = {"wall_seconds": 0.0, "tokens": 0, "grad_tokens": 0, "forward_tokens": 0, "flops": 0.0,
           "flops_method": FLOPS_METHOD, "n_params": 0, "peak_memory_bytes": 0, "device": device, "device_count": 1}
    for r in records:
        if r is None:
            raise ValueError("a stage's cost is unknown (a model the suite did not train): no total can be told")
        for k in ("wall_seconds", "tokens", "grad_tokens", "forward_tokens", "flops"):
            out[k] += r[k]
        for k in ("n_params", "peak_memory_bytes"):
            out[k] = max(out[k], r[k])
        out["device"], out["device_count"] = r["device"], r["device_count"]
    return out


def matmul_flops(device: torch.device, dtype: torch.dtype, size: int = 2048, reps: int = 10) -> float:
    """Measured dense matmul throughput (FLOP/s) of this device at this dtype."""
    a, b = (torch.randn(size, size, device=device).to(dtype) for _ in range(2))
    for _ in range(2):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * size ** 3 * reps / (time.perf_counter() - start)
