"""Your own methods, tasks, attacks and probes from files outside the package (`extensions=a.py,b.py`): each file
is imported and registers what it defines with the same decorators as the built-in ones (`@method` from methods,
`@task` from unlearnbench.tasks, `@attack` from orchestration.attacks, `@probe` from unlearnbench.probes). What a
file registers carries the file's digest (`source`), which goes into the keys of the units it determines, so an
edited file runs them again.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import sys
from pathlib import Path

import benchmarks  # noqa: F401  (the built-in tasks and probes, registered before any file's)
from methods import METHODS
from orchestration.attacks import ATTACKS
from unlearnbench.config import ConfigError
from unlearnbench.probes import PROBES
from unlearnbench.tasks import TASKS

REGISTRIES = {"method": METHODS, "task": TASKS, "attack": ATTACKS, "probe": PROBES}
_FILES: dict[Path, tuple[str, list[tuple[str, str]]]] = {}   # file -> (its digest, the (kind, name)s it registered)


def load(paths: list[str]) -> None:
    """Import each file of `extensions`; a file already imported unchanged is skipped, an edited one replaces what
    it registered. Every failure is a ConfigError that names the file (and the line of a syntax error), before
    anything trains."""
    for given in paths:
        path = Path(given).expanduser().resolve()
        if not path.is_file() or path.suffix != ".py":
            raise ConfigError(f"extensions: {given!r} is not a Python file; give the path of a .py file that "
                              f"registers methods (@method), tasks (@task), attacks (@attack) or probes (@probe): "
                              f"docs/extending.md")
        source = path.read_bytes()
        digest = hashlib.sha256(source).hexdigest()[:16]
        if _FILES.get(path, ("",))[0] == digest:
            continue
        for kind, name in _FILES.pop(path, ("", []))[1]:
            REGISTRIES[kind].pop(name, None)
        try:
            compile(source, str(path), "exec")
        except SyntaxError as err:
            raise ConfigError(f"extensions: {path}, line {err.lineno}: syntax error ({err.msg}); fix the file") \
                from None
        before = {kind: set(registry) for kind, registry in REGISTRIES.items()}
        module_name = f"unlearnbench_extensions.{path.stem}_{digest}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"extensions: {path} cannot be imported as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module       # dataclasses and get_type_hints resolve the module's names here
        try:
            spec.loader.exec_module(module)
        except Exception as err:
            for kind, registry in REGISTRIES.items():   # nothing half-registered stays behind
                for name in set(registry) - before[kind]:
                    registry.pop(name)
            sys.modules.pop(module_name, None)
            fix = "rename it in that file" if "duplicate" in str(err) else "fix the file"
            raise ConfigError(f"extensions: {path} failed to import: {type(err).__name__}: {err}; {fix}") from None
        added = [(kind, name) for kind, registry in REGISTRIES.items() for name in sorted(set(registry) - before[kind])]
        if not added:
            raise ConfigError(f"extensions: {path} registers nothing; decorate a loss with @method(name, Config), a "
                              f"task class with @task(name, Config), an attack with @attack(name, Settings) or a "
                              f"probe with @probe(name, changes) "
                              f"(docs/extending.md)")
        for kind, name in added:
            registry = REGISTRIES[kind]
            registry[name] = dataclasses.replace(registry[name], source=f"{path}@{digest}")
        _FILES[path] = (digest, added)
