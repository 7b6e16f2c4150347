"""TOFU-exact encoding and batched per-item NLL on a tiny model built from a config."""
import math

import pytest
import torch

from benchmarks.synthetic_tofu import SyntheticTofuConfig, general_corpus, generate
from evals.reference import mean_answer_nll
from unlearnbench.config import EmbeddedModelConfig, ModelConfig
from unlearnbench.models import PromptFormat, build_embedded_model, train_tokenizer


@pytest.fixture(scope="module")
def world():
    splits = generate(SyntheticTofuConfig(n_authors=6, qa_per_author=8, forget_percentages=[10]))
    qa, text = general_corpus()
    texts = text + [r["question"] + " " + r["answer"] for rows in splits.values() for r in rows]
    tok = train_tokenizer(texts, 600)
    torch.manual_seed(0)
    model = build_embedded_model(EmbeddedModelConfig(hidden_size=32, num_layers=1, num_heads=2,
                                                     intermediate_size=64), tok).eval()
    return splits, qa, tok, model


def test_prompt_is_a_token_prefix_and_labels_cover_answer_plus_eos(world):
    splits, qa, tok, _ = world
    fmt = PromptFormat(ModelConfig(), tok)
    for row in splits["full"] + qa:
        enc = fmt.encode(row["question"], row["answer"])
        prompt = fmt.prompt_ids(row["question"])
        assert enc["input_ids"][:len(prompt)] == prompt
        labelled = [t for t in enc["labels"] if t != -100]
        assert labelled[-1] == tok.eos_token_id
        assert tok.decode(labelled[:-1]) == row["answer"]
        assert enc["labels"][:len(prompt)] == [-100] * len(prompt)


def test_tokenizer_round_trips_text(world):
    _, _, tok, _ = world
    text = "Question: Who wrote 'Don Quixote'?\nAnswer: Miguel de Cervantes."
    assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text


def test_batched_nll_equals_one_item_at_a_time_and_by_hand(world):
    splits, _, tok, model = world
    fmt = PromptFormat(ModelConfig(), tok)
    pairs = [(r["question"], r["answer"]) for r in splits["forget10_perturbed"][:6]]
    batched = mean_answer_nll(model, fmt, pairs, batch_size=4)
    single = [mean_answer_nll(model, fmt, [p], batch_size=1)[0] for p in pairs]
    assert batched == pytest.approx(single, abs=1e-5)
    # by hand for the first pair: mean of -log softmax at each label position
    enc = fmt.encode(*pairs[0])
    ids = torch.tensor([enc["input_ids"]])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)
    terms = [-logp[i - 1, t].item() for i, t in enumerate(enc["labels"]) if t != -100]
    assert batched[0] == pytest.approx(sum(terms) / len(terms), abs=1e-5)
    assert math.isfinite(batched[0])


def test_prompt_format_errors(world):
    _, _, tok, _ = world
    with pytest.raises(ValueError, match="prompt_format"):
        PromptFormat(ModelConfig(prompt_format="fancy"), tok)
    with pytest.raises(ValueError, match="no chat template"):
        PromptFormat(ModelConfig(prompt_format="chat"), tok)
    with pytest.raises(ValueError, match="question"):
        PromptFormat(ModelConfig(template="Q: A:"), tok)
