"""Bring your own: unlearned models out of the suite (save_models), models unlearned elsewhere in as rows
(checkpoints.<row>), evaluation-only runs, and methods registered from a file outside the package (extensions=)."""
import json

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

import run_benchmark
from orchestration import pipeline

SMOKE = ["experiment=smoke", "methods=GradDiff"]
COST_FIELDS = ("wall_seconds", "tokens", "flops", "relative_cost")


def rows(payload: dict) -> dict:
    return {r["model"]: r for r in payload["results"]}


def run(root, name: str, *args: str) -> dict:
    return run_benchmark.main([*SMOKE, f"output_dir={root / name}", f"cache_dir={root / 'cache'}", *args])


@pytest.fixture(scope="module")
def saved(smoke_root):
    """The smoke experiment's GradDiff row saved on full weights, through LoRA, and through LoRA merged."""
    return {"full": run(smoke_root, "saved_full", "save_models=true"),
            "lora": run(smoke_root, "saved_lora", "save_models=true", "lora=true"),
            "merged": run(smoke_root, "saved_merged", "save_models=merged", "lora=true")}


@pytest.mark.pipeline
def test_saved_models_load_with_transformers_and_peft(smoke_root, saved):
    full, lora, merged = (smoke_root / f"saved_{k}" / "models" for k in ("full", "lora", "merged"))
    assert sorted(p.name for p in full.iterdir()) == ["GradDiff", "retain", "target"]
    for folder in (full / "GradDiff", merged / "GradDiff+lora"):
        assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json"} <= \
            {p.name for p in folder.iterdir()}
        assert not (folder / "unit.json").exists() and not (folder / "DONE").exists()
        AutoModelForCausalLM.from_pretrained(folder)
    adapter = lora / "GradDiff+lora"
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in adapter.iterdir()}
    base = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert base == str((lora / "target").resolve())
    # the adapter on its base gives the merged folder's model: the same logits up to float rounding
    with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter).eval()
    plain = AutoModelForCausalLM.from_pretrained(merged / "GradDiff+lora").eval()
    ids = torch.tensor([[1, 5, 9, 14, 3]])
    with torch.no_grad():
        assert torch.allclose(with_adapter(ids).logits, plain(ids).logits, atol=1e-4)
        # and the adapter did something: not the target's logits
        target = AutoModelForCausalLM.from_pretrained(base).eval()
        assert not torch.allclose(with_adapter(ids).logits, target(ids).logits, atol=1e-6)


@pytest.mark.pipeline
@pytest.mark.parametrize("kind,row", [("full", "GradDiff"), ("lora", "GradDiff+lora"), ("merged", "GradDiff+lora")])
def test_a_saved_row_passed_back_as_a_checkpoint_scores_the_same(smoke_root, saved, kind, row):
    folder = smoke_root / f"saved_{kind}" / "models" / row
    again = rows(run(smoke_root, f"back_{kind}", "methods=", f"checkpoints.Mine={folder}"))
    original = rows(saved[kind])[row]
    assert list(again) == ["target", "retain", "Mine"]
    mine = again["Mine"]
    assert mine["status"] == "ok" and mine["checkpoint"] == str(folder)
    assert set(mine["metrics"]) == set(original["metrics"])
    for key, value in original["metrics"].items():
        assert mine["metrics"][key] == pytest.approx(value, abs=1e-6), key
    # its training cost is unknown, its evaluation cost is measured
    assert all(mine["cost"][k] is None for k in COST_FIELDS)
    assert mine["eval_cost"]["wall_seconds"] > 0 and mine["eval_cost"]["tokens"] > 0


@pytest.mark.pipeline
def test_evaluation_only_run_trains_nothing(smoke_root, saved, monkeypatch, capsys):
    models = smoke_root / "saved_full" / "models"

    def no_training(*a, **k):
        raise AssertionError("an evaluation-only run trained a model")
    monkeypatch.setattr(pipeline, "finetune", no_training)
    monkeypatch.setattr(pipeline, "train", no_training)
    payload = run(smoke_root, "eval_only", "methods=", f"model.target={models / 'target'}",
                  f"model.retain={models / 'retain'}", f"checkpoints.Mine={models / 'GradDiff'}",
                  f"checkpoints.Theirs={models / 'retain'}")
    got = rows(payload)
    assert list(got) == ["target", "retain", "Mine", "Theirs"] and all(r["status"] == "ok" for r in got.values())
    board = (smoke_root / "eval_only" / "leaderboard.md").read_text()
    for label in ("| target |", "| retain |", "| Mine (checkpoint)", "| Theirs (checkpoint)"):
        assert label in board, label
    # the retain model passed back as a checkpoint is indistinguishable from itself
    assert got["Theirs"]["metrics"]["forget_quality"] == 1.0
    assert got["target"]["metrics"] == rows(saved["full"])["target"]["metrics"]


METHOD_FILE = '''
from dataclasses import dataclass

from methods import method
from methods.common import nll


@dataclass
class HalfAscentConfig:
    lr: float = 1.0e-3
    scale: float = {scale}


@method("HalfAscent", HalfAscentConfig)
def half_ascent(model, batch, ref, cfg):
    forget, retain = nll(model, batch["forget"]), nll(model, batch["retain"])
    return -cfg.scale * forget + retain, {{"forget_nll": forget.item()}}
'''


@pytest.mark.pipeline
def test_a_method_from_a_file_outside_the_package(smoke_root, tmp_path, registries):
    path = tmp_path / "my_methods.py"
    path.write_text(METHOD_FILE.format(scale=0.5))
    args = [f"extensions={path}", "methods=HalfAscent"]
    full = rows(run(smoke_root, "own_full", *args))["HalfAscent"]
    lora = rows(run(smoke_root, "own_lora", *args, "lora=true"))["HalfAscent+lora"]
    for r in (full, lora):
        assert r["status"] == "ok" and r["settings"] == "its file's defaults"
        assert r["cost"]["wall_seconds"] > 0 and r["cost"]["relative_cost"] > 0
        assert 0 <= r["metrics"]["forget_quality"] <= 1 and 0 <= r["metrics"]["auc_loss"] <= 1
    assert full["metrics"] != lora["metrics"]
    # the file is part of its rows' cache keys: an edited file is unlearned again, not read from the cache
    path.write_text(METHOD_FILE.format(scale=3.0))
    edited = rows(run(smoke_root, "own_edited", *args))["HalfAscent"]
    assert edited["metrics"]["forget_prob"] < full["metrics"]["forget_prob"]


def test_zero_epochs_leave_rows_untrained_and_say_so(smoke_root, capsys):
    got = rows(run(smoke_root, "zero_epochs", "unlearn.epochs=0"))
    assert "GradDiff's rows are evaluated untrained" in capsys.readouterr().err
    assert got["GradDiff"]["untrained"] == "unlearn.epochs=0"
    assert got["GradDiff"]["metrics"]["forget_prob"] == got["target"]["metrics"]["forget_prob"]
    assert "GradDiff (set by hand) (untrained)" in (smoke_root / "zero_epochs" / "leaderboard.md").read_text()
