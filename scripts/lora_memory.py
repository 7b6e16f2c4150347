"""Peak memory of NPO on full weights vs NPO through LoRA, measured side by side in one run.

    python scripts/lora_memory.py [--hidden 1024 --layers 8 --steps 4 --seq-len 128 --batch 8 --dtype float32]

Each variant runs in its own fresh subprocess (the same code path as the benchmark: methods.trainer.prepare and
train), on a Llama-architecture model of the given size built from a config, so process peaks do not mix. It
prints the peak memory (GPU allocator on CUDA, sampled RSS on CPU), the memory held before training starts, the
parameter bytes of every distinct model tensor alive during training (a second copy of the model shows here), and
the ratio LoRA / full. Then the calculation it checks: the training state per parameter (weights, gradients,
AdamW's two moments, NPO's frozen reference; LoRA: the frozen weights only, adapters negligible) against the
measured overhead, and the largest model whose state fits 24 GB and 80 GB each way and in each dtype.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def one_variant(args) -> dict:
    import gc

    import torch
    from accelerate import Accelerator

    from benchmarks.synthetic_tofu import SyntheticTofuConfig, general_corpus, generate
    from methods import METHODS, method_config
    from methods.trainer import Hooks, Run, prepare, train
    from unlearnbench.config import EmbeddedModelConfig, LoraSettings, ModelConfig, TrainConfig
    from unlearnbench.cost import CostMeter, _rss_bytes
    from unlearnbench.models import PromptFormat, build_embedded_model, train_tokenizer

    acc = Accelerator()
    splits = generate(SyntheticTofuConfig(n_authors=20, qa_per_author=20, forget_percentages=[10]))
    qa, text = general_corpus()
    tok = train_tokenizer(text + [r["question"] + " " + r["answer"] for r in splits["full"]], 2048)
    fmt = PromptFormat(ModelConfig(), tok)
    torch.manual_seed(0)
    model = build_embedded_model(EmbeddedModelConfig(hidden_size=args.hidden, num_layers=args.layers,
                                                     num_heads=args.hidden // 64, intermediate_size=args.hidden * 3),
                                 tok).to(acc.device)
    def fixed(r):       # a row of exactly seq_len tokens (the QA text repeated), every token a label
        ids = fmt.encode(r["question"], r["answer"])["input_ids"]
        ids = (ids * (args.seq_len // len(ids) + 1))[:args.seq_len]
        return {"input_ids": ids, "labels": list(ids)}
    model = model.to({"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype])
    roles = {"forget": [fixed(r) for r in splits["forget10"]], "retain": [fixed(r) for r in splits["retain90"]]}
    spec, hp = METHODS["NPO"], method_config("NPO", {"lr": 1e-5})
    n_params = sum(p.numel() for p in model.parameters())
    gc.collect()
    held_before = (torch.cuda.memory_allocated() if acc.device.type == "cuda" else _rss_bytes())
    seen: dict[str, int] = {}
    meter = CostMeter(acc.device)
    with meter:
        model, ref = prepare(model, spec, hp, LoraSettings() if args.lora else None)

        def loss_fn(m, b):
            if not seen:   # every distinct parameter tensor of the model and its reference, counted once
                tensors = {id(p): p for p in m.parameters()}
                if ref is not None and ref.model is not None:
                    tensors.update({id(p): p for p in ref.model.parameters()})
                seen["param_bytes"] = sum(p.numel() * p.element_size() for p in tensors.values())
            return spec.loss(m, b, ref, hp)
        steps = args.steps
        schedule = TrainConfig(epochs=steps * args.batch / len(roles["forget"]), batch_size=args.batch,
                               max_length=args.seq_len)
        train(model, roles, loss_fn, Run(schedule, hp.lr, 0, lead="forget"), acc, tok.pad_token_id,
              Hooks("NPO+lora" if args.lora else "NPO"))
    return {"variant": "NPO+lora" if args.lora else "NPO", "device": acc.device.type, "n_params": n_params,
            "held_before_bytes": held_before, "peak_bytes": meter.peak_memory_bytes,
            "model_param_bytes_alive": seen["param_bytes"], "wall_seconds": meter.wall_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128, help="tokens per training row")
    parser.add_argument("--batch", type=int, default=8, help="rows per micro-batch (forget and retain each)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--lora", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_variant(args)))
        return
    rows = []
    for lora in (False, True):
        cmd = [sys.executable, __file__, "--child", f"--hidden={args.hidden}", f"--layers={args.layers}",
               f"--steps={args.steps}", f"--seq-len={args.seq_len}", f"--batch={args.batch}",
               f"--dtype={args.dtype}"] + (["--lora"] if lora else [])
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    mib = lambda b: f"{b / 2**20:9.1f} MiB"
    print(f"model: {rows[0]['n_params'] / 1e6:.1f}M parameters, {args.dtype}, device {rows[0]['device']}, "
          f"{args.steps} steps of {args.batch} forget + {args.batch} retain rows x {args.seq_len} tokens")
    print(f"{'variant':10} {'peak':>13} {'held before':>13} {'peak - before':>13} {'model tensors alive':>20}")
    for r in rows:
        print(f"{r['variant']:10} {mib(r['peak_bytes'])} {mib(r['held_before_bytes'])} "
              f"{mib(r['peak_bytes'] - r['held_before_bytes'])} {mib(r['model_param_bytes_alive']):>20}")
    full, lora = rows
    overhead = lambda r: r["peak_bytes"] - r["held_before_bytes"]
    print(f"ratio LoRA/full: peak {lora['peak_bytes'] / full['peak_bytes']:.2f}, "
          f"training overhead {overhead(lora) / overhead(full):.2f}, "
          f"model tensors alive {lora['model_param_bytes_alive'] / full['model_param_bytes_alive']:.2f} "
          f"(full NPO holds the model and a frozen reference copy; LoRA holds one network)")
    capacity(full, lora, args.dtype)


def state_bytes_per_param(variant: str, dtype: str) -> int:
    """Training state of NPO per model parameter: weights, gradients and AdamW's two moments (all in the weights'
    dtype, as torch keeps them) and the frozen reference copy; through LoRA only the frozen weights (the
    adapters, their gradients and moments are well under 1 % of the parameters at r=8)."""
    w = {"float32": 4, "bfloat16": 2}[dtype]
    return 5 * w if variant == "NPO" else w


def capacity(full: dict, lora: dict, dtype: str) -> None:
    n = full["n_params"]
    for r in (full, lora):
        extra = (state_bytes_per_param(r["variant"], dtype) - {"float32": 4, "bfloat16": 2}[dtype]) * n
        print(f"{r['variant']:10} state beyond the loaded weights: predicted {extra / 2**20:9.1f} MiB, measured "
              f"overhead {(r['peak_bytes'] - r['held_before_bytes']) / 2**20:9.1f} MiB (the rest: activations, "
              f"allocator)")
    for gb in (24, 80):
        fits = ", ".join(f"{variant} {d}: {gb * 1e9 / state_bytes_per_param(variant, d) / 1e9:5.1f}B"
                         for variant in ("NPO", "NPO+lora") for d in ("float32", "bfloat16"))
        print(f"{gb} GB holds the training state of at most (parameters, before activations): {fits}")


if __name__ == "__main__":
    main()
