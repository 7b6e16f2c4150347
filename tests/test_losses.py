"""Each method's loss against values computed by hand on small tensors."""
import math

import pytest
import torch

from methods.ceu import ceu_loss
from methods.common import kl_to_reference, sequence_logprob
from methods.idk_dpo import dpo_loss
from methods.npo import npo_loss
from methods.npo_sam import sam_gradient
from methods.pdu import DualVariable, PDUConfig, flatness_loss, pdu
from methods.rmu import control_vector, masked_mse
from methods.satimp import satimp_loss, satimp_weights
from methods.simnpo import simnpo_loss
from methods.undial import undial_loss
from methods.wga import wga_loss, wga_weights

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


def reweighting_case():
    """Two label positions over 3 tokens: position 0 gives its label p = 0.6 (logits 0, ln 3, 0), position 1
    gives p = 1/3 (uniform); the last position predicts nothing."""
    logits = torch.zeros(1, 3, 3)
    logits[0, 0, 1] = math.log(3)
    return logits.requires_grad_(), t([[-100, 1, 2]])


@pytest.mark.parametrize("which", ["SatImp", "WGA"])
def test_token_weights_and_reweighted_ascent_by_hand(which):
    logits, labels = reweighting_case()
    p, nll = [0.6, 1 / 3], [-math.log(0.6), math.log(3)]
    if which == "SatImp":       # beta1 5, beta2 1: p^5 (1 - p)
        w = [q ** 5 * (1 - q) for q in p]
        weights, loss = satimp_weights(t([nll]), 5.0, 1.0), satimp_loss(logits, labels, 5.0, 1.0)
    else:                       # beta 1: p
        w = list(p)
        weights, loss = wga_weights(t([nll]), 1.0), wga_loss(logits, labels, 1.0)
    assert weights[0].tolist() == pytest.approx(w, rel=1e-6)
    assert loss.item() == pytest.approx(-(w[0] * nll[0] + w[1] * nll[1]) / 2, rel=1e-6)
    # the weights carry no gradient: d loss / d logits at position 0 is -(w0 / 2)(softmax - onehot)
    loss.backward()
    assert logits.grad[0, 0].tolist() == pytest.approx([-w[0] / 2 * d for d in (0.2, -0.4, 0.2)], rel=1e-5)
    assert logits.grad[0, 2].abs().sum().item() == 0.0


def test_ceu_by_hand_and_its_gradient():
    # position 1's logits (ln 2, ln 3, 0), label 2: q = (0.4, 0.6, 0), p = (2, 3, 1) / 6
    logits = torch.zeros(1, 3, 3)
    logits[0, 1, :2] = t([math.log(2), math.log(3)])
    logits.requires_grad_()
    labels = t([[-100, 1, 2]])
    loss = ceu_loss(logits, labels, ignore_first=1)      # the first answer token (position 0's) is left out
    assert loss.item() == pytest.approx(0.4 * math.log(3) + 0.6 * math.log(2), rel=1e-6)
    loss.backward()                                      # q is fixed: the gradient is p - q
    assert logits.grad[0, 1].tolist() == pytest.approx([2 / 6 - 0.4, 3 / 6 - 0.6, 1 / 6], abs=1e-6)
    assert logits.grad[0, 0].abs().sum().item() == 0.0
    # with the first token kept, position 0 (uniform, label 1: q = (1/2, 0, 1/2), CE = ln 3) joins the mean
    both = ceu_loss(logits.detach(), labels, ignore_first=0).item()
    assert both == pytest.approx((math.log(3) + 0.4 * math.log(3) + 0.6 * math.log(2)) / 2, rel=1e-6)


def test_pdu_flatness_and_dual_ascent_by_hand():
    logits = torch.zeros(1, 3, 3)
    logits[0, 0] = t([1.0, 2.0, 6.0])                   # max 6, mean 3: (6 - 3)^2 = 9
    logits[0, 1] = t([0.0, 0.0, 30.0])                  # a position whose label is masked: not counted
    assert flatness_loss(logits, t([[-100, 0, -100]])).item() == pytest.approx(9.0)
    # lambda starts at alpha 10, moves from micro-batch 2 of 4 (warm-up 0.5), step 2, eps 0.5, retain NLL 1.0
    dual = DualVariable(PDUConfig(alpha=10.0, dual_step_size=2.0, retain_loss_eps=0.5, dual_warmup=0.5), 4)
    for _ in range(4):
        dual.observe(1.0)
    assert dual.record() == {"dual_variable": [10.0, 10.0, 10.0, 11.0], "dual_final": 12.0, "dual_moves_from": 2}
    dual.observe(-100.0)                                # far inside the constraint: lambda stops at 0
    assert dual.value == 0.0


def test_pdu_lagrangian_uses_lambda_before_its_update():
    class Fixed:                                       # logits with flatness 9 and a retain NLL of 1.5
        def __call__(self, input_ids, attention_mask=None, labels=None):
            logits = torch.zeros(1, 3, 3)
            logits[0, 0] = t([1.0, 2.0, 6.0])
            return type("Out", (), {"logits": logits, "loss": t(1.5)})()
    cfg = PDUConfig(gamma=2.0, alpha=4.0, retain_loss_eps=0.5, dual_step_size=1.0, dual_warmup=0.0)
    rows = {"input_ids": t([[1, 2, 3]]), "attention_mask": t([[1, 1, 1]]), "labels": t([[-100, 0, -100]])}
    dual = DualVariable(cfg, 10)
    loss, logs = pdu(Fixed(), {"forget": rows, "retain": rows}, None, cfg, dual)
    assert loss.item() == pytest.approx(2.0 * 9.0 + 4.0 * (1.5 - 0.5))
    assert logs["dual"] == 4.0 and dual.value == pytest.approx(5.0)


def test_sam_gradient_is_taken_at_the_perturbed_weights():
    # L = |w|^2 / 2 at w = (3, 4): g = w, |g| = 5, rho 0.5 -> w + (0.3, 0.4), where the gradient is (3.3, 4.4)
    w = t([3.0, 4.0]).requires_grad_()
    grads, loss = sam_gradient([w], lambda: (w ** 2).sum() / 2, rho=0.5)
    assert grads[0].tolist() == pytest.approx([3.3, 4.4], rel=1e-6)
    assert loss.item() == pytest.approx((3.3 ** 2 + 4.4 ** 2) / 2, rel=1e-6)
    assert w.tolist() == pytest.approx([3.0, 4.0], abs=1e-6) and w.grad is None   # restored, nothing accumulated
