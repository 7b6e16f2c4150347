"""Does the knowledge come back? The relearning split, the quantization against hand-computed values, the
recovery numbers at both ends, and the attacks as cached units (orchestration/attacks/)."""
import json
import shutil

import bitsandbytes as bnb
import bitsandbytes.functional as bnbf
import pytest
import torch

import benchmarks  # noqa: F401  (registers the task families)
import run_benchmark
from benchmarks.wmdp import WmdpConfig, WmdpTask
from evals.robustness import ou_relearn_score, recovery, restrict
from orchestration.attacks.quantize import through_torch
from unlearnbench.config import EmbeddedModelConfig, ModelConfig, load_config
from unlearnbench.models import build_embedded_model, load_model, save_model, train_tokenizer
from unlearnbench.tasks import build_task

# NF4's 16 levels (Dettmers et al. 2023, QLoRA, appendix E): quantiles of N(0, 1) scaled to [-1, 1]
NF4 = torch.tensor([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                    0.7229568362236023, 1.0])


def nf4_by_hand(w: torch.Tensor, block: int = 64) -> torch.Tensor:
    """Round to nearest of NF4's levels, each block of `block` weights scaled by its absolute maximum."""
    blocks = w.reshape(-1, block)
    absmax = blocks.abs().max(dim=1, keepdim=True).values
    nearest = ((blocks / absmax).unsqueeze(-1) - NF4).abs().argmin(-1)
    return (NF4[nearest] * absmax).reshape(w.shape)


def test_quantization_on_load_equals_group_wise_round_to_nearest(tmp_path):
    tok = train_tokenizer(["the Velkran mould grows on old thatch"] * 3, 300)
    torch.manual_seed(0)
    save_model(build_embedded_model(EmbeddedModelConfig(hidden_size=64, num_layers=1, num_heads=2,
                                                        intermediate_size=128), tok), tok, tmp_path)
    plain = load_model(str(tmp_path), ModelConfig())
    weight = plain.model.layers[0].mlp.down_proj.weight.detach()
    # 4 bits: NF4 in blocks of 64, one absmax scale each
    layer = load_model(str(tmp_path), ModelConfig(), bits=4).model.layers[0].mlp.down_proj
    dequantized = bnbf.dequantize_4bit(layer.weight.data, layer.weight.quant_state).float()
    assert torch.allclose(dequantized, nf4_by_hand(weight), atol=1e-6)
    assert not torch.equal(dequantized, weight)
    # the attack computes through torch's kernels on exactly those weights: no bitsandbytes layer is left
    model = through_torch(load_model(str(tmp_path), ModelConfig(), bits=4))
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    plain_layer = model.model.layers[0].mlp.down_proj
    assert type(plain_layer) is torch.nn.Linear and torch.equal(plain_layer.weight, dequantized)
    x = torch.randn(3, plain_layer.in_features)
    assert torch.equal(plain_layer(x), torch.nn.functional.linear(x, dequantized))
    # 8 bits: LLM.int8's weights, round(127 w / the row's absolute maximum), of the float16 weights
    layer = load_model(str(tmp_path), ModelConfig(), bits=8).model.layers[0].mlp.down_proj
    half = weight.half().float()
    assert torch.equal(layer.weight.data.float(), torch.round(127 * half / half.abs().max(1, keepdim=True).values))
    # 16: not quantized at all
    assert torch.equal(load_model(str(tmp_path), ModelConfig(), bits=16).model.layers[0].mlp.down_proj.weight, weight)


def test_recovery_numbers():
    assert recovery(0.5, 0.1, 0.9) == pytest.approx(0.5)
    assert recovery(0.1, 0.1, 0.9) == 0.0 and recovery(0.9, 0.1, 0.9) == 1.0
    assert recovery(0.05, 0.1, 0.9) < 0 and recovery(0.3, 0.3, 0.3) is None
    assert ou_relearn_score(0.1, 0.5, 0.1, 0.3) == pytest.approx(0.5)   # came back twice what retraining learns
    assert ou_relearn_score(0.1, 0.2, 0.1, 0.3) == 1.0 and ou_relearn_score(0.3, 0.2, 0.1, 0.3) == 1.0
    stats = {"forget": {"nll": [1, 2, 3], "acc": [0, 1, 1], "lm_eval_acc": {"t": 0.5}}, "retain": {"nll": [4]}}
    assert restrict(stats, [2, 0])["forget"] == {"nll": [3, 1], "acc": [1, 0], "lm_eval_acc": {"t": 0.5}}
    assert restrict(stats, None) is stats


def test_the_relearn_split_never_trains_on_a_scored_item(tmp_path):
    cfg = load_config(["experiment=smoke"])
    label, section = next(iter(cfg.tasks.items()))
    tofu = build_task(label, section)
    tofu.load(tmp_path)
    rows, items = tofu.relearn_split(0)
    per = tofu.cfg.synthetic.qa_per_author
    assert len(rows) == len(tofu.rows["forget"]) // per * (per // 2) and items
    scored = [tofu.rows["forget_eval"][i] for i in items]
    trained = {(r["question"], r["answer"]) for r in rows}
    assert not trained & {(r["question"], r["answer"]) for r in scored}
    assert not {r["answer"] for r in rows} & {r["answer"] for r in scored}
    assert len(scored) + len(rows) == len(tofu.rows["forget"])
    assert tofu.relearn_split(0) == (rows, items) and tofu.relearn_split(1) != (rows, items)
    # WMDP-style: the paragraphs of half the forget species relearn; the questions about the other half are scored
    wmdp = WmdpTask(WmdpConfig(name="wmdp"))
    wmdp.load(tmp_path)
    rows, items = wmdp.relearn_split(0)
    asked = {q.split(" ")[1] + " " + q.split(" ")[2] for q, _ in (wmdp.questions["forget"][i] for i in items)}
    assert len(asked) == wmdp.cfg.synthetic.n_forget - wmdp.cfg.synthetic.n_forget // 2
    assert rows and not any(name in r["text"] for name in asked for r in rows)


ATTACKS = ["robustness.relearn_steps=4", "robustness.relearn_lr=1e-4", "robustness.quant_bits=16,4"]


@pytest.fixture(scope="module")
def attacked(smoke_root):
    args = ["experiment=smoke", f"cache_dir={smoke_root / 'cache'}", *ATTACKS]
    return args, run_benchmark.main([*args, f"output_dir={smoke_root / 'attacked'}"])


@pytest.mark.pipeline
def test_every_row_is_attacked_and_both_ends_hold(smoke_root, attacked):
    _, payload = attacked
    rows = {r["model"]: r for r in payload["results"]}
    assert list(rows) == ["target", "retain", "GradAscent", "GradDiff"]
    for name, r in rows.items():
        m = r["metrics"]
        for key in ("relearn_forget_prob", "relearn_forget_quality", "relearn_model_utility", "relearn_recovery",
                    "relearn_ou_score", "quant4_forget_prob", "quant4_model_utility", "quant4_recovery"):
            assert isinstance(m[key], float), (name, key)
        # the identity setting changes no metric
        for key in ("forget_prob", "forget_quality", "model_utility"):
            assert m[f"quant16_{key}"] == m[key], (name, key)
        assert set(r["attack_cost"]) == {"relearn", "quant16", "quant4"}
        assert r["attack_cost"]["relearn"]["attack"]["tokens"] > 0
    # the yardstick: the retain model under the same attack recovers nothing, by construction
    assert all(rows["retain"]["metrics"][f"{a}_recovery"] == 0.0 for a in ("relearn", "quant16", "quant4"))
    # the untouched target, relearned, still holds what it knew
    assert rows["target"]["metrics"]["relearn_recovery"] >= 0.8
    assert rows["target"]["metrics"]["quant16_recovery"] == 1.0
    board = (smoke_root / "attacked" / "leaderboard.md").read_text()
    assert "### tofu_forget10: does it come back?" in board and "| relearn_forget_prob |" in board.replace(
        "| model | relearn_forget_prob", "| relearn_forget_prob")
    assert (smoke_root / "attacked" / "plots" / "tofu_forget10_quality_vs_recovery.png").is_file()


@pytest.mark.pipeline
def test_attacks_are_cached_units_and_recompute_the_same(smoke_root, attacked):
    args, payload = attacked
    shutil.rmtree(smoke_root / "cache" / "attack")         # as if killed before any attack finished
    again = run_benchmark.main([*args, f"output_dir={smoke_root / 'attacked_again'}"])
    def pick(payload):
        return {r["model"]: {k: v for k, v in r["metrics"].items() if k.startswith(("unattacked", "relearn", "quant"))}
                for r in payload["results"]}
    assert pick(again) == pick(payload)
    assert json.loads((smoke_root / "attacked_again" / "results.json").read_text())["results"][0]["attack_cost"]


@pytest.mark.pipeline
def test_lora_and_checkpoint_rows_are_attacked_as_deployed(smoke_root):
    """A LoRA row is attacked merged into the target's weights; the same adapter given back as a checkpoint row
    gets the same attack numbers."""
    args = ["experiment=smoke", f"cache_dir={smoke_root / 'cache'}", "methods=GradDiff", "lora=true",
            "robustness.relearn_steps=2", "robustness.quant_bits=4"]
    lora = {r["model"]: r for r in run_benchmark.main(
        [*args, "save_models=true", f"output_dir={smoke_root / 'attacked_lora'}"])["results"]}
    adapter = smoke_root / "attacked_lora" / "models" / "GradDiff+lora"
    back = {r["model"]: r for r in run_benchmark.main(
        [*args, "methods=", f"checkpoints.Mine={adapter}", f"output_dir={smoke_root / 'attacked_back'}"])["results"]}
    keys = [k for k in lora["GradDiff+lora"]["metrics"] if k.startswith(("relearn", "quant"))]
    assert {"relearn_recovery", "quant4_recovery"} <= set(keys)
    for key in keys:
        assert back["Mine"]["metrics"][key] == pytest.approx(lora["GradDiff+lora"]["metrics"][key], abs=1e-6), key


@pytest.mark.pipeline
def test_every_seed_attacked_gives_the_attack_columns_intervals(smoke_root):
    """robustness.seeds=all: each method row's every seed's model is attacked, against that seed's references, so
    the attack columns are means over seeds with intervals; seed 0's values are those of a first-seed-only run."""
    args = ["experiment=smoke", f"cache_dir={smoke_root / 'cache'}", "seeds=2", "robustness.relearn_steps=4",
            "methods=GradDiff"]
    first = {r["model"]: r for r in run_benchmark.main([*args, f"output_dir={smoke_root / 'seeds_first'}"])["results"]}
    every = {r["model"]: r for r in run_benchmark.main([*args, "robustness.seeds=all",
                                                        f"output_dir={smoke_root / 'seeds_all'}"])["results"]}
    assert "relearn_recovery" not in first["GradDiff"]["spread"]
    spread = every["GradDiff"]["spread"]["relearn_recovery"]
    assert spread["n"] == 2 and spread["ci95"][0] <= spread["mean"] <= spread["ci95"][1]
    per_seed = [s["metrics"]["relearn_recovery"] for s in every["GradDiff"]["per_seed"]]
    assert per_seed[0] == first["GradDiff"]["metrics"]["relearn_recovery"] and per_seed[1] != per_seed[0]
    assert every["retain"]["metrics"]["relearn_recovery"] == 0.0
