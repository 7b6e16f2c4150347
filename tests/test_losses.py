"""Each method's loss against values computed by hand on small tensors."""
import math

import pytest
import torch

from methods.common import kl_to_reference, sequence_logprob
from methods.idk_dpo import dpo_loss
from methods.npo import npo_loss
from methods.rmu import control_vector, masked_mse
from methods.simnpo import simnpo_loss
from methods.undial import undial_loss

t = torch.tensor


def test_npo_when_model_and_reference_agree_is_2_log2_over_beta():
    assert npo_loss(t([-5.0, -9.0]), t([-5.0, -9.0]), beta=0.1).item() == pytest.approx(20 * math.log(2))


def test_npo_by_hand():
    # log-ratio -10, beta 0.1: -(2/0.1) log sigmoid(1) = 20 log(1 + e^-1)
    assert npo_loss(t([-20.0]), t([-10.0]), beta=0.1).item() == pytest.approx(20 * math.log1p(math.exp(-1)),
                                                                            rel=1e-6)


def test_simnpo_by_hand_and_at_the_margin():
    # NLL 6 over 3 tokens = 2; beta 4.5: -(2/4.5) log sigmoid(9)
    value = simnpo_loss(t([-6.0]), t([3]), beta=4.5, delta=0.0).item()
    assert value == pytest.approx(2 / 4.5 * math.log1p(math.exp(-9)), rel=1e-5)
    # NLL/len equal to delta (the reference-free counterpart of "model equals reference"): (2/beta) log 2
    assert simnpo_loss(t([-6.0]), t([3]), beta=4.5, delta=2.0).item() == pytest.approx(2 / 4.5 * math.log(2))


def test_dpo_when_model_and_reference_agree_and_by_hand():
    same = t([-3.0, -4.0])
    assert dpo_loss(same, same, same, same, beta=0.1).item() == pytest.approx(20 * math.log(2))
    # win log-ratio +1, lose log-ratio -1: -(20) log sigmoid(0.2)
    value = dpo_loss(t([-2.0]), t([-3.0]), t([-5.0]), t([-4.0]), beta=0.1).item()
    assert value == pytest.approx(20 * math.log1p(math.exp(-0.2)), rel=1e-6)


def test_sequence_logprob_by_hand():
    logits = torch.zeros(1, 3, 2)                  # uniform over 2 tokens
    labels = t([[-100, 1, 0]])
    assert sequence_logprob(logits, labels).item() == pytest.approx(2 * math.log(0.5))


def test_kl_to_reference_by_hand():
    labels = t([[-100, 0]])
    ref = torch.log(t([[[0.5, 0.5], [0.0, 0.0]]]) + 1e-30)   # only position 0 predicts a label
    cur = torch.log(t([[[0.25, 0.75], [0.0, 0.0]]]) + 1e-30)
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert kl_to_reference(cur, ref, labels).item() == pytest.approx(expected, rel=1e-6)
    assert kl_to_reference(ref, ref, labels).item() == pytest.approx(0.0, abs=1e-7)


def test_undial_by_hand():
    # one label position, vocab 2, teacher logits (0, 0), label 0, beta ln 3 -> target softmax(-ln3, 0) = (1/4, 3/4)
    ref_logits = torch.zeros(1, 2, 2)
    logits = torch.zeros(1, 2, 2)                   # student uniform: CE = log 2 whatever the target
    labels = t([[-100, 0]])
    assert undial_loss(logits, ref_logits, labels, beta=math.log(3)).item() == pytest.approx(math.log(2))
    logits[0, 0] = t([0.0, math.log(3)])             # student = target: CE = entropy of (1/4, 3/4)
    entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert undial_loss(logits, ref_logits, labels, beta=math.log(3)).item() == pytest.approx(entropy, rel=1e-6)


def test_rmu_pieces():
    u = control_vector(16, seed=0, coeff=6.5, device="cpu")
    assert u.norm().item() == pytest.approx(6.5, rel=1e-6)
    assert torch.equal(u, control_vector(16, seed=0, coeff=6.5, device="cpu"))
    a, b = torch.zeros(1, 2, 4), torch.ones(1, 2, 4)
    b[0, 1] = 100.0                                  # the padded position must not count
    assert masked_mse(a, b, t([[1, 0]])).item() == pytest.approx(1.0)
