"""The MUSE-style family (benchmarks/muse.py): each metric against hand-computed values, the real-mode loader on
a local copy in muse_bench's exact layout and field names, the engine's generations against transformers'
greedy `generate`, and a micro world end to end (the main run and the requests protocol)."""
import json
import re

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

import run_benchmark
from benchmarks import muse_probes
from benchmarks.muse import MuseConfig, MuseTask, chunks
from benchmarks.synthetic_muse import SyntheticMuseConfig
from evals import muse_metrics
from unlearnbench.config import EmbeddedModelConfig, ModelConfig
from unlearnbench.models import PromptFormat, build_embedded_model, train_tokenizer

WORDS = [f"w{i}" for i in range(200)]


def word_tokenizer() -> PreTrainedTokenizerFast:
    """One token per word, BOS first: token counts are word counts."""
    vocab = {"<s>": 0, "</s>": 1, "<pad>": 2, "<unk>": 3, **{w: i + 4 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


def test_rouge_l_f1_is_the_lcs_f_measure():
    # LCS of (the cat sat on the mat) and (the cat on a mat): the cat on mat, 4 words; P 4/5, R 4/6
    assert muse_metrics.rouge_l_f1("the cat sat on the mat", "the cat on a mat") == pytest.approx(8 / 11)
    assert muse_metrics.rouge_l_f1("Running dogs", "run dog") == 0.0        # no stemmer, as muse_bench
    assert muse_metrics.rouge_l_f1("Paris", "") == 0.0


def test_verbmem_cuts_the_true_continuation_to_128_tokens_bos_included():
    tok, gt = word_tokenizer(), " ".join(WORDS)
    cut = muse_metrics.cut_gt(tok, gt)
    assert cut == " ".join(WORDS[:127])             # BOS is the 128th token, as muse_bench encodes gt
    # a continuation that reproduces all 200 words: precision 127/200, recall 1
    assert muse_metrics.rouge_l_f1(cut, gt) == pytest.approx(2 * 127 / (127 + 200))
    assert muse_metrics.cut_gt(tok, "w1 w2") == "w1 w2"


def test_knowmem_cuts_the_answer_where_the_next_pair_starts():
    cut = muse_metrics.knowmem_answer
    assert cut("Orla Vance\n\nQuestion: Who") == "Orla Vance"
    assert cut("Orla Vance\nQuestion: Who") == "Orla Vance"
    assert cut("Orla Vance Question: Who") == "Orla Vance "
    assert cut("Orla\nVance") == "Orla\nVance"           # one line break is not a cut
    assert cut("734\n\nsome\nQuestion") == "734"
    prompt = muse_metrics.icl_prompt([{"question": "Q1?", "answer": "A1"}, {"question": "Q2?", "answer": "A2"}],
                                     "Q3?")
    assert prompt == "Question: Q1?\nAnswer: A1\n\nQuestion: Q2?\nAnswer: A2\n\nQuestion: Q3?\nAnswer: "


def test_metrics_and_privleak_normalisation_by_hand():
    def stats(forget, holdout):
        return {"verbmem_forget": {"rougeL_f1": [1.0, 0.5]}, "knowmem_forget": {"rougeL_f1": [0.2, 0.4]},
                "knowmem_retain": {"rougeL_f1": [1.0]}, "privleak_forget": {"min_k": forget},
                "privleak_holdout": {"min_k": holdout}}
    # MUSE's AUC' counts holdout documents as positives: P(holdout score > forget score), ties a half
    # retain: 7 of 16 pairs -> 0.4375; model: 4 of 16 -> 0.25; PrivLeak = (0.25 - 0.4375) / 0.4375 x 100
    retain = stats([-3, -1, -5, -2], [-2, -4, -1, -6])
    model = stats([-1, -2, -3, -4], [-2, -3, -5, -6])
    out = muse_metrics.metrics(model, retain)
    assert out["verbmem_forget"] == pytest.approx(75.0) and out["knowmem_forget"] == pytest.approx(30.0)
    assert out["knowmem_retain"] == pytest.approx(100.0)
    assert out["auc_min_k"] == pytest.approx(0.75)
    assert out["priv_leak"] == pytest.approx((0.25 - 0.4375) / 0.4375 * 100)
    assert muse_metrics.metrics(retain, retain)["priv_leak"] == pytest.approx(0.0)
    assert "priv_leak" not in muse_metrics.metrics(model, None)       # no retain model: no PrivLeak


# -- the real-mode loader ----------------------------------------------------------------------------------------
DOC = "Para one of the first forget article, long enough.\n\nPara two of it, with more words in it."


def write_muse_copy(root, older_names: bool = False, folds: bool = False):
    """A local copy in muse_bench's layout (<subset>/<split>.json, JSON arrays, the hub's fields)."""
    def put(subset, split, rows):
        (root / subset).mkdir(parents=True, exist_ok=True)
        (root / subset / f"{split}.json").write_text(json.dumps(rows))
    docs = [DOC, "The second forget article says other things.", "A third one."]
    put("raw", "forget", [{"text": d} for d in docs])
    put("raw", "retain1", [{"text": "A retain article."}, {"text": "Another retain article."}])
    put("verbmem", "forget", [{"prompt": "Para two of it,", "gt": " with more words in it."},
                              {"prompt": "The second forget", "gt": " article says other things."}])
    qa = [{"question": f"Q{i}?", "answer": f"A{i}"} for i in range(12)]
    retain = "retain2" if older_names else "retain"
    put("knowmem", "forget_qa", qa[:2])
    put("knowmem", f"{retain}_qa", qa[2:4])
    put("knowmem", "forget_qa_icl", qa[:10])
    put("knowmem", f"{retain}_qa_icl", qa[2:12])
    put("privleak", "forget", [{"text": d} for d in docs])
    put("privleak", retain, [{"text": "A retain article."}])
    put("privleak", "holdout", [{"text": "Never seen."}, {"text": "Not seen either."}])
    if folds:
        for k in range(1, 5):
            put("sust", f"forget_{k}", [{"text": f"Fold {k} document {j}."} for j in range(k)])
            put("scal", f"forget_{k}", [{"text": f"Scal document {j}."} for j in range(2 * k)])


@pytest.mark.parametrize("older", [False, True])
def test_the_local_loader_reads_muse_bench_layout_and_both_retain_names(tmp_path, older):
    write_muse_copy(tmp_path, older_names=older)
    task = MuseTask(MuseConfig(source="local", path=str(tmp_path), chunk_chars=60))
    data = task.load()
    assert task.label == f"muse_{tmp_path.name.lower()}"
    assert data.train == {"target": None, "retain": None}          # the given model is the target
    # the first document is cut at its paragraph break (60 characters at most per row)
    assert [r["text"] for r in data.forget[:2]] == DOC.split("\n\n")
    assert len(data.forget) == 4 and len(data.retain) == 2
    assert [q for q, _ in task.scored_pairs()["knowmem_retain"]][0].endswith("Question: Q2?\nAnswer: ")
    assert task.sets["knowmem_retain"][1] == {"question": "Q3?", "answer": "A3"}
    # a verbatim item's document is the forget row holding its prompt: relearning on it leaves it unscored
    assert task.sources["verbmem_forget"] == [1, 2]
    rows, items = task.relearn_split(seed=0)
    relearned = {i for i, r in enumerate(data.forget) if r in rows}
    assert items["verbmem_forget"] == [i for i, row in enumerate([1, 2]) if row not in relearned]
    assert items["knowmem_forget"] == [0, 1]                       # a question's document is unknown: all


def test_the_loader_names_the_file_row_and_field(tmp_path):
    write_muse_copy(tmp_path)
    (tmp_path / "knowmem" / "forget_qa.json").write_text(json.dumps([{"question": "Q?", "answer": ""}]))
    with pytest.raises(ValueError, match=r"forget_qa.json: row 0 needs a non-empty string field 'answer'"):
        MuseTask(MuseConfig(source="local", path=str(tmp_path))).load()
    (tmp_path / "knowmem" / "forget_qa.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"knowmem/forget_qa not found.*<subset>/<split>.json"):
        MuseTask(MuseConfig(source="local", path=str(tmp_path))).load()


def test_sust_and_scal_folds_become_requests(tmp_path):
    write_muse_copy(tmp_path, folds=True)
    sust = MuseTask(MuseConfig(source="local", path=str(tmp_path), folds="sust"))
    data = sust.load()
    assert [r["text"] for r in data.forget][:3] == ["Fold 1 document 0.", "Fold 2 document 0.", "Fold 2 document 1."]
    assert [rows for rows, _ in sust.request_folds(4, seed=0)] == [[0], [1, 2], [3, 4, 5], [6, 7, 8, 9]]
    with pytest.raises(ValueError, match="requests.folds=4"):
        sust.request_folds(2, seed=0)
    scal = MuseTask(MuseConfig(source="local", path=str(tmp_path), folds="scal"))
    data = scal.load()      # nested sets of 2, 4, 6, 8 documents: requests add 2 each, cumulative = scal's sets
    assert len(data.forget) == 8
    assert [rows for rows, _ in scal.request_folds(4, seed=0)] == [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_chunks_cut_at_paragraph_breaks():
    assert chunks("a\n\nb\n\nc", 4) == ["a\n\nb", "c"]
    assert chunks("one long paragraph", 5) == ["one long paragraph"]       # a paragraph is never split


# -- evaluation through the engine ---------------------------------------------------------------------------------
def test_the_engine_generates_what_transformers_generate_does(tmp_path):
    """VerbMem and KnowMem generations through the engine equal a plain greedy `generate` of the raw prompt (BOS
    added, as muse_bench encodes it), and each document's Min-40% is read off the same teacher-forced pass."""
    task = MuseTask(MuseConfig(synthetic=SyntheticMuseConfig(10, 10, 10, 10)))
    data = task.load()
    tok = train_tokenizer(data.texts, 512)
    torch.manual_seed(0)
    model = build_embedded_model(EmbeddedModelConfig(hidden_size=32, num_layers=2, num_heads=2,
                                                     intermediate_size=64, max_position=512), tok).eval()
    fmt = PromptFormat(ModelConfig(name="embedded"), tok)
    stats = task.evaluate(model, tok, fmt, "random", batch_size=4)
    for split, new, prompts in [("verbmem_forget", 128, [r["prompt"] for r in task.sets["verbmem_forget"][:3]]),
                                ("knowmem_forget", 32, [muse_metrics.icl_prompt(task.icl["knowmem_forget"],
                                                                                r["question"])
                                                        for r in task.sets["knowmem_forget"][:3]])]:
        for i, prompt in enumerate(prompts):
            ids = tok(prompt, return_tensors="pt").input_ids
            assert ids[0, 0] == tok.bos_token_id
            out = model.generate(ids, max_new_tokens=new, do_sample=False, pad_token_id=tok.pad_token_id)
            text = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
            expected = text if split == "verbmem_forget" else muse_metrics.knowmem_answer(text)
            assert stats[split]["generation"][i] == expected
    # Min-40% by hand: log p of every token after BOS (end of sequence not scored), the lowest 40 %
    text = task.sets["privleak_holdout"][0]["text"]
    ids = tok(text, return_tensors="pt").input_ids
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1).gather(1, ids[0, 1:, None])[:, 0]
    lowest = torch.sort(logp).values[:int(len(logp) * 0.4)]
    assert stats["privleak_holdout"]["min_k"][0] == pytest.approx(lowest.mean().item(), abs=1e-5)


@pytest.mark.pipeline
def test_a_micro_muse_world_end_to_end(tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    common = ["experiment=smoke", "task=muse_micro", "model.embedded.max_position=512", f"cache_dir={cache}"]
    payload = run_benchmark.main(common + [f"output_dir={out}"])
    rows = {r["model"]: r for r in payload["results"]}
    assert list(rows) == ["target", "retain", "GradAscent", "GradDiff"]
    assert all(r["task"] == "muse_synthetic" and r["status"] == "ok" for r in rows.values())
    assert rows["retain"]["metrics"]["priv_leak"] == 0.0
    assert set(rows["target"]["metrics"]) >= {"verbmem_forget", "knowmem_forget", "knowmem_retain", "priv_leak"}
    per_item = json.loads((out / "per_item.json").read_text())
    verbmem = per_item["muse_synthetic"]["target"]["verbmem_forget"]
    assert len(verbmem["generation"]) == len(verbmem["gt"]) == len(verbmem["rougeL_f1"]) == 10
    board = (out / "leaderboard.md").read_text()
    assert "verbmem_forget ↓" in board and "knowmem_retain ↑" in board
    # requests over time: the forget articles in 2 folds, each request scored on its articles' items
    payload = run_benchmark.main(common + ["requests.folds=2", "requests.mode=both", "methods=GradDiff",
                                           f"output_dir={tmp_path / 'requests'}"])
    steps = [r for r in payload["results"] if r["model"] == "GradDiff"]
    assert sorted((r["mode"], r["request"]) for r in steps) == [("cumulative", 1), ("cumulative", 2),
                                                                ("sequential", 1), ("sequential", 2)]
    assert all(r["status"] == "ok" and "fold_verbmem_forget" in r["metrics"] for r in steps)


def test_the_muse_probes_are_built_as_stated():
    sets = {"verbmem_forget": [{"prompt": "Key facts. One. Two. ", "gt": "Three is here. Four follows! Five."}],
            "knowmem_forget": [{"question": "Who won?", "answer": "Ana",
                                "paraphrased_question": "Who was the winner?"}],
            "knowmem_retain": [{"question": "Where?", "answer": "Cork", "paraphrased_question": "In which town?"}]}
    icl = {"knowmem_forget": [{"question": "Q1?", "answer": "A1"}],
           "knowmem_retain": [{"question": "Q2?", "answer": "A2"}]}
    assert muse_probes.items("shifted", sets, icl) == {
        "forget": [("Key facts. One. Two. Three is here. ", ["Four follows! Five."])]}
    assert muse_probes.items("icl0", sets, icl) == {"forget": [("Question: Who won?\nAnswer: ", ["Ana"])],
                                                    "retain": [("Question: Where?\nAnswer: ", ["Cork"])]}
    assert muse_probes.items("paraphrase", sets, icl)["forget"] == [
        ("Question: Q1?\nAnswer: A1\n\nQuestion: Who was the winner?\nAnswer: ", ["Ana"])]
    assert muse_probes.offered(sets) == ("shifted", "icl0", "paraphrase")
    # a one-sentence continuation cannot be shifted; MUSE's own rows have no second phrasing
    plain = {**sets, "verbmem_forget": [{"prompt": "P. ", "gt": "Only one sentence."}],
             "knowmem_forget": [{"question": "Who won?", "answer": "Ana"}]}
    assert muse_probes.offered(plain) == ("icl0",)
    with pytest.raises(ValueError, match="unknown MUSE probe"):
        muse_probes.items("reverse", sets, icl)


@pytest.mark.pipeline
def test_muse_probes_on_a_micro_world(tmp_path):
    out = tmp_path / "out"
    payload = run_benchmark.main(["experiment=smoke", "task=muse_micro", "model.embedded.max_position=512",
                                  "probes=all", f"cache_dir={tmp_path / 'cache'}", f"output_dir={out}"])
    info = payload["datasets"]["muse_synthetic"]["probes"]
    assert info["asked"] == ["shifted", "icl0", "paraphrase"]
    rows = {r["model"]: r["metrics"] for r in payload["results"]}
    for p, test in info["tests"].items():
        if p != "plain" and test["target"] != test["retain"]:
            assert rows["retain"][f"probe_{p}_recovery"] == 0.0 and rows["target"][f"probe_{p}_recovery"] == 1.0
    assert {"probe_icl0_retain", "probe_paraphrase_retain"} <= set(rows["GradDiff"])
    per_item = json.loads((out / "per_item.json").read_text())["muse_synthetic"]
    # the worst case is the highest recovery over plain VerbMem and every probe that discriminates, the KnowMem
    # probes included (each read against the retain model under its own items)
    used = ["plain"] + [p for p, t in info["tests"].items() if t["discriminates"] and p != "plain"]
    for row in ("target", "retain", "GradDiff"):
        stats = per_item[row]
        covered = [rows[row][f"probe_{p}_recovery"] for p in used if rows[row][f"probe_{p}_recovery"] is not None]
        # (None where the target and the retain model score alike under every covered prompt: nothing to recover)
        assert rows[row]["worst_recovery"] == (max(covered) if covered else None)
        # each probe's forget column on VerbMem's own scale (x 100), like the plain column
        assert rows[row]["probe_shifted_forget"] == pytest.approx(
            100 * float(np.mean(stats["probes"]["shifted"]["forget"]["rougeL_f1"])))
        assert len(stats["probes"]["icl0"]["forget"]["generation"]) == 20     # two questions per forget article


def _template_of(question: str) -> tuple[str, int, int]:
    """(event, fact, phrasing) of the one template a key-fact question fills."""
    from benchmarks.synthetic_muse import EVENTS, phrasings
    hits = [(e, f, i) for e in EVENTS for f in range(3) for i, t in enumerate(phrasings(e, f))
            if re.fullmatch(re.sub(r"\\\{\w+\\\}", ".+", re.escape(t)), question)]
    assert len(hits) == 1, (question, hits)
    return hits[0]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_the_muse_world_can_teach_each_fact_in_several_phrasings(n):
    """question_phrasings: the box asks each fact in one of n phrasings, the paraphrase probe another one: with
    n = 1 one that no text holds; with 2 or 3 one that other articles' boxes use (the probe's phrasing is learned,
    not its answer's pairing with it). The articles' prose and answers do not depend on n."""
    from benchmarks.synthetic_muse import generate
    world = generate(SyntheticMuseConfig(question_phrasings=n))
    texts = [r["text"] for split in world["raw"].values() for r in split]
    boxed = {_template_of(q) for t in texts for q in re.findall(r"Question: (.+)\n", t)}
    for row in world["knowmem"]["forget_qa"] + world["knowmem"]["retain_qa"]:
        probe, asked = _template_of(row["paraphrased_question"]), _template_of(row["question"])
        assert probe[:2] == asked[:2] and probe[2] != asked[2]
        assert not any(row["paraphrased_question"] in t for t in texts)
        assert (probe in boxed) == (n > 1)
        assert {i for e, f, i in boxed if (e, f) == probe[:2]} == set(range(n))
    one = generate(SyntheticMuseConfig())
    assert [a["answer"] for a in one["knowmem"]["forget_qa"]] == [a["answer"] for a in world["knowmem"]["forget_qa"]]
    assert [r["gt"] for r in one["verbmem"]["forget"]] == [r["gt"] for r in world["verbmem"]["forget"]]
    with pytest.raises(ValueError, match="question_phrasings must be 1, 2 or 3"):
        generate(SyntheticMuseConfig(question_phrasings=4))
