"""Every registered method, on full weights and through LoRA: a few steps on a tiny model built from a config."""
import copy

import pytest
import torch
from accelerate import Accelerator

from benchmarks.synthetic_tofu import SyntheticTofuConfig, general_corpus, generate, read_refusals
from methods import METHODS, method_config
from methods.trainer import prepare, train
from unlearnbench.config import EmbeddedModelConfig, LoraSettings, ModelConfig, TrainConfig
from unlearnbench.models import PromptFormat, build_embedded_model, train_tokenizer

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
                            "Noise", "Retrain"}


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("name", TRAINED)
def test_method_trains(setup, name, lora):
    target, tok, roles = setup
    spec = METHODS[name]
    hp = method_config(name, {"lr": 1e-2, **SMALL_ARGS.get(name, {})})
    model, ref = prepare(copy.deepcopy(target), spec, hp, LoraSettings(r=4, alpha=8) if lora else None)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    logs = []

    def loss_fn(m, b):
        loss, info = spec.loss(m, b, ref, hp)
        logs.append(loss.item())
        return loss, info
    train(model, roles, loss_fn, TrainConfig(epochs=2, batch_size=2), hp.lr, seed=0, accelerator=Accelerator(),
          pad_id=tok.pad_token_id, lead="forget", desc=name)
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
    model, ref = prepare(model, spec, hp)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train(model, roles, lambda m, b: spec.loss(m, b, ref, hp), TrainConfig(epochs=1, batch_size=2), hp.lr, seed=0,
          accelerator=Accelerator(), pad_id=tok.pad_token_id, lead="forget", desc=name)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved
    if name == "RMU":
        assert all(".mlp.down_proj" in n and (".layers.0." in n or ".layers.1." in n) for n in moved)
