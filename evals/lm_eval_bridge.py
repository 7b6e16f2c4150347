"""Multiple-choice evaluation through lm-eval (EleutherAI's harness): the scoring is lm-eval's, not ours.

Two kinds of task go in: local cloze tasks the suite writes (a JSON file per question set plus an lm-eval task
YAML; the choice texts themselves are scored after the question), and lm-eval's own registered tasks by name
(`wmdp_bio`, `mmlu`, `mmlu_college_biology`, ...), optionally pointed at a local copy of their data. The model is
the loaded, in-memory one, wrapped in lm-eval's HFLM; per-item log-likelihoods come back from its samples.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import yaml

CLOZE_TEMPLATE = {
    "output_type": "multiple_choice", "test_split": "test", "num_fewshot": 0,
    "doc_to_choice": "{{choices}}", "doc_to_target": "answer", "target_delimiter": " ",
    "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
}


def write_cloze_tasks(folder: Path, sets: dict[str, tuple]) -> Path:
    """Write {task name: (questions, doc_to_text[, doc_to_choice])} as lm-eval tasks into `folder` (atomically: a
    finished folder is never half-written). Questions are `cais/wmdp`-schema rows: question, choices, answer
    (index); doc_to_choice defaults to the choice texts themselves (cloze), e.g. ["A", "B", "C", "D"] for letters.

    Score them with `score(..., context_from_whole=True)` when the tokenizer's pre-tokens carry their trailing
    space (the embedded one): see `_hflm_class`."""
    folder = Path(folder)
    if (folder / "DONE").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        for name, (rows, doc_to_text, *choice) in sets.items():
            (tmp / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                               encoding="utf-8")
            config = {"task": name, "dataset_path": "json",
                      "dataset_kwargs": {"data_files": {"test": str(folder / f"{name}.jsonl")}},
                      "doc_to_text": doc_to_text, **CLOZE_TEMPLATE, **({"doc_to_choice": choice[0]} if choice else {}),
                      "metadata": {"version": 1}}
            (tmp / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
        (tmp / "DONE").write_text("ok\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def task_manager(include_path: Path | None = None, defaults: bool = True):
    """lm-eval's task index: its own tasks (`defaults`) and those under `include_path`. The index of its own tasks
    alone is built once per process: indexing them takes seconds, and a TaskManager is never changed after."""
    if include_path is None and defaults:
        return _lm_eval_tasks()
    from lm_eval.tasks import TaskManager
    return TaskManager(include_path=str(include_path) if include_path else None, include_defaults=defaults)


@functools.lru_cache(maxsize=1)
def _lm_eval_tasks():
    from lm_eval.tasks import TaskManager
    return TaskManager(include_defaults=True)


def check_task_names(names: list[str], manager) -> None:
    unknown = [n for n in names if n not in manager.all_tasks]
    if unknown:
        close = [t for t in manager.all_tasks if any(n.split("_")[0] in t for n in unknown)][:12]
        raise ValueError(f"lm-eval knows no task {unknown}; similar names: {close} (lm-eval --tasks list)")


def local_override(name: str, data_file: str, manager) -> dict:
    """lm-eval's own config of task `name` (prompt, choices, metric unchanged), reading its test split from a
    local file in the same schema instead of the hub."""
    from lm_eval.tasks._yaml_loader import load_yaml  # what lm-eval's own task factory reads YAML with
    entry = manager.task_index.get(name)
    if entry is None or entry.yaml_path is None:
        raise ValueError(f"lm-eval task {name!r} has no YAML config to derive a local copy from")
    config = load_yaml(entry.yaml_path, resolve_func=True)
    kind = "parquet" if str(data_file).endswith(".parquet") else "json"
    # a local copy holds the test split only: zero-shot, as WMDP and MMLU are reported in unlearning work
    config.update({"task": name, "dataset_path": kind, "dataset_name": None, "test_split": "test",
                   "training_split": None, "validation_split": None, "fewshot_split": None, "num_fewshot": 0,
                   "dataset_kwargs": {"data_files": {"test": str(Path(data_file).resolve())}}})
    return {k: v for k, v in config.items() if k not in ("include", "group", "tag", "fewshot_config")}


def _hflm_class(context_from_whole: bool):
    """lm-eval's HFLM, or (context_from_whole) HFLM with one change to how a (context, continuation) pair becomes
    tokens; batching, log-likelihoods and accuracy stay lm-eval's.

    lm-eval encodes context + continuation, encodes the context alone, and scores the whole encoding's tokens
    past the context's own length after the context's own tokens. That suits tokenizers whose words carry their
    leading space (" March"). The embedded tokenizer's words carry their trailing space ("in " + "March"): the
    context alone ends in "in" (no space), a token that in training never precedes anything, so every choice
    would be scored after a context the model has never seen. Here the context's tokens are the whole
    encoding's tokens that start inside the context (by character offsets), i.e. the text exactly as the model
    read it in training, and the continuation is the rest."""
    from lm_eval.models.huggingface import HFLM
    if not context_from_whole:
        return HFLM

    class WholeEncodingHFLM(HFLM):
        def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
            n_spaces = len(context) - len(context.rstrip())       # as lm-eval: trailing spaces go with the choice
            if n_spaces:
                context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
            special = {} if self.add_bos_token is None else {"add_special_tokens": self.add_bos_token}
            enc = self.tokenizer(context + continuation, return_offsets_mapping=True, **special)
            n = sum(start < len(context) for start, _ in enc["offset_mapping"])
            return enc["input_ids"][:n], enc["input_ids"][n:]
    return WholeEncodingHFLM


def score(model, tokenizer, splits: dict[str, list], manager, batch_size: int, add_bos_token: bool,
          context_from_whole: bool = False) -> dict:
    """Per-item statistics of `model` on every split ({split: [task name or inline config, ...]}), in one
    lm-eval call. Per split: lm-eval's per-item `acc`, the choices' log-likelihoods, the gold index, and
    lm-eval's own accuracy of each task. context_from_whole: see `_hflm_class`."""
    import datasets
    from lm_eval import simple_evaluate
    from peft import PeftModel
    logging.getLogger("lm_eval").setLevel(logging.ERROR)   # HFLM warns about in-memory models by design
    datasets.disable_progress_bars()
    if isinstance(model, PeftModel):          # lm-eval takes a plain transformers model
        model = model.merge_and_unload()
    lm = _hflm_class(context_from_whole)(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
                                         device=str(model.device), add_bos_token=add_bos_token)
    specs = [t for tasks in splits.values() for t in tasks]
    out = simple_evaluate(model=lm, tasks=specs, task_manager=manager, log_samples=True, bootstrap_iters=0,
                          num_fewshot=None)
    stats = {}
    for split, tasks in splits.items():
        names = [t["task"] if isinstance(t, dict) else t for t in tasks]
        subtasks = [n for n in out["samples"] if n in names or _member(out, n, names)]
        items = [s for n in subtasks for s in sorted(out["samples"][n], key=lambda s: s["doc_id"])]
        if not items:
            raise ValueError(f"lm-eval returned no samples for {split} ({names})")
        stats[split] = {"acc": [float(s["acc"]) for s in items], "target": [int(s["target"]) for s in items],
                        "loglik": [[float(r[0]) for r in s["filtered_resps"]] for s in items],
                        "task": [n for n in subtasks for _ in out["samples"][n]],
                        "lm_eval_acc": {n: out["results"][n]["acc,none"] for n in names if n in out["results"]}}
    return stats


def _member(out: dict, subtask: str, groups: list[str]) -> bool:
    """Whether `subtask` belongs to one of `groups` (e.g. mmlu_anatomy to mmlu) in lm-eval's group tree."""
    tree = out.get("group_subtasks", {})
    stack = [g for g in groups if g in tree]
    while stack:
        children = tree.get(stack.pop(), [])
        if subtask in children:
            return True
        stack += [c for c in children if c in tree]
    return False
