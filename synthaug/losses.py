"""Moved to ``synthaug.mix.weighted_loss``: this old path works, with a DeprecationWarning, for one release."""
from __future__ import annotations

from ._deprecated import warn_moved
from .mix.weighted_loss import weighted_cross_entropy

__all__ = ["weighted_cross_entropy"]

warn_moved(__name__, "synthaug.mix.weighted_loss")
