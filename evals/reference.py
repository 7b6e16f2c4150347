"""The straightforward evaluation (one padded batch after another, in row order; transformers' `generate`): the
reference the engine (evals/engine.py) must equal, kept for tests/test_engine.py and scripts/bench_eval.py
--compare. The pipeline does not use it."""
from __future__ import annotations

from tqdm.auto import tqdm

from unlearnbench.heavy import no_grad, torch
from unlearnbench.models import PromptFormat, collate


def device_of(model) -> torch.device:
    return next(model.parameters()).device


def log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """log p over the last dimension, in at least float32, as (x - max) - log sum exp(x - max).

    torch's float32 CPU log_softmax and cross_entropy subtract max + log sum exp from x instead, which rounds at the
    logits' magnitude: on the default target, a confident token's log-probability of about -5e-3 came out 2.5e-5
    too high (2% of it; cross_entropy over (batch, vocab, length) logits) or 3e-6 (over the last dimension)."""
    z = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()
    z = z - z.amax(-1, keepdim=True)
    return z - z.exp().sum(-1, keepdim=True).log()


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence summed NLL and label-token count (labels -100 are ignored), next-token shifted."""
    shift_labels = labels[:, 1:]
    mask = shift_labels != -100
    logp = log_softmax(logits[:, :-1]).gather(-1, shift_labels.clamp(min=0)[..., None])[..., 0]
    return -(logp * mask).sum(1), mask.sum(1)


@no_grad
def mean_answer_nll(model, fmt: PromptFormat, pairs: list[tuple[str, str]], batch_size: int,
                    desc: str = "") -> list[float]:
    """NLLbar(a|q): mean per-token NLL over the answer's tokens and EOS, for each (question, answer)."""
    rows = [fmt.encode(q, a) for q, a in pairs]
    device, out = device_of(model), []
    for start in tqdm(range(0, len(rows), batch_size), desc=desc, leave=False, disable=not desc):
        rows_in = collate(rows[start:start + batch_size], fmt.tokenizer.pad_token_id)
        batch = {k: v.to(device) for k, v in rows_in.items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        total, count = token_nll(logits, batch["labels"])
        out.extend((total / count.clamp(min=1)).tolist())
    return out


@no_grad
def greedy_generate(model, fmt: PromptFormat, questions: list[str], batch_size: int, max_new_tokens: int,
                    desc: str = "") -> list[str]:
    """Batched greedy decoding from left-padded prompts, stopped at EOS; returns the new text only."""
    tok, device, out = fmt.tokenizer, device_of(model), []
    for start in tqdm(range(0, len(questions), batch_size), desc=desc, leave=False, disable=not desc):
        prompts = [fmt.prompt_ids(q) for q in questions[start:start + batch_size]]
        width = max(map(len, prompts))
        ids = torch.full((len(prompts), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompts):
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                             max_new_tokens=max_new_tokens, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id)
        out.extend(tok.batch_decode(gen[:, width:], skip_special_tokens=True))
    return out
