"""The evaluation engine gives the straightforward reference implementation's numbers: the smoke world's target,
every TOFU split, generations identical, metrics to 1e-6, NLLs to float32 rounding.

Why NLLs are compared to 1e-5 and not tighter: the engine runs a prompt once and its answers against the cached
keys/values, in batches of other shapes, so its float32 matmuls round differently from the reference's single
pass. Both are float32 computations of one quantity; against the same model in float64, each is off by about
2e-6 at most on this model (logits near 20 carry ulp-level errors of that size). The test checks exactly that:
the engine is as close to the float64 truth as float32 allows (1e-5), and so within 2e-5 of the reference."""
import copy
import dataclasses

import pytest
from accelerate import Accelerator

from benchmarks.tofu import EVAL_SPLITS
from evals.engine import Work, evaluate, length_batches
from evals.stats import split_stats
from pipeline import Pipeline
from unlearnbench.cache import UnitStore
from unlearnbench.config import load_config
from unlearnbench.models import PromptFormat
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


def close(a: float, b: float, tol: float = 2e-5) -> bool:
    return abs(a - b) <= tol * max(1.0, abs(b))


def nlls(stats: dict) -> list[float]:
    return [x for key in ("nll_answer", "nll_paraphrased", "nll_perturbed") if key in stats
            for v in stats[key] for x in (v if isinstance(v, list) else [v])]


def test_length_batches_sort_and_respect_the_budget():
    lengths = [5, 30, 7, 12, 30, 6, 100]
    batches = length_batches(lengths, token_budget=40, max_rows=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert [lengths[i] for b in batches for i in b] == sorted(lengths)
    for b in batches:
        assert len(b) <= 3 and (len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 40)


def test_engine_equals_the_reference_on_the_smoke_world(smoke_target):
    model, fmt, task = smoke_target
    exact = copy.deepcopy(model).double()
    fast_all, ref_all, work = {}, {}, Work()
    for split, role in EVAL_SPLITS.items():
        rows = task.rows[role]
        kw = dict(batch_size=8, max_new_tokens=task.cfg.eval.max_new_tokens, name=split,
                  paraphrased=split in ("forget", "retain"))
        fast_all[split] = fast = split_stats(model, fmt, rows, token_budget=300, work=work, **kw)
        ref_all[split] = ref = split_stats(model, fmt, rows, use_engine=False, **kw)
        assert list(fast) == list(ref)
        assert fast["generation"] == ref["generation"], split
        truth = nlls(split_stats(exact, fmt, rows, use_engine=False, **{**kw, "max_new_tokens": 1}))
        assert all(close(a, b, 1e-5) for a, b in zip(nlls(fast), truth, strict=True)), split
        assert all(close(a, b) for a, b in zip(nlls(fast), nlls(ref), strict=True)), split
    # the early exit was exercised: generations of different lengths, most ending at EOS well before the cap
    lengths = [len(fmt.tokenizer(g)["input_ids"]) for s in fast_all.values() for g in s["generation"]]
    assert len(set(lengths)) > 3 and sorted(lengths)[len(lengths) // 2] < task.cfg.eval.max_new_tokens // 2
    assert work.tokens_generated < len(lengths) * task.cfg.eval.max_new_tokens
    fast_m, ref_m = task.metrics(fast_all, fast_all), task.metrics(ref_all, ref_all)
    assert fast_m.keys() == ref_m.keys()
    assert all(abs(fast_m[k] - ref_m[k]) < 1e-6 for k in ref_m), {k: (fast_m[k], ref_m[k]) for k in ref_m}


def test_shards_are_bit_identical_to_one_process(smoke_target):
    """Each process runs every world-th question batch, built the same way whatever the world size: gathered
    shards equal one process's numbers exactly."""
    model, fmt, task = smoke_target
    rows = task.rows["retain_eval"]
    items = [(r["question"], [r["answer"]] + list(r["perturbed_answer"])) for r in rows]
    whole = evaluate(model, fmt, items, token_budget=300, batch_size=8, max_new_tokens=20)
    for world in (2, 3):
        parts = [evaluate(model, fmt, items, token_budget=300, batch_size=8, max_new_tokens=20, shard=(r, world))
                 for r in range(world)]
        assert sum(map(len, parts)) == len(items) and {i for p in parts for i in p} == set(whole)
        assert {i: v for p in parts for i, v in p.items()} == whole


@pytest.mark.filterwarnings("ignore:the tokenizer does not keep the prompt a token prefix")
@pytest.mark.parametrize("case", ["logits processor", "prompt not a token prefix"])
def test_generation_fallbacks_equal_the_reference(smoke_target, case):
    """Where the engine's own decoding loop would not be exact, it decodes another way with the same result: a
    model whose generation_config sets a logits processor goes through `generate`; a prompt that is not a token
    prefix of its answers' rows is run again on its own."""
    model, fmt, task = smoke_target
    rows = task.rows["retain_eval"][:12]
    if case == "logits processor":
        model = copy.deepcopy(model)
        model.generation_config.repetition_penalty = 1.5
    else:
        # the prompt ends inside a word ("... Answer: T" + "he ..."): its last token merges with the answer's first
        rows = [{**r, "answer": "he " + r["answer"], "paraphrased_answer": "he " + r["paraphrased_answer"],
                 "perturbed_answer": ["he " + w for w in r["perturbed_answer"]]} for r in rows]
        fmt = PromptFormat(dataclasses.replace(fmt.cfg, template=fmt.cfg.template + "T"), fmt.tokenizer)
        prompt = fmt.prompt_ids(rows[0]["question"])
        assert fmt.encode(rows[0]["question"], rows[0]["answer"])["input_ids"][:len(prompt)] != prompt
    kw = dict(batch_size=8, max_new_tokens=30, name="retain", paraphrased=True)
    fast = split_stats(model, fmt, rows, token_budget=300, **kw)
    ref = split_stats(model, fmt, rows, use_engine=False, **kw)
    assert fast["generation"] == ref["generation"]
    assert all(close(a, b) for a, b in zip(nlls(fast), nlls(ref), strict=True))
