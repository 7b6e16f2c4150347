"""The evaluation engine gives the straightforward reference implementation's numbers: the smoke world's target,
every TOFU split, generations identical, metrics to 1e-6, NLLs to float32 rounding (1e-6 relative: batches of
other shapes round matmuls differently, by an ulp or two of a float32 NLL near 5)."""
import pytest
from accelerate import Accelerator

from benchmarks.tofu import EVAL_SPLITS
from evals.engine import Work, length_batches
from evals.stats import split_stats
from pipeline import Pipeline
from unlearnbench.cache import UnitStore
from unlearnbench.config import load_config
from unlearnbench.tasks import build_task


@pytest.fixture(scope="module")
def smoke_target(smoke_root):
    """The smoke experiment's fine-tuned target (a cache hit when tests/test_end_to_end.py ran first)."""
    cfg = load_config(["experiment=smoke", f"cache_dir={smoke_root / 'cache'}"])
    label, section = next(iter(cfg.tasks.items()))
    task = build_task(label, section)
    data = task.load(cfg.resolved_cache_dir() / "tasks")
    pipe = Pipeline(cfg, task, data, UnitStore(cfg.resolved_cache_dir()), Accelerator())
    target = pipe.finetuned(pipe.base(), "target", "")
    return pipe.load(target), pipe.fmt(pipe.tokenizer(target)), task


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(b))


def test_length_batches_sort_and_respect_the_budget():
    lengths = [5, 30, 7, 12, 30, 6, 100]
    batches = length_batches(lengths, token_budget=40, max_rows=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert [lengths[i] for b in batches for i in b] == sorted(lengths)
    for b in batches:
        assert len(b) <= 3 and (len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 40)


def test_engine_equals_the_reference_on_the_smoke_world(smoke_target):
    model, fmt, task = smoke_target
    fast_all, ref_all, work = {}, {}, Work()
    for split, role in EVAL_SPLITS.items():
        rows = task.rows[role]
        kw = dict(batch_size=8, max_new_tokens=task.cfg.eval.max_new_tokens, name=split,
                  paraphrased=split in ("forget", "retain"))
        fast_all[split] = fast = split_stats(model, fmt, rows, token_budget=300, work=work, **kw)
        ref_all[split] = ref = split_stats(model, fmt, rows, use_engine=False, **kw)
        assert list(fast) == list(ref)
        assert fast["generation"] == ref["generation"], split
        for key in ("nll_answer", "nll_paraphrased"):
            if key in ref:
                assert all(close(a, b) for a, b in zip(fast[key], ref[key], strict=True)), (split, key)
        assert all(close(a, b) for fa, ra in zip(fast["nll_perturbed"], ref["nll_perturbed"], strict=True)
                   for a, b in zip(fa, ra, strict=True))
    # the early exit was exercised: generations of different lengths, most ending at EOS well before the cap
    lengths = [len(fmt.tokenizer(g)["input_ids"]) for s in fast_all.values() for g in s["generation"]]
    assert len(set(lengths)) > 3 and sorted(lengths)[len(lengths) // 2] < task.cfg.eval.max_new_tokens // 2
    assert work.tokens_generated < len(lengths) * task.cfg.eval.max_new_tokens
    fast_m, ref_m = task.metrics(fast_all, fast_all), task.metrics(ref_all, ref_all)
    assert fast_m.keys() == ref_m.keys()
    assert all(abs(fast_m[k] - ref_m[k]) < 1e-6 for k in ref_m), {k: (fast_m[k], ref_m[k]) for k in ref_m}
