"""One way to declare and validate options: ``option()`` fields of a dataclass, checked by one function.

An option is declared once, as a dataclass field::

    lr: float = option(1e-3, "learning rate", minimum=0, min_inclusive=False, hint="e.g. 1e-3")

Its annotation is its type (``bool``, ``int``, ``float``, ``str``, ``tuple[int, ...]``; ``| None`` allows null),
``help`` is one line for the docs, ``minimum`` / ``maximum`` (``min_inclusive`` / ``max_inclusive``) or
``choices`` bound it, ``check`` is its own check when those do not say enough, ``hint`` ends its error message,
and ``grid=True`` lets it be a list of distinct values (one setting each: the strategies grid). From that one
declaration come

* the check of a value (``check_value``, with the primitives of ``synthaug.checks``, so every message reads
  ``"<owner>: <key>=<value> must be ... (<hint>)"``), and of every declared field of an instance
  (``validate_fields``, what a config's ``__post_init__`` calls before its rules between fields);
* the defaults (``option_defaults``) and the docs' option tables (``markdown_table``).

Generators (``synthaug.generators.options``), configs (``synthaug.config`` users, ``synthaug.bench``), the
strategies' parameters (``synthaug.strategy.Param``, an ``OptionSpec`` that carries its own type) and the
metrics' options (``synthaug.quality.metrics``) all declare their options this way.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field
from typing import Any

from .checks import check_bool, check_choice, check_float, check_int, check_int_list, check_str

__all__ = ["OptionCheck", "OptionSpec", "option", "like", "spec_of", "check_against", "check_value",
           "validate_fields", "option_defaults", "option_help", "field_type", "type_members", "is_list_of_int",
           "markdown_table"]

#: ``check(value, name, owner) -> value``: a field's own check when its type and bounds do not say enough
OptionCheck = Callable[[Any, str, str], Any]


@dataclass(frozen=True)
class OptionSpec:
    """What ``option()`` records about a field besides its type and default."""

    help: str
    minimum: float | None = None
    maximum: float | None = None
    min_inclusive: bool = True
    max_inclusive: bool = True
    choices: tuple[str, ...] = ()
    hint: str = ""
    check: OptionCheck | None = None
    allowed: str = ""  # the docs' "allowed" text when ``check`` decides
    grid: bool = False  # a value or a list of distinct values, each checked (one setting per value)


def option(default: Any = MISSING, help: str = "", *, default_factory: Any = MISSING, **spec: Any) -> Any:
    """A dataclass field with its one-line ``help`` and bounds (see ``OptionSpec``); a list or mapping default
    is given as ``default_factory``."""
    return field(default=default, default_factory=default_factory, metadata={"spec": OptionSpec(help, **spec)})


def like(options: type, name: str, default: Any) -> Any:
    """The field ``name`` of ``options`` with another default (same help and bounds)."""
    return field(default=default, metadata=options.__dataclass_fields__[name].metadata)


def spec_of(options: type, name: str) -> OptionSpec | None:
    """The ``OptionSpec`` of field ``name`` of the dataclass ``options`` (None: not declared with ``option()``)."""
    return options.__dataclass_fields__[name].metadata.get("spec")


# --------------------------------------------------------------------------- type hints
@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def field_type(options: type, name: str) -> Any:
    """The resolved annotation of field ``name`` of the dataclass ``options``."""
    return _hints(options)[name]


def type_members(hint: Any) -> tuple[list[Any], bool]:
    """The non-None members of a type hint and whether None is allowed."""
    members = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return [m for m in members if m is not type(None)], type(None) in members


def is_list_of_int(hint: Any) -> bool:
    return typing.get_origin(hint) is tuple and typing.get_args(hint) == (int, Ellipsis)


# --------------------------------------------------------------------------- validation
def _check_one(spec: OptionSpec, kind: Any, value: Any, name: str, owner: str) -> Any:
    if spec.check is not None:
        return spec.check(value, name, owner)
    bounds = {"minimum": spec.minimum, "maximum": spec.maximum, "hint": spec.hint}
    if kind is bool:
        return check_bool(value, name, owner)
    if kind is int:
        return check_int(value, name, owner, **bounds)
    if kind is float:
        return check_float(value, name, owner, min_inclusive=spec.min_inclusive, max_inclusive=spec.max_inclusive,
                           **bounds)
    if kind is str and spec.choices:
        return check_choice(value, name, owner, spec.choices, spec.hint)
    if kind is str:
        return check_str(value, name, owner)
    if is_list_of_int(kind):
        return check_int_list(value, name, owner, minimum=1 if spec.minimum is None else int(spec.minimum),
                              hint=spec.hint)
    return value  # a type without a check of its own: the owner's rules decide (generators refuse such fields)


def _check_grid(spec: OptionSpec, kind: Any, value: Any, name: str, owner: str) -> list[Any]:
    values = value if isinstance(value, list) else [value]
    if not values or len(set(values)) != len(values):
        raise ValueError(f"{owner}.{name}={value!r}: give a number or a list of distinct numbers")
    return [_check_one(spec, kind, v, name, owner) for v in values]


def check_against(spec: OptionSpec, kind: Any, optional: bool, value: Any, name: str, owner: str = "") -> Any:
    """``value`` checked against ``spec`` as a ``kind`` (None allowed when ``optional``); the checked value (a
    list for a grid option). ``name`` is the key the message names, ``owner`` what it belongs to."""
    if value is None and optional:
        return None
    if spec.grid:
        return _check_grid(spec, kind, value, name, owner)
    return _check_one(spec, kind, value, name, owner)


def check_value(options: type, name: str, value: Any, owner: str = "", *, key: str | None = None) -> Any:
    """``value`` of option ``name`` of the dataclass ``options``, checked against its declaration (the message
    names ``key``, default ``name``)."""
    members, optional = type_members(_hints(options)[name])
    return check_against(spec_of(options, name), members[0], optional, value, key or name, owner)


def validate_fields(instance: Any, owner: str = "", *, prefix: str = "") -> None:
    """Check every ``option()`` field of the dataclass ``instance`` against its declaration (messages name
    ``prefix`` + the field). A grid option is stored as its list, and a field with its own ``check`` as what the
    check returns; other values are kept as given (a config's numbers are typed when it is read)."""
    cls = type(instance)
    for f in dataclasses.fields(instance):
        spec = f.metadata.get("spec")
        if spec is None:
            continue
        checked = check_value(cls, f.name, getattr(instance, f.name), owner, key=prefix + f.name)
        if spec.grid or spec.check is not None:
            object.__setattr__(instance, f.name, checked)  # frozen dataclasses too


def option_defaults(options: type) -> dict[str, Any]:
    """Option name -> default, in declaration order."""
    return {f.name: f.default for f in dataclasses.fields(options)}


def option_help(options: type) -> dict[str, tuple[Any, str]]:
    """Option name -> (default, help), in declaration order (fields without ``option()``: an empty help)."""
    return {f.name: (f.default, f.metadata["spec"].help if "spec" in f.metadata else "")
            for f in dataclasses.fields(options)}


# --------------------------------------------------------------------------- the docs table
def _type_text(hint: Any) -> str:
    members, optional = type_members(hint)
    names = ["list of int" if is_list_of_int(m) else m.__name__ for m in members]
    return " or ".join(names + (["null"] if optional else []))


def _bound_text(spec: OptionSpec) -> str:
    low, high = spec.minimum, spec.maximum
    if low is not None and high is not None:
        return f"{'[' if spec.min_inclusive else '('}{low}, {high}{']' if spec.max_inclusive else ')'}"
    if low is not None:
        return f"{'>=' if spec.min_inclusive else '>'} {low}"
    if high is not None:
        return f"{'<=' if spec.max_inclusive else '<'} {high}"
    return ""


def _allowed_text(options: type, name: str) -> str:
    spec = spec_of(options, name)
    members, _ = type_members(_hints(options)[name])
    if spec.allowed:
        return spec.allowed
    if spec.choices:
        return ", ".join(f"`{json.dumps(c)}`" for c in spec.choices)
    if members[0] is bool:
        return "`true`, `false`"
    if is_list_of_int(members[0]):
        return f"each {_bound_text(spec) or '>= 1'}"
    return _bound_text(spec)


def markdown_table(options: type) -> str:
    """The Markdown table of an options dataclass: option, type, default, allowed values, help."""
    rows = ["| option | type | default | allowed | what it does |", "|---|---|---|---|---|"]
    for f in dataclasses.fields(options):
        default = json.dumps(list(f.default) if isinstance(f.default, tuple) else f.default)
        cells = [f"`{f.name}`", _type_text(_hints(options)[f.name]), f"`{default}`", _allowed_text(options, f.name),
                 f.metadata["spec"].help]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"
