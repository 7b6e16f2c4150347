"""The public-checkpoint experiment (configs/experiment/tofu_llama32_1b.yaml) runs offline on local stand-ins with
the hub's layout: tiny models saved under the two repo ids in a hub cache, and a local copy of the TOFU files.
What is exercised is the path a GPU user takes (hub ids resolved from the cache, given target and retain, chat
template, no fine-tuning), not the numbers of the real 1B models."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tofu_release import write_release
from transformers import LlamaConfig, LlamaForCausalLM

from unlearnbench.models import train_tokenizer

ROOT = Path(__file__).resolve().parent.parent
CHAT = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def stand_in(hub: Path, repo: str, texts: list[str], seed: int) -> None:
    """A tiny Llama and a chat tokenizer where the hub cache keeps `repo` (models--org--name/snapshots/<rev>)."""
    folder = hub / f"models--{repo.replace('/', '--')}"
    revision = f"{seed:040d}"
    snapshot = folder / "snapshots" / revision
    tok = train_tokenizer(texts, 512)
    tok.chat_template = CHAT
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=512,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    import torch
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(snapshot, safe_serialization=True)
    tok.save_pretrained(snapshot)
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(revision)


@pytest.mark.pipeline
def test_public_checkpoints_run_offline_from_the_hub_cache(tmp_path):
    experiment = yaml.safe_load((ROOT / "configs" / "experiment" / "tofu_llama32_1b.yaml").read_text())
    data = write_release(tmp_path / "TOFU")
    texts = [json.loads(line)["question"] for line in (data / "full.json").read_text().splitlines()]
    hub = tmp_path / "hub"
    for seed, repo in enumerate({experiment["model"]["target"], experiment["model"]["retain"]}):
        stand_in(hub, repo, texts, seed)
    env = {**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "run_benchmark.py", "experiment=tofu_llama32_1b", "task.source=local",
           f"task.path={data}", "methods=GradDiff,Retrain", "unlearn.epochs=1", "unlearn.grad_accum=1",
           "model.dtype=float32", "task.eval.max_new_tokens=4", f"output_dir={tmp_path / 'out'}",
           f"cache_dir={tmp_path / 'cache'}"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    rows = {r["model"]: r for r in results["results"]}
    assert list(rows) == ["target", "retain", "GradDiff", "Retrain"]
    assert all(r["status"] == "ok" for r in rows.values())
    # given checkpoints: nothing was fine-tuned, so their training cost is unknown (null), not invented
    assert rows["target"]["cost"]["wall_seconds"] is None and rows["retain"]["cost"]["wall_seconds"] is None
    assert rows["GradDiff"]["cost"]["wall_seconds"] > 0
    assert rows["retain"]["metrics"]["forget_quality"] == 1.0
    assert not (tmp_path / "cache" / "finetuned").exists()
