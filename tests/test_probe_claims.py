"""What the probes claim, shown: no text a probe of unseen wording asks is in any text a model trains on; a micro
world in which probes pass the discrimination test and enter the worst case end to end; a probe from a user's
file, keyed by its digest; and a method that trains on a probe's held-out text, refused."""
import pytest

import run_benchmark
from benchmarks import tofu_probes
from benchmarks.author_profiles import FIELDS, HELDOUT
from benchmarks.synthetic_tofu import general_corpus, general_qa, read_refusals
from unlearnbench.config import ConfigError, load_config
from unlearnbench.tasks import build_task


def _loaded(*overrides):
    cfg = load_config(list(overrides))
    label, section = next(iter(cfg.tasks.items()))
    task = build_task(label, section)
    task.load()
    return task


def test_no_unseen_probe_text_is_in_any_text_a_model_trains_on():
    """The default world: every text the base (general corpus and QA), the target (`full`), the retain model, the
    methods (forget, retain, refusals) and the tuning split (`full_perturbed`'s QA) train on, read back as text;
    no prompt of a probe of unseen wording (paraphrase, held-out phrasing, synonyms, reverse question) occurs in
    any of them, and the held-out phrasing is no template a trained question is written from."""
    task = _loaded("experiment=default")
    world = task.rows
    trained = [t for role in ("full", "forget", "retain") for r in world[role] for t in (r["question"], r["answer"])]
    qa, text = general_corpus()
    trained += text + [t for r in qa + general_qa() for t in (r["question"], r["answer"])] + read_refusals()
    trained += [t for r in world["full_eval"] for t in (r["question"], r["answer"])]
    everything = "\0".join(trained)
    claims = task.probe_claims(task.offered_probes())
    unseen = {p: c["unseen"] for p, c in claims.items() if c["unseen"]}
    assert set(unseen) == {"paraphrase", "heldout", "synonym", "reverse"}
    for probe, texts in unseen.items():
        assert len(texts) == len(world["forget_eval"]) + len(world["retain_eval"])
        assert not [t for t in texts if t in everything], probe
    for field, (questions, _) in FIELDS.items():
        assert HELDOUT[field] not in questions
        assert all(tofu_probes.synonym(q) != q and tofu_probes.synonym(q) not in questions for q in questions)
    # the labels: every probe says what it changes
    assert {c["changes"] for c in claims.values()} == {"unseen wording", "format", "added context",
                                                       "adversarial frame"}


@pytest.mark.parametrize("family, unseen", [("wmdp_micro", {"rephrased"}), ("muse_micro", {"paraphrase"})])
def test_every_family_says_what_its_probes_change(family, unseen, tmp_path):
    """The WMDP- and MUSE-style probes of unseen wording claim texts that no row their target, retain model or
    methods train on holds; every other probe reuses trained text and claims none."""
    cfg = load_config(["experiment=smoke", f"task={family}", f"cache_dir={tmp_path}"])
    label, section = next(iter(cfg.tasks.items()))
    task = build_task(label, section)
    data = task.load(cfg.resolved_cache_dir() / "tasks")
    claims = task.probe_claims(task.offered_probes())
    assert {p for p, c in claims.items() if c["unseen"]} == unseen
    assert all(c["changes"] == "unseen wording" for p, c in claims.items() if p in unseen)
    rows = [r for role in data.train.values() for r in role or []] + data.forget + data.retain
    everything = "\0".join(t for r in rows for t in (r.get("text", ""), r.get("question", ""), r.get("answer", "")))
    for p in unseen:
        assert claims[p]["unseen"] and not [t for t in claims[p]["unseen"] if t in everything], p


@pytest.mark.pipeline
def test_probes_discriminate_and_enter_the_worst_case_on_a_micro_world(tmp_path):
    """40 micro authors (24 forget items, where the smoke world's 6 cannot reach p < 0.01): probes pass the
    discrimination test, and no row's worst case is below the plain question's or a discriminating probe's."""
    payload = run_benchmark.main(["experiment=smoke", "probes=all", "task.synthetic.n_authors=40", "methods=GradDiff",
                                  f"output_dir={tmp_path / 'out'}", f"cache_dir={tmp_path / 'cache'}"])
    info = payload["datasets"]["tofu_forget10"]["probes"]
    used = [p for p, t in info["tests"].items() if t["discriminates"] and p != "plain"]
    assert len(used) >= 3 and {"heldout", "synonym"} <= set(used)
    assert not info["tests"]["mc_letters"]["discriminates"]
    for r in payload["results"]:
        m = r["metrics"]
        covered = {p: m[f"probe_{p}_recovery"] for p in ["plain", *used] if m[f"probe_{p}_recovery"] is not None}
        assert m["worst_recovery"] == max(covered.values()), r["model"]
        assert r["worst_probe"]["first"] in covered and covered[r["worst_probe"]["first"]] == m["worst_recovery"]
    graddiff = next(r for r in payload["results"] if r["model"] == "GradDiff")["metrics"]
    assert graddiff["worst_recovery"] > graddiff["probe_plain_recovery"]      # a probe finds more than the plain
    board = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "worst_probe" in board and "heldout (unseen wording) discriminates" in board


PROBE_FILE = '''
from unlearnbench.probes import probe


@probe("shout", changes="format")
def shout(item):
    """The plain question in capitals."""
    return item["question"].{case}()


@probe("nickname", changes="unseen wording", needs=("nickname_question",))
def nickname(item):
    return item["nickname_question"]
'''


@pytest.mark.pipeline
def test_a_probe_from_a_file(smoke_root, tmp_path, registries):
    path = tmp_path / "my_probes.py"
    path.write_text(PROBE_FILE.format(case="upper"))

    def run(name, *args):
        return run_benchmark.main(["experiment=smoke", f"extensions={path}", *args,
                                   f"output_dir={smoke_root / name}", f"cache_dir={smoke_root / 'cache'}"])
    payload = run("own_probe", "probes=paraphrase,shout")
    info = payload["datasets"]["tofu_forget10"]["probes"]
    assert info["asked"] == ["paraphrase", "shout"] and info["changes"]["shout"] == "format"
    assert "shout" in info["tests"] and "shout" in info["offered"] and "nickname" not in info["offered"]
    rows = {r["model"]: r["metrics"] for r in payload["results"]}
    assert rows["retain"]["probe_shout_recovery"] == 0.0 and rows["target"]["probe_shout_recovery"] == 1.0
    assert "probe_shout_recovery" in rows["GradDiff"]
    # its digest keys its evaluations: an edited file is evaluated again
    path.write_text(PROBE_FILE.format(case="lower"))
    edited = {r["model"]: r["metrics"] for r in run("own_probe_edited", "probes=paraphrase,shout")["results"]}
    assert edited["target"]["probe_shout_forget"] != rows["target"]["probe_shout_forget"]
    # the other probe's numbers stay, to float32 rounding: the probes share one batch schedule, whose rows changed
    assert edited["target"]["probe_paraphrase_forget"] == pytest.approx(rows["target"]["probe_paraphrase_forget"],
                                                                         rel=1e-5)
    # a probe the task's rows cannot serve is a named error before anything trains
    with pytest.raises(ConfigError, match=r"cannot serve \['nickname'\]"):
        run("own_probe_missing", "probes=nickname")
    bad = tmp_path / "bad_probe.py"
    bad.write_text('from unlearnbench.probes import probe\nprobe("odd", changes="sideways")(lambda item: "")\n')
    with pytest.raises(ConfigError, match=r"changes='sideways'; choose from"):
        run("bad_probe", f"extensions={bad}")


PEEK_FILE = '''
from dataclasses import dataclass

from benchmarks.synthetic_tofu import SyntheticTofuConfig, generate
from methods import method
from methods.common import nll


@dataclass
class PeekConfig:
    lr: float = 1.0e-3


def held_out_rows(model, forget, tokenizer, cfg, seed):
    """The smoke world's held-out questions with their answers, read from the public generator."""
    world = generate(SyntheticTofuConfig(n_authors=10, qa_per_author=6, forget_percentages=[10]))
    ids = [tokenizer(r["heldout_question"] + " " + r["answer"])["input_ids"] for r in world["forget10_perturbed"]]
    return {"peek": [{"input_ids": i, "labels": i} for i in ids]}


@method("Peek", PeekConfig, roles=held_out_rows)
def peek(model, batch, ref, cfg):
    """Gradient ascent on the forget set and on the held-out phrasing: what the heldout probe asks."""
    return -nll(model, batch["forget"]) - nll(model, batch["peek"]), {}
'''


@pytest.mark.pipeline
def test_a_method_that_trains_on_a_probe_text_is_refused(smoke_root, tmp_path, registries):
    path = tmp_path / "peek.py"
    path.write_text(PEEK_FILE)
    payload = run_benchmark.main(["experiment=smoke", f"extensions={path}", "methods=Peek,GradDiff",
                                  "probes=heldout,paraphrase", f"output_dir={smoke_root / 'peek'}",
                                  f"cache_dir={smoke_root / 'cache'}"])
    rows = {r["model"]: r for r in payload["results"]}
    assert rows["Peek"]["status"] == "failed"
    assert "ProbeLeakError: Peek trained on the text of probe 'heldout'" in rows["Peek"]["error"]
    assert rows["GradDiff"]["status"] == "ok"      # the methods that train on their own rows pass the same check
