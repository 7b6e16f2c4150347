"""Reproducible CPU numerics: the same floating-point kernels on every x86 CPU with AVX2, so that a trained model
and its metrics do not depend on which CPU ran them (docs/numerics.md).

On CPU, torch picks its vectorised kernels (softmax, norms, reductions, elementwise ops) by the instruction set it
finds, and MKL picks its GEMM code path the same way; the embedded model is pretrained from scratch at a high
learning rate, which turns last-bit differences into other weights. The reproducible mode pins both to AVX2, which
every x86 CPU since 2013-2015 has: torch's `ATEN_CPU_CAPABILITY=avx2` and MKL's conditional numerical
reproducibility `MKL_CBWR=AVX2,STRICT` (STRICT: the same bits at any thread count), and oneDNN's ISA likewise.

MKL documents its AVX2 branch as reproducible on Intel CPUs only (on other CPUs it runs its AUTO branch instead),
so the reproducible mode holds within a CPU vendor, not across vendors. `UNLEARNBENCH_NUMERICS=portable` pins MKL
to its COMPATIBLE branch instead (SSE2 without the approximate reciprocal instructions), which MKL documents as
giving the same results on Intel and non-Intel CPUs; torch's own kernels stay at AVX2 (the same instructions on
every vendor, no approximate ones). That branch is not the same at every thread count (STRICT holds on the AVX2
branch, not on this one: the smoke experiment's fine-tuned target differs at 1 and 2 threads), so the portable
mode also computes on one thread (`THREADS`; runtime.configure_threads).

The variables are read when torch first runs a kernel, so `apply()` must run before torch is imported: it is the
first thing run_benchmark.py and the tests do. `UNLEARNBENCH_NUMERICS=native` turns the pins off (each CPU's
fastest kernels); the mode a run used is written to results.json (`runtime.numerics`) and keys the unit cache.
"""
from __future__ import annotations

import os
import sys

MODE_VARIABLE = "UNLEARNBENCH_NUMERICS"
PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2,STRICT", "ONEDNN_MAX_CPU_ISA": "AVX2"}
PINS = {"reproducible": PINNED, "portable": {**PINNED, "MKL_CBWR": "COMPATIBLE,STRICT"}, "native": {}}
MODES = tuple(PINS)
THREADS = {"portable": 1}       # a mode whose numbers hold at one thread count only


def mode(environ=os.environ) -> str:
    value = environ.get(MODE_VARIABLE, "reproducible").strip().lower() or "reproducible"
    if value not in MODES:
        raise ValueError(f"{MODE_VARIABLE}={value!r}: choose 'reproducible' (the default: the same kernels on every "
                         f"x86 CPU with AVX2), 'portable' (MKL's branch for every vendor) or 'native' (each CPU's "
                         f"fastest kernels)")
    return value


def apply(environ=os.environ) -> str:
    """Pin the kernels (reproducible and portable modes) before torch loads; returns the mode. The pins override
    variables the user set, since a mode that another setting can undo would not be one; `native` leaves them
    alone."""
    chosen = mode(environ)
    pins = PINS[chosen]
    if environ is os.environ and "torch" in sys.modules and any(environ.get(k) != v for k, v in pins.items()):
        raise RuntimeError("unlearnbench.numerics.apply() must run before torch is imported, or the kernels it "
                           "pins are already chosen; import and apply it first")
    environ.update(pins)
    return chosen


def cpu() -> dict:
    """The CPU's vendor and model (Linux: /proc/cpuinfo; elsewhere what platform reports): the reproducible mode's
    numbers are the same across x86 CPUs of one vendor, not across vendors (docs/numerics.md)."""
    import platform
    info = {}
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            key, _, value = line.partition(":")
            if key.strip() in ("vendor_id", "model name") and key.strip() not in info:
                info[key.strip()] = value.strip()
    except OSError:
        pass
    return {"vendor": info.get("vendor_id") or platform.machine(),
            "model": info.get("model name") or platform.processor()}


def describe() -> dict:
    """What results.json records: the mode, the pinned variables, the kernels torch actually chose (a CPU without
    AVX2 falls back to slower ones, and its numbers then differ from other CPUs'), and the CPU."""
    import torch
    capability = torch.backends.cpu.get_cpu_capability()
    pins = PINS[mode()]
    out = {"mode": mode(), "cpu_capability": capability, "cpu": cpu(),
           "pinned": {k: os.environ.get(k, "") for k in pins}}
    if pins and capability.lower() != "avx2":
        out["warning"] = (f"torch runs {capability} kernels, not the AVX2 ones the {mode()} mode pins: this "
                          f"CPU's numbers may differ from other CPUs'")
    return out
