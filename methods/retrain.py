"""Retrain: the retain model itself (fine-tuned without the forget set), the gold standard row."""
from dataclasses import dataclass

from methods import METHODS, MethodSpec


@dataclass
class RetrainConfig:
    lr: float = 0.0         # unused: the row is the retain model the pipeline trains anyway


METHODS.register("Retrain", MethodSpec(name="Retrain", hparams=RetrainConfig, is_retrain=True))
