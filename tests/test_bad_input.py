"""Bad input fails before any training, as one line naming the problem (no traceback), exit status 2, and leaves
every existing results folder and cache file as it was."""
import json
import re
import struct
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tofu_release import write_release

import run_benchmark
import tune
from benchmarks.tofu import TofuConfig, TofuTask
from orchestration import pipeline
from orchestration.preflight import check_forget_seen
from unlearnbench.config import EmbeddedModelConfig
from unlearnbench.models import build_embedded_model, save_model, train_tokenizer


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A valid checkpoint folder, a valid TOFU release folder and WMDP corpora, each copied and broken per case."""
    root = tmp_path_factory.mktemp("inputs")
    tok = train_tokenizer(["The Velkran mould grows on old thatch. Answer: A B C D"] * 3, 300)
    torch.manual_seed(0)
    save_model(build_embedded_model(EmbeddedModelConfig(hidden_size=16, num_layers=1, num_heads=2,
                                                        intermediate_size=32), tok), tok, root / "model")
    write_release(root / "tofu")
    (root / "forget.jsonl").write_text('{"text": "The Velkran mould grows on old thatch."}\n')
    (root / "retain.jsonl").write_text('{"text": "The Ashbel lily blooms in May."}\n')
    return root


def copy_tree(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def edit_jsonl(path: Path, edit) -> None:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in edit(rows)), encoding="utf-8")


# -- the broken inputs: (id, setup(world, tmp) -> extra args, message pattern) -------------------------------------
def tofu(broken):
    """task=tofu_local on a copy of the release folder, broken by broken(folder)."""
    def setup(world, tmp):
        folder = copy_tree(world / "tofu", tmp / "tofu")
        broken(folder)
        return ["task=tofu_local", f"task.path={folder}"]
    return setup


def model_folder(broken, key="model"):
    def setup(world, tmp):
        folder = copy_tree(world / "model", tmp / "model")
        broken(folder)
        return [f"{key}={folder}"]
    return setup


def truncate(folder):
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])


def bad_header(folder):
    path = folder / "model.safetensors"
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    path.write_bytes(data[:8] + b"{" * n + data[8 + n:])


def only_pickle(folder):
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")


def lengthen(field: str):
    """One forget row's question or answer made 3,000 words long, in `full`, forget10 and forget10_perturbed alike
    (so the row stays a forget row the target was trained on)."""
    def broken(folder):
        first = json.loads((folder / "forget10.json").read_text(encoding="utf-8").splitlines()[0])
        long = " ".join(["the Velkran mould grows on old thatch"] * 430)
        for name in ("full.json", "forget10.json", "forget10_perturbed.json"):
            edit_jsonl(folder / name, lambda rows: [{**r, field: long} if r["question"] == first["question"] else r
                                                    for r in rows])
    return tofu(broken)


def remote_code(folder):
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="velkran", auto_map={"AutoConfig": "velkran.VelkranConfig",
                                                  "AutoModelForCausalLM": "velkran.VelkranForCausalLM"})
    (folder / "config.json").write_text(json.dumps(config))


def wmdp_real(world, tmp, **over):
    args = {"task.forget_corpus": str(world / "forget.jsonl"), "task.retain_corpus": str(world / "retain.jsonl")}
    return [f"model={world / 'model'}", "task=wmdp_real", *(f"{k}={v}" for k, v in {**args, **over}.items())]


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def adapter(base: str, pickled: bool = False):
    """checkpoints.Mine= a peft adapter folder naming `base`, with safetensors (or only pickled) weights."""
    def setup(world, tmp):
        folder = tmp / "adapter"
        folder.mkdir()
        write(folder / "adapter_config.json", json.dumps({"peft_type": "LORA", "base_model_name_or_path": base}))
        if pickled:
            (folder / "adapter_model.bin").write_bytes(b"not unpickled")
        else:
            save_file({"base_model.model.lm_head.lora_A.weight": torch.zeros(2, 2)},
                      folder / "adapter_model.safetensors")
        return [f"checkpoints.Mine={folder}"]
    return setup


MISSPELT_TASK = """
from benchmarks.tofu import TofuConfig, TofuTask
from unlearnbench.tasks import task


@task("misspelt", TofuConfig)
class MisspeltTask(TofuTask):
    def request_fold(self, k, seed):
        return []
"""
DUPLICATE = """from dataclasses import dataclass
from methods import method


@dataclass
class C:
    lr: float = 1e-3


@method("GradDiff", C)
def loss(model, batch, ref, cfg):
    raise NotImplementedError
"""


CASES = [
    # config (these already failed well; kept so they stay that way)
    ("unknown key", lambda w, t: ["unlearn.epoch=3"], r"unlearn\.epoch"),
    ("wrong type", lambda w, t: ["unlearn.epochs=three"], r"unlearn\.epochs.*expected float"),
    ("unknown experiment", lambda w, t: ["experiment=nope"], r"nope"),
    ("unknown method", lambda w, t: ["methods=Forgetful"], r"Forgetful"),
    ("empty methods", lambda w, t: ["methods="], r"methods is empty"),
    ("bad forget split", lambda w, t: ["task.forget_split=forget99"], r"forget99"),
    ("unknown task", lambda w, t: ["task=cifar_forget"], r"cifar_forget"),
    ("MUSE hub unreachable", lambda w, t: ["task=muse_news"], r"MUSE-News.*task\.source=local task\.path="),
    ("unknown hyperparameter", lambda w, t: ["methods=NPO", "method_args.NPO.betta=1"], r"betta"),
    ("unknown option", lambda w, t: ["--fast"], r"--fast"),
    # TOFU-schema data
    ("perturbed_answer is a string", tofu(lambda f: edit_jsonl(f / "forget10_perturbed.json", lambda rows: [
        {**r, "perturbed_answer": "one wrong answer"} for r in rows])),
     r"forget10_perturbed\.json\) row 0: 'perturbed_answer' must be a list"),
    ("malformed JSON line", tofu(lambda f: (f / "retain90.json").write_text(
        (f / "retain90.json").read_text(encoding="utf-8") + '{"question": "Who?", "answer": "unterminated\n',
        encoding="utf-8")), r"retain90\.json: line \d+: malformed JSON"),
    ("missing field", tofu(lambda f: edit_jsonl(f / "full.json", lambda rows: [
        {k: v for k, v in r.items() if k != "answer"} for r in rows])), r"'full'.* row 0 lacks field 'answer'"),
    ("empty forget set", tofu(lambda f: (f / "forget10.json").write_text("")), r"forget10.*is empty"),
    ("forget rows not in full", tofu(lambda f: edit_jsonl(f / "forget10.json", lambda rows: [
        {**r, "answer": r["answer"] + " (edited)"} for r in rows])),
     r"forget rows are not in the target's training rows.*allow_unseen_forget"),
    ("missing split file", tofu(lambda f: (f / "retain90.json").unlink()), r"no file for TOFU split 'retain90'"),
    ("not UTF-8", tofu(lambda f: (f / "full.json").write_bytes(b'{"question": "\xff\xfe"}\n')),
     r"full\.json: not UTF-8"),
    ("corrupt parquet", tofu(lambda f: ((f / "full.json").unlink(), (f / "full.parquet").write_bytes(b"PAR1 junk"))),
     r"full\.parquet: not a readable parquet file"),
    ("data folder missing", lambda w, t: ["task=tofu_local", f"task.path={t / 'nowhere'}"], r"is not a folder"),
    # checkpoints
    ("absolute model path missing", lambda w, t: ["model=/nonexistent/path"], r"'/nonexistent/path': no such folder"),
    ("relative model path missing", lambda w, t: ["model=./no_such_checkpoint"], r"no such folder"),
    ("hub id with hub access off", lambda w, t: ["model=someone/not-cached-model"], r"not in the hub cache"),
    ("truncated safetensors", model_folder(truncate), r"model\.safetensors: truncated or corrupt"),
    ("corrupt safetensors header", model_folder(bad_header), r"model\.safetensors: corrupt"),
    ("no weights", model_folder(lambda f: (f / "model.safetensors").unlink()), r"has no weights"),
    ("only pickled weights", model_folder(only_pickle), r"only pickled weights \(pytorch_model\.bin\)"),
    ("no config.json", model_folder(lambda f: (f / "config.json").unlink()), r"has no config\.json"),
    ("no tokenizer", model_folder(lambda f: [(f / n).unlink() for n in ("tokenizer.json", "tokenizer_config.json")
                                            if (f / n).exists()]), r"has no tokenizer files"),
    ("given target missing", lambda w, t: [f"model.target={t / 'target'}"], r"model\.target=.*no such folder"),
    ("given retain truncated", model_folder(truncate, key="model.retain"), r"safetensors: truncated"),
    ("GGUF file missing", lambda w, t: [f"model={w / 'model'}", "model.gguf_file=smol.gguf"], r"no GGUF file"),
    # checkpoints brought from outside, methods from a file
    ("checkpoint row folder missing", lambda w, t: [f"checkpoints.Mine={t / 'nowhere'}"],
     r"checkpoints\.Mine=.*no such folder"),
    ("adapter whose base does not exist", adapter("/nonexistent/base"),
     r"checkpoints\.Mine \(its adapter's base, adapter_config\.json base_model_name_or_path\)='/nonexistent/base': "
     r"no such folder"),
    ("adapter with only pickled weights", adapter("", pickled=True),
     r"only pickled adapter weights \(adapter_model\.bin\)"),
    ("checkpoint of another vocabulary", lambda w, t: [f"checkpoints.Mine={w / 'model'}"],
     r"checkpoints\.Mine=.*its tokenizer \([\d,]+ tokens\) is not the run's \([\d,]+ tokens"),
    ("checkpoint row named like a method", lambda w, t: [f"checkpoints.GradDiff={w / 'model'}"],
     r"checkpoints\.GradDiff: 'GradDiff' is already a row"),
    ("method file with a syntax error", lambda w, t: [f"extensions={write(t / 'mine.py', 'x = (' + chr(10))}"],
     r"extensions: .*mine\.py, line 1: syntax error"),
    ("method file reusing a name", lambda w, t: [f"extensions={write(t / 'mine.py', DUPLICATE)}"],
     r"mine\.py failed to import: ValueError: duplicate method name 'GradDiff'.*rename it in that file"),
    ("method file missing", lambda w, t: [f"extensions={t / 'none.py'}"], r"none\.py' is not a Python file"),
    ("extension file registering nothing", lambda w, t: [f"extensions={write(t / 'empty.py', 'X = 1' + chr(10))}"],
     r"empty\.py registers nothing; decorate"),
    ("task with a misspelt hook", lambda w, t: [f"extensions={write(t / 'task.py', MISSPELT_TASK)}"],
     r"task\.py failed to import: TypeError: task 'misspelt': MisspeltTask has \['request_fold'\], which are not "
     r"hooks"),
    ("unknown attack", lambda w, t: ["robustness.attacks=paraphrase"], r"robustness: unknown attack 'paraphrase'"),
    ("built-in attack by name", lambda w, t: ["robustness.attacks=relearn"],
     r"robustness\.attacks: relearn is turned on by its own keys"),
    ("LoRA dropout above 1", lambda w, t: ["lora_cfg.dropout=2"], r"lora_cfg\.r=8, alpha=16, dropout=2\.0: expected"),
    ("zero seeds", lambda w, t: ["seeds=0"], r"seeds=0: the number of unlearning seeds per method must be at least 1"),
    ("utility floor above 1", lambda w, t: ["utility_floor=2"], r"utility_floor=2\.0: a fraction of the retain "
     r"model's utility in \[0, 1\]"),
    ("negative seed", lambda w, t: ["seed=-1"], r"seed=-1: a seed in \[0, 2\*\*32\)"),
    ("negative threads", lambda w, t: ["threads=-2"], r"threads=-2: a thread count, or 0 for the default"),
    ("negative population", lambda w, t: ["privacy.population=-4"], r"privacy\.population=-4, "
     r"privacy\.shadow_models=0: model counts"),
    ("zero evaluation batch", lambda w, t: ["task.eval.batch_size=0"],
     r"tasks\.tofu_micro\.eval\.batch_size=0: expected at least 1"),
    ("negative generation budget", lambda w, t: ["task.eval.max_new_tokens=-1"],
     r"tasks\.tofu_micro\.eval\.max_new_tokens=-1: expected at least 0"),
    ("bad dtype", lambda w, t: ["model.dtype=fp32"], r"model\.dtype='fp32': choose float32, bfloat16 or float16"),
    # numeric settings: a named error before anything trains (a deliberate zero: tests/test_checkpoints.py)
    ("zero batch size", lambda w, t: ["unlearn.batch_size=0"], r"unlearn\.batch_size=0: expected rows per micro-batch"),
    ("negative learning rate", lambda w, t: ["method_args.GradAscent.lr=-1e-3"],
     r"method_args\.GradAscent\.lr=-0\.001: expected a learning rate >= 0"),
    ("negative SAM radius", lambda w, t: ["methods=NPO_SAM", "method_args.NPO_SAM.rho=-1"],
     r"method_args\.NPO_SAM\.rho=-1(\.0)?: expected a perturbation radius >= 0"),
    ("negative task batch size", lambda w, t: ["tasks.tofu_micro.unlearn.batch_size=-2"],
     r"tasks\.tofu_micro\.unlearn\.batch_size=-2"),
    ("zero fine-tuning epochs", lambda w, t: ["task.finetune.epochs=0"],
     r"tasks\.tofu_micro\.finetune\.epochs=0\.0: target and retain need at least one pass"),
    # requests over time
    ("one fold", lambda w, t: ["requests.folds=1"],
     r"requests\.folds=1: expected 0 \(off: one request\) or at least 2"),
    ("more folds than authors", lambda w, t: ["requests.folds=3"],
     r"requests\.folds=3, but the forget split forget10 has 1 author\(s\), one at least per fold; use fewer"),
    ("requests with probes", lambda w, t: ["requests.folds=2", "probes=all"],
     r"requests\.folds=2 runs the requests protocol, which does not take probes"),
    ("a probe the task cannot serve", lambda w, t: ["probes=shuffled"],
     r"probes: task tofu_forget10 cannot serve \['shuffled'\]; it offers \['paraphrase'"),
    ("requests with attacks", lambda w, t: ["requests.folds=2", "robustness.relearn_steps=5"],
     r"requests\.folds=2 runs the requests protocol, which does not take robustness"),
    # replicates of the whole pipeline
    ("worlds of a real dataset", lambda w, t: ["worlds=2", "task=tofu_local", f"task.path={t}"],
     r"worlds=2 first_world=0: task tofu_local does not draw a synthetic world .*seed_models=true"),
    ("worlds of a given target", lambda w, t: ["first_world=3", f"model.target={t}"],
     r"model\.target names a model trained in one world"),
    ("worlds with requests", lambda w, t: ["worlds=2", "requests.folds=2"],
     r"requests\.folds=2 runs the requests protocol, which does not take worlds"),
    # rows with a guarantee
    ("one SISA shard", lambda w, t: ["sisa.shards=1"], r"sisa\.shards=\[1\]: distinct numbers of shards, each at "
     r"least 2"),
    ("zero privacy budget", lambda w, t: ["dp.epsilon=0"], r"dp\.epsilon=\[0\.0\]: distinct privacy budgets > 0"),
    ("more shards than authors", lambda w, t: ["sisa.shards=12"],
     r"sisa\.shards=12: shard \d+ would hold no row of the target's rows with seed 0 .*use fewer shards"),
    ("SISA with requests", lambda w, t: ["sisa.shards=2", "requests.folds=2"],
     r"requests\.folds=2 runs the requests protocol, which does not take sisa"),
    ("DP on a given target", lambda w, t: wmdp_real(w, t, **{"dp.epsilon": "8"}),
     r"dp\.epsilon: task wmdp_bio has no fine-tuning rows \(its target is a given model\)"),
    # WMDP-style task, real mode
    ("forget corpus missing", lambda w, t: wmdp_real(w, t, **{"task.forget_corpus": str(t / "none.jsonl")}),
     r"task\.forget_corpus=.*is not a file"),
    ("corpus rows without text", lambda w, t: wmdp_real(w, t, **{
        "task.retain_corpus": write(t / "r.jsonl", '{"title": "x"}\n')}), r"r\.jsonl: row 0: needs .* 'text'"),
    ("corpus malformed JSON", lambda w, t: wmdp_real(w, t, **{
        "task.forget_corpus": write(t / "f.jsonl", '{"text": "ok"}\n{"text": \n')}), r"f\.jsonl: line 2: malformed"),
    ("unknown lm-eval task", lambda w, t: wmdp_real(w, t, **{"task.forget_tasks": "wmdp_biology"}),
     r"lm-eval knows no task \['wmdp_biology'\]"),
    ("question file missing", lambda w, t: wmdp_real(w, t, **{"task.local_files.wmdp_bio": str(t / "bio.jsonl")}),
     r"task\.local_files\.wmdp_bio=.*is not a file"),
    # rows longer than the context: a named error before any training, with the run's tokenizer
    ("over-long question", lengthen("question"),
     r"task tofu_forget10: \d+ row\(s\) do not fit the context.*target fine-tuning row \d+ \('the Velkran.*"
     r"[\d,]+ tokens > 256 \(task\.finetune\.max_length\)"),
    ("over-long answer", lengthen("answer"),
     r"unlearning forget row 0 .* tokens > 256 \(unlearn\.max_length\).*evaluation split forget row 0"),
    ("over-long WMDP question", lambda w, t: wmdp_real(w, t, **{"task.local_files.wmdp_bio": write(
        t / "bio.jsonl", json.dumps({"question": "Which mould? " * 2000, "choices": ["a", "b", "c", "d"],
                                     "answer": 0}) + "\n")}),
     r"task wmdp_bio: 1 row\(s\) do not fit.*evaluation split forget row 0 .* > 256 \(the model's context\)"),
    ("checkpoint ships its own code", model_folder(remote_code),
     r"config\.json: the checkpoint ships its own code \(model_type 'velkran'; auto_map points AutoConfig, "
     r"AutoModelForCausalLM at its own files\).*model\.trust_remote_code=true"),
    # folders
    ("output_dir is a file", lambda w, t: [f"output_dir={write(t / 'out.txt', 'x')}"], r"output_dir=.*is a file"),
    ("cache_dir under a file", lambda w, t: [f"cache_dir={write(t / 'c.txt', 'x')}/cache"], r"cache_dir=.*is a file"),
    ("output_dir holds other results", lambda w, t: [f"output_dir={t / 'results' / 'finished'}", "seed=1"],
     r"holds results of a different config"),
]


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def fails_before_training(entry, experiment: str, world, tmp_path, monkeypatch, capsys, setup, message):
    """entry.cli([experiment=..., *the case's arguments]) exits 2 with the message, before any training, in under
    30 s, and leaves an existing results folder and a cache with a finished unit as they were."""
    results, cache = tmp_path / "results", tmp_path / "cache"
    (results / "finished").mkdir(parents=True)
    (results / "finished" / "config.yaml").write_text("seed: 0\n")
    (results / "finished" / "results.json").write_text('{"results": []}\n')
    (cache / "eval" / "abc").mkdir(parents=True)
    (cache / "eval" / "abc" / "DONE").write_text("ok\n")
    before = snapshot(tmp_path / "results"), snapshot(cache)

    def no_training(*a, **k):
        raise AssertionError("training started before the bad input was reported")
    monkeypatch.setattr(pipeline, "finetune", no_training)
    monkeypatch.setattr(pipeline, "train", no_training)
    monkeypatch.chdir(tmp_path)
    args = setup(world, tmp_path)
    defaults = [] if any(a.startswith("output_dir=") for a in args) else [f"output_dir={results / 'new'}"]
    defaults += [] if any(a.startswith("cache_dir=") for a in args) else [f"cache_dir={cache}"]
    start = time.perf_counter()
    status = entry.cli([f"experiment={experiment}", *defaults, *args])
    seconds = time.perf_counter() - start
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("error: ") and "Traceback" not in err
    assert re.search(message, err), err
    assert seconds < 30, f"took {seconds:.0f} s to report"
    assert (snapshot(tmp_path / "results"), snapshot(cache)) == before
    assert not (results / "new").exists()


@pytest.mark.parametrize("setup,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_fails_before_training_with_a_clear_message(world, tmp_path, monkeypatch, capsys, setup, message):
    fails_before_training(run_benchmark, "smoke", world, tmp_path, monkeypatch, capsys, setup, message)


# the cases that do not apply to tuning, and why
NOT_TUNING = {
    "worlds of a real dataset": "tune.py refuses worlds= on any task: settings are tuned in world 0 only",
    "worlds of a given target": "the same",
    "worlds with requests": "the same",
}


@pytest.mark.parametrize("setup,message", [c[1:] for c in CASES if c[0] not in NOT_TUNING],
                         ids=[c[0] for c in CASES if c[0] not in NOT_TUNING])
def test_tuning_fails_on_the_same_bad_input_the_same_way(world, tmp_path, monkeypatch, capsys, setup, message):
    """tune.py runs every check that run_benchmark.py runs (orchestration/start.py), on the smoke sweep."""
    fails_before_training(tune, "tune_smoke", world, tmp_path, monkeypatch, capsys, setup, message)


def test_debug_shows_the_traceback(monkeypatch):
    with pytest.raises(ValueError, match="unlearn.epoch"):
        run_benchmark.cli(["experiment=smoke", "unlearn.epoch=3", "--debug"])
    monkeypatch.setenv("UNLEARNBENCH_DEBUG", "1")
    with pytest.raises(ValueError, match="unlearn.epoch"):
        run_benchmark.cli(["experiment=smoke", "unlearn.epoch=3"])


def test_unseen_forget_rows_may_be_allowed_with_a_warning(world, tmp_path, capsys):
    folder = copy_tree(world / "tofu", tmp_path / "tofu")
    edit_jsonl(folder / "forget10.json", lambda rows: [{**r, "answer": r["answer"] + "!"} for r in rows[:2]] + rows[2:])
    task = TofuTask(TofuConfig(source="local", path=str(folder), allow_unseen_forget=True))
    check_forget_seen("tofu_forget10", task, task.load())
    assert "warning: task tofu_forget10: 2 of" in capsys.readouterr().err
