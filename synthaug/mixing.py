"""Moved to ``synthaug.mix.additive``: this old path works, with a DeprecationWarning, for one release."""
from __future__ import annotations

from ._deprecated import warn_moved
from .mix.additive import AdditiveSynthetic, IndexStream, extra_per_batch, permutation_seed

__all__ = ["AdditiveSynthetic", "IndexStream", "extra_per_batch", "permutation_seed"]

warn_moved(__name__, "synthaug.mix.additive")
