"""The reproducible-numerics mode (unlearnbench/numerics.py): it pins torch's and MKL's CPU kernels before torch
loads, and the tests themselves run in it (conftest.py). Whether it gives the same numbers under every kernel
setting is measured by scripts/check_numerics.py (docs/numerics.md)."""
import os
from pathlib import Path

import pytest
import torch

from unlearnbench import numerics


def test_the_tests_run_with_the_pinned_kernels():
    assert numerics.mode() == "reproducible"
    assert all(os.environ[k] == v for k, v in numerics.PINNED.items())
    if " avx2" not in Path("/proc/cpuinfo").read_text():
        pytest.skip("this CPU has no AVX2: torch falls back to other kernels (describe() warns)")
    assert torch.backends.cpu.get_cpu_capability() == "AVX2"        # the pin reached torch, whatever the CPU picks
    assert "warning" not in numerics.describe()


def test_modes():
    env = {"ATEN_CPU_CAPABILITY": "avx512"}
    assert numerics.apply(env) == "reproducible" and env == numerics.PINNED     # a user's setting cannot undo it
    env = {"UNLEARNBENCH_NUMERICS": "native", "ATEN_CPU_CAPABILITY": "avx512"}
    assert numerics.apply(env) == "native" and env["ATEN_CPU_CAPABILITY"] == "avx512" and "MKL_CBWR" not in env
    env = {"UNLEARNBENCH_NUMERICS": "portable", "MKL_CBWR": "AVX512"}
    assert numerics.apply(env) == "portable" and env["MKL_CBWR"] == "COMPATIBLE,STRICT"      # MKL's any-vendor branch
    assert env["ATEN_CPU_CAPABILITY"] == "avx2"
    with pytest.raises(ValueError, match="UNLEARNBENCH_NUMERICS='fast': choose 'reproducible'"):
        numerics.apply({"UNLEARNBENCH_NUMERICS": "fast"})


def test_the_modes_never_share_cached_units(monkeypatch):
    from unlearnbench.cache import stable_hash
    key = stable_hash("unit", 1)
    monkeypatch.setenv("UNLEARNBENCH_NUMERICS", "native")
    native = stable_hash("unit", 1)
    monkeypatch.setenv("UNLEARNBENCH_NUMERICS", "portable")
    assert len({key, native, stable_hash("unit", 1)}) == 3


def test_the_portable_mode_computes_on_one_thread(monkeypatch):
    from unlearnbench.runtime import configure_threads
    monkeypatch.setenv("UNLEARNBENCH_NUMERICS", "portable")
    with pytest.raises(ValueError, match="threads=2: the portable numerics compute on 1 thread"):
        configure_threads(2)
    before = torch.get_num_threads()
    try:
        assert configure_threads(0) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
