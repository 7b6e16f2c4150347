"""Every TOFU metric against values computed by hand."""
import math

import numpy as np
import pytest
import torch

from evals import tofu_metrics as tm
from evals.reference import log_softmax, token_nll
from evals.stats import rouge_recall


def test_prob_is_mean_of_exp_minus_nll():
    assert tm.prob([0.0, math.log(2)]) == pytest.approx((1.0 + 0.5) / 2)


def test_normalised_prob():
    # p = 0.5, wrong ones 0.25 and 0.25 -> 0.5 / (0.5 + 0.5 + 1e-10)
    nll = [math.log(2)]
    wrong = [[math.log(4), math.log(4)]]
    assert tm.normalised_prob(nll, wrong) == pytest.approx(0.5 / (1.0 + 1e-10), abs=1e-12)


def test_truth_ratio_is_geometric_mean_of_wrong_over_right():
    # correct p = 1/2; wrong p = 1/4 and 1/16 -> geometric mean 1/8 -> R = (1/8)/(1/2) = 1/4
    r = tm.truth_ratios([math.log(2)], [[math.log(4), math.log(16)]])
    assert r[0] == pytest.approx(0.25)
    assert tm.forget_truth_ratio([0.25, 4.0]) == pytest.approx(0.25)
    assert tm.kept_truth_ratio([0.25, 4.0]) == pytest.approx((0.75 + 0.0) / 2)


def test_truth_ratio_matches_reference_guard_when_the_correct_answer_is_near_impossible():
    # A collapsed model (GradAscent): p(correct) = e^-30 ~ 9.4e-14, far below the reference code's 1e-10 guard.
    # Reference (open-unlearning): R = wrong / (correct + 1e-10); forget aggregate mean(min(R, 1 / (R + 1e-10))).
    nll_correct = [30.0, math.log(2), 25.0]
    nll_wrong = [[20.0, 22.0], [math.log(4), math.log(16)], [26.0, 24.0]]
    correct = [math.exp(-30.0), 0.5, math.exp(-25.0)]
    wrong = [math.exp(-21.0), 1 / 8, math.exp(-25.0)]
    by_hand = [w / (c + 1e-10) for w, c in zip(wrong, correct)]
    r = tm.truth_ratios(nll_correct, nll_wrong)
    assert r == pytest.approx(by_hand, rel=1e-12)
    assert r[0] == pytest.approx(math.exp(-21.0) / (math.exp(-30.0) + 1e-10), rel=1e-12)  # ~7.6e0, not e^9 ~ 8103
    forget = np.mean([min(x, 1 / (x + 1e-10)) for x in by_hand])
    assert tm.forget_truth_ratio(r) == pytest.approx(forget, abs=1e-12)
    assert tm.kept_truth_ratio(r) == pytest.approx(np.mean([max(0.0, 1 - x) for x in by_hand]), abs=1e-12)
    # the unguarded form differs by far more than 1e-6 here, so the test would catch a regression
    unguarded = np.mean([min(x, 1 / x) for x in (math.exp(9.0), 0.25, 1.0)])
    assert abs(tm.forget_truth_ratio(r) - unguarded) > 1e-3


def test_forget_quality_is_ks_p_value():
    # Fully separated samples of 3 and 3: D = 1, exact two-sided p = 2 / C(6, 3) = 0.1
    assert tm.forget_quality([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1)
    same = np.linspace(0.1, 2.0, 20)
    assert tm.forget_quality(same, same) == pytest.approx(1.0)


def test_model_utility_harmonic_mean_and_zero():
    values = dict(zip(tm.UTILITY_COMPONENTS, [1, 2, 4, 1, 2, 4, 1, 2, 4]))
    assert tm.model_utility(values) == pytest.approx(9 / (3 * (1 + 0.5 + 0.25)))
    values["world_facts_rougeL"] = 0.0
    assert tm.model_utility(values) == 0.0
    with pytest.raises(ValueError, match="needs"):
        tm.model_utility({"retain_prob": 1.0})


def test_rouge_l_recall_by_hand():
    # gold has 4 tokens; the longest common subsequence with the generation is "paris is the" (3 tokens)
    assert rouge_recall("Paris is the capital", "paris is not the city")["rougeL_recall"] == pytest.approx(3 / 4)
    assert rouge_recall("Paris", "Paris")["rougeL_recall"] == 1.0


def test_token_nll_by_hand():
    # vocab 2, uniform logits -> each label token costs log 2; the first position is never a label
    logits = torch.zeros(1, 3, 2)
    labels = torch.tensor([[-100, 1, 0]])
    total, count = token_nll(logits, labels)
    assert count.item() == 2
    assert total.item() == pytest.approx(2 * math.log(2))


def test_split_metrics_and_all_metrics():
    stats = {"nll_answer": [math.log(2)] * 4, "nll_paraphrased": [math.log(2)] * 4,
             "nll_perturbed": [[math.log(4)] * 3] * 4, "rougeL_recall": [1.0, 0.5, 0.5, 0.0]}
    m = tm.split_metrics("retain", stats)
    assert m == pytest.approx({"retain_prob": 0.5, "retain_rougeL": 0.5, "retain_truth_ratio": 0.5})
    f = tm.split_metrics("forget", stats)
    assert f["forget_truth_ratio"] == pytest.approx(0.5)
    w = tm.split_metrics("world_facts", stats)
    assert w["world_facts_prob"] == pytest.approx(0.5 / (0.5 + 0.75 + 1e-10))
    everything = tm.all_metrics({s: stats for s in ("forget", "retain", "real_authors", "world_facts")},
                                {"forget": stats})
    assert everything["forget_quality"] == pytest.approx(1.0)
    assert 0 < everything["model_utility"] < 1


def test_log_softmax_keeps_a_confident_tokens_log_probability():
    """log p of a near-certain token is a small number next to logits of ~20: computed as (x - max) - log sum
    exp(x - max) it is exact to the float32 rounding of log sum exp (~1e-7), where the logsumexp-first form
    rounds at the logits' magnitude (~2e-6)."""
    logits = torch.tensor([[20.647, 15.25, 14.9, 13.0, -3.0]])
    exact = logits.double().log_softmax(-1)
    got = log_softmax(logits)
    assert got.dtype == torch.float32
    assert (got.double() - exact).abs().max().item() < 1e-6       # ulp-level on log p of about -35
    assert abs(got[0, 0].item() - exact[0, 0].item()) < 2e-7     # log p = -0.008
