"""`save_models`: every row's model out of the cache into the results, in the standard transformers layout
(safetensors weights, config, generation config, tokenizer), ready for `AutoModelForCausalLM.from_pretrained` or
for a later run's `checkpoints.<row>=<folder>`.

One task: <output_dir>/models/<row>/; several: <output_dir>/models/<task>/<row>/. A LoRA row is its adapter folder
(peft's layout, its adapter_config.json pointing at the exported target), or with save_models=merged the adapter
merged into full weights. Target and retain come from the cache when the suite trained them; a row's model is its
first seed's (the record's own). Each folder is written beside its final place and renamed into it.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from unlearnbench.config import ExperimentConfig
from unlearnbench.heavy import peft
from unlearnbench.models import load_model, load_tokenizer, save_model

BOOKKEEPING = {"DONE", "cost.json", "rows_seen.json", "unit.json"}     # the cache's files, not the model's


def export_models(cfg: ExperimentConfig, task: str, models: dict[str, str | None], lora_rows: list[str],
                  main: bool = True) -> dict[str, Path]:
    """Copy (or merge) each row's model folder from the cache to the results; returns {row: exported folder}."""
    root = cfg.resolved_output_dir() / "models" / (task if len(cfg.tasks) > 1 else "")
    cache = cfg.resolved_cache_dir().resolve()
    target = models["target"]
    assert target is not None       # the target's folder is always given
    out = {}
    for row, folder in models.items():
        # only what the suite built: a given checkpoint is already the user's, a hub id is not a folder
        if not folder or not Path(folder).is_dir() or cache not in Path(folder).resolve().parents:
            continue
        out[row] = root / row
        if not main:
            continue
        tmp = root / f".{row}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        if row in lora_rows and cfg.save_models == "merged":
            model = peft.PeftModel.from_pretrained(load_model(target, cfg.model), folder).merge_and_unload()
            save_model(model, load_tokenizer(folder, cfg.model), tmp, alone=True)
        else:
            tmp.mkdir(parents=True)
            for path in Path(folder).iterdir():
                if path.is_file() and path.name not in BOOKKEEPING:
                    shutil.copy2(path, tmp / path.name)
            if row in lora_rows:
                base = out.get("target", Path(target))
                config = json.loads((tmp / "adapter_config.json").read_text(encoding="utf-8"))
                config["base_model_name_or_path"] = str(Path(base).resolve() if Path(base).exists() else base)
                (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        shutil.rmtree(out[row], ignore_errors=True)
        tmp.rename(out[row])
    return out
