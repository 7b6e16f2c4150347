"""GPU tests (`pytest -m gpu`; skipped without CUDA, run by scripts/gpu_check.py on a lent GPU): the evaluation
engine gives the reference's numbers on the GPU too."""
import copy

import pytest
import torch

from benchmarks.tofu import EVAL_SPLITS
from evals.stats import split_stats

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_engine_equals_the_reference_on_the_gpu(smoke_target):
    model, fmt, task = smoke_target
    model = copy.deepcopy(model).to("cuda")
    for split, role in EVAL_SPLITS.items():
        kw = dict(batch_size=8, max_new_tokens=task.cfg.eval.max_new_tokens, name=split,
                  paraphrased=split in ("forget", "retain"))
        fast_stats = split_stats(model, fmt, task.rows[role], token_budget=300, **kw)
        ref = split_stats(model, fmt, task.rows[role], use_engine=False, **kw)
        assert fast_stats["generation"] == ref["generation"], split
        assert fast_stats["nll_answer"] == pytest.approx(ref["nll_answer"], rel=1e-4, abs=1e-5), split
