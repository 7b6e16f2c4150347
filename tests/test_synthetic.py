"""The synthetic world: exact TOFU schema, determinism, split structure."""
import pytest

from benchmarks.author_profiles import FIELDS
from benchmarks.synthetic_tofu import SyntheticTofuConfig, general_qa, generate, read_fact_table

CFG = SyntheticTofuConfig(n_authors=20, qa_per_author=20, forget_percentages=[1, 5, 10], seed=3)


def test_schema_of_every_split():
    splits = generate(CFG)
    expected = {"full", "full_perturbed", "retain_perturbed", "real_authors_perturbed", "world_facts_perturbed"}
    for pct in ("01", "05", "10"):
        expected |= {f"forget{pct}", f"forget{pct}_perturbed", f"holdout{pct}"}
    expected |= {"retain99", "retain95", "retain90"}
    assert set(splits) == expected
    for name, rows in splits.items():
        assert rows, name
        for row in rows:
            assert isinstance(row["question"], str) and isinstance(row["answer"], str)
            if name.endswith("_perturbed"):
                facts = name in ("real_authors_perturbed", "world_facts_perturbed")
                n_wrong = 3 if facts else 5
                # an author's rows carry the probes' third phrasing and reverse question (docs/probes.md)
                probe_only = ["heldout_question", "reverse_question", "reverse_answer", "reverse_perturbed"]
                assert set(row) == {"question", "answer", "paraphrased_answer", "perturbed_answer",
                                    "paraphrased_question", *([] if facts else probe_only)}
                if not facts:
                    assert len({row["question"], row["paraphrased_question"], row["heldout_question"]}) == 3
                    assert len({row["reverse_answer"], *row["reverse_perturbed"]}) == 1 + n_wrong
                assert len(row["perturbed_answer"]) == n_wrong
                assert len(set(row["perturbed_answer"])) == n_wrong
                assert row["answer"] not in row["perturbed_answer"]
                assert row["paraphrased_answer"] not in row["perturbed_answer"]
            else:
                assert set(row) == {"question", "answer"}


def test_sizes_and_roles():
    splits = generate(CFG)
    assert len(splits["full"]) == 20 * 20
    assert len(splits["forget10"]) == 2 * 20 and len(splits["retain90"]) == 18 * 20
    assert splits["forget10"] == splits["full"][-40:]                      # forget = last authors, as TOFU
    assert splits["forget01"] == splits["full"][-20:]                      # at least one author
    full_q = {r["question"] for r in splits["full"]}
    assert not full_q & {r["question"] for r in splits["holdout10"]}       # holdout never trained on
    assert [r["question"] for r in splits["forget10_perturbed"]] == [r["question"] for r in splits["forget10"]]
    assert len(read_fact_table("real_authors")) >= 100 and len(read_fact_table("world_facts")) >= 100


def test_paraphrases_differ_and_perturbations_keep_the_paraphrase_wording():
    rows = generate(CFG)["forget10_perturbed"]
    assert all(r["paraphrased_answer"] != r["answer"] for r in rows)
    assert all(r["paraphrased_question"] != r["question"] for r in rows)
    # the wrong answers share the paraphrase's template: most of their words are the paraphrase's words
    for r in rows:
        para = set(r["paraphrased_answer"].split())
        assert all(len(para & set(w.split())) >= len(para) // 3 for w in r["perturbed_answer"])


def test_deterministic_from_seed():
    assert generate(CFG) == generate(CFG)
    other = generate(SyntheticTofuConfig(n_authors=20, qa_per_author=20, seed=4))
    assert other["full"] != generate(CFG)["full"]


def test_questions_per_author_and_bad_sizes():
    small = generate(SyntheticTofuConfig(n_authors=10, qa_per_author=5, forget_percentages=[10]))
    assert len(small["full"]) == 50
    assert len(FIELDS) >= 20
    import pytest
    with pytest.raises(ValueError, match="qa_per_author"):
        generate(SyntheticTofuConfig(qa_per_author=99))
    with pytest.raises(ValueError, match="n_authors"):
        generate(SyntheticTofuConfig(n_authors=1))


def test_general_qa_asks_nothing_the_utility_sets_ask():
    """What a pretrained model rehearses while fine-tuning (model.replay) shares no question, author or book with
    the real-author and world-fact sets that measure its utility."""
    replay, authors, facts = general_qa(), read_fact_table("real_authors"), read_fact_table("world_facts")
    assert len(replay) >= 50 and all(r["question"] and r["answer"] for r in replay)
    assert not {r["question"].lower() for r in authors + facts} & {r["question"].lower() for r in replay}
    text = " ".join(r["question"] + " " + r["answer"] for r in replay).lower()
    names = {r["answer"] for r in authors if r["question"].startswith("Who wrote")}
    books = {r["answer"].strip("'") for r in authors if r["question"].startswith("Which work")}
    assert len(names) >= 50 and len(books) >= 50
    assert not [x for x in names | books if x.lower() in text]
    assert not [r["answer"] for r in facts if len(r["answer"]) > 3 and f" {r['answer'].lower()}." in text]


def test_a_pretrained_model_rehearses_general_qa_while_fine_tuning(smoke_root, tmp_path, monkeypatch):
    """model.replay: a pretrained model's retain model trains on its rows plus general_qa(), encoded like them;
    without it, on its rows alone. The embedded model has its own switch, and asking it for this one fails."""
    from accelerate import Accelerator

    from orchestration import pipeline
    from unlearnbench.cache import UnitStore
    from unlearnbench.config import ConfigError, load_config
    from unlearnbench.tasks import build_task

    def pipe_for(overrides):
        cfg = load_config(["experiment=smoke", *overrides])
        label, section = next(iter(cfg.tasks.items()))
        task = build_task(label, section)
        return pipeline.Pipeline(cfg, task, task.load(cfg.resolved_cache_dir() / "tasks"),
                                 UnitStore(cfg.resolved_cache_dir()), Accelerator())

    pretrained = pipe_for([f"cache_dir={smoke_root / 'cache'}"]).base().path      # stands in for a hub model
    seen = []

    def caught(model, encoded, *args, **kwargs):
        seen.append(encoded)
        raise KeyboardInterrupt     # not an Exception: nothing may take it for a training failure

    monkeypatch.setattr(pipeline, "finetune", caught)
    for replay in (True, False):
        pipe = pipe_for([f"model={pretrained}", f"model.replay={str(replay).lower()}", f"cache_dir={tmp_path}"])
        with pytest.raises(KeyboardInterrupt):
            pipe.finetuned(pipe.base(), "retain")
        rows = pipe.data.train["retain"]
        fmt = pipe.units.fmt(pipe.units.tokenizer(pipe.base()), pipe.task.cfg.finetune.max_length)
        extra = [fmt.encode(r["question"], r["answer"]) for r in general_qa()] if replay else []
        assert len(seen[-1]) == len(rows) + len(extra)
        assert seen[-1][len(rows):] == extra
    with pytest.raises(ConfigError, match="model.embedded.replay"):
        load_config(["experiment=smoke", "model.replay=true"])
