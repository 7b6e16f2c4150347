"""The heavy dependencies, each named once here and imported when first used.

torch, transformers, accelerate, peft (which pulls bitsandbytes), scipy.stats, scikit-learn, rouge-score, opacus
and matplotlib take from a tenth of a second to seconds each to import, and the command line, config parsing and
preflight checks need none of them: `--help` and an input error answer before any loads (scripts/bench_startup.py
measures it). A module names such a dependency from here, `from unlearnbench.heavy import torch, transformers`,
and uses it as it would the module (`torch.cat`, `transformers.AutoConfig`); the first attribute read imports it.
Two things still import at once and are kept off the start path: a class deriving from a dependency's class
(unlearnbench/ensemble.py's nn.Module, imported where SISA rows load) and a decorator built from one (use
`no_grad` below, not `@torch.no_grad()`). bitsandbytes is read by the quantization attack alone. A type checker
or an editor reads the real modules instead (the TYPE_CHECKING block), so annotations such as `torch.Tensor`
resolve.
"""
from __future__ import annotations

import functools
import importlib
import sys
from typing import TYPE_CHECKING


class Deferred:
    """Stands for the module `name`: reading an attribute imports the module (once) and reads it there."""
    __slots__ = ("_name", "_first")

    def __init__(self, name: str, first=None):
        self._name, self._first = name, first     # first(): run once before the import (matplotlib's backend)

    def __getattr__(self, attr: str):
        module = sys.modules.get(self._name)
        if module is None:
            if self._first is not None:
                self._first()
            module = importlib.import_module(self._name)
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<deferred module {self._name!r}{' (loaded)' if self._name in sys.modules else ''}>"


def _files_only():
    import matplotlib
    matplotlib.use("Agg")      # plots are written to files: no display is needed or assumed


if TYPE_CHECKING:       # type checkers and editors see the modules themselves (`torch.Tensor` resolves)
    import accelerate
    import accelerate.utils as accelerate_utils
    import bitsandbytes
    import matplotlib.pyplot as pyplot
    import matplotlib.ticker as matplotlib_ticker
    import opacus
    import peft
    import rouge_score.rouge_scorer as rouge_scorer
    import scipy.stats as scipy_stats
    import sklearn.metrics as sklearn_metrics
    import torch
    import torch.nn.functional as F
    import transformers
else:
    torch = Deferred("torch")
    F = Deferred("torch.nn.functional")
    transformers = Deferred("transformers")
    accelerate = Deferred("accelerate")
    accelerate_utils = Deferred("accelerate.utils")
    peft = Deferred("peft")
    scipy_stats = Deferred("scipy.stats")
    sklearn_metrics = Deferred("sklearn.metrics")
    rouge_scorer = Deferred("rouge_score.rouge_scorer")
    opacus = Deferred("opacus")
    bitsandbytes = Deferred("bitsandbytes")
    pyplot = Deferred("matplotlib.pyplot", first=_files_only)
    matplotlib_ticker = Deferred("matplotlib.ticker")


def no_grad(fn):
    """`@torch.no_grad()` for a module that imports torch through this file: the decorator itself would import
    torch when the module loads."""
    @functools.wraps(fn)
    def without_gradients(*args, **kwargs):
        with torch.no_grad():
            return fn(*args, **kwargs)
    return without_gradients
