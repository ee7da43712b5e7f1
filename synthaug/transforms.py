"""Moved to ``synthaug.mix.albumentations``: this old path works, with a DeprecationWarning, for one release."""
from __future__ import annotations

from ._deprecated import warn_moved
from .mix.albumentations import SyntheticMix, load_pipeline, luminance, match_image_format
from .mix.items import class_id
from .mix.transform_pool import DEFAULT_PER_CLASS
from .sources import is_checkpoint

__all__ = ["SyntheticMix", "load_pipeline", "match_image_format", "luminance", "class_id", "is_checkpoint",
           "DEFAULT_PER_CLASS"]

warn_moved(__name__, "synthaug.mix.albumentations")
