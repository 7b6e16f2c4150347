"""Strict merging of nested dicts (YAML, command-line overrides) into dataclasses: an unknown key or a value of the
wrong type raises ConfigError naming the key and the fix. A dataclass's own range checks (__post_init__) raise
FieldError naming the field; from_dict prefixes the section, so the message names the full key."""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path

import yaml


class ConfigError(ValueError):
    pass


class FieldError(ConfigError):
    """A field's value is out of range: raised by a dataclass's __post_init__ as "<field>=<value>: <fix>"."""


def coerce(value, tp, key: str):
    """Value of type `tp`, accepting the strings a command line gives; anything else is a ConfigError."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"config key {key!r}: expected {getattr(tp, '__name__', tp)}, got {value!r}")
    if isinstance(tp, types.UnionType):     # the first type that takes the value (bool | str: "true" is a bool)
        for option in typing.get_args(tp):
            if option is type(None):        # `x | None`: None (YAML's null) stays None
                if value is None:
                    return None
                continue
            try:
                return coerce(value, option, key)
            except ConfigError:
                continue
        raise bad
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise bad
        return from_dict(tp, value, key)
    if origin is list:
        (inner,) = typing.get_args(tp)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise bad
        return [coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise bad
        return value
    if tp is bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise bad
        return value
    if tp in (int, float):
        if isinstance(value, str):
            try:
                return tp(value)
            except ValueError:
                raise bad from None
        # bool is an int in Python, and an int is no float's wrong type, but never the other way round
        if isinstance(value, bool) or not isinstance(value, (int, float) if tp is float else int):
            raise bad
        return tp(value)
    if tp is str:
        if value is None:
            return ""
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise bad
        return str(value)
    raise TypeError(f"unsupported config type {tp} at {key}")


def from_dict(cls, data: dict, prefix: str = ""):
    """Build dataclass `cls` from a nested dict, strictly: unknown keys and wrong types raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section {prefix or '<root>'!r} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(f"unknown config key {full!r}; valid keys here: {', '.join(names)}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            # a partial section overrides the defaults of that section
            base = dataclasses.asdict(getattr(cls(), key)) if _has_defaults(cls) else {}
            value = deep_merge(base, value)
        kwargs[key] = coerce(value, tp, full)
    try:
        return cls(**kwargs)
    except FieldError as err:
        raise ConfigError(f"{prefix}.{err}" if prefix else str(err)) from None


def _has_defaults(cls) -> bool:
    return all(f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
               for f in dataclasses.fields(cls))


def deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"malformed YAML in {path}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys, got {type(data).__name__}")
    return data
