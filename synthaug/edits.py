"""Moved to ``synthaug.mix.edits``: this old path works, with a DeprecationWarning, for one release."""
from __future__ import annotations

from ._deprecated import warn_moved
from .mix.edits import EditSource

__all__ = ["EditSource"]

warn_moved(__name__, "synthaug.mix.edits")
