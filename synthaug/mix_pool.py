"""Moved to ``synthaug.mix.transform_pool``: this old path works, with a DeprecationWarning, for one release."""
from __future__ import annotations

from ._deprecated import warn_moved
from .mix.transform_pool import (DEFAULT_PER_CLASS, MixPool, PoolAccess, check_mix_options, check_pool_dir,
                                 check_pool_source, check_sampling_options)

__all__ = ["MixPool", "PoolAccess", "DEFAULT_PER_CLASS", "check_pool_dir", "check_pool_source",
           "check_sampling_options", "check_mix_options"]

warn_moved(__name__, "synthaug.mix.transform_pool")
