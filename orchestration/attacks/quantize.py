"""The quantization attack (Zhang et al., ICLR 2025): the row's model loaded with bitsandbytes' weight-only
quantization, one variant per width in `robustness.quant_bits` (8: LLM.int8; 4: NF4; 16: the unquantized model, a
check), then scored on every forget item (it trains on nothing). A LoRA row is quantized as deployed: its adapter
merged into full weights first, in the unit's own scratch folder (each process its own).

At 4 bits the forward passes run through torch's own kernels on the NF4 weights (`through_torch`): bitsandbytes'
CPU 4-bit matmul picks its code by the CPU (an AVX512-BF16 kernel where there is one), and its cells differed
between an AVX-512 and an AVX2 machine; torch's kernels are the ones the reproducible mode pins. LLM.int8 keeps
bitsandbytes' path: its products of int8 values are exact, summed as integers on an AVX-512 CPU and as float32
elsewhere (exact while a sum stays below 2^24; docs/numerics.md).
"""
from __future__ import annotations

import shutil

from orchestration.attacks import attack, merged, quiet
from unlearnbench.heavy import bitsandbytes, torch
from unlearnbench.models import load_model, save_model


def explain(row: str, variant: str, err: RuntimeError) -> ValueError:
    return ValueError(f"{row}: bitsandbytes could not run the model at {variant[5:]} bits ({err}); NF4 quantizes "
                      f"blocks of 64 weights, so a model this small may not fit it. Drop the width from "
                      f"robustness.quant_bits (finished units stay cached)")


def through_torch(model):
    """The NF4 model with every bitsandbytes Linear4bit replaced by a plain nn.Linear holding its dequantized
    weights (an NF4 level times its block's absmax: one float32 product per weight, the same on every CPU), so
    its forward passes run on torch's kernels. The weights are exactly the quantized ones."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, bitsandbytes.nn.Linear4bit):
                weight = bitsandbytes.functional.dequantize_4bit(child.weight.data, child.weight.quant_state)
                plain = torch.nn.Linear(child.in_features, child.out_features, bias=child.bias is not None,
                                        device=weight.device, dtype=weight.dtype)
                with torch.no_grad():
                    plain.weight.copy_(weight)
                    if child.bias is not None:
                        plain.bias.copy_(child.bias)
                setattr(parent, name, plain)
    return model


# part of a 4-bit unit's cache key: a cache filled while bitsandbytes computed the 4-bit forward passes (in bf16)
# is not read back as if it held these numbers
FOUR_BITS = "NF4 weights, float32 through torch"


@attack("quant", variants=lambda r: [f"quant{b}" for b in r.quant_bits], explain=explain,
        key=lambda pipe, variant: [FOUR_BITS] if variant == "quant4" else [])
def quantize(pipe, ref, row: str, variant: str, settings, tmp, meter):
    bits = int(variant.removeprefix("quant"))
    path, tokenizer = ref.path, pipe.units.tokenizer(ref)
    if ref.adapter:
        path = tmp / "merged"
        save_model(merged(pipe.units.load(ref)), tokenizer, path, alone=True)
    with quiet():
        model = load_model(str(path), pipe.cfg.model, ref.gguf_file, bits=bits, device=str(pipe.acc.device))
        model = model.to(pipe.acc.device) if bits == 16 else through_torch(model) if bits == 4 else model
    shutil.rmtree(tmp / "merged", ignore_errors=True)
    return model, tokenizer
