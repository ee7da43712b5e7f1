"""How the quality layer writes a number in text: ``fmt`` (shared by the report text, the metrics and the gate)."""
from __future__ import annotations

from typing import Any


def fmt(value: Any, spec: str = ".3f") -> str:
    """``value`` formatted with ``spec``, or ``n/a`` when it is missing."""
    return "n/a" if value is None else format(value, spec)
