"""Rows with a guarantee (orchestration/guarantees.py): SISA after a forget request is, bit for bit, SISA trained
from scratch without the forget rows, and retrains only the affected shards from the right slice; the aggregate
is scored exactly by the evaluation engine; DP-SGD stays within its privacy budget and clips every row's
gradient."""
import copy
import hashlib
import math
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from opacus.accountants import RDPAccountant

from evals.engine import evaluate
from evals.reference import mean_answer_nll
from methods import private
from orchestration import guarantees
from orchestration.pipeline import Pipeline
from unlearnbench.cache import UnitStore, stable_hash
from unlearnbench.config import load_config
from unlearnbench.ensemble import Ensemble
from unlearnbench.models import collate
from unlearnbench.settings import DPSettings
from unlearnbench.tasks import build_task

SHARDS, SLICES = 2, 3
OVERRIDES = [f"sisa.shards={SHARDS}", f"sisa.slices={SLICES}"]


def _pipe(cache: Path) -> Pipeline:
    cfg = load_config(["experiment=smoke", f"cache_dir={cache}", *OVERRIDES])
    label, section = next(iter(cfg.tasks.items()))
    task = build_task(label, section)
    data = task.load(cfg.resolved_cache_dir() / "tasks")
    return Pipeline(cfg, task, data, UnitStore(cfg.resolved_cache_dir()), Accelerator())


def _weights(folder: str) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).glob("*.safetensors"))}


def _without_forget(pipe: Pipeline) -> tuple[list[dict], list[str]]:
    rows, labels = pipe.data.train["target"], guarantees.units(pipe, pipe.data.train["target"])
    forget = {stable_hash("row", r) for r in pipe.data.forget}
    keep = [i for i, r in enumerate(rows) if stable_hash("row", r) not in forget]
    assert 0 < len(rows) - len(keep) == len(pipe.data.forget)
    return [rows[i] for i in keep], [labels[i] for i in keep]


@pytest.mark.pipeline
def test_sisa_unlearning_is_exact_and_retrains_only_the_affected_slices(tmp_path):
    pipe = _pipe(tmp_path / "a")
    seed, base = pipe.cfg.seed, pipe.base()
    finetuned = pipe.store.root / "finetuned"
    rows, labels = pipe.data.train["target"], guarantees.units(pipe, pipe.data.train["target"])
    before = guarantees.sisa_model(pipe, base, rows, labels, SHARDS, seed, "all rows")
    built = set(finetuned.iterdir())
    units = guarantees.sisa_units(pipe, base, SHARDS, seed)
    new = set(finetuned.iterdir()) - built
    row = units[guarantees.sisa_row(SHARDS)]

    # which steps had to retrain, worked out from the partition: in a shard holding forget authors, every step
    # from the first slice that holds one of them
    forget_cells = {guarantees.cell(lab, seed, SHARDS, SLICES) for r, lab in zip(rows, labels) if r in pipe.data.forget}
    first = {s: min(r for t, r in forget_cells if t == s) for s, _ in forget_cells}
    expected = sum(SLICES - r for r in first.values())
    assert 0 < len(first) < SHARDS, "the smoke world's forget author should sit in one shard of two"
    assert len(new) == row.guarantee["retrained_steps"] == expected
    assert row.guarantee["affected_shards"] == sorted(s + 1 for s in first)

    kept, kept_labels = _without_forget(pipe)
    after = guarantees.sisa_model(pipe, base, kept, kept_labels, SHARDS, seed, "kept rows")      # cached: no training
    assert set(finetuned.iterdir()) - built == new
    for s, (old, now) in enumerate(zip(before.model.members, after.model.members)):
        if s in first:
            assert _weights(old) != _weights(now)
        else:                               # an untouched constituent: the very same bytes
            assert old == now and _weights(old) == _weights(now)
    # its relative cost is below 1: one shard of two retrained, against retraining the whole model
    retain = pipe.finetuned(base, "retain")
    assert row.cost["grad_tokens"] < 0.8 * retain.cost["grad_tokens"]
    assert row.cost["flops"] < retain.cost["flops"]

    # the guarantee: SISA trained from scratch in an empty cache on the rows without the forget set, same seeds
    fresh = _pipe(tmp_path / "b")
    again = guarantees.sisa_model(fresh, fresh.base(), *_without_forget(fresh), SHARDS, seed, "kept rows")
    assert [_weights(m) for m in again.model.members] == [_weights(m) for m in after.model.members]
    assert fresh.evaluated(again.model, "scratch").stats == row.stats


def test_the_aggregate_is_scored_exactly_by_the_engine(smoke_target):
    """The engine's cached, batched scoring and its greedy decoding of the aggregate equal a plain full-sequence
    pass: every constituent reads and writes its own layers of the shared cache."""
    model, fmt, task = smoke_target
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    ensemble = Ensemble([model, other]).eval()
    rows = task.rows["retain_eval"][:10]
    items = [(r["question"], [r["answer"]] + list(r["perturbed_answer"])) for r in rows]
    fast = evaluate(ensemble, fmt, items, token_budget=300, batch_size=4, max_new_tokens=12)
    for i, (question, answers) in enumerate(items):
        plain = mean_answer_nll(ensemble, fmt, [(question, a) for a in answers], batch_size=8)
        assert all(abs(a - b) < 4e-6 * max(1, abs(b)) for a, b in zip(fast[i].nll, plain))
        ids = fmt.prompt_ids(question)
        with torch.no_grad():
            for _ in range(12):
                nxt = int(ensemble(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
                ids.append(nxt)
                if nxt == fmt.tokenizer.eos_token_id:
                    break
        new = ids[len(fmt.prompt_ids(question)):]
        assert fast[i].generation == fmt.tokenizer.decode(new, skip_special_tokens=True)
    # the mean of the probabilities: a softmax of the aggregate's logits averages the constituents'
    ids = torch.tensor([fmt.prompt_ids(items[0][0])])
    with torch.no_grad():
        mean = (model(input_ids=ids).logits.softmax(-1) + other(input_ids=ids).logits.softmax(-1)) / 2
        assert torch.allclose(ensemble(input_ids=ids).logits.softmax(-1), mean, atol=1e-6)


@pytest.mark.filterwarnings("ignore:Optimal order is the")    # the bound at the edge of opacus's orders: still a bound
def test_dp_noise_keeps_the_accountant_within_the_budget():
    dp = DPSettings(batch_size=16)
    noises = []
    for epsilon in (1.0, 8.0, 64.0):
        plan = private.plan(1000, 5, dp, epsilon)
        assert plan["delta"] == 1 / 1000 and plan["steps"] == math.ceil(5 * 1000 / 16)
        accountant = RDPAccountant()
        accountant.history = [(plan["noise_multiplier"], plan["sample_rate"], plan["steps"])]
        spent = accountant.get_epsilon(plan["delta"])
        assert 0.95 * epsilon <= spent <= epsilon       # within the budget, and no more noise than it needs
        noises.append(plan["noise_multiplier"])
    assert noises[0] > noises[1] > noises[2] > 0


@pytest.mark.pipeline
def test_a_dp_run_reports_what_it_spent(tmp_path):
    pipe = _pipe(tmp_path)
    unit = guarantees.dp_units(pipe, pipe.base(), 4.0, pipe.cfg.seed)[guarantees.dp_row(4.0)]
    g = unit.guarantee
    assert g["steps"] > 0 and 0.9 * 4.0 <= g["epsilon_spent"] <= 4.0
    assert g["delta"] == 1 / (len(pipe.data.train["target"]) + len(pipe.replay_rows()))     # 1 / n, n rows trained on
    assert unit.cost["wall_seconds"] == 0 and unit.training_cost["grad_tokens"] > 0


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")   # only weights need gradients
def test_dp_sgd_clips_every_rows_gradient():
    """A batch of two rows, one with a gradient a million times too large: with no noise, the update is the mean
    of the clipped gradients, so it moves the weights by at most the clipping norm."""
    model = torch.nn.Linear(4, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    wrapped, optimizer = private.privatize(model, torch.optim.SGD(model.parameters(), lr=1.0), 0.0, 1.0, 2)
    x = torch.tensor([[0.1, 0.0, 0.0, 0.0], [1e6, 1e6, 0.0, 0.0]])
    wrapped(x).mean().backward()            # row i's gradient is x_i
    optimizer.step()
    moved = -model.weight.detach()[0]
    assert torch.allclose(moved, torch.tensor([(0.1 + 0.5 ** 0.5) / 2, 0.5 ** 0.5 / 2, 0.0, 0.0]), atol=1e-6)
    assert moved.norm() <= 1.0


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")   # only weights need gradients
def test_dp_sgd_clips_on_a_language_model(smoke_target):
    """The same bound through every weight of the smoke model (tied embeddings, RMSNorm through opacus's
    functorch fallback): one step of SGD at lr 1 moves the weights by at most the clipping norm, where an
    unclipped step moves them far more."""
    model, fmt, task = smoke_target
    rows = [fmt.encode(r["question"], r["answer"]) for r in task.rows["forget"][:2]]
    rows[1]["labels"] = [-100 if t == -100 else (t + 7) % len(fmt.tokenizer) for t in rows[1]["labels"]]
    batch = collate(rows, fmt.tokenizer.pad_token_id)

    def step(clip: float | None) -> float:
        m = copy.deepcopy(model).train()
        before = [p.detach().clone() for p in m.parameters()]
        optimizer = torch.optim.SGD(m.parameters(), lr=1.0)
        if clip is not None:
            m, optimizer = private.privatize(m, optimizer, 0.0, clip, len(rows))
        private.row_nll(m, batch).mean().backward()
        optimizer.step()
        return float(torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(m.parameters(), before))))

    clip = 1e-3
    assert step(clip) <= clip * (1 + 1e-4)
    assert step(None) > 100 * clip


@pytest.mark.pipeline
def test_guarantee_rows_in_a_run_its_report_and_the_readme(tmp_path):
    """The whole run, with LoRA constituents and a LoRA DP adapter (the pretrained-model path; the tests above
    cover full weights): SISA and DP rows beside the methods, SISA-target a reference (never marked best), DP's
    unlearning cost zero, the guarantees table in the leaderboard and as a README table kind that is checked."""
    import sys

    import run_benchmark
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import readme_tables
    payload = run_benchmark.main(["experiment=smoke", "sisa.shards=2", "dp.epsilon=8", "sisa.lora_lr=3e-3",
                                  "dp.lora_lr=3e-3", f"cache_dir={tmp_path / 'c'}", f"output_dir={tmp_path / 'out'}"])
    rows = {r["model"]: r for r in payload["results"]}
    assert {"SISA(S=2)-target", "SISA(S=2)", "DP(eps=8)"} <= set(rows)
    sisa, dp = rows["SISA(S=2)"], rows["DP(eps=8)"]
    assert rows["SISA(S=2)-target"]["reference"] and "reference" not in sisa
    assert sisa["guarantee"]["retrained_steps"] <= sisa["guarantee"]["slice_steps"] == 4
    assert sisa["training_cost"]["tokens"] == rows["SISA(S=2)-target"]["cost"]["tokens"] > 0
    assert dp["cost"]["wall_seconds"] == 0 and dp["cost"]["relative_cost"] == 0
    assert dp["guarantee"]["epsilon_spent"] <= 8
    board = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "rows with a guarantee" in board and "exact: 2 shards × 2 slices" in board
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- guarantees:out -->\nstale\n<!-- /guarantees -->\nend\n")
    assert readme_tables.main(["--write", "--results", str(tmp_path), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "| DP(eps=8) | ε=8 (spent" in text and "stale" not in text
    assert readme_tables.main(["--check", "--results", str(tmp_path), "--readme", str(readme)]) == 0
    readme.write_text(text.replace("exact: 2 shards", "exact: 3 shards", 1))
    assert readme_tables.main(["--check", "--results", str(tmp_path), "--readme", str(readme)]) == 1


def test_an_empty_poisson_draw_is_a_step_of_noise_that_the_accountant_counts():
    from transformers import LlamaConfig, LlamaForCausalLM

    from unlearnbench.config import TrainConfig
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=2, intermediate_size=32, tie_word_embeddings=True))
    rows = [{"input_ids": [1, 5, 6, 7], "labels": [-100, 5, 6, 7]}] * 40
    log = private.dp_finetune(model, rows, TrainConfig(epochs=1, lr=1e-2), DPSettings(batch_size=1), 8.0, 0, "cpu",
                              0, "test")
    assert log["steps"] == 40 and log["empty_batches"] > 5     # q = 1/40: about a third of the draws are empty
    assert 0.95 * 8 <= log["epsilon_spent"] <= 8               # every step counted, empty ones included
