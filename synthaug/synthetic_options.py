"""Moved to ``synthaug.mix.dataset_options``: this old path works, with a DeprecationWarning, for one release."""
from __future__ import annotations

from ._deprecated import warn_moved
from .mix.dataset_options import check_dataset_arguments

__all__ = ["check_dataset_arguments"]

warn_moved(__name__, "synthaug.mix.dataset_options")
