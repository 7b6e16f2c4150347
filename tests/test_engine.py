"""The evaluation engine gives the straightforward reference implementation's numbers: the smoke world's target,
every TOFU split, generations identical, metrics to 1e-6, NLLs to float32 rounding.

Why NLLs are compared to a few 1e-6 and not tighter: the engine runs a prompt once and its answers' token trees
against the cached keys/values, in batches of other shapes, so its float32 matmuls round differently from the
reference's single pass. Against the same model in float64, each is off by about 2e-6 at most. (Both compute
log-probabilities as (x - max) - log sum exp(x - max); torch's float32 cross_entropy, used before, was off by up
to 2.5e-5 on confident tokens, which the earlier 2e-5 tolerance hid.)"""
import copy
import dataclasses

import pytest
import torch

from benchmarks.tofu import EVAL_SPLITS
from evals import prepared
from evals.engine import Work, _tree_batches, evaluate, evaluate_groups, length_batches
from evals.greedy import walk
from evals.reference import greedy_generate, mean_answer_nll
from evals.stats import split_stats
from unlearnbench.cost import CostMeter
from unlearnbench.models import PromptFormat


def close(a: float, b: float, tol: float = 4e-6) -> bool:
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


def test_tree_batches_bound_padding_and_the_budget():
    sizes = [10, 40, 11, 12, 45, 100, 0]
    batches = _tree_batches(sizes, width=20, token_budget=200)
    assert sorted(i for b in batches for i in b) == list(range(len(sizes)))
    for b in batches:
        largest, smallest = max(sizes[i] for i in b), min(sizes[i] for i in b)
        assert len(b) == 1 or (len(b) * (20 + largest) <= 200 and largest <= 1.25 * max(smallest, 1))
    assert [sizes[i] for b in batches for i in b] == sorted(sizes)


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
        assert all(close(a, b, 4e-6) for a, b in zip(nlls(fast), truth, strict=True)), split
        assert all(close(a, b) for a, b in zip(nlls(fast), nlls(ref), strict=True)), split
    # the early exit was exercised: generations of different lengths, most ending at EOS well before the cap
    lengths = [len(fmt.tokenizer(g)["input_ids"]) for s in fast_all.values() for g in s["generation"]]
    assert len(set(lengths)) > 3 and sorted(lengths)[len(lengths) // 2] < task.cfg.eval.max_new_tokens // 2
    assert work.tokens_generated < len(lengths) * task.cfg.eval.max_new_tokens
    assert 0 < work.tokens_drafted < work.tokens_generated   # the fine-tuned target's answers were good drafts
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


def test_answers_sharing_tokens_are_scored_once_and_exactly(smoke_target):
    """Answers that repeat, prefix or branch off one another share nodes of the question's token tree: each shared
    token goes through the model once, and every answer's NLL is still the reference's."""
    model, fmt, task = smoke_target
    rows = task.rows["retain_eval"][:6]
    items = []
    for r in rows:
        words = r["answer"].split()
        items.append((r["question"], [r["answer"], r["answer"], " ".join(words[:2]), " ".join(words[:2] + ["zzz"]),
                                      r["perturbed_answer"][0]]))
    work, meter = Work(), CostMeter("cpu")
    meter.watch(model)
    with meter:
        fast = evaluate(model, fmt, items, token_budget=300, batch_size=4, max_new_tokens=0, work=work)
    assert meter.forward_tokens == work.tokens_scored   # the cost meter counts a tree's real nodes, not padding
    pairs = [(q, a) for q, answers in items for a in answers]
    ref = mean_answer_nll(model, fmt, pairs, batch_size=8)
    got = [x for i in range(len(items)) for x in fast[i].nll]
    assert all(close(a, b) for a, b in zip(got, ref, strict=True))
    assert got[0] == got[1]                         # the repeated answer is the same path of the tree
    rows_tokens = sum(len(fmt.encode(q, a)["input_ids"]) for q, a in pairs)
    assert work.tokens_scored < rows_tokens / 2     # prompt once per question, shared answer tokens once


def test_token_statistics_add_up_to_the_nll(smoke_target):
    """detail=1: per label token of each question's first answer, log p (summing to -NLL x tokens), the mean and
    standard deviation of log p under the model's own distribution, and whether the token is the argmax; checked
    against one plain forward pass."""
    model, fmt, task = smoke_target
    row = task.rows["forget_eval"][0]
    got = evaluate(model, fmt, [(row["question"], [row["answer"], row["perturbed_answer"][0]])], token_budget=300,
                   batch_size=1, max_new_tokens=0, detail=1)[0]
    assert len(got.token_logp) == 1                 # the second answer has no token detail
    enc = fmt.encode(row["question"], row["answer"])
    labels = torch.tensor(enc["labels"][1:])
    with torch.no_grad():
        logp = model(input_ids=torch.tensor([enc["input_ids"]])).logits[0, :-1].double().log_softmax(-1)
    logp, labels = logp[labels != -100], labels[labels != -100]
    expected = logp.gather(1, labels[:, None])[:, 0]
    mu = (logp.exp() * logp).sum(-1)
    sigma = ((logp.exp() * logp.square()).sum(-1) - mu.square()).sqrt()
    assert got.token_logp[0] == pytest.approx(expected.tolist(), abs=1e-5)
    assert got.token_mu[0] == pytest.approx(mu.tolist(), abs=1e-4)
    assert got.token_sigma[0] == pytest.approx(sigma.tolist(), abs=1e-4)
    assert got.token_argmax[0] == (logp.argmax(-1) == labels).tolist()
    assert -sum(got.token_logp[0]) / len(labels) == pytest.approx(got.nll[0], abs=1e-6)


def test_walk_follows_the_models_argmax_through_the_tree():
    """Tokens 5 6 7 then EOS (2) along a chain of nodes 0 1 2, with a branch (0, 8) -> 3 the argmax never takes."""
    children = {(-1, 5): 0, (0, 6): 1, (1, 7): 2, (0, 8): 3}
    assert walk(children, 5, [6, 7, 2, 9], cap=10, eos=2) == ([5, 6, 7, 2], [0, 1, 2])   # done at EOS
    assert walk(children, 5, [6, 9, 2, 9], cap=10, eos=2) == ([5, 6, 9], [0, 1])        # 9 leaves the tree: fed next
    assert walk(children, 5, [6, 7, 2, 9], cap=2, eos=2) == ([5, 6], [0, 1])             # the cap
    assert walk(children, 4, [6, 7, 2, 9], cap=10, eos=2) == ([4], [])                   # no draft at all


@pytest.mark.parametrize("cut", [2, 5])
def test_drafts_that_leave_the_tree_decode_on_exactly(smoke_target, cut):
    """Answers cut after a few words and ended with a wrong word: the walk leaves each tree part-way (or at once),
    decoding goes on from the prompt's cache plus the walked nodes' keys and values, and every generation equals
    transformers' `generate`; some tokens came from the drafts, some from decoding."""
    model, fmt, task = smoke_target
    rows = task.rows["forget_eval"] + task.rows["retain_eval"][:8]
    items = [(r["question"], [" ".join(r["answer"].split()[:cut] + ["zzz"]), r["perturbed_answer"][0]]) for r in rows]
    work = Work()
    got = evaluate(model, fmt, items, token_budget=300, batch_size=8, max_new_tokens=40, work=work)
    ref = greedy_generate(model, fmt, [q for q, _ in items], batch_size=8, max_new_tokens=40)
    assert [got[i].generation for i in range(len(items))] == ref
    assert 0 < work.tokens_drafted < work.tokens_generated


def test_shared_prefixes_and_format_groups_give_the_references_numbers(smoke_target, monkeypatch):
    """Prompts that share a long run of tokens (a context before each question, as the in-context probes put) run
    that run once and continue from copies of its keys and values; items of two prompt formats (one with a begun
    answer, as the `affirm` probe) go through one batch schedule. NLLs equal the reference's to float32 rounding,
    generations equal `generate`, the shared run counts once in the tokens scored, and a group's items equal the
    same items asked alone."""
    monkeypatch.setattr(prepared, "MIN_SAVED", 16)      # the smoke world is small: share any run of 16+ tokens
    model, fmt, task = smoke_target
    rows = task.rows["forget_eval"][:5] + task.rows["retain_eval"][:5]
    context = "".join(f"{r['question']}\n{r['answer']}\n\n" for r in task.rows["retain"][:3])
    framed = [(context + r["question"], [r["answer"], r["perturbed_answer"][0]]) for r in rows]
    begun = fmt.answered_from("Sure. ")
    plain = [(r["question"], [r["answer"], r["paraphrased_answer"]]) for r in rows]
    items = prepared.items(fmt, framed)
    (prefix, members), = [g for g in prepared.prefix_groups(items) if g[0]]
    assert prefix >= len(fmt.tokenizer(context)["input_ids"]) - 2 and sorted(members) == list(range(len(rows)))
    work = Work()
    got = evaluate_groups(model, [(fmt, framed), (begun, plain)], token_budget=300, batch_size=4, max_new_tokens=20,
                          work=work)
    ref = mean_answer_nll(model, fmt, [(q, a) for q, answers in framed for a in answers], batch_size=8)
    ref += mean_answer_nll(model, begun, [(q, a) for q, answers in plain for a in answers], batch_size=8)
    assert all(close(a, b) for a, b in zip([x for i in range(len(got)) for x in got[i].nll], ref, strict=True))
    generated = greedy_generate(model, fmt, [q for q, _ in framed], batch_size=8, max_new_tokens=20)
    assert [got[i].generation for i in range(len(framed))] == generated
    alone = evaluate(model, begun, plain, token_budget=300, batch_size=4, max_new_tokens=0)
    assert all(close(a, b) for i in range(len(plain)) for a, b in zip(got[len(framed) + i].nll, alone[i].nll))
    others = prepared.items(begun, plain)
    once = prefix + sum(it.shared - prefix + len(it.tree) for it in items)     # the shared run once
    assert work.tokens_scored == once + sum(it.shared + len(it.tree) for it in others)
    # the cost meter counts what went through the model: the shared run once, each decoding step's new token only
    for new_tokens in (0, 20):
        meter, work = CostMeter("cpu"), Work()
        meter.watch(model)
        with meter:
            evaluate(model, fmt, framed, token_budget=300, batch_size=4, max_new_tokens=new_tokens, work=work)
        assert meter.forward_tokens == once if new_tokens == 0 else (
            once < meter.forward_tokens <= once + work.tokens_generated + work.prompt_tokens)


def test_prepared_items_are_reused_only_for_the_same_format_and_text(smoke_target):
    model, fmt, task = smoke_target
    pairs = [(r["question"], [r["answer"]]) for r in task.rows["forget_eval"][:3]]
    first = prepared.items(fmt, pairs)
    assert prepared.items(PromptFormat(fmt.cfg, fmt.tokenizer), list(pairs)) is first     # same tokens: reused
    assert prepared.items(fmt.answered_from("Sure. "), pairs) is not first                # another prompt
    assert prepared.items(fmt, pairs[:2]) is not first
    other = copy.deepcopy(fmt.tokenizer)
    other.add_tokens(["<probe-token>"])
    assert PromptFormat(fmt.cfg, other).fingerprint() != fmt.fingerprint()             # another tokenizer
