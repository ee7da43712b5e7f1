"""One way to validate a user's option: small checks that name the owner, the option and the value.

Every message reads ``"<owner>: <name>=<value!r> must be ..."`` (the owner is left out when empty), so a
user sees which model, transform or function refused which argument and what to give instead. These
are the primitives of the one validation mechanism: ``synthaug.options`` checks a declared option (``option()``)
with them, and code that checks a plain argument calls them directly; modules never keep private copies.
"""
from __future__ import annotations

import difflib
import math
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = ["is_int", "check_int", "check_float", "check_range", "check_choice", "check_bool", "check_str", "check_int_list",
           "did_you_mean"]


def _prefix(owner: str) -> str:
    return f"{owner}: " if owner else ""


def _hint(hint: str) -> str:
    return f" ({hint})" if hint else ""


def _wanted(what: str, low: Any, high: Any, both: str, above: str = ">=", below: str = "<=") -> str:
    """``"an integer >= 1"``, ``"a number in [0, 1)"``...: what a bounded value must be, in words."""
    if low is not None and high is not None:
        return f"{what} {both.format(lo=low, hi=high)}"
    if low is not None:
        return f"{what} {above} {low}"
    if high is not None:
        return f"{what} {below} {high}"
    return what if what != "a number" else "a finite number"


def is_int(value: Any) -> bool:
    """True for Python and numpy integers, False for bools (``True`` is not a count)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(value: Any, name: str, owner: str = "", *, minimum: int | None = 1, maximum: int | None = None,
              hint: str = "") -> int:
    """``value`` as an ``int`` when it is an integer in ``[minimum, maximum]`` (either bound may be None)."""
    ok = is_int(value) and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if not ok:
        want = _wanted("an integer", minimum, maximum, "from {lo} to {hi}")
        raise ValueError(f"{_prefix(owner)}{name}={value!r} must be {want}{_hint(hint)}")
    return int(value)


def check_float(value: Any, name: str, owner: str = "", *, minimum: float | None = None,
                maximum: float | None = None, min_inclusive: bool = True, max_inclusive: bool = True,
                hint: str = "") -> float:
    """``value`` as a finite ``float`` within the given bounds (ints are accepted, bools are not)."""
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    ok = number and math.isfinite(float(value))
    if ok and minimum is not None:
        ok = value >= minimum if min_inclusive else value > minimum
    if ok and maximum is not None:
        ok = value <= maximum if max_inclusive else value < maximum
    if not ok:
        bracket = f"in {'[' if min_inclusive else '('}{{lo}}, {{hi}}{']' if max_inclusive else ')'}"
        want = _wanted("a number", minimum, maximum, bracket, ">=" if min_inclusive else ">",
                       "<=" if max_inclusive else "<")
        raise ValueError(f"{_prefix(owner)}{name}={value!r} must be {want}{_hint(hint)}")
    return float(value)


def check_range(value: Any, name: str, owner: str, low: float, high: float, hint: str = "") -> float:
    """A number in the half-open interval ``[low, high)``."""
    return check_float(value, name, owner, minimum=low, maximum=high, max_inclusive=False, hint=hint)


def did_you_mean(value: Any, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_choice(value: Any, name: str, owner: str, choices: Sequence[str], hint: str = "") -> str:
    """One of ``choices``; the message lists them and suggests the closest."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{_prefix(owner)}{name}={value!r}: use one of {list(choices)}"
                         f"{did_you_mean(value, choices)}{_hint(hint)}")
    return value


def check_bool(value: Any, name: str, owner: str = "") -> bool:
    """``True`` or ``False`` (not 0/1, not a string)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{_prefix(owner)}{name}={value!r} must be true or false")
    return bool(value)


def check_str(value: Any, name: str, owner: str = "", hint: str = "") -> str:
    """Any string (a choice among some is ``check_choice``)."""
    if not isinstance(value, str):
        raise ValueError(f"{_prefix(owner)}{name}={value!r} must be a string{_hint(hint)}")
    return value


def check_int_list(value: Any, name: str, owner: str = "", *, minimum: int = 1, hint: str = "") -> list[int]:
    """A non-empty list (or tuple: JSON gives lists back) of integers >= ``minimum``."""
    if not isinstance(value, (list, tuple)) or not value or not all(is_int(v) and v >= minimum for v in value):
        want = "positive integers" if minimum == 1 else f"integers >= {minimum}"
        raise ValueError(f"{_prefix(owner)}{name}={value!r} must be a non-empty list of {want}{_hint(hint)}")
    return [int(v) for v in value]
