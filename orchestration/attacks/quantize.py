"""The quantization attack (Zhang et al., ICLR 2025): the row's model loaded with bitsandbytes' weight-only
quantization, one variant per width in `robustness.quant_bits` (8: LLM.int8; 4: NF4 with bf16 compute; 16: the
unquantized model, a check), then scored on every forget item (it trains on nothing). A LoRA row is quantized as
deployed: its adapter merged into full weights first, in the unit's own scratch folder (each process its own).
"""
from __future__ import annotations

import shutil

from orchestration.attacks import attack, merged, quiet
from unlearnbench.models import load_model, save_model


def explain(row: str, variant: str, err: RuntimeError) -> ValueError:
    return ValueError(f"{row}: bitsandbytes could not run the model at {variant[5:]} bits ({err}); NF4 quantizes "
                      f"blocks of 64 weights, so a model this small may not fit it. Drop the width from "
                      f"robustness.quant_bits (finished units stay cached)")


@attack("quant", variants=lambda r: [f"quant{b}" for b in r.quant_bits], explain=explain)
def quantize(pipe, ref, row: str, variant: str, settings, tmp, meter):
    bits = int(variant.removeprefix("quant"))
    path, tokenizer = ref.path, pipe.units.tokenizer(ref)
    if ref.adapter:
        path = tmp / "merged"
        save_model(merged(pipe.units.load(ref)), tokenizer, path, alone=True)
    with quiet():
        model = load_model(str(path), pipe.cfg.model, ref.gguf_file, bits=bits, device=str(pipe.acc.device))
        model = model.to(pipe.acc.device) if bits == 16 else model
    shutil.rmtree(tmp / "merged", ignore_errors=True)
    return model, tokenizer
