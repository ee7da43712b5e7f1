"""Configs are dataclasses filled from YAML, with ``key.sub=value`` overrides, validated before work starts."""
from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .checks import did_you_mean, is_int

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override is wrong: unknown key, wrong type, bad value."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{where}: {value!r} is not a {' or '.join(_type_name(a) for a in args)}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, where=where)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_tp = args[0] if args else Any
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        if len(args) == 2 and dataclasses.is_dataclass(args[1]):  # dict[str, Spec]: each value built as a Spec
            return {k: _coerce(v, args[1], f"{where}.{k}") for k, v in value.items()}
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if not is_int(value):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if not (is_int(value) or isinstance(value, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict[str, Any], *, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, refusing unknown keys and wrong types (with the key's path). A key
    ``cls.RENAMED`` names (old -> new) is read as its new name, with a FutureWarning saying so."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'top level'}: expected a mapping, got {type(data).__name__}")
    data = _renamed(cls, data, where)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"{where or 'top level'}: unknown key {key!r}{did_you_mean(str(key), names)}. "
                              f"Known keys: {names}")
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}" if where else str(key))
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where or 'top level'}: {err}") from err


def _renamed(cls: type, data: dict[str, Any], where: str) -> dict[str, Any]:
    """``data`` with the old names of ``cls.RENAMED`` replaced by the new ones (a FutureWarning for each)."""
    renames = getattr(cls, "RENAMED", {})
    if not any(old in data for old in renames):
        return data
    import warnings

    out = {}
    for key, value in data.items():
        new = renames.get(key)
        if new is None:
            out[key] = value
            continue
        if new in data:
            raise ConfigError(f"{where or 'top level'}: both {key!r} and {new!r}; {key!r} is the old name of "
                              f"{new!r}: keep {new!r} only")
        warnings.warn(f"{where or 'config'}: {key!r} is now called {new!r}; this config loads as before, rename the "
                      "key (the old name is read for one release)", FutureWarning, stacklevel=3)
        out[new] = value
    return out


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r}: write key.sub=value, e.g. classifier.steps=100")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: cannot read the value ({err})") from err
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    data = json.loads(json.dumps(data))  # a deep copy of plain data
    for text in overrides:
        path, value = parse_override(text)
        node: Any = data
        for i, part in enumerate(path):
            last = i == len(path) - 1
            if isinstance(node, list):  # datasets.0.image_size: an index into a list
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"override {text!r}: {part!r} is not an index of a list of {len(node)} entries")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise ConfigError(f"override {text!r}: {path[i - 1]!r} is not a section")
    return data


def load_config(cls: type[T], path: str | os.PathLike | None, overrides: list[str] | None = None, *,
                required: tuple[str, ...] = ()) -> T:
    """Read YAML ``path`` (or start from the defaults when None), apply overrides, validate into ``cls``.

    ``required``: keys (``generator.name`` for a nested one) a config file must give, by itself or with the
    overrides; a file without them is refused rather than run with the defaults in their place.
    """
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from err
        source = str(path)
    data = apply_overrides(data, overrides or [])
    if path is not None:
        check_required(data, required, source)
    try:
        return from_dict(cls, data)
    except ConfigError as err:
        raise ConfigError(f"{source}{' with overrides' if overrides else ''}: {err}") from None


def _has_key(data: Any, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(data, dict) or data.get(part) is None:
            return False
        data = data[part]
    return True


def check_required(data: dict[str, Any], required: tuple[str, ...], source: str) -> None:
    """Refuse a config (file ``source`` plus its overrides) that lacks keys it must give, naming them."""
    missing = [key for key in required if not _has_key(data, key)]
    if missing:
        what = "is empty" if not data else f"has no {', '.join(missing)}"
        raise ConfigError(f"{source} {what}: a config must give {', '.join(required)} (nothing runs on defaults "
                          "alone); start from a preset's file, which `--preset NAME --dry-run` prints as config_file")
