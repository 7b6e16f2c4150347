"""Every registered method, on full weights and through LoRA: a few steps on a tiny model built from a config."""
import copy

import pytest
import torch
from accelerate import Accelerator

from benchmarks.synthetic_tofu import SyntheticTofuConfig, general_corpus, generate, read_refusals
from methods import METHODS, method_config, run_loss
from methods.altpo import alternates
from methods.common import nll, sequence_logprob
from methods.npo import npo_loss
from methods.npo_sam import npo_sam, sam_gradient
from methods.trainer import Hooks, Run, prepare, total_micro_batches, train
from unlearnbench.config import EmbeddedModelConfig, LoraSettings, ModelConfig, TrainConfig
from unlearnbench.models import PromptFormat, build_embedded_model, collate, train_tokenizer

TRAINED = sorted(n for n, s in METHODS.items() if s.loss is not None)
# tiny model: 3 layers, so RMU's layer 1 with updates to layers 0-1 leaves layer 2 frozen
SMALL_ARGS = {"RMU": {"layer": 1, "update_layers": [0, 1], "steering_coeff": 2.0, "alpha": 10.0}}


@pytest.fixture(scope="module")
def setup():
    splits = generate(SyntheticTofuConfig(n_authors=6, qa_per_author=4, forget_percentages=[10]))
    qa, text = general_corpus()
    tok = train_tokenizer(text + [r["question"] + " " + r["answer"] for r in splits["full"]] + read_refusals(), 500)
    fmt = PromptFormat(ModelConfig(), tok)
    torch.manual_seed(0)
    model = build_embedded_model(EmbeddedModelConfig(hidden_size=32, num_layers=3, num_heads=2,
                                                     intermediate_size=64), tok).eval()
    forget = [fmt.encode(r["question"], r["answer"]) for r in splits["forget10"]]
    roles = {"forget": forget, "retain": [fmt.encode(r["question"], r["answer"]) for r in splits["retain90"]],
             "forget_idk": [fmt.encode(r["question"], "I don't know.") for r in splits["forget10"]]}
    return model, tok, roles


def test_the_roster_is_complete():
    assert set(METHODS) >= {"GradAscent", "GradDiff", "KL", "IdkSFT", "IdkDPO", "NPO", "SimNPO", "RMU", "UNDIAL",
                            "Noise", "Retrain", "SatImp", "WGA", "CEU", "PDU", "AltPO", "NPO_SAM"}


def run_roles(spec, hp, model, roles, tok):
    """The roles the method trains on: with what its roles hook adds from the target (AltPO's alternates)."""
    return {**roles, **(spec.roles(model, roles["forget"], tok, hp, 0) if spec.roles else {})}


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("name", TRAINED)
def test_method_trains(setup, name, lora):
    target, tok, roles = setup
    spec = METHODS[name]
    hp = method_config(name, {"lr": 1e-2, **SMALL_ARGS.get(name, {})})
    roles = run_roles(spec, hp, target, roles, tok)
    model, ref = prepare(copy.deepcopy(target), spec, hp, LoraSettings(r=4, alpha=8) if lora else None)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    logs, schedule = [], TrainConfig(epochs=2, batch_size=2)
    method_loss, state = run_loss(spec, hp, ref, total_micro_batches(len(roles["forget"]), schedule))

    def loss_fn(m, b):
        loss, info = method_loss(m, b)
        logs.append(loss.item())
        return loss, info
    train(model, roles, loss_fn, Run(schedule, hp.lr, 0, lead="forget"), Accelerator(), tok.pad_token_id, Hooks(name))
    assert logs and all(torch.isfinite(torch.tensor(logs)))
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert moved and moved <= trainable
    if lora:
        assert all("lora_" in n for n in moved)
        if spec.needs_ref:   # the reference is the same network with the adapter off: no second copy
            assert ref.model is None and ref.adapter_of is model
        # with the adapter disabled the network is exactly the target
        ids = torch.tensor([roles["forget"][0]["input_ids"]])
        with torch.no_grad(), model.disable_adapter():
            assert torch.equal(model(input_ids=ids).logits, target(input_ids=ids).logits)
    if name == "RMU":
        assert all(".mlp.down_proj" in n and (".layers.0." in n or ".layers.1." in n) for n in moved)
    if not lora and spec.needs_ref:
        # the reference is a frozen copy of the target, untouched by training
        assert all(not p.requires_grad for p in ref.model.parameters())
        assert all(torch.equal(p, q) for p, q in zip(ref.model.parameters(), target.parameters()))


def test_noise_moves_every_weight_and_is_seeded(setup):
    target, _, _ = setup
    spec, hp = METHODS["Noise"], method_config("Noise", {"sigma": 0.1})
    a, b = copy.deepcopy(target), copy.deepcopy(target)
    spec.edit(a, hp, 0)
    spec.edit(b, hp, 0)
    for (_, p), (_, q), (_, t) in zip(a.named_parameters(), b.named_parameters(), target.named_parameters()):
        assert torch.equal(p, q) and not torch.equal(p, t)


@pytest.mark.parametrize("name", TRAINED)
def test_method_trains_on_corpus_text(name):
    """The WMDP-style task unlearns plain text (forget corpus vs the neighbouring corpus): every method runs on
    text rows, the refusal methods on (first sentence -> refusal) pairs, and RMU still moves only its layers."""
    from benchmarks.synthetic_wmdp import SyntheticWmdpConfig
    from benchmarks.synthetic_wmdp import generate as generate_wmdp
    from orchestration.pipeline import encode_row, idk_pair
    world = generate_wmdp(SyntheticWmdpConfig(n_forget=3, n_neighbour=3))
    tok = train_tokenizer([r["text"] for r in world["forget_corpus"] + world["retain_corpus"]] + read_refusals(), 400)
    fmt = PromptFormat(ModelConfig(), tok)
    torch.manual_seed(0)
    model = build_embedded_model(EmbeddedModelConfig(hidden_size=32, num_layers=3, num_heads=2,
                                                     intermediate_size=64), tok).eval()
    pairs = [idk_pair(fmt, r, "I don't know.") for r in world["forget_corpus"]]
    assert all(p[0]["labels"][:3] == [-100] * 3 and p[0]["input_ids"][:3] == p[1]["input_ids"][:3] for p in pairs)
    spec = METHODS[name]
    roles = {"forget": [p[0] for p in pairs] if spec.needs_idk else
             [encode_row(fmt, r) for r in world["forget_corpus"]],
             "retain": [encode_row(fmt, r) for r in world["retain_corpus"]],
             "forget_idk": [p[1] for p in pairs]}
    hp = method_config(name, {"lr": 1e-2, **SMALL_ARGS.get(name, {})})
    if spec.roles:          # the pipeline prompts the forget text (first sentence -> rest) for such a method
        roles = run_roles(spec, hp, model, {**roles, "forget": [p[0] for p in pairs]}, tok)
    model, ref = prepare(model, spec, hp)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    schedule = TrainConfig(epochs=1, batch_size=2)
    train(model, roles, run_loss(spec, hp, ref, total_micro_batches(len(roles["forget"]), schedule))[0],
          Run(schedule, hp.lr, 0, lead="forget"), Accelerator(), tok.pad_token_id, Hooks(name))
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved
    if name == "RMU":
        assert all(".mlp.down_proj" in n and (".layers.0." in n or ".layers.1." in n) for n in moved)


def test_altpo_alternates_keep_the_prompt_differ_from_the_answer_and_are_seeded(setup):
    target, tok, roles = setup
    hp = method_config("AltPO", {})
    forget = roles["forget"]
    alt = alternates(target, forget, tok, hp, seed=3)["forget_alt"]
    assert alt == alternates(target, forget, tok, hp, seed=3)["forget_alt"]
    assert alt != alternates(target, forget, tok, hp, seed=4)["forget_alt"]
    for row, other in zip(forget, alt):
        n = row["labels"].index(next(x for x in row["labels"] if x != -100))
        assert other["input_ids"][:n] == row["input_ids"][:n] and other["labels"][:n] == [-100] * n
        assert other["input_ids"][-1] == tok.eos_token_id and other["labels"][n:] == other["input_ids"][n:]
        assert len(other["input_ids"]) <= len(row["input_ids"])        # no longer than the answer it replaces
    assert sum(o["input_ids"] != r["input_ids"] for o, r in zip(alt, forget)) == len(forget)


def test_npo_sam_gradient_is_the_perturbed_forget_gradient_plus_the_retain_one(setup):
    target, tok, roles = setup
    spec, hp = METHODS["NPO_SAM"], method_config("NPO_SAM", {"rho": 0.05, "alpha": 2.0})
    model, ref = prepare(copy.deepcopy(target), spec, hp)
    batch = {k: collate(v[:2], tok.pad_token_id) for k, v in roles.items()}
    params = [p for p in model.parameters() if p.requires_grad]
    forget = batch["forget"]
    ref_logp = ref.sequence_logprob(forget)
    expected, _ = sam_gradient(params, lambda: npo_loss(sequence_logprob(
        model(input_ids=forget["input_ids"], attention_mask=forget["attention_mask"]).logits, forget["labels"]),
        ref_logp, hp.beta), hp.rho)
    retain_grads = torch.autograd.grad(nll(model, batch["retain"]), params)
    loss, logs = npo_sam(model, batch, ref, hp)
    loss.backward()
    assert loss.item() == pytest.approx(logs["npo_perturbed"] + 2.0 * logs["retain_nll"], rel=1e-5)
    for p, f, r in zip(params, expected, retain_grads):
        assert torch.allclose(p.grad, f + 2.0 * r, atol=1e-6)
    plain = torch.autograd.grad(npo_loss(sequence_logprob(model(input_ids=forget["input_ids"]).logits,
                                                          forget["labels"]), ref_logp, hp.beta), params)
    assert not all(torch.allclose(a, b) for a, b in zip(plain, expected))    # the perturbation changed it


def test_pdu_row_records_its_dual_variable(setup):
    target, tok, roles = setup
    spec, hp = METHODS["PDU"], method_config("PDU", {"lr": 1e-3, "alpha": 1.0, "retain_loss_eps": 0.0,
                                                     "dual_warmup": 0.0})
    model, ref = prepare(copy.deepcopy(target), spec, hp)
    schedule = TrainConfig(epochs=1, batch_size=2)
    loss_fn, dual = run_loss(spec, hp, ref, total_micro_batches(len(roles["forget"]), schedule))
    train(model, roles, loss_fn, Run(schedule, hp.lr, 0, lead="forget"), Accelerator(), tok.pad_token_id, Hooks("PDU"))
    trajectory = dual.record()["dual_variable"]
    # eps 0 < every retain NLL: lambda climbs from 1 at every micro-batch
    assert len(trajectory) == total_micro_batches(len(roles["forget"]), schedule) and trajectory[0] == 1.0
    assert all(b > a for a, b in zip(trajectory, trajectory[1:])) and dual.record()["dual_final"] > trajectory[-1]
