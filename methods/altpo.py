"""Alternate preference optimisation, AltPO (Mekala et al. 2025, "Alternate Preference Optimization for Unlearning
Factual Knowledge in Large Language Models", COLING): DPO with a plausible alternate answer preferred over the forget
answer, plus a retain NLL term (open-unlearning's AltPO recipe: its DPO trainer on generated alternates).

The alternates come from the target itself, as the paper's do: for each forget row, answers sampled from the target
at its prompt (a text row's prompt is its first sentence) until one differs from the row's answer, with a fixed
seed. On a pretrained model these are its own inventions; on an embedded world they are other authors', species' or
articles' values the model has learned, never the evaluation's perturbed answers."""
from __future__ import annotations

from dataclasses import dataclass

from methods import method
from methods.idk_dpo import preferred_over_forget
from unlearnbench.heavy import no_grad, torch
from unlearnbench.models import left_pad


@dataclass
class AltPOConfig:
    lr: float = 1e-5          # open-unlearning community/methods/AltPO/run.sh grid: 1e-5, 2e-5, 5e-5
    beta: float = 0.1         # open-unlearning configs/trainer/DPO.yaml (grid 0.05, 0.1, 0.5)
    alpha: float = 1.0        # retain weight, idem (grid 1, 2, 5)
    tries: int = 5            # samples per row at most: the reference generates 5 alternates a question
    temperature: float = 1.0  # sampling temperature, reference (community/methods/AltPO/generate.yaml)


def _split(row: dict) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids without the final EOS) of an encoded row whose labels mask its prompt (a row cut
    before its answer: the whole row is the prompt)."""
    n = next((i for i, label in enumerate(row["labels"]) if label != -100), len(row["labels"]))
    return row["input_ids"][:n], row["input_ids"][n:-1]


@no_grad
def sample_answers(model, prompts: list[list[int]], lengths: list[int], tokenizer, temperature: float,
                   batch_size: int = 32) -> list[list[int]]:
    """One sampled answer per prompt, at most lengths[i] tokens, cut at EOS (left-padded batches)."""
    out, device = [], next(model.parameters()).device
    for start in range(0, len(prompts), batch_size):
        ids, mask = left_pad(prompts[start:start + batch_size], tokenizer.pad_token_id, device)
        width = ids.shape[1]
        new = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=temperature, top_k=0,
                             top_p=1.0, max_new_tokens=max(lengths[start:start + batch_size]),
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)[:, width:]
        for row, cap in zip(new.tolist(), lengths[start:start + batch_size]):
            row = row[:cap]
            out.append(row[:row.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in row else row)
    return out


def alternates(model, forget: list[dict], tokenizer, cfg: AltPOConfig, seed: int) -> dict:
    """{"forget_alt": each forget row's prompt with a sampled answer other than its own}: up to cfg.tries samples,
    redrawn only for rows whose samples so far equal their answer (such a row keeps its last sample, which gives
    it no gradient: the DPO margin of two equal answers is zero)."""
    torch.manual_seed(seed)
    split = [_split(r) for r in forget]
    picked: list = [None] * len(forget)      # every row's sample, once drawn
    todo = list(range(len(forget)))
    was_training = model.training
    model.eval()
    for _ in range(max(1, cfg.tries)):
        drawn = sample_answers(model, [split[i][0] for i in todo], [max(1, len(split[i][1])) for i in todo],
                               tokenizer, cfg.temperature)
        for i, answer in zip(todo, drawn):
            picked[i] = answer
        todo = [i for i in todo if picked[i] == split[i][1]]
        if not todo:
            break
    model.train(was_training)
    eos = tokenizer.eos_token_id
    return {"forget_alt": [{"input_ids": p + a + [eos], "labels": [-100] * len(p) + a + [eos]}
                           for (p, _), a in zip(split, picked)]}


@method("AltPO", AltPOConfig, needs_ref=True, roles=alternates)
def altpo(model, batch, ref, cfg: AltPOConfig):
    return preferred_over_forget(model, batch, ref, cfg, "forget_alt")
