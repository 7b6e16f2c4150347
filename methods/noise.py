"""Gaussian noise on every weight: the simplest baseline of the NeurIPS 2023 unlearning challenge
(Triantafillou et al. 2024). No training; sigma is the knob to sweep."""
from __future__ import annotations

from dataclasses import dataclass

from methods import method
from unlearnbench.heavy import torch


@dataclass
class NoiseConfig:
    lr: float = 0.0         # unused: no training
    sigma: float = 0.01     # noise standard deviation


@method("Noise", NoiseConfig, edits_weights=True)
def add_noise(model, cfg: NoiseConfig, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(cfg.sigma * torch.randn(p.shape, generator=generator).to(p.device, p.dtype))
