"""Unlearning methods: one file each, registered by name with a hyperparameter dataclass (see README.md)."""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import pkgutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

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
    source: str = ""                   # registered from a method file (method_files=): "<path>@<digest>", part of
                                       # its rows' cache keys, so an edited file reruns them


METHODS = Registry("method")


def method(name: str, hparams: type, edits_weights: bool = False, **flags):
    """Register a loss function under `name`, or with edits_weights=True a direct weight edit."""
    def wrap(fn):
        METHODS.register(name, MethodSpec(name=name, hparams=hparams, **{"edit" if edits_weights else "loss": fn},
                                          **flags))
        return fn
    return wrap


def method_config(name: str, args: dict | None):
    """The method's hyperparameters: dataclass defaults (the paper's), then configs/method/<name>.yaml, then
    `args` (an experiment's method_args.<name>), merged strictly."""
    spec = METHODS.get_or_raise(name)
    path = CONFIG_ROOT / "method" / f"{name}.yaml"
    values = {**(read_yaml(path) if path.is_file() else {}), **dict(args or {})}
    hp = from_dict(spec.hparams, values, prefix=f"method_args.{name}")
    lr = getattr(hp, "lr", None)
    if lr is not None and not lr >= 0:
        raise ConfigError(f"method_args.{name}.lr={lr}: expected a learning rate >= 0 (0 evaluates the target "
                          f"untrained, marked so)")
    return hp


_FILES: dict[Path, tuple[str, list[str]]] = {}   # method file -> (its digest, the names it registered)


def load_method_files(paths: list[str]) -> None:
    """Import each user file of `method_files`, which registers methods with @method like the built-in ones; a file
    already imported unchanged is skipped, an edited one replaces its methods. Every failure is a ConfigError that
    names the file (and the line of a syntax error), before anything trains."""
    for given in paths:
        path = Path(given).expanduser().resolve()
        if not path.is_file() or path.suffix != ".py":
            raise ConfigError(f"method_files: {given!r} is not a Python file; give the path of a .py file that "
                              f"registers methods with @method (template: methods/README.md)")
        source = path.read_bytes()
        digest = hashlib.sha256(source).hexdigest()[:16]
        if _FILES.get(path, ("",))[0] == digest:
            continue
        for name in _FILES.pop(path, ("", []))[1]:
            METHODS.pop(name, None)
        try:
            compile(source, str(path), "exec")
        except SyntaxError as err:
            raise ConfigError(f"method_files: {path}, line {err.lineno}: syntax error ({err.msg}); fix the file") \
                from None
        before, module_name = set(METHODS), f"unlearnbench_method_files.{path.stem}_{digest}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module       # dataclasses and get_type_hints resolve the module's names here
        try:
            spec.loader.exec_module(module)
        except Exception as err:
            for name in set(METHODS) - before:  # nothing half-registered stays behind
                METHODS.pop(name)
            sys.modules.pop(module_name, None)
            fix = "rename the method in that file" if "duplicate method" in str(err) else "fix the file"
            raise ConfigError(f"method_files: {path} failed to import: {type(err).__name__}: {err}; {fix}") from None
        names = sorted(set(METHODS) - before)
        if not names:
            raise ConfigError(f"method_files: {path} registers no method; decorate a loss with @method(name, Config) "
                              f"(template: methods/README.md)")
        for name in names:
            METHODS[name] = dataclasses.replace(METHODS[name], source=f"{path}@{digest}")
        _FILES[path] = (digest, names)


for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("common", "trainer"):
        importlib.import_module(f"{__name__}.{_module.name}")
