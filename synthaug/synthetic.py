"""Moved to ``synthaug.mix.dataset``: this old path works, with a DeprecationWarning, for one release."""
from __future__ import annotations

from ._deprecated import warn_moved
from .mix.dataset import SyntheticDataset
from .mix.quotas import ClassQuotas, check_ratio, class_weights, largest_remainder
from .sources import open_source

__all__ = ["SyntheticDataset", "ClassQuotas", "check_ratio", "largest_remainder", "class_weights", "open_source"]

warn_moved(__name__, "synthaug.mix.dataset")
