"""Moved to ``synthaug.mix.quotas``: this old path works, with a DeprecationWarning, for one release."""
from __future__ import annotations

from ._deprecated import warn_moved
from .mix.quotas import ClassQuotas, LabelDistribution, QualityFilter, check_ratio, class_weights, largest_remainder

__all__ = ["ClassQuotas", "LabelDistribution", "QualityFilter", "check_ratio", "largest_remainder", "class_weights"]

warn_moved(__name__, "synthaug.mix.quotas")
