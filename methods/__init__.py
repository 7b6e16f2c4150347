"""Unlearning methods: one file each, registered by name with a hyperparameter dataclass (see README.md)."""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

from unlearnbench.config import CONFIG_ROOT, ConfigError, from_dict, read_yaml
from unlearnbench.registry import Registry


@dataclass(frozen=True)
class MethodSpec:
    name: str
    hparams: type                      # dataclass of hyperparameters; defaults cite the paper
    loss: Callable | None = None       # (model, batch, ref, cfg) -> (loss, logs), for trained methods
    edit: Callable | None = None       # (model, cfg, seed) -> None, for methods that change weights directly
    needs_ref: bool = False            # loss uses the frozen target (a copy, or the model with LoRA disabled)
    needs_idk: bool = False            # batch carries "forget_idk": forget questions with refusal answers
    trainable: Callable | None = None  # (model, cfg) -> names of parameters to train; default: all
    is_retrain: bool = False           # the row is the retain model itself
    roles: Callable | None = None      # (model, forget rows, tokenizer, cfg, seed) -> {role: rows} the loss also
                                       # reads (AltPO's alternates), built from the target before training
    state: Callable | None = None      # (cfg, micro_batches) -> a fresh per-run state, the loss's fifth argument
                                       # (PDU's dual variable); its record() goes into the row's train log
    source: str = ""                   # registered from a user's file (extensions=): "<path>@<digest>", part of
                                       # its rows' cache keys, so an edited file reruns them


METHODS = Registry("method")


def method(name: str, hparams: type, edits_weights: bool = False, **flags):
    """Register a loss function under `name`, or with edits_weights=True a direct weight edit."""
    def wrap(fn):
        METHODS.register(name, MethodSpec(name=name, hparams=hparams, **{"edit" if edits_weights else "loss": fn},
                                          **flags))
        return fn
    return wrap


def run_loss(spec: MethodSpec, cfg, ref, micro_batches: int):
    """(loss_fn(model, batch) -> (loss, logs), state) for one run of `spec`: the state is the method's fresh
    per-run state (None for a stateless method), whose record() the row keeps."""
    loss = spec.loss
    if loss is None:
        raise ValueError(f"{spec.name} edits the weights (no loss to train on); run it with spec.edit")
    if spec.state is None:
        return (lambda model, batch: loss(model, batch, ref, cfg)), None
    state = spec.state(cfg, micro_batches)
    return (lambda model, batch: loss(model, batch, ref, cfg, state)), state


# Every trained method's setting beside its own hyperparameters: when to stop. method_args.<name>.stop_after = k
# stops its run after k updates of the unlearning schedule (whose learning-rate decay spans the whole run); 0 or
# absent: at the schedule's end. tune.py chooses it from the unlearning curve (docs/tuning.md).
STOP = "stop_after"


def stop_after(name: str, args: dict | None) -> int:
    """The updates after which `name`'s run stops (0: the schedule's end), checked."""
    value = dict(args or {}).get(STOP, 0)
    if isinstance(value, str) and value.strip().isdigit():     # from the command line
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"method_args.{name}.{STOP}={value!r}: expected a whole number of updates >= 0 (0: run "
                          f"the unlearning schedule to its end)")
    spec = METHODS.get_or_raise(name)
    if value and (spec.edit is not None or spec.is_retrain):
        raise ConfigError(f"method_args.{name}.{STOP}={value}: {name} does not train, so it has no updates to stop "
                          f"after; drop it")
    return value


def method_config(name: str, args: dict | None):
    """The method's hyperparameters: dataclass defaults (the paper's), then configs/method/<name>.yaml, then
    `args` (an experiment's method_args.<name>), merged strictly; `stop_after` (STOP) is the schedule's, not the
    method's, and checked by stop_after()."""
    spec = METHODS.get_or_raise(name)
    path = CONFIG_ROOT / "method" / f"{name}.yaml"
    values = {**(read_yaml(path) if path.is_file() else {}), **dict(args or {})}
    stop_after(name, values)
    values.pop(STOP, None)
    hp = from_dict(spec.hparams, values, prefix=f"method_args.{name}")
    lr = getattr(hp, "lr", None)
    if lr is not None and not lr >= 0:
        raise ConfigError(f"method_args.{name}.lr={lr}: expected a learning rate >= 0 (0 evaluates the target "
                          f"untrained, marked so)")
    return hp


for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("common", "trainer", "private"):     # the shared pieces, not methods
        importlib.import_module(f"{__name__}.{_module.name}")
