"""Moved to ``synthaug.mix.torchvision``: this old path works, with a DeprecationWarning, for one release."""
from __future__ import annotations

from ._deprecated import warn_moved
from .mix.torchvision import SyntheticMixV2, match_tensor_format

__all__ = ["SyntheticMixV2", "match_tensor_format"]

warn_moved(__name__, "synthaug.mix.torchvision")
