"""Torch CPU threads, side by side: training-step and evaluation-forward time of the embedded model (and of a
SmolLM2-135M-shaped model with --smollm2) at 1 thread and at N threads, each in its own process, plus a check that
the numbers do not depend on the thread count (the loss after 10 steps, compared bit for bit).

    python scripts/bench_threads.py [--threads 2] [--smollm2]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

SHAPES: dict[str, dict[str, Any]] = {
    "embedded": dict(vocab_size=2048, hidden_size=192, num_hidden_layers=4, num_attention_heads=4,
                     num_key_value_heads=4, intermediate_size=512),
    "smollm2": dict(vocab_size=49152, hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, intermediate_size=1536)}


def worker(threads: int, shape: str) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(tie_word_embeddings=True, **SHAPES[shape]))
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    vocab = SHAPES[shape]["vocab_size"]
    ids = torch.randint(0, vocab, (16, 48))
    steps = 10 if shape == "embedded" else 3

    def step():
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    train = (time.perf_counter() - start) / steps
    with torch.no_grad():
        batch = torch.randint(0, vocab, (64, 48))
        start = time.perf_counter()
        for _ in range(steps):
            model(input_ids=batch)
        forward = (time.perf_counter() - start) / steps
        loss = model(input_ids=ids, labels=ids).loss.item()
    return {"train_step_ms": 1000 * train, "eval_forward_ms": 1000 * forward, "loss": loss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--smollm2", action="store_true", help="also a SmolLM2-135M-shaped model (minutes)")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(int(args.worker[0]), args.worker[1])))
        return
    for shape in ["embedded"] + (["smollm2"] if args.smollm2 else []):
        runs = {}
        for n in (1, args.threads):
            out = subprocess.run([sys.executable, __file__, "--worker", str(n), shape], capture_output=True,
                                 text=True, check=True)
            runs[n] = json.loads(out.stdout.strip().splitlines()[-1])
        one, many = runs[1], runs[args.threads]
        print(f"{shape}: train step {one['train_step_ms']:.1f} ms (1 thread) vs {many['train_step_ms']:.1f} ms "
              f"({args.threads}): x{one['train_step_ms'] / many['train_step_ms']:.2f}; eval forward "
              f"{one['eval_forward_ms']:.1f} vs {many['eval_forward_ms']:.1f} ms: "
              f"x{one['eval_forward_ms'] / many['eval_forward_ms']:.2f}; loss after training identical: "
              f"{one['loss'] == many['loss']} ({one['loss']!r} vs {many['loss']!r})")


if __name__ == "__main__":
    main()
