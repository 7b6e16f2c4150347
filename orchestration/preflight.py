"""Everything a run will read, checked before the first training step: a bad input fails in seconds, with a
message that names the file, the row or line, the field and the fix, instead of a traceback after training.

Three stages, each before the next can run (orchestration/start.py calls them for both entry points): the config
(`check_config`: methods and their settings, attacks, the output folder), every file the run reads (`check_run`:
folders, checkpoints, the task's data), then what needs the run's tokenizer and the pipeline (`check_pipelines`:
row lengths, request folds, shards, checkpoints' vocabularies).

Nothing here writes: folders are checked for writability without creating anything, checkpoints are checked by
reading their config and the safetensors headers (never by loading weights), and a local path that does not exist
is reported as such, never sent to the hub. Task data is loaded once here and handed to the pipeline.
"""
from __future__ import annotations

import json
import os
import re
import struct
import sys
from pathlib import Path

from methods import STOP, method_config, stop_after
from methods.trainer import total_micro_batches
from orchestration import attacks, guarantees
from orchestration.pipeline import Pipeline
from orchestration.requests import folds_of
from unlearnbench.cache import UnitStore
from unlearnbench.config import ConfigError, ExperimentConfig, read_yaml, to_dict
from unlearnbench.models import (
    EVAL_MAX_LENGTH,
    TOKENIZER_FILES,
    PromptFormat,
    adapter_base,
    context_length,
    resolve_name,
)
from unlearnbench.tasks import Task, TaskData

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def check_config(cfg: ExperimentConfig, tasks: dict) -> None:
    """Rows to run, every method's settings on every task, the attacks, and an output folder that holds no other
    config's results (after cfg.tasks is resolved)."""
    if not cfg.methods and not cfg.checkpoints:
        raise ConfigError("methods is empty and no checkpoints are given; name a method (methods=GradAscent) or a "
                          "checkpoint to evaluate (checkpoints.Mine=<folder>)")
    attacks.check(cfg, tasks)
    for t in tasks.values():
        for name in set(cfg.method_args) | set(t.cfg.method_args) | set(cfg.methods):
            method_config(name, cfg.method_args_for(name, t.cfg))
    check_output_dir(cfg.resolved_output_dir(), to_dict(cfg))


def check_output_dir(out: Path, resolved: dict) -> None:
    """Refuse to overwrite finished results of a different config (a crashed run's folder holds none)."""
    saved = out / "config.yaml"
    if saved.is_file() and (out / "results.json").is_file():
        ignore = ("output_dir", "cache_dir", "threads", "gradient_checkpointing", "log_with")  # where, how fast
                                                                                             # and logged, not what
        old = {k: v for k, v in read_yaml(saved).items() if k not in ignore}
        if old != {k: v for k, v in resolved.items() if k not in ignore}:
            raise ConfigError(f"output_dir {str(out)!r} holds results of a different config; choose another "
                              f"output_dir=<dir>, or delete that folder to replace them")


def check_run(cfg: ExperimentConfig, tasks: dict) -> dict[str, TaskData]:
    """Check folders, checkpoints and every task's data; returns {task label: its loaded data}."""
    check_writable(cfg.resolved_output_dir(), "output_dir")
    check_writable(cfg.resolved_cache_dir(), "cache_dir")
    m = cfg.model
    if m.name != "embedded":
        check_checkpoint(resolve_name(m.name), "model.name", m.gguf_file, m.revision, m.trust_remote_code)
    given = {f"model.{key}": getattr(m, key) for key in ("target", "retain") if getattr(m, key)}
    for key, ref in {**given, **{f"checkpoints.{n}": r for n, r in cfg.checkpoints.items()}}.items():
        check_given(ref, key, m.trust_remote_code)
    loaded = {}
    for label, task in tasks.items():
        data = task.load(cfg.resolved_cache_dir() / "tasks")
        if not m.target:    # a given target's training data is unknown
            check_forget_seen(label, task, data)
        check_stops(cfg, label, task, data)
        loaded[label] = data
    return loaded


def check_pipelines(cfg: ExperimentConfig, tasks: dict, data: dict, store: UnitStore, accelerator) -> None:
    """Rows longer than the context (counted with the run's tokenizer; the embedded model's is trained first),
    requests' folds, guarantees' shards, checkpoints' vocabularies: errors before any model trains or anything is
    written; rows left untrained: a warning."""
    for label, task in tasks.items():
        pipe = Pipeline(cfg, task, data[label], store, accelerator)
        check_lengths(task.label, long_rows(pipe))
        if cfg.requests.folds:
            folds_of(task, cfg.requests.folds, cfg.seed, data[label])      # enough authors / species for the folds
        guarantees.check(pipe)          # SISA / DP: rows to train on, no empty shard
        for name, ref in cfg.checkpoints.items():
            check_vocabulary(f"checkpoints.{name}", ref, pipe.run_tokenizer(), cfg.model)
        for name in cfg.methods:
            if pipe.untrained(name):
                print(f"warning: task {task.label}: {name}'s rows are evaluated untrained, the target's weights "
                      f"({pipe.untrained(name)}); results mark them `untrained`", file=sys.stderr)


def check_stops(cfg: ExperimentConfig, label: str, task: Task, data: TaskData) -> None:
    """Every method's stop_after within its unlearning schedule on this task's forget set, before anything
    trains."""
    schedule = cfg.unlearn_schedule(label, task.cfg)
    updates = total_micro_batches(len(data.forget), schedule) // schedule.grad_accum if data.forget else 0
    for name in cfg.methods:
        stop = stop_after(name, cfg.method_args_for(name, task.cfg))
        if stop > updates:
            raise ConfigError(f"method_args.{name}.{STOP}={stop}: the unlearning schedule has {updates} updates on "
                              f"{label}'s forget set ({len(data.forget)} rows, unlearn.epochs={schedule.epochs}, "
                              f"batch_size={schedule.batch_size}); choose at most {updates}, or 0 for its end")


def check_writable(folder: Path, key: str) -> None:
    """`folder` exists as a writable folder, or could be created (its nearest existing parent is writable)."""
    folder = Path(folder).expanduser()
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{key}={str(folder)!r}: {str(probe)!r} is a file, not a folder; choose another {key}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={str(folder)!r}: {str(probe)!r} is not writable; choose a folder you can write to")


def _row_key(row: dict) -> tuple:
    return (row.get("question"), row.get("answer"), row.get("text"))


def check_forget_seen(label: str, task: Task, data: TaskData) -> None:
    """The target is fine-tuned on data.train["target"]; forget rows it never saw cannot be unlearned (the run
    would measure nothing). An error, or a warning with task.allow_unseen_forget=true."""
    train = data.train.get("target")
    if train is None:
        return
    seen = {_row_key(r) for r in train}
    unseen = [i for i, r in enumerate(data.forget) if _row_key(r) not in seen]
    if not unseen:
        return
    first = data.forget[unseen[0]]
    what = (f"task {label}: {len(unseen)} of {len(data.forget)} forget rows are not in the target's training rows "
            f"(first: forget row {unseen[0]}, {str(first.get('question') or first.get('text'))!r:.80})")
    if not task.cfg.allow_unseen_forget:
        raise ConfigError(f"{what}; the target never saw them, so there is nothing to unlearn. Make the forget "
                          f"split a subset of the training split (TOFU: forget rows also in `full`), or set "
                          f"task.allow_unseen_forget=true to run anyway")
    print(f"warning: {what}; running anyway (task.allow_unseen_forget=true)", file=sys.stderr)


def check_given(ref: str, key: str, trust_remote_code: bool = False) -> None:
    """A checkpoint the user gives: a model (check_checkpoint), or a folder holding a peft adapter, whose weights must
    be safetensors and whose base (adapter_config.json's base_model_name_or_path, if it names one) must exist."""
    folder = Path(ref).expanduser()
    base = adapter_base(folder) if folder.is_dir() else None
    if base is None:
        check_checkpoint(ref, key, trust_remote_code=trust_remote_code)
        return
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        pickled = sorted(p.name for p in folder.glob("adapter_model.bin"))
        raise ConfigError(f"{key}={ref!r} holds an adapter_config.json but " + (
            f"only pickled adapter weights ({pickled[0]}); the suite never unpickles files: re-save the adapter with "
            f"model.save_pretrained(folder) (safetensors)" if pickled else
            "no adapter_model.safetensors; copy the whole adapter folder"))
    check_safetensors(weights)
    if base:
        check_checkpoint(base, f"{key} (its adapter's base, adapter_config.json base_model_name_or_path)",
                         trust_remote_code=trust_remote_code)


def check_vocabulary(key: str, ref: str, run_tokenizer, cfg) -> None:
    """A checkpoint row is scored with its own tokenizer beside rows scored with the run's (forget quality compares
    it with the run's retain model item by item), so both must be one vocabulary, and its weights must cover it."""
    from transformers import AutoConfig

    from unlearnbench.models import load_tokenizer
    folder = Path(ref).expanduser()
    base = adapter_base(folder) if folder.is_dir() else None
    if base is not None:            # an adapter: its own tokenizer, if it has one; its base's checked as a model
        if base:
            check_vocabulary(f"{key} (its adapter's base)", base, run_tokenizer, cfg)
        if not any((folder / f).is_file() for f in TOKENIZER_FILES):
            return
    tokenizer = load_tokenizer(ref, cfg)
    if tokenizer.get_vocab() != run_tokenizer.get_vocab():
        raise ConfigError(f"{key}={ref!r}: its tokenizer ({len(tokenizer):,} tokens) is not the run's "
                          f"({len(run_tokenizer):,} tokens, model.name={cfg.name!r}); a checkpoint row is compared "
                          f"item by item with the run's target and retain models, so it must be a checkpoint of the "
                          f"run's model: set model= to the model it was unlearned from")
    if base is None:
        size = AutoConfig.from_pretrained(ref, trust_remote_code=cfg.trust_remote_code).get_text_config().vocab_size
        if size < len(run_tokenizer):
            raise ConfigError(f"{key}={ref!r}: its embedding has {size:,} rows for a tokenizer of "
                              f"{len(run_tokenizer):,} tokens; the weights do not belong to this tokenizer")


def check_checkpoint(ref: str, key: str, gguf_file: str = "", revision: str = "",
                     trust_remote_code: bool = False) -> None:
    """A local checkpoint folder holds a config, readable safetensors (or the named GGUF file) and a tokenizer;
    anything else is a hub id, which must be in the local hub cache when hub access is off."""
    path = Path(ref).expanduser()
    if path.exists():
        _check_local(path, key, gguf_file, trust_remote_code)
    elif ref.startswith(("/", ".", "~")) or "\\" in ref or not HUB_ID.match(ref):
        raise ConfigError(f"{key}={ref!r}: no such folder; give an existing checkpoint folder (config.json, "
                          f"*.safetensors, tokenizer files) or a hub id like 'HuggingFaceTB/SmolLM2-135M'")
    elif _hub_offline():
        from huggingface_hub import try_to_load_from_cache
        cached = try_to_load_from_cache(ref, gguf_file or "config.json", revision=revision or None)
        if not isinstance(cached, str):
            raise ConfigError(f"{key}={ref!r} is not a local folder and not in the hub cache, and hub access is off "
                              f"(HF_HUB_OFFLINE); download it where the hub is reachable, or give a local folder")


def _hub_offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _check_local(path: Path, key: str, gguf_file: str, trust_remote_code: bool = False) -> None:
    if gguf_file:
        file = path / gguf_file if path.is_dir() else path
        if not file.is_file():
            raise ConfigError(f"{key}={str(path)!r} holds no GGUF file {gguf_file!r}; set model.gguf_file to the "
                              f"file's name in that folder")
        with open(file, "rb") as f:
            if f.read(4) != b"GGUF":
                raise ConfigError(f"{file}: not a GGUF file (bad magic bytes); re-download it")
        return
    if not path.is_dir():
        raise ConfigError(f"{key}={str(path)!r} is a file; give the checkpoint's folder (config.json, "
                          f"*.safetensors, tokenizer files), or set model.gguf_file for a GGUF file")
    config = path / "config.json"
    if not config.is_file():
        raise ConfigError(f"{key}={str(path)!r} has no config.json; it is not a transformers checkpoint folder "
                          f"(save one with model.save_pretrained(folder))")
    try:
        settings = json.loads(config.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ConfigError(f"{config}: malformed JSON ({err}); re-save the checkpoint") from None
    if not trust_remote_code:
        check_no_remote_code(settings, config)
    shards = _weight_files(path, key)
    for shard in shards:
        check_safetensors(shard)
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ConfigError(f"{key}={str(path)!r} has no tokenizer files ({', '.join(TOKENIZER_FILES)}); save the "
                          f"tokenizer beside the weights (tokenizer.save_pretrained(folder))")


def check_no_remote_code(settings: dict, config: Path) -> None:
    """A checkpoint whose model_type transformers does not know can only load through the code it ships
    (config.json's `auto_map`), which stays off unless the user turns it on. (A known model_type loads with
    transformers' own class, auto_map or not.)"""
    from transformers import CONFIG_MAPPING
    model_type = settings.get("model_type")
    if model_type in CONFIG_MAPPING:
        return
    if isinstance(settings.get("auto_map"), dict):
        raise ConfigError(f"{config}: the checkpoint ships its own code (model_type {model_type!r}; auto_map points "
                          f"{', '.join(settings['auto_map'])} at its own files). The suite runs a checkpoint's code "
                          f"only with model.trust_remote_code=true, which executes that code on this machine: set it "
                          f"only if you trust its source")
    raise ConfigError(f"{config}: model_type {model_type!r} is not an architecture this transformers knows, and the "
                      f"checkpoint ships no code for it (no auto_map); check config.json, or upgrade transformers "
                      f"if the architecture is newer")


def _weight_files(path: Path, key: str) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ConfigError(f"{index}: not a safetensors index ({err!r}); re-save the checkpoint") from None
        missing = [n for n in names if not (path / n).is_file()]
        if missing:
            raise ConfigError(f"{index} lists shards that are missing: {missing[:3]}; copy the whole checkpoint")
        return [path / n for n in names]
    files = sorted(path.glob("*.safetensors"))
    if files:
        return files
    pickled = sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.pt*"))
    if pickled:
        raise ConfigError(f"{key}={str(path)!r} holds only pickled weights ({', '.join(pickled[:3])}); the suite "
                          f"loads safetensors only and never unpickles files. Convert a trusted copy with "
                          f"model.save_pretrained(folder, safe_serialization=True)")
    raise ConfigError(f"{key}={str(path)!r} has no weights (model.safetensors); copy the whole checkpoint folder")


def check_safetensors(file: Path) -> None:
    """The header parses and the tensors it declares fit the file exactly (a truncated download does not)."""
    size = file.stat().st_size
    fix = "re-download or re-save the checkpoint"
    with open(file, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ConfigError(f"{file}: truncated or empty ({size} bytes); {fix}")
        n = struct.unpack("<Q", head)[0]
        if n > size - 8:
            raise ConfigError(f"{file}: corrupt or truncated (header of {n} bytes in a {size}-byte file); {fix}")
        try:
            header = json.loads(f.read(n))
            end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
            raise ConfigError(f"{file}: corrupt safetensors header ({err!r}); {fix}") from None
    if size != 8 + n + end:
        raise ConfigError(f"{file}: truncated or corrupt: its header declares {8 + n + end} bytes, the file has "
                          f"{size}; {fix}")


def long_rows(pipe) -> list[tuple[str, int, str, int, int, str]]:
    """Every prompted row the run will train on or score that does not fit its limit, counted with the run's
    tokenizer before any model trains: (where, row, question, tokens, limit, the limit's key). Text rows
    (corpora) are language-model rows, cut at max_length like any pretraining text, and not listed."""
    tok, m = pipe.run_tokenizer(), pipe.cfg.model
    counter = PromptFormat(m, tok, max_length=sys.maxsize)
    context = m.embedded.max_position if m.name == "embedded" else context_length(pipe.base().path, m)
    ctx_key = "model.embedded.max_position" if m.name == "embedded" else "the model's context"
    eval_limit, eval_key = min((EVAL_MAX_LENGTH, "the evaluation's length"), (context or EVAL_MAX_LENGTH, ctx_key))
    checks = [(f"{role} fine-tuning", pipe.data.train.get(role), pipe.task.cfg.finetune.max_length,
               "task.finetune.max_length") for role in ("target", "retain")]
    checks += [(f"unlearning {role}", getattr(pipe.data, role), pipe.unlearn.max_length, "unlearn.max_length")
               for role in ("forget", "retain")]
    out = []
    for where, rows, limit, key in checks:
        rows = [(i, r["question"], [r["answer"]]) for i, r in enumerate(rows or []) if "question" in r]
        out += _too_long(counter, where, rows, limit, key, prompted=True)
    asked = pipe.task.probe_pairs(pipe.probes) if pipe.probes else {}
    for split, items in {**pipe.task.scored_pairs(), **asked}.items():
        limit, key = (eval_limit, eval_key) if pipe.task.prompted else (context, ctx_key)
        out += _too_long(counter, f"evaluation split {split}", [(i, q, a) for i, (q, a) in enumerate(items)],
                              limit, key, prompted=pipe.task.prompted)
    return out

def _too_long(counter: PromptFormat, where: str, rows: list, limit: int | None, key: str, prompted: bool) -> list:
    if not rows or not limit:
        return []
    pairs = [(q, a) for _, q, answers in rows for a in answers]
    if prompted:
        lengths = iter(len(e["input_ids"]) for e in counter.encode_pairs(pairs))
    else:           # raw text scored by lm-eval: context + continuation, as the model reads them
        lengths = iter(len(ids) for ids in counter.tokenizer([q + a for q, a in pairs])["input_ids"])
    out = []
    for i, question, answers in rows:
        tokens = max(next(lengths) for _ in answers)
        if tokens > limit:
            out.append((where, i, question, tokens, limit, key))
    return out


def check_lengths(label: str, long_rows: list[tuple[str, int, str, int, int, str]]) -> None:
    """The policy for rows longer than the context, the same in training and evaluation: a named error, before any
    training, listing each (where, row, text, tokens, limit, the limit's key). No row is truncated, so no answer
    is ever cut away or scored in part."""
    if not long_rows:
        return
    shown = "; ".join(f"{where} row {i} ({text[:60]!r}): {tokens:,} tokens > {limit:,} ({key})"
                      for where, i, text, tokens, limit, key in long_rows[:5])
    more = f"; and {len(long_rows) - 5} more" if len(long_rows) > 5 else ""
    raise ConfigError(f"task {label}: {len(long_rows)} row(s) do not fit the context (prompt, answer and "
                      f"end-of-sequence token; rows are never truncated): {shown}{more}. Shorten or drop these rows, "
                      f"or raise the limit named, up to the model's context")
